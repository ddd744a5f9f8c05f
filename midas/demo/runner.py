"""`midas demo`: the whole pipeline on a local exchange, in a few minutes, without internet.

One *plan* per venue (midas.demo.plans): start `midas exchange` (simulated market with one
disconnect and one sequence gap, or a real recording replayed fast), run the Prefect collection flow
against it with a short file rotation, process every hour collected (the current, still-open one
too) with the hourly flow's task, rebuild the catalog, draw a chart per symbol and print a summary;
at the end run three example queries over the catalog. Progress shows live while it works
(midas.demo.session). Ctrl-C stops everything cleanly; what was written stays.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from rich.console import Console

from midas.config import Settings, load_settings
from midas.demo.datadir import prepare_data_dir, raw_file_set, record_demo_files
from midas.demo.plans import (CAPTURE_DIR, DEMO_QUERIES, DEMO_ROTATION_HOURS, FIRST_SEED, SIMULATED_SYMBOLS,
                              SIMULATED_VENUE, DemoOptions, DemoPlan, continuing_seed, real_plans, recorded_counts,
                              simulated_plan)
from midas.demo.progress import RawWatcher
from midas.demo.session import InterruptWatch, demo_settings_environment, live_progress, prefect_api, quiet_logs
from midas.demo.summary import (DemoReport, midas_command, QueryResult, StageTiming, build_report, raw_file_counts,
                                render_query, render_report, report_markdown)
from midas.errors import CollectorError, DataError
from midas.layout import format_hour, list_raw_files
from midas.logs import log_kv

logger = logging.getLogger("midas.demo")

__all__ = ["DemoOptions", "DemoPlan", "InterruptWatch", "run_demo", "run_plan", "hours_to_process"]

# One plan ---------------------------------------------------------------------------------------

def _collect(plan: DemoPlan, data_dir: Path, console: Console) -> tuple[float, int]:
    """Run the exchange and the Prefect collection flow: (collector seconds, records this run wrote)."""
    from flows.collect import collect
    from midas.exchange import LocalExchange

    watcher = RawWatcher(data_dir, plan.venue, plan.symbols)
    before = watcher.poll()                 # with --continue, what earlier runs wrote
    with LocalExchange(subprocess=True, **plan.exchange) as ex:
        console.print(f"exchange: {plan.label} at {ex.ws_url}")
        started = time.monotonic()

        def poll() -> tuple[float, str]:
            return time.monotonic() - started, watcher.poll().since(before).line()

        with live_progress(console, f"collecting {','.join(plan.symbols)}", plan.collect_seconds, poll):
            state = collect(duration_seconds=plan.collect_seconds, symbols=plan.symbols,
                            data_dir=str(data_dir), venue=plan.venue, ws_url=ex.ws_url,
                            rest_url=ex.rest_url, restarts=3, restart_delay_seconds=2.0,
                            return_state=True)
    if not state.is_completed():
        raise CollectorError(f"the collection flow ended {state.name}: {state.message}")
    run = state.result()
    written = watcher.poll().since(before)
    if written.records == 0:
        raise CollectorError(f"the collector recorded nothing in {run.seconds:.0f} s from {plan.label}: "
                             "run `midas demo --verbose` to see its log, and `midas doctor`")
    console.print(f"collection flow run {state.state_details.flow_run_id}: {state.name}, "
                  f"collector exit code {run.exit_code}, {run.seconds:.1f} s, {written.records:,} records")
    return run.seconds, written.records


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


def _batch_stage_timings(summaries: list[Any], catalog_seconds: float, catalog_partitions: int
                         ) -> list[StageTiming]:
    """Rebuild, features and catalog registration summed over the hours, then the catalog rebuild."""
    stage_sec: dict[str, float] = {}
    for s in summaries:
        for name, sec in dict(s.stage_seconds).items():
            stage_sec[name] = stage_sec.get(name, 0.0) + float(sec)
    rows = {d: sum(dict(s.rows).get(d, 0) for s in summaries) for d in ("book", "trades", "features")}
    timings = []
    units = {"rebuild": (rows["book"] + rows["trades"], "book+trade rows"),
             "features": (rows["features"], "feature rows"),
             "catalog": (len(summaries), "symbol-hours")}
    for name, sec in stage_sec.items():
        items, unit = units.get(name, (len(summaries), "symbol-hours"))
        timings.append(StageTiming(name, items, unit, sec))
    timings.append(StageTiming("catalog rebuild", catalog_partitions, "partitions", catalog_seconds))
    return timings


def run_queries(settings: Settings) -> list[QueryResult]:
    """The three example queries of sql/demo/ on the catalog, with the `midas query` line for each."""
    from midas.catalog import run_query
    from midas.sqlfiles import sql_path, sql_text

    results = []
    for name, title in DEMO_QUERIES:
        sql = sql_text("demo", name)
        columns, rows = run_query(settings, sql)
        # `--` ends the options: the SQL file starts with a `--` comment.
        command = f'{midas_command()} query --data-dir {settings.data_dir} -- "$(cat {sql_path("demo", name)})"'
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
    from midas.demo.flow import publish_demo_summary

    publish_demo_summary(report_markdown(report), report.venue,
                         f"MIDAS demo summary: {report.venue} {', '.join(report.symbols)}")


def run_plan(plan: DemoPlan, data_dir: Path, console: Console, charts: bool = True,
             interrupts: InterruptWatch | None = None) -> DemoReport:
    """One venue: collect (or capture a replay and import the recording), process every collected
    hour, rebuild the catalog, draw the charts and return the report (also published to Prefect)."""
    from midas.catalog import rebuild_catalog
    from midas.inspection import take_inventory
    from midas.scheduling import processed_hours

    console.rule(f"[bold]{plan.label}")
    if plan.recording is not None:
        first_stages, collect_seconds = _capture_and_import(plan, data_dir, console)
    else:
        collect_seconds, collected = _collect(plan, data_dir, console)
        first_stages = [StageTiming("collect", collected, "messages", collect_seconds)]
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
                          stages=[], ledger=processed_hours(settings))
    # the collection counts this run's records (with --continue the directory also holds earlier runs')
    report.stages = first_stages + _batch_stage_timings(summaries, catalog_seconds, catalog.partitions)
    if charts:
        report.charts = draw_charts(settings, summaries)
    publish_summary_artifact(report)
    log_kv(logger, "demo plan done", venue=plan.venue, messages=report.total_messages,
           features=report.rows.get("features"), gaps=len(report.gaps))
    return report


def run_demo(options: DemoOptions, console: Console) -> list[DemoReport]:
    """Run every plan of the demo and print each one's summary. Returns the reports."""
    data_dir = Path(options.data_dir)
    removed = prepare_data_dir(data_dir, options.fresh)
    if options.real:
        plans = real_plans(options.recordings_dir, options.speed)
    else:
        seed = FIRST_SEED if options.fresh else continuing_seed(data_dir, SIMULATED_VENUE, list(SIMULATED_SYMBOLS))
        plans = [simulated_plan(options.seconds, seed=seed, truth_dir=options.truth_dir)]
    console.print(f"data directory: {data_dir.resolve()}" + (
        f" (removed the previous demo's {', '.join(p.name for p in removed)})" if removed else ""))
    environment = {"FILE_ROTATION_HOURS": str(DEMO_ROTATION_HOURS), "RECONNECT_DELAY_SECS": "1",
                   "FLUSH_INTERVAL_SECS": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    reports: list[DemoReport] = []
    raw_before = raw_file_set(data_dir)
    try:
        with InterruptWatch() as interrupts, quiet_logs(options.verbose), \
                demo_settings_environment(environment), prefect_api(console):
            for plan in plans:
                report = run_plan(plan, data_dir, console, charts=options.charts, interrupts=interrupts)
                render_report(report, console)
                reports.append(report)
                interrupts.check()
    finally:
        # Also after Ctrl-C: what the demo recorded is the demo's, so a later --fresh may remove it.
        record_demo_files(data_dir, raw_before)
    # The example queries run once, over everything in the catalog (every venue of the run).
    console.rule("[bold]example queries on the catalog")
    queries = run_queries(load_settings(data_dir=data_dir, venue=plans[-1].venue))
    for q in queries:
        render_query(q, console)
    reports[-1].queries = queries
    return reports
