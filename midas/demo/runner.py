"""`midas demo`: the whole pipeline on a local exchange, in a few minutes, without internet.

One *plan* per venue: start `midas exchange` (simulated market with one disconnect and one sequence
gap, or a real recording replayed fast), run the Prefect collection flow against it with a short
file rotation, process every hour collected (the current, still-open one too) with the hourly
flow's task, rebuild the catalog, run three example queries, draw a chart per symbol, and print a
summary. Progress shows live while it works. Ctrl-C stops everything cleanly; what was written stays.
"""

from __future__ import annotations

import gzip
import logging
import os
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import orjson
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from midas.config import Settings, load_settings
from midas.demo.datadir import prepare_data_dir
from midas.demo.progress import RawWatcher
from midas.demo.summary import (DemoReport, QueryResult, StageTiming, build_report, raw_file_counts,
                                render_query, render_report, report_markdown)
from midas.errors import CollectorError, ConfigError, DataError, MidasError
from midas.layout import format_hour, list_raw_files
from midas.logs import log_kv

logger = logging.getLogger("midas.demo")

SIMULATED_SYMBOLS = ("BTCUSDT", "ETHUSDT")
SIMULATED_VENUE = "binance-futures"
DEMO_ROTATION_HOURS = 0.01          # 36 s: a 2-minute demo rotates its files three times
DEMO_QUERIES = (("minute_bars", "per symbol and minute: midprice, spread and imbalance"),
                ("ofi_predicts_next_move", "does order-flow imbalance predict the next midprice move?"),
                ("trade_flow", "trades per symbol: volume, VWAP, taker buy share"))
RECORDINGS_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "binance"
REAL_RECORDINGS = (("binance-futures", "usdm-btcusdt-2024-07-18T2357.txt.gz"),
                   ("binance", "spot-btcusdt-2024-08-08T2354.txt.gz"))
REPLAY_SPEED = 30.0
REPLAY_MARGIN_SECS = 12.0           # connect, first snapshot and the last messages' flush
CAPTURE_DIR = "replay-capture"      # under the demo's data directory: the collector's copy of a replay


@dataclass
class DemoPlan:
    """One venue's run: which exchange to start and how long to collect from it."""

    label: str
    venue: str
    symbols: list[str]
    collect_seconds: float
    exchange: dict[str, Any]        # LocalExchange keyword arguments
    recording: Path | None = None   # the recording the exchange replays (real-data plans)


@dataclass
class DemoOptions:
    data_dir: Path
    real: bool = False
    seconds: float = 120.0
    fresh: bool = True
    speed: float = REPLAY_SPEED
    recordings_dir: Path = RECORDINGS_DIR
    verbose: bool = False
    charts: bool = True


# Plans ------------------------------------------------------------------------------------------

def simulated_faults(seconds: float):
    """One sequence gap, then one disconnect, whatever the demo's length.

    Diffs are dropped when the first connection is 45 % of the run old; every connection is dropped
    at 60 % of the run (timed from the exchange's start). The reconnected connection would drop
    diffs again only at 60 % + 45 % > 100 % of the run, so each fault happens exactly once.
    """
    from midas.exchange import Faults

    return Faults(drop_diffs=3, drop_every_secs=round(0.45 * seconds, 2),
                  disconnect_every_secs=round(0.6 * seconds, 2))


def simulated_plan(seconds: float, symbols: tuple[str, ...] = SIMULATED_SYMBOLS) -> DemoPlan:
    return DemoPlan(label=f"simulated {SIMULATED_VENUE} market", venue=SIMULATED_VENUE, symbols=list(symbols),
                    collect_seconds=seconds,
                    exchange={"venue": SIMULATED_VENUE, "symbols": list(symbols), "seed": 7,
                              "faults": simulated_faults(seconds)})


def recording_span_seconds(path: Path) -> float:
    """Seconds between the first and last local receive time of a `<ts ns> <json>` recording."""
    first = last = None
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            for line in fh:
                head = line[:20].split(b" ", 1)[0]
                if head.isdigit():
                    last = int(head)
                    if first is None:
                        first = last
    except OSError as e:
        raise DataError(f"recording {path}: cannot read it ({e})") from None
    if first is None:
        raise DataError(f"recording {path}: no `<local ts ns> <json>` line found")
    return (last - first) / 1e9


