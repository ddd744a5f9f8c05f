"""Hourly catch-up: every closed raw hour not yet processed (or whose raw files changed, or whose
windowed features are stale), for every configured symbol, through rebuild -> features -> catalog.
Deployed as `midas-hourly` (cron `5 * * * *`, UTC). A second run right after the first processes
nothing.

With `fan_out` (what the deployment sets), each symbol's hours become a run of the
`midas-symbol-hours` deployment that any worker of the pool can take: more workers, more symbols
in parallel. Without it, this run processes the symbol-hours itself, one thread per symbol."""

from __future__ import annotations

from itertools import groupby

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.deployments import run_deployment
from prefect.futures import wait
from prefect.task_runners import ThreadPoolTaskRunner

from flows.common import flow_settings
from flows.hour_tasks import MAX_PARALLEL_HOURS, run_hours
from midas.config import Settings
from midas.layout import format_hour
from midas.scheduling import HourKey, pending_hours, processed_rows

SYMBOL_HOURS_DEPLOYMENT = "midas-symbol-hours/midas-symbol-hours"
# A symbol's run that has not finished after this long (no free worker slot?) fails the hourly run,
# so that the next scheduled one is not queued behind it forever.
SYMBOL_RUN_TIMEOUT_SECS = 6 * 3600


@task(name="find-pending-hours", task_run_name="find-pending-hours", retries=2, retry_delay_seconds=10,
      cache_policy=NO_CACHE)
def find_pending_hours(settings: Settings) -> list[HourKey]:
    return pending_hours(settings)


@task(name="symbol-hours-on-pool", task_run_name="{symbol} on the pool", cache_policy=NO_CACHE)
def run_symbol_on_pool(symbol: str, parameters: dict) -> str:
    return run_deployment(SYMBOL_HOURS_DEPLOYMENT, parameters=parameters, timeout=SYMBOL_RUN_TIMEOUT_SECS,
                          poll_interval=1).state.type.value


@flow(name="midas-hourly", task_runner=ThreadPoolTaskRunner(max_workers=MAX_PARALLEL_HOURS))
def hourly(data_dir: str | None = None, venue: str | None = None, symbols: list[str] | None = None,
           retry_delay_seconds: float = 30.0, fan_out: bool = False) -> list[dict]:
    """Process every pending symbol-hour. Parameters left empty come from the environment and .env."""
    settings = flow_settings("hourly", data_dir=data_dir, venue=venue, symbols=symbols)
    keys = find_pending_hours(settings)
    logger = get_run_logger()
    logger.info("%d pending symbol-hours: %s", len(keys),
                ", ".join(f"{k.symbol} {format_hour(k.hour)}" for k in keys) or "none")
    if not fan_out:
        return run_hours(settings, keys, retry_delay_seconds=retry_delay_seconds,
                         artifact_key="midas-hourly-summary", title="hourly")
    futures = {}
    for symbol, group in groupby(sorted(keys, key=lambda k: (k.symbol, k.hour)), key=lambda k: k.symbol):
        hours = [format_hour(k.hour) for k in group]
        futures[symbol] = run_symbol_on_pool.submit(symbol, {
            "symbol": symbol, "hours": hours, "data_dir": str(settings.data_dir), "venue": settings.venue,
            "retry_delay_seconds": retry_delay_seconds})
    wait(list(futures.values()))
    outcome = {s: f.result(raise_on_failure=False) for s, f in futures.items()}
    failed = [f"{s} ({state if isinstance(state, str) else repr(state)})"
              for s, state in outcome.items() if state != "COMPLETED"]
    rows = processed_rows(settings, [k for k in keys if outcome[k.symbol] == "COMPLETED"])
    create_table_artifact(rows or [{"symbol": "", "hour": "", "rows": "nothing to process", "gaps": 0,
                                    "seconds": 0.0}], key="midas-hourly-summary",
                          description=f"hourly: {len(rows)} symbol-hours processed on the pool")
    if failed:
        raise RuntimeError(f"hourly: the midas-symbol-hours runs of {', '.join(failed)} did not complete; "
                           "their hours stay pending (a run still SCHEDULED or PENDING found no free "
                           "worker slot on the pool)")
    return rows


if __name__ == "__main__":
    hourly()
