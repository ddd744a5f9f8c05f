"""The collector as a whole: `collect()` (async) and `run_collector()` (blocking, for the CLI and
Prefect). One asyncio loop runs every connection, the snapshot workers, the flush/rotation timer
and the health reporter; all file writes happen on that loop, so no locks are needed.

Start: salvage `.partial` files left by a crash, of every symbol of the venue (each collected
symbol's next file records a `salvaged` event), open the connections (symbols split so that no
connection carries more than `max_streams_per_connection` streams), fetch a snapshot per symbol
(paced by weight).
Stop (duration over, stop event, SIGINT/SIGTERM): close the connections, write a `shutdown`
event into every file, flush and rename every file to its final name. A write error (ENOSPC...)
stops everything the same way and raises `CollectorError` naming the file.
"""

from __future__ import annotations

from contextlib import suppress

import asyncio
import logging
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from midas import wire
from midas.collector.connection import ConnectionIds, ConnectionSupervisor, Endpoint, StormRule
from midas.collector.health import HealthCounters, HealthReport
from midas.collector.router import MessageRouter, SymbolState
from midas.collector.sequence import SequenceTracker
from midas.collector.snapshots import SnapshotClient, WeightPacer
from midas.collector.writer import SymbolFiles
from midas.config import Settings
from midas.errors import CollectorError, ExchangeError, MidasError, RawFileError
from midas.layout import list_raw_files, list_symbols
from midas.logs import log_kv
from midas.raw import SalvageReport, salvage_partial
from midas.venues import stream_names

log = logging.getLogger("midas.collector")

SNAPSHOT_CONCURRENCY = 4
SHUTDOWN_BUDGET_SECS = 5.0
OPENING_SNAPSHOT_WAIT_SECS = 5.0     # a first snapshot waits this long for a diff to check it


@dataclass
class CollectorOptions:
    """Knobs that are not settings (tests and benchmarks turn them; defaults are for production)."""

    health_interval_secs: float = 60.0
    max_streams_per_connection: int | None = None   # None = the venue's limit (1024)
    rest_weight_budget: float | None = None          # None = the venue's budget per minute
    rest_weight_window_secs: float = 60.0
    overlap_timeout_secs: float = 30.0
    min_overlap_secs: float = 1.0
    storm: StormRule = field(default_factory=StormRule)
    fsync: bool = True
    depth_speed: str = "100ms"
    max_url_chars: int = 2000        # longer stream lists are sent as SUBSCRIBE requests


@dataclass
class CollectorSummary:
    """What one run did."""

    messages: dict[str, int]
    records_written: int
    bytes_written: int
    files: list[Path]
    gaps: int
    reconnects: int
    snapshots: int
    snapshot_requests: int
    stale_snapshots: int
    duplicates: int
    malformed: int
    salvaged: list[SalvageReport]
    connections: int
    seconds: float
    rest_sends: list[tuple[float, float]] = field(default_factory=list)
    rest_answers: dict[int, int] = field(default_factory=dict)
    rest_max_used_weight: int = 0


def salvage_symbol(settings: Settings, symbol: str) -> list[SalvageReport]:
    """Finalize every `.partial` raw file of `symbol` left by an earlier run."""
    reports = []
    for path in list_raw_files(settings.data_dir, settings.venue, symbol, partial=True):
        try:
            report = salvage_partial(path)
        except RawFileError as e:
            raise CollectorError(f"cannot salvage {path}: {e}") from e
        log_kv(log, "salvaged a .partial raw file left by a crash", logging.WARNING, symbol=symbol,
               file=report.final_path, records=report.records_kept,
               dropped="; ".join(str(p) for p in report.problems) or "nothing")
        reports.append(report)
    return reports


