"""Ctrl-C during the demo: remembered even when a library swallows the KeyboardInterrupt, and the
whole `midas demo` stops with exit code 130 leaving only final raw files (slow variant)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from midas.demo.runner import InterruptWatch
from midas.layout import list_raw_files


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_watch_remembers_a_swallowed_interrupt(signum):
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with InterruptWatch() as watch:
        watch.check()                                   # nothing yet
        try:
            os.kill(os.getpid(), signum)
            time.sleep(5)                               # interrupted at once by the handler
        except KeyboardInterrupt:
            pass                                        # what a library swallowing it does
        assert watch.seen
        with pytest.raises(KeyboardInterrupt):
            watch.check()
    assert {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)} == previous


@pytest.mark.slow
def test_ctrl_c_stops_the_demo_cleanly(tmp_path):
    data_dir = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    proc = subprocess.Popen([sys.executable, "-m", "midas.cli", "demo", "--seconds", "120", "--data-dir",
                             str(data_dir)], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not list(data_dir.glob("raw/*/*/*/*.partial")):
            time.sleep(0.5)
        assert list(data_dir.glob("raw/*/*/*/*.partial")), "the collector never started writing"
        time.sleep(3)
        os.killpg(proc.pid, signal.SIGINT)              # what Ctrl-C in a terminal does
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, out[-3000:]
    assert "stopped (Ctrl-C or SIGTERM)" in out
    for symbol in ("BTCUSDT", "ETHUSDT"):
        assert list_raw_files(data_dir, "binance-futures", symbol)
        assert not list_raw_files(data_dir, "binance-futures", symbol, partial=True)
