"""The demo's session: environment and logging for its flows, the Prefect API they report to,
Ctrl-C handling and the live progress bars."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from midas.errors import ConfigError
from midas.logs import log_kv

logger = logging.getLogger("midas.demo")


@contextmanager
def demo_settings_environment(overrides: dict[str, str]) -> Iterator[None]:
    """Settings the flows read from the environment (they take no such parameters), restored after."""
    saved = {k: os.environ.get(k) for k in overrides}
    os.environ.update(overrides)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextmanager
def quiet_logs(verbose: bool) -> Iterator[None]:
    """Prefect's per-run INFO chatter would bury the live status: Prefect logs WARNING and up, and
    MIDAS's own stderr handler shows WARNING and up (gaps, reconnects: the recovery the demo shows),
    once, not also through Prefect's root handler. The handler's level is set rather than the
    logger's, because every flow run sets the `midas` logger's level again (flows/common.py).
    `verbose` leaves logging as configured."""
    if verbose:
        yield
        return
    midas_logger = logging.getLogger("midas")
    handlers = [h for h in midas_logger.handlers if getattr(h, "_midas", False)]
    saved_levels = [h.level for h in handlers]
    saved_env = os.environ.get("PREFECT_LOGGING_LEVEL")
    saved_propagate, saved_prefect = midas_logger.propagate, logging.getLogger("prefect").level
    os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"          # read when Prefect sets up its logging
    logging.getLogger("prefect").setLevel(logging.WARNING)   # in case it already has
    for h in handlers:
        h.setLevel(logging.WARNING)
    midas_logger.propagate = False
    try:
        yield
    finally:
        for h, level in zip(handlers, saved_levels):
            h.setLevel(level)
        midas_logger.propagate = saved_propagate
        logging.getLogger("prefect").setLevel(saved_prefect)
        if saved_env is None:
            os.environ.pop("PREFECT_LOGGING_LEVEL", None)
        else:
            os.environ["PREFECT_LOGGING_LEVEL"] = saved_env


@contextmanager
def prefect_api(console: Console) -> Iterator[str]:
    """The Prefect API the flows report to: PREFECT_API_URL if set (it must answer), else a temporary
    local server started here (5-10 s) and stopped at the end."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from midas.doctor import check_prefect, prefect_api_url

    configured = prefect_api_url()
    if configured:
        check = check_prefect(configured)
        if check.status != "ok":
            raise ConfigError(f"Prefect API {check.found}: {check.remedy}")
        console.print(f"Prefect API: {configured}")
        yield configured
        return
    from midas.demo.prefect_server import TemporaryPrefectServer

    console.print("starting a temporary Prefect server (no PREFECT_API_URL set) ...")
    started = time.monotonic()
    with TemporaryPrefectServer() as server:
        console.print(f"Prefect server ready at {server.api_url} ({time.monotonic() - started:.1f} s)")
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            try:
                yield server.api_url
            finally:
                _flush_prefect_logs()


def _flush_prefect_logs() -> None:
    """Send the flow runs' queued log lines and events before the server goes away (else Prefect
    prints "Error logging to API" or "Still processing items" at exit)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        try:
            worker.drain_all(timeout=5)
        except Exception as e:   # a log line lost at exit must not turn a finished demo into a failure
            log_kv(logger, "could not flush Prefect's queued run logs or events", logging.WARNING,
                   worker=worker.__name__, error=e)


class InterruptWatch:
    """Remembers a Ctrl-C (SIGINT) or SIGTERM even when a library swallows the KeyboardInterrupt it
    raises for it.

    Ctrl-C reaches the whole process group: the collector child stops cleanly on it, and the
    collection flow then ends as if its time were up. `check()` after each stage turns the
    remembered Ctrl-C into a KeyboardInterrupt, so the demo stops instead of processing on. SIGTERM
    (`kill`, a service manager) is handled the same way, so the exchange and the Prefect server are
    stopped by their context managers instead of being left behind.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.seen = False
        self._previous: dict = {}

    def _handler(self, signum, frame) -> None:
        self.seen = True
        raise KeyboardInterrupt

    def __enter__(self) -> "InterruptWatch":
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handler) for sig in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous = {}

    def check(self) -> None:
        if self.seen:
            raise KeyboardInterrupt


# Progress ---------------------------------------------------------------------------------------

@contextmanager
def live_progress(console: Console, description: str, total: float,
                  poll: Callable[[], tuple[float, str]], every: float = 1.0) -> Iterator[None]:
    """A progress bar whose position and status line come from `poll()` every `every` seconds."""
    progress = Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                        TextColumn("{task.fields[status]}"), console=console, transient=False,
                        refresh_per_second=2)
    task = progress.add_task(description, total=total, status="")
    stop = threading.Event()

    def update() -> None:
        while True:
            try:
                done, status = poll()
                progress.update(task, completed=min(done, total), status=status)
            except Exception as e:   # the status line must never break the demo
                progress.update(task, status=f"(status unavailable: {e.__class__.__name__})")
            if stop.wait(every):
                return

    with progress:
        thread = threading.Thread(target=update, name="midas-demo-progress", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=30)
        done, status = poll()                # the final state, not the last periodic one
        progress.update(task, completed=min(done, total), status=status)
