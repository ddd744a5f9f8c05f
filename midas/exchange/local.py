"""`LocalExchange`: the local exchange as a context manager, in a background thread of this
process (default) or as a `midas exchange` subprocess (`subprocess=True`)."""

from __future__ import annotations

import asyncio
import collections
import os
import re
import signal
import subprocess as _subprocess
import sys
import threading
import time
from dataclasses import fields
from pathlib import Path

from midas.errors import ExchangeError
from midas.exchange.faults import Faults
from midas.exchange.server import ExchangeConfig, ExchangeServer

_URL_RE = re.compile(r"(ws://[0-9.]+:(\d+))")
START_TIMEOUT_SECS = 90.0
OUTPUT_LINES_KEPT = 2000          # the subprocess's last output lines kept for `output` and errors


def fault_flags(faults: Faults) -> list[str]:
    """The `midas exchange` flags that reproduce `faults` (only those not at their default)."""
    default = Faults()
    args: list[str] = []
    for f in fields(Faults):
        value = getattr(faults, f.name)
        if value != getattr(default, f.name):
            args += [f"--{f.name.replace('_', '-')}", str(value)]
    return args


class LocalExchange:
    """A Binance-compatible exchange on 127.0.0.1 for tests, benchmarks and the demo.

    Parameters are those of `ExchangeConfig` (see midas.exchange); `subprocess=True` runs
    `python -m midas.cli exchange ... --port 0` and reads the URL it prints.
    """

    def __init__(self, venue: str | None = None, symbols=("BTCUSDT",), seed: int = 7,
                 faults: Faults | None = None, truth_dir: str | Path | None = None,
                 replay=None, speed: float = 1.0, clock_offset_ms: int = 1300, port: int = 0,
                 subprocess: bool = False, **options):
        if isinstance(symbols, str):
            symbols = [s for s in symbols.split(",") if s]
        if isinstance(replay, (str, Path)):
            replay = [replay]
        self.config = ExchangeConfig(
            venue=venue, symbols=list(symbols), seed=seed, faults=faults or Faults(),
            truth_dir=Path(truth_dir) if truth_dir else None,
            replay=[Path(p) for p in replay] if replay else None, speed=speed,
            clock_offset_ms=clock_offset_ms, port=port, **options)
        self.subprocess = subprocess
        self.server: ExchangeServer | None = None
        self.process: _subprocess.Popen | None = None
        self.port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._output: collections.deque[str] = collections.deque(maxlen=OUTPUT_LINES_KEPT)

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "LocalExchange":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- in-thread ----------------------------------------------------------------------------

    def start(self) -> "LocalExchange":
        if self.subprocess:
            return self._start_subprocess()
        ready = threading.Event()
        errors: list[BaseException] = []
        self.server = ExchangeServer(self.config)

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self.server.start())
            except BaseException as e:  # reported to the starting thread
                errors.append(e)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self.server.stop())
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=run, name="midas-exchange", daemon=True)
        self._thread.start()
        if not ready.wait(START_TIMEOUT_SECS):
            raise ExchangeError(f"the local exchange did not start within {START_TIMEOUT_SECS:.0f} s")
        if errors:
            raise errors[0]
        self.port = self.server.port
        return self

    def call(self, fn, *args):
        """Run `fn(*args)` on the exchange's event loop and return its result (in-thread mode)."""
        if self._loop is None:
            raise ExchangeError("the local exchange runs in a subprocess or is not started")
        done = threading.Event()
        box: list = []

        def wrapper() -> None:
            try:
                box.append((True, fn(*args)))
            except BaseException as e:
                box.append((False, e))
            done.set()

        self._loop.call_soon_threadsafe(wrapper)
        done.wait(30)
        ok, value = box[0]
        if not ok:
            raise value
        return value

    def stats(self) -> dict:
        """Ticks produced, lag of E behind its schedule, messages sent (in-thread mode)."""
        return self.call(self.server.stats)

    def stop(self) -> None:
        if self.process is not None:
            self._stop_subprocess()
            return
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(60)
        self._loop = None

    # --- subprocess ---------------------------------------------------------------------------

    def _cli_args(self) -> list[str]:
        c = self.config
        args = [sys.executable, "-m", "midas.cli", "exchange", "--port", str(c.port),
                "--seed", str(c.seed), "--clock-offset-ms", str(c.clock_offset_ms),
                "--truth-depth", str(c.truth_depth), "--speed", str(c.speed),
                # A SIGKILLed parent cannot stop its exchange: the exchange watches the parent instead.
                "--stop-with-pid", str(os.getpid())]
        if c.venue:
            args += ["--venue", c.venue]
        if not c.replay:
            args += ["--symbols", ",".join(c.symbols)]
        if c.truth_dir:
            args += ["--truth-dir", str(c.truth_dir)]
        if c.tick_jitter_ms:
            args += ["--tick-jitter-ms", str(c.tick_jitter_ms)]
        if c.ping_interval_secs is not None:
            args += ["--ping-interval-secs", str(c.ping_interval_secs)]
        if c.weight_budget is not None:
            args += ["--weight-budget", str(c.weight_budget)]
        if c.message_limit is not None:
            args += ["--message-limit", str(c.message_limit)]
        args += fault_flags(c.faults)
        if c.replay:
            args += ["--replay", *[str(p) for p in c.replay]]
        return args

    def _start_subprocess(self) -> "LocalExchange":
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.process = _subprocess.Popen(self._cli_args(), stdout=_subprocess.PIPE,
                                         stderr=_subprocess.STDOUT, text=True, env=env)
        found = threading.Event()

        def pump() -> None:
            for line in self.process.stdout:
                self._output.append(line.rstrip("\n"))
                if not found.is_set():
                    m = _URL_RE.search(line)
                    if m:
                        self.port = int(m.group(2))
                        found.set()
            found.set()

        threading.Thread(target=pump, name="midas-exchange-output", daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT_SECS
        while not found.wait(0.2):
            if time.monotonic() > deadline:
                self._stop_subprocess()
                raise ExchangeError(f"`midas exchange` printed no URL within {START_TIMEOUT_SECS:.0f} s: "
                                    + " | ".join(list(self._output)[-5:]))
        if self.port is None:
            code = self.process.wait(10)
            raise ExchangeError(f"`midas exchange` exited with code {code} before serving: "
                                + " | ".join(list(self._output)[-5:]))
        return self

    @property
    def output(self) -> list[str]:
        """The subprocess's last output lines, stdout and stderr (subprocess mode)."""
        return list(self._output)

    def _stop_subprocess(self) -> None:
        proc = self.process
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except _subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        self.process = None
