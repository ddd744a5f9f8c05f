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
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from midas.config import Settings, load_settings
from midas.demo.datadir import prepare_data_dir
from midas.demo.progress import RawWatcher
from midas.demo.summary import DemoReport, QueryResult, StageTiming, build_report, render_report
from midas.errors import CollectorError, ConfigError, DataError, MidasError
from midas.layout import format_hour
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


@dataclass
class DemoPlan:
    """One venue's run: which exchange to start and how long to collect from it."""

    label: str
    venue: str
    symbols: list[str]
    collect_seconds: float
    exchange: dict[str, Any]        # LocalExchange keyword arguments


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
            exchange={"venue": venue, "replay": [path], "speed": speed}))
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
    MIDAS's warnings (gaps, reconnects: the recovery the demo shows) print once, not also through
    Prefect's root handler. `verbose` leaves logging as configured."""
    if verbose:
        yield
        return
    midas_logger = logging.getLogger("midas")
    saved_env = os.environ.get("PREFECT_LOGGING_LEVEL")
    saved = (midas_logger.level, midas_logger.propagate, logging.getLogger("prefect").level)
    os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"     # read when Prefect sets up its logging
    logging.getLogger("prefect").setLevel(logging.WARNING)   # in case it already has
    midas_logger.setLevel(logging.WARNING)
    midas_logger.propagate = False
    try:
        yield
    finally:
        midas_logger.setLevel(saved[0])
        midas_logger.propagate = saved[1]
        logging.getLogger("prefect").setLevel(saved[2])
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
    from prefect.server.api.server import SubprocessASGIServer

    console.print("starting a temporary Prefect server (no PREFECT_API_URL set) ...")
    started = time.monotonic()
    server = SubprocessASGIServer()
    server.start(timeout=120)
    try:
        console.print(f"Prefect server ready at {server.api_url} ({time.monotonic() - started:.1f} s)")
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            yield server.api_url
    finally:
        server.stop()


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

    results = []
    for name, title in DEMO_QUERIES:
        sql = sql_text("demo", name)
        columns, rows = run_query(settings, sql)
        results.append(QueryResult(title, sql, columns, rows))
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


def run_plan(plan: DemoPlan, data_dir: Path, console: Console, charts: bool = True) -> DemoReport:
    from midas.catalog import rebuild_catalog
    from midas.inspection import take_inventory

    console.rule(f"[bold]{plan.label}")
    collect_seconds, _ = _collect(plan, data_dir, console)
    settings = load_settings(data_dir=data_dir, venue=plan.venue, symbols=plan.symbols)
    keys = hours_to_process(settings)
    console.print(f"hours to process: {', '.join(f'{s} {format_hour(h)}' for s, h in keys) or 'none'}")
    summaries = _process(settings, keys, console)
    started = time.perf_counter()
    catalog = rebuild_catalog(settings)
    catalog_seconds = time.perf_counter() - started
    inv = take_inventory(data_dir)
    report = build_report(inv, venue=plan.venue, symbols=plan.symbols, collect_seconds=collect_seconds,
                          hours=[(s.symbol, s.hour, dict(s.rows).get("features", 0)) for s in summaries],
                          stages=[])
    report.stages = _stage_timings(collect_seconds, report.total_messages, summaries, catalog_seconds,
                                   catalog.partitions)
    report.queries = run_queries(settings)
    if charts:
        report.charts = draw_charts(settings, summaries)
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
    with quiet_logs(options.verbose), demo_settings_environment(environment), prefect_api(console):
        for plan in plans:
            report = run_plan(plan, data_dir, console, charts=options.charts)
            render_report(report, console)
            reports.append(report)
    return reports
