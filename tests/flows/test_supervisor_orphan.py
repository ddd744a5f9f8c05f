"""midas.supervisor: when the process supervising the collector dies (a flow run killed by its
worker), the collector notices, stops cleanly and finalizes its raw files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from midas.config import load_settings
from midas.exchange import LocalExchange
from midas.layout import list_raw_files
from midas.raw import RawFileReader

VENUE = "binance-futures"

_SUPERVISE = """
import json, sys, time
from midas.config import load_settings
from midas.supervisor import run_collector_process
settings = load_settings(env_file=None, **json.loads(sys.argv[1]))
run_collector_process(settings, until=time.time() + 600, health_interval_secs=60)
"""


def _wait_for(condition, what: str, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def test_collector_stops_cleanly_when_its_supervisor_is_killed(tmp_path):
    with LocalExchange(venue=VENUE, symbols=["BTCUSDT"], seed=11, port=0) as ex:
        settings = load_settings(env_file=None, data_dir=tmp_path, venue=VENUE, symbols=["BTCUSDT"],
                                 ws_url=ex.ws_url, rest_url=ex.rest_url)
        parent = subprocess.Popen([sys.executable, "-c", _SUPERVISE,
                                   json.dumps(settings.model_dump(mode="json"))])
        try:
            partial = _wait_for(lambda: list_raw_files(tmp_path, VENUE, "BTCUSDT", partial=True),
                                "a .partial raw file")[0]
            _wait_for(lambda: sum(1 for _ in RawFileReader(partial).iter_lines()) >= 20,
                      "20 records flushed")
            child = int((tmp_path / "state" / "collector.pid").read_text())
            os.kill(parent.pid, signal.SIGKILL)
            parent.wait(timeout=30)
            # The orphaned collector sees its parent gone within a second or two and finalizes.
            _wait_for(lambda: not list_raw_files(tmp_path, VENUE, "BTCUSDT", partial=True),
                      "the .partial file to be finalized")
        finally:
            if parent.poll() is None:
                parent.kill()
                parent.wait(timeout=30)
    final = partial.with_name(partial.name.removesuffix(".partial"))
    reader = RawFileReader(final)
    records = [rec for _, rec in reader.iter_records()]
    assert reader.problems == []
    assert records[0]["type"] == "snapshot"
    assert (records[-1]["type"], records[-1]["event"]) == ("event", "shutdown")
    _wait_for(lambda: not os.path.exists(f"/proc/{child}") or
              open(f"/proc/{child}/status").read().split("State:")[1].split()[0] == "Z",
              "the collector process to exit", timeout=30)


def test_a_second_collector_on_the_same_data_is_refused(tmp_path, monkeypatch, capsys):
    import pytest

    import midas.supervisor
    from midas.cli import main
    from midas.errors import CollectorError

    monkeypatch.setattr(midas.supervisor, "PREVIOUS_COLLECTOR_WAIT_SECS", 1.0)
    settings = load_settings(env_file=None, data_dir=tmp_path, venue=VENUE, symbols=["BTCUSDT"])
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        pid_path = midas.supervisor.pid_file(settings)
        pid_path.parent.mkdir(parents=True)
        pid_path.write_text(f"{running.pid}\n")
        with pytest.raises(CollectorError, match=f"another collector \\(pid {running.pid}, .*\\) is still running"):
            midas.supervisor.run_collector_process(settings, until=time.time() + 5)
        assert main(["ops", "status", "--data-dir", str(tmp_path)]) == 0
        assert f"supervised collector: running, pid {running.pid}" in capsys.readouterr().out
    finally:
        running.kill()
        running.wait(timeout=30)
    assert midas.supervisor.running_collector_pid(settings) is None
    assert list_raw_files(tmp_path, VENUE, "BTCUSDT") == []
