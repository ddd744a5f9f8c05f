"""`midas ops`: status on real raw files, deploy's clear error without a server, and the log files
of a service run through `run_service`."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time

from midas.cli import main
from midas.cli.ops_cmd import run_service
from midas.importer import import_recording

VENUE = "binance-futures"


def test_status_lists_every_hour_and_why(tmp_path, recordings, capsys, monkeypatch):
    import_recording(recordings[VENUE], VENUE, tmp_path)
    monkeypatch.setenv("VENUE", VENUE)
    monkeypatch.setenv("SYMBOLS", "BTCUSDT")
    assert main(["ops", "status", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if "BTCUSDT" in line and "│" in line]
    assert [[cell.strip() for cell in row.split("│")[1:-1]] for row in rows] == [
        ["BTCUSDT", "2024-07-18T23", "pending", "never processed", "1"],
        ["BTCUSDT", "2024-07-19T00", "pending", "never processed", "2"],
    ]
    assert "pending: 2" in out
    assert "supervised collector: not running" in out
    # a symbol with raw data outside SYMBOLS is listed too; --symbols narrows the list
    monkeypatch.setenv("SYMBOLS", "ETHUSDT")
    assert main(["ops", "status", "--data-dir", str(tmp_path)]) == 0
    assert "pending: 2" in capsys.readouterr().out
    assert main(["ops", "status", "--data-dir", str(tmp_path), "--symbols", "ETHUSDT"]) == 0
    assert "no raw hours yet" in capsys.readouterr().out
    assert main(["ops", "status", "--data-dir", str(tmp_path / "typo")]) == 2
    assert f"data directory {tmp_path / 'typo'} does not exist" in capsys.readouterr().err
    assert not (tmp_path / "typo").exists()


def test_deploy_without_a_server_says_what_to_set(capsys, monkeypatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    assert main(["ops", "deploy"]) == 2
    err = capsys.readouterr().err
    assert "PREFECT_API_URL is not set" in err and "http://127.0.0.1:4200/api" in err
    # set, but nothing answers there: one clear line, not prefect's traceback
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("PREFECT_API_URL", f"http://127.0.0.1:{port}/api")
    for command in (["ops", "deploy"], ["ops", "hourly-now"]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: no Prefect server answers at PREFECT_API_URL: http://127.0.0.1:{port}/api: "
                              "no answer"), err
        assert "start one with `make server`" in err and "Traceback" not in err


def test_run_service_copies_output_to_the_rotated_log_file(tmp_path):
    midas_logger = logging.getLogger("midas")
    before = list(midas_logger.handlers)
    handlers_before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = run_service([sys.executable, "-c", "print('line one'); print(); print('line two'); raise SystemExit(3)"],
                           "svc", tmp_path)
    finally:
        for handler in [h for h in midas_logger.handlers if h not in before]:
            midas_logger.removeHandler(handler)
            handler.close()
    assert code == 3
    assert {sig: signal.getsignal(sig) for sig in handlers_before} == handlers_before
    lines = (tmp_path / "svc" / "svc.log").read_text().splitlines()
    assert [line.split(" midas.svc ", 1)[1] for line in lines] == ["line one", "line two"]


_SERVICE = """
import signal, sys, time
def on(signum, frame):
    print("got", signal.Signals(signum).name, flush=True)
    sys.exit(0 if signum == signal.SIGINT else 1)
signal.signal(signal.SIGINT, on)
signal.signal(signal.SIGTERM, on)
print("ready", flush=True)
print("", flush=True)
while True:
    time.sleep(0.1)
"""

_RUN = """
import sys
from pathlib import Path
from midas.cli.ops_cmd import run_service
sys.exit(run_service([sys.executable, "-c", sys.argv[1]], "svc", Path(sys.argv[2])))
"""


def test_run_service_passes_sigterm_on_as_one_sigint(tmp_path):
    outer = subprocess.Popen([sys.executable, "-c", _RUN, _SERVICE, str(tmp_path)])
    log_file = tmp_path / "svc" / "svc.log"
    deadline = time.monotonic() + 120
    while not (log_file.exists() and "ready" in log_file.read_text()):
        assert time.monotonic() < deadline and outer.poll() is None, "the service did not start"
        time.sleep(0.1)
    outer.send_signal(signal.SIGTERM)
    assert outer.wait(timeout=60) == 0
    messages = [line.split(" midas.svc ", 1)[1] for line in log_file.read_text().splitlines()]
    assert messages == ["ready", "got SIGINT"]
