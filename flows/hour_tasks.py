"""The tasks the hourly and backfill flows share: one symbol-hour = one task (a one-line call into
`midas.scheduling.process_and_record`: rebuild -> features -> catalog, then the ledger).

Hours of one symbol run in hour order (windowed features read the previous hours' books), each
waiting for the one before; different symbols run in parallel. An hour is retried 3 times, 30 s
apart, unless its error cannot go away by itself (`midas.scheduling.worth_retrying`). A failed hour
holds back the later hours of its symbol (they stay pending and are picked up by the next run). Progress and a summary
table (symbol, hour, rows, gaps, seconds) are published as artifacts in the Prefect UI.
"""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed
from prefect.states import StateType

from midas.config import Settings
from midas.layout import format_hour
from midas.scheduling import HourKey, process_and_record, summary_row, worth_retrying

# Tag of every hour task: `prefect concurrency-limit create midas-hour N` caps how many symbol-hours
# run at once across all workers of the pool.
HOUR_TAG = "midas-hour"
HOUR_RETRIES = 3
MAX_PARALLEL_HOURS = 4


def _retry_condition(task, task_run, state) -> bool:
    return worth_retrying(state.result(raise_on_failure=False))


@task(name="process-hour", retries=HOUR_RETRIES, retry_delay_seconds=30, tags=[HOUR_TAG],
      cache_policy=NO_CACHE, task_run_name="{symbol} {hour:%Y-%m-%dT%H}",
      retry_condition_fn=_retry_condition)
def process_hour_task(settings: Settings, venue: str, symbol: str, hour) -> Any:
    return process_and_record(settings, venue, symbol, hour)


def run_hours(settings: Settings, keys: list[HourKey], *, retry_delay_seconds: float,
              artifact_key: str, title: str) -> list[dict[str, Any]]:
    """Process the symbol-hours (in hour order per symbol) and publish progress and a summary table.

    Returns the summary rows of the hours processed; raises RuntimeError naming the hours that
    failed (the flow run then ends Failed, and those hours stay pending)."""
    logger = get_run_logger()
    task = process_hour_task.with_options(retry_delay_seconds=retry_delay_seconds)
    progress_id = create_progress_artifact(0.0, key=f"{artifact_key}-progress",
                                           description=f"{title}: {len(keys)} symbol-hours")
    previous: dict[str, Any] = {}
    futures = []
    for key in sorted(keys, key=lambda k: (k.symbol, k.hour)):
        before = previous.get(key.symbol)
        future = task.submit(settings, key.venue, key.symbol, key.hour,
                             wait_for=[before] if before is not None else None)
        previous[key.symbol] = future
        futures.append((future, key))
    keys_by_future = {id(f): k for f, k in futures}
    rows: list[dict[str, Any]] = []
    failed: list[str] = []
    failed_rows: list[dict[str, Any]] = []
    for done, future in enumerate(as_completed([f for f, _ in futures]), start=1):
        key = keys_by_future[id(future)]
        future.wait()            # makes `state` the final state, not the API's possibly older copy
        state = future.state
        label = f"{key.symbol} {format_hour(key.hour)}"
        if state.type == StateType.COMPLETED:
            rows.append(summary_row(future.result()))
        else:
            why = (f"not run: an earlier hour of {key.symbol} failed" if state.type == StateType.PENDING
                   else str(future.result(raise_on_failure=False)))
            failed.append(f"{label} ({why})")
            failed_rows.append({"venue": key.venue, "symbol": key.symbol, "hour": format_hour(key.hour),
                                "rows": f"FAILED: {why}", "gaps": None, "seconds": None})
        update_progress_artifact(progress_id, 100.0 * done / max(1, len(futures)),
                                 description=f"{title}: {done}/{len(futures)} symbol-hours done")
    if not futures:
        update_progress_artifact(progress_id, 100.0, description=f"{title}: nothing to do")
    rows.sort(key=lambda r: (r["hour"], r["symbol"]))
    table = sorted(rows + failed_rows, key=lambda r: (r["hour"], r["symbol"])) or [
        {"venue": settings.venue, "symbol": "", "hour": "", "rows": "nothing to process", "gaps": 0,
         "seconds": 0.0}]
    create_table_artifact(table, key=artifact_key,
                          description=f"{title}: {len(rows)} symbol-hours processed, {len(failed)} failed")
    logger.info("%s: %d symbol-hours processed, %d failed", title, len(rows), len(failed))
    if failed:
        raise RuntimeError(f"{title}: {len(failed)} symbol-hours failed and stay pending: "
                           + "; ".join(failed))
    return rows