def real_plans(recordings_dir: Path, speed: float) -> list[DemoPlan]:
    plans = []
    for venue, name in REAL_RECORDINGS:
        path = Path(recordings_dir) / name
        if not path.is_file():
            raise DataError(f"recording {path} not found: `make demo-real` replays the recordings of "
                            "../shared/data/binance next to the repository")
        span = recording_span_seconds(path)
        plans.append(DemoPlan(
            label=f"replay of {name} ({span:.0f} s at x{speed:g})", venue=venue, symbols=["BTCUSDT"],
            collect_seconds=round(span / speed + REPLAY_MARGIN_SECS, 1),
            exchange={"venue": venue, "replay": [path], "speed": speed}, recording=path))
    return plans


# Environment ------------------------------------------------------------------------------------

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
    """Send the flow runs' queued log lines before the server goes away (else Prefect prints
    "Error logging to API" at exit)."""
    from prefect.logging.handlers import APILogWorker

    try:
        APILogWorker.drain_all(timeout=5)
    except Exception as e:   # a log line lost at exit must not turn a finished demo into a failure
        log_kv(logger, "could not flush Prefect's run logs", logging.WARNING, error=e)


class InterruptWatch:
    """Remembers a Ctrl-C (SIGINT) even when a library swallows the KeyboardInterrupt it raises.

    Ctrl-C reaches the whole process group: the collector child stops cleanly on it, and the
    collection flow then ends as if its time were up. `check()` after each stage turns the
    remembered Ctrl-C into a KeyboardInterrupt, so the demo stops instead of processing on.
    """

    def __init__(self) -> None:
        self.seen = False
        self._previous = None

    def _handler(self, signum, frame) -> None:
        self.seen = True
        raise KeyboardInterrupt

    def __enter__(self) -> "InterruptWatch":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

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


# One plan ---------------------------------------------------------------------------------------

def _collect(plan: DemoPlan, data_dir: Path, console: Console) -> tuple[float, int]:
    """Run the exchange and the Prefect collection flow; (collector seconds, health reports)."""
    from flows.collect import collect
    from midas.exchange import LocalExchange

    with LocalExchange(subprocess=True, **plan.exchange) as ex:
        console.print(f"exchange: {plan.label} at {ex.ws_url}")
        watcher = RawWatcher(data_dir, plan.venue, plan.symbols)
        started = time.monotonic()

        def poll() -> tuple[float, str]:
            return time.monotonic() - started, watcher.poll().line()

        with live_progress(console, f"collecting {','.join(plan.symbols)}", plan.collect_seconds, poll):
            state = collect(duration_seconds=plan.collect_seconds, symbols=plan.symbols,
                            data_dir=str(data_dir), venue=plan.venue, ws_url=ex.ws_url,
                            rest_url=ex.rest_url, restarts=3, restart_delay_seconds=2.0,
                            return_state=True)
    if not state.is_completed():
        raise CollectorError(f"the collection flow ended {state.name}: {state.message}")
    run = state.result()
    console.print(f"collection flow run {state.state_details.flow_run_id}: {state.name}, "
                  f"collector exit code {run.exit_code}, {run.seconds:.1f} s")
    return run.seconds, run.health_reports


def hours_to_process(settings: Settings) -> list[tuple[str, datetime]]:
    """Every hour the final raw files cover that is not processed yet (or changed), the current
    one included: the collector has stopped, so every file is final and the hour can be read."""
    from midas.scheduling import CLOSE_MARGIN, pending_hours

    after_everything = datetime.now(timezone.utc) + timedelta(hours=1) + CLOSE_MARGIN + timedelta(minutes=1)
    return [(k.symbol, k.hour) for k in pending_hours(settings, now=after_everything)]


def _process(settings: Settings, keys: list[tuple[str, datetime]], console: Console) -> list[Any]:
    from midas.demo.flow import process_demo_hours
    from midas.scheduling import processed_hours

    wanted = {f"{settings.venue}/{s}/{format_hour(h)}": processed_hours(settings).get(
        f"{settings.venue}/{s}/{format_hour(h)}", {}).get("processed_at") for s, h in keys}

    def poll() -> tuple[float, str]:
        ledger = processed_hours(settings)
        done = sum(1 for k, before in wanted.items() if k in ledger and ledger[k].get("processed_at") != before)
        return done, f"{done}/{len(keys)} symbol-hours processed"

    with live_progress(console, "processing hours", max(1, len(keys)), poll):
        state = process_demo_hours(str(settings.data_dir), settings.venue, settings.symbols,
                                   [(s, format_hour(h)) for s, h in keys], return_state=True)
    if not state.is_completed():
        raise DataError(f"the processing flow ended {state.name}: {state.message}")
    return state.result()


