"""An exchange started as a subprocess never outlives the process that started it, even a SIGKILLed one
(`make demo` killed hard used to leave `midas exchange` running, holding its port)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

STARTER = """
import sys, time
from midas.exchange import LocalExchange
ex = LocalExchange(venue="binance", symbols=["BTCUSDT"], subprocess=True).start()
print(ex.process.pid, flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0): count it as ended once its state says so.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ")[-1][:1] != "Z"
    except FileNotFoundError:
        return False


def test_exchange_subprocess_stops_when_its_parent_is_sigkilled(repo_root):
    starter = subprocess.Popen([sys.executable, "-c", STARTER], stdout=subprocess.PIPE, text=True,
                               cwd=repo_root)
    exchange_pid = None
    try:
        exchange_pid = int(starter.stdout.readline())
        assert _alive(exchange_pid)
        starter.send_signal(signal.SIGKILL)
        starter.wait(10)
        deadline = time.monotonic() + 30
        while _alive(exchange_pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(exchange_pid), "the exchange outlived its SIGKILLed parent"
    finally:
        if starter.poll() is None:
            starter.kill()
        if exchange_pid is not None and _alive(exchange_pid):
            os.kill(exchange_pid, signal.SIGKILL)


def test_exchange_cli_stops_when_the_watched_pid_ends(repo_root):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    exchange = subprocess.Popen([sys.executable, "-m", "midas.cli", "exchange", "--venue", "binance",
                                 "--port", "0", "--stop-with-pid", str(sleeper.pid)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=repo_root)
    try:
        first = exchange.stdout.readline()
        while first and not first.startswith("midas exchange:"):    # log lines come first
            first = exchange.stdout.readline()
        assert first == "midas exchange: binance simulating BTCUSDT (seed 7)\n", first
        sleeper.kill()
        sleeper.wait(10)
        out, _ = exchange.communicate(timeout=30)
        assert exchange.returncode == 0
        assert f"midas exchange: process {sleeper.pid} ended, stopping" in out
        assert "midas exchange: stopped" in out
    finally:
        for proc in (sleeper, exchange):
            if proc.poll() is None:
                proc.kill()