def plan_groups(symbols: list[str], streams: list[str], max_streams: int) -> list[list[str]]:
    """Symbols per connection: consecutive symbols, at most `max_streams` streams per connection."""
    per = max(1, max_streams // max(1, len(streams)))
    return [symbols[i:i + per] for i in range(0, len(symbols), per)]


class Collector:
    def __init__(self, settings: Settings, options: CollectorOptions | None = None,
                 on_health: Callable[[HealthReport], None] | None = None):
        self.settings = settings
        self.options = options or CollectorOptions()
        self.on_health = on_health
        self.spec = settings.venue_spec
        self.counters = HealthCounters()
        self.depth_enabled = "depth" in settings.streams
        self.states: dict[str, SymbolState] = {}
        for symbol in settings.symbols:
            files = SymbolFiles(settings.data_dir, settings.venue, symbol,
                                rotation_hours=settings.file_rotation_hours,
                                rotation_gb=settings.file_rotation_gb, fsync=self.options.fsync)
            self.states[symbol] = SymbolState(symbol, files, SequenceTracker(self.spec.is_futures))
        self.router = MessageRouter(settings.venue, self.states, self.counters, self._request_snapshot,
                                    depth_enabled=self.depth_enabled, storm=self.options.storm)
        budget = self.options.rest_weight_budget or self.spec.weight_budget_per_minute
        self.pacer = WeightPacer(budget, window_secs=self.options.rest_weight_window_secs)
        self.client = SnapshotClient(settings.venue, settings.rest_url, settings.snapshot_depth_limit,
                                     self.pacer)
        self.snapshot_queue: asyncio.Queue[SymbolState] | None = None
        self.supervisors: list[ConnectionSupervisor] = []
        self.salvaged: list[SalvageReport] = []
        self.fatal: BaseException | None = None
        self.snapshot_requests = 0
        self._health_since = time.monotonic()
        self._health_bytes = 0

    # Snapshots ------------------------------------------------------------------------------------

    def _request_snapshot(self, state: SymbolState) -> None:
        if state.snapshot_in_flight or self.snapshot_queue is None:
            return
        state.snapshot_in_flight = True
        self.snapshot_requests += 1
        self.snapshot_queue.put_nowait(state)

    async def _snapshot_worker(self, stop: asyncio.Event) -> None:
        assert self.snapshot_queue is not None
        while not stop.is_set():
            state = await self.snapshot_queue.get()
            if not self.router.needs_snapshot(state):
                state.snapshot_in_flight = False
                continue
            try:
                snap = await self.client.fetch(state.symbol)
            except ExchangeError as e:   # refused for good (unknown symbol, bad limit): cannot go on
                raise CollectorError(str(e)) from e
            self.router.on_snapshot(state, snap)
            if self.router.needs_snapshot(state):
                delay = self.router.retry_delay(state)
                if delay > 0:
                    asyncio.get_running_loop().call_later(delay, self._request_snapshot, state)
                else:
                    self._request_snapshot(state)

    # Timers ---------------------------------------------------------------------------------------

    async def _flush_loop(self, stop: asyncio.Event) -> None:
        period = self.settings.flush_interval_secs / 2
        while not stop.is_set():
            await _sleep_or_stop(stop, period)
            self.router.open_overdue(time.monotonic(), OPENING_SNAPSHOT_WAIT_SECS)
            for state in self.states.values():
                state.files.flush()
                reason = state.files.rotation_due()
                if reason and state.rotation_reason is None:
                    if self.depth_enabled:
                        state.rotation_reason = reason
                        self._request_snapshot(state)
                    else:
                        state.files.open_with_snapshot(None, reason)

    async def _health_loop(self, stop: asyncio.Event) -> None:
        while True:
            await _sleep_or_stop(stop, self.options.health_interval_secs)
            if stop.is_set():
                return
            self._report_health()

    def _report_health(self) -> None:
        """Log the interval's summary line and hand the report to `on_health`."""
        now = time.monotonic()
        total = self.bytes_written()
        report = self.counters.report(now - self._health_since, total - self._health_bytes)
        self._health_since, self._health_bytes = now, total
        log.info(report.line())
        if self.on_health is not None:
            try:
                self.on_health(report)
            except Exception as e:  # a broken health consumer must not stop collection
                log_kv(log, "on_health callback failed", logging.WARNING, error=repr(e))

    def bytes_written(self) -> int:
        return sum(s.files.bytes_written for s in self.states.values())

    def _endpoints(self, symbols: list[str]) -> list[Endpoint]:
        """One WebSocket per base URL the streams need (futures: /public and /market)."""
        endpoints = []
        for base, kinds in self.settings.ws_bases().items():
            names = [n for s in symbols for n in stream_names(s, kinds, self.options.depth_speed)]
            url = self.spec.combined_stream_url(base, names)
            subscribe = None
            if len(url) > self.options.max_url_chars:
                subscribe = (f"{base.rstrip('/')}/stream", names,
                             float(self.spec.max_client_messages_per_second))
            endpoints.append(Endpoint(url, subscribe, keepalive="depth" not in kinds))
        return endpoints

    # Run ------------------------------------------------------------------------------------------

    async def run(self, duration: float | None, stop: asyncio.Event) -> CollectorSummary:
        started = self._health_since = time.monotonic()
        settings = self.settings
        # Every symbol of the venue, also those not collected this time (they are only logged).
        for symbol in sorted(set(self.states) | set(list_symbols(settings.data_dir, settings.venue))):
            state = self.states.get(symbol)
            for report in salvage_symbol(settings, symbol):
                self.salvaged.append(report)
                if state is not None:
                    state.startup_events.append(wire.event_record(
                        settings.venue, symbol, "salvaged", str(report), time.time_ns() // 1000))
        self.snapshot_queue = asyncio.Queue()
        internal_stop = asyncio.Event()
        max_streams = self.options.max_streams_per_connection or self.spec.max_streams_per_connection
        groups = plan_groups(list(self.states), settings.streams, max_streams)
        ids = ConnectionIds()
        for g, symbols in enumerate(groups):
            for s in symbols:
                self.states[s].group = g
            self.supervisors.append(ConnectionSupervisor(
                group=g, endpoints=self._endpoints(symbols), router=self.router,
                stop=internal_stop, stall_timeout=settings.stall_timeout_secs,
                reconnect_delay=settings.reconnect_delay_secs,
                max_attempts=settings.max_reconnect_attempts,
                max_age=settings.max_connection_age_secs,
                overlap_timeout=self.options.overlap_timeout_secs,
                min_overlap=self.options.min_overlap_secs, storm=self.options.storm, ids=ids))
        log_kv(log, "collector starting", venue=settings.venue, symbols=len(self.states),
               connections=len(groups), streams=",".join(settings.streams), data_dir=settings.data_dir)
        tasks = [asyncio.create_task(sup.run(), name=f"midas-group-{sup.group}")
                 for sup in self.supervisors]
        tasks += [asyncio.create_task(self._snapshot_worker(internal_stop), name="midas-snapshots")
                  for _ in range(SNAPSHOT_CONCURRENCY)]
        tasks.append(asyncio.create_task(self._flush_loop(internal_stop), name="midas-flush"))
        tasks.append(asyncio.create_task(self._health_loop(internal_stop), name="midas-health"))
        stop_waiter = asyncio.ensure_future(stop.wait())
        try:
            done, _ = await asyncio.wait(tasks + [stop_waiter], timeout=duration,
                                         return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stop_waiter and not task.cancelled() and task.exception() is not None:
                    self.fatal = task.exception()
                    break
        finally:
            stop_waiter.cancel()
            internal_stop.set()
            await self._shutdown(tasks)
        if self.fatal is not None:
            raise self.fatal
        return self.summary(time.monotonic() - started)

    async def _shutdown(self, tasks: list[asyncio.Task]) -> None:
        """Stop connections and workers, then finalize every file (a `shutdown` event last)."""
        supervisors = [t for t in tasks if t.get_name().startswith("midas-group-")]
        others = [t for t in tasks if t not in supervisors]
        for t in others:
            t.cancel()
        try:
            await asyncio.wait_for(asyncio.gather(*supervisors, return_exceptions=True),
                                   timeout=SHUTDOWN_BUDGET_SECS / 2)
        except TimeoutError:
            for t in supervisors:
                t.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for r in results:
            if isinstance(r, MidasError) and self.fatal is None:
                self.fatal = r
        self._report_health()       # the last, shorter interval: reports add up to the whole run
        try:
            self.router.open_overdue(float("inf"), 0.0)    # a held first snapshot opens its file
        except CollectorError as e:
            self.fatal = self.fatal or e
        detail = "collector stopped" if self.fatal is None else f"collector stopped by an error: {self.fatal}"
        for state in self.states.values():
            try:
                path = state.files.close(detail)
                if path is not None:
                    log_kv(log, "raw file closed", symbol=state.symbol, file=path)
            except CollectorError as e:
                state.files.abort()
                if self.fatal is None:
                    self.fatal = e
                log_kv(log, "raw file could not be closed", logging.ERROR, symbol=state.symbol,
                       error=str(e))

    def summary(self, seconds: float) -> CollectorSummary:
        files = sorted(p for s in self.states.values() for p in s.files.closed_files)
        return CollectorSummary(
            messages=dict(self.router.accepted),
            records_written=sum(s.files.records_written for s in self.states.values()),
            bytes_written=self.bytes_written(), files=files,
            gaps=self.router.gaps_total, reconnects=sum(s.reconnects for s in self.supervisors),
            snapshots=self.router.snapshots_total, snapshot_requests=self.snapshot_requests,
            stale_snapshots=sum(s.stale_snapshots for s in self.states.values()),
            duplicates=sum(s.duplicates for s in self.states.values()),
            malformed=self.router.malformed_total, salvaged=list(self.salvaged),
            connections=sum(s.connects for s in self.supervisors), seconds=seconds,
            rest_sends=list(self.client.sends), rest_answers=dict(self.client.answers),
            rest_max_used_weight=self.client.max_used_weight)


async def _sleep_or_stop(stop: asyncio.Event, secs: float) -> None:
    with suppress(TimeoutError):      # the time ran out without a stop: that is the normal case
        await asyncio.wait_for(stop.wait(), timeout=secs)


async def collect(settings: Settings, duration: float | None = None, stop: asyncio.Event | None = None,
                  on_health: Callable[[HealthReport], None] | None = None,
                  options: CollectorOptions | None = None) -> CollectorSummary:
    """Collect until `duration` seconds passed (None = forever) or `stop` is set; see module doc."""
    stop = stop or asyncio.Event()
    return await Collector(settings, options, on_health).run(duration, stop)


def run_collector(settings: Settings, duration: float | None = None,
                  stop_event: threading.Event | None = None,
                  on_health: Callable[[HealthReport], None] | None = None,
                  options: CollectorOptions | None = None,
                  handle_signals: bool | None = None) -> CollectorSummary:
    """Blocking `collect`. In the main thread SIGINT and SIGTERM stop it cleanly (files finalized).

    `stop_event` (a threading.Event) stops it from another thread, e.g. a Prefect flow.
    """
    if handle_signals is None:
        handle_signals = threading.current_thread() is threading.main_thread()

    async def main() -> CollectorSummary:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        watcher = None
        if stop_event is not None:
            async def watch_thread_event() -> None:
                while not stop_event.is_set():
                    await asyncio.sleep(0.05)
                stop.set()
            watcher = asyncio.create_task(watch_thread_event())
        installed = []
        if handle_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                def on_signal(sig=sig) -> None:
                    log_kv(log, "signal received, finalizing files", signal=signal.Signals(sig).name)
                    stop.set()
                loop.add_signal_handler(sig, on_signal)
                installed.append(sig)
        try:
            return await collect(settings, duration, stop, on_health, options)
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)
            if watcher is not None:
                watcher.cancel()

    return asyncio.run(main())