def _stage_timings(collect_seconds: float, messages: int, summaries: list[Any],
                   catalog_seconds: float, catalog_partitions: int) -> list[StageTiming]:
    stage_sec: dict[str, float] = {}
    for s in summaries:
        for name, sec in dict(s.stage_seconds).items():
            stage_sec[name] = stage_sec.get(name, 0.0) + float(sec)
    rows = {d: sum(dict(s.rows).get(d, 0) for s in summaries) for d in ("book", "trades", "features")}
    timings = [StageTiming("collect", messages, "messages", collect_seconds)]
    units = {"rebuild": (rows["book"] + rows["trades"], "book+trade rows"),
             "features": (rows["features"], "feature rows"),
             "catalog": (len(summaries), "symbol-hours")}
    for name, sec in stage_sec.items():
        items, unit = units.get(name, (len(summaries), "symbol-hours"))
        timings.append(StageTiming(name, items, unit, sec))
    timings.append(StageTiming("catalog rebuild", catalog_partitions, "partitions", catalog_seconds))
    return timings


def run_queries(settings: Settings) -> list[QueryResult]:
    from midas.catalog import run_query
    from midas.sqlfiles import sql_text

    from midas.sqlfiles import sql_path

    results = []
    for name, title in DEMO_QUERIES:
        sql = sql_text("demo", name)
        columns, rows = run_query(settings, sql)
        # `--` ends the options: the SQL file starts with a `--` comment.
        command = f'midas query --data-dir {settings.data_dir} -- "$(cat {sql_path("demo", name)})"'
        results.append(QueryResult(title, sql, columns, rows, command))
    return results


def draw_charts(settings: Settings, summaries: list[Any]) -> list[Path]:
    """One chart per symbol: its hour with the most feature rows."""
    from midas.chart import write_chart

    best: dict[str, Any] = {}
    for s in summaries:
        n = dict(s.rows).get("features", 0)
        if n and (s.symbol not in best or n > dict(best[s.symbol].rows).get("features", 0)):
            best[s.symbol] = s
    return [write_chart(settings, settings.venue, sym, best[sym].hour) for sym in sorted(best)]


def recorded_counts(path: Path) -> dict[str, int]:
    """Messages per stream kind (depth, trade, bookTicker) and snapshots in a recording: the oracle
    the replayed capture is checked against."""
    counts: dict[str, int] = {}
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        for line in fh:
            _, _, body = line.partition(b" ")
            if body.startswith(b'{"lastUpdateId"'):
                kind = "snapshot"
            else:
                stream = orjson.loads(body).get("stream", "")
                kind = stream.split("@")[1] if "@" in stream else "other"
            counts[kind] = counts.get(kind, 0) + 1
    return counts


def _capture_and_import(plan: DemoPlan, data_dir: Path, console: Console) -> tuple[list[StageTiming], float]:
    """Real data: the collector records the replay into `<data_dir>/replay-capture/<venue>`, the
    capture is checked against the recording, and the recording is imported into DATA_DIR for the
    batch stages.

    Why two copies: the replay sends the recorded payloads unchanged, so the capture holds 2024
    exchange times in raw files of today's local hours, while the book rebuild finds an hour's raw
    files by their local receive hour (a live recorder's clock is within minutes of the exchange's).
    The importer writes the recording with its own receive times, as a live capture of 2024 would be.
    """
    from midas.errors import RawFileError
    from midas.importer import import_recording

    capture_dir = data_dir / CAPTURE_DIR / plan.venue
    before = {p for s in plan.symbols for p in list_raw_files(capture_dir, plan.venue, s)}
    collect_seconds, _ = _collect(plan, capture_dir, console)
    captured: dict[str, int] = {}
    for symbol in plan.symbols:
        for path in list_raw_files(capture_dir, plan.venue, symbol):
            if path not in before:
                for kind, n in raw_file_counts(path).items():
                    captured[kind] = captured.get(kind, 0) + n
    recorded = recorded_counts(plan.recording)
    console.print(f"the collector captured {captured.get('depth', 0):,} of {recorded.get('depth', 0):,} recorded "
                  f"depth diffs and {captured.get('trade', 0):,} of {recorded.get('trade', 0):,} trades "
                  f"(into {capture_dir})")
    started = time.perf_counter()
    try:
        result = import_recording(plan.recording, plan.venue, data_dir, symbol=plan.symbols[0])
        imported = sum(result.records.values())
        console.print(f"imported {plan.recording.name} for the batch stages: {imported:,} records in "
                      f"{len(result.files)} raw file(s)")
    except RawFileError as e:
        imported = 0
        console.print(f"{plan.recording.name} was imported by an earlier run, kept as it is ({e})")
    import_seconds = time.perf_counter() - started
    stages = [StageTiming(f"collect (replay x{plan.exchange.get('speed', 1):g})",
                          captured.get("depth", 0) + captured.get("trade", 0), "messages", collect_seconds),
              StageTiming("import recording", imported, "records", import_seconds)]
    return stages, collect_seconds


def publish_summary_artifact(report: DemoReport) -> None:
    """The summary as a Markdown artifact `midas-demo-summary-<venue>` in the Prefect UI."""
    from prefect.artifacts import create_markdown_artifact

    create_markdown_artifact(report_markdown(report), key=f"midas-demo-summary-{report.venue}",
                             description=f"MIDAS demo summary: {report.venue} {', '.join(report.symbols)}")


def run_plan(plan: DemoPlan, data_dir: Path, console: Console, charts: bool = True,
             interrupts: InterruptWatch | None = None) -> DemoReport:
    from midas.catalog import rebuild_catalog
    from midas.inspection import take_inventory

    console.rule(f"[bold]{plan.label}")
    if plan.recording is not None:
        first_stages, collect_seconds = _capture_and_import(plan, data_dir, console)
    else:
        collect_seconds, _ = _collect(plan, data_dir, console)
        first_stages = []
    check = interrupts.check if interrupts is not None else (lambda: None)
    check()
    settings = load_settings(data_dir=data_dir, venue=plan.venue, symbols=plan.symbols)
    keys = hours_to_process(settings)
    console.print(f"hours to process: {', '.join(f'{s} {format_hour(h)}' for s, h in keys) or 'none'}")
    summaries = _process(settings, keys, console)
    check()
    started = time.perf_counter()
    catalog = rebuild_catalog(settings)
    catalog_seconds = time.perf_counter() - started
    inv = take_inventory(data_dir)
    report = build_report(inv, venue=plan.venue, symbols=plan.symbols, collect_seconds=collect_seconds,
                          hours=[(s.symbol, s.hour, dict(s.rows).get("features", 0)) for s in summaries],
                          stages=[])
    report.stages = _stage_timings(collect_seconds, report.total_messages, summaries, catalog_seconds,
                                   catalog.partitions)
    if first_stages:     # real data: the capture and the import replace the simulated collection
        report.stages = first_stages + report.stages[1:]
    if charts:
        report.charts = draw_charts(settings, summaries)
    publish_summary_artifact(report)
    log_kv(logger, "demo plan done", venue=plan.venue, messages=report.total_messages,
           features=report.rows.get("features"), gaps=len(report.gaps))
    return report


def run_demo(options: DemoOptions, console: Console) -> list[DemoReport]:
    """Run every plan of the demo and print each one's summary. Returns the reports."""
    data_dir = Path(options.data_dir)
    plans = real_plans(options.recordings_dir, options.speed) if options.real else [simulated_plan(options.seconds)]
    removed = prepare_data_dir(data_dir, options.fresh)
    console.print(f"data directory: {data_dir.resolve()}" + (
        f" (removed the previous demo's {', '.join(p.name for p in removed)})" if removed else ""))
    environment = {"FILE_ROTATION_HOURS": str(DEMO_ROTATION_HOURS), "RECONNECT_DELAY_SECS": "1",
                   "FLUSH_INTERVAL_SECS": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    reports: list[DemoReport] = []
    with InterruptWatch() as interrupts, quiet_logs(options.verbose), demo_settings_environment(environment), \
            prefect_api(console):
        for plan in plans:
            report = run_plan(plan, data_dir, console, charts=options.charts, interrupts=interrupts)
            render_report(report, console)
            reports.append(report)
            interrupts.check()
    # The example queries run once, over everything in the catalog (every venue of the run).
    console.rule("[bold]example queries on the catalog")
    queries = run_queries(load_settings(data_dir=data_dir, venue=plans[-1].venue))
    for q in queries:
        render_query(q, console)
    reports[-1].queries = queries
    return reports
