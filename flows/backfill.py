"""Backfill: reprocess every symbol-hour from `start` to `end` (both included, `YYYY-MM-DDTHH` UTC)
that has final raw files, whatever was processed before. Idempotent: partitions are replaced whole.
Deployed as `midas-backfill`; progress shows as a progress artifact and one task per symbol-hour."""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from flows.common import flow_settings
from flows.hour_tasks import MAX_PARALLEL_HOURS, run_hours
from midas.config import Settings
from midas.scheduling import HourKey, HourStatus, ready_hours


@task(name="find-hours-in-range", task_run_name="find-hours {start}..{end}", cache_policy=NO_CACHE)
def find_hours(settings: Settings, start: str, end: str) -> tuple[list[HourKey], list[HourStatus]]:
    return ready_hours(settings, start, end)


@flow(name="midas-backfill", task_runner=ThreadPoolTaskRunner(max_workers=MAX_PARALLEL_HOURS))
def backfill(start: str, end: str, symbols: list[str] | None = None, data_dir: str | None = None,
             venue: str | None = None, retry_delay_seconds: float = 30.0) -> list[dict]:
    """Reprocess the hours from `start` to `end` (e.g. 2024-07-18T00 to 2024-07-19T23) of `symbols`
    (default: SYMBOLS). Hours still open or still being written are listed and left alone."""
    settings = flow_settings("backfill", data_dir=data_dir, venue=venue, symbols=symbols)
    keys, waiting = find_hours(settings, start, end)
    logger = get_run_logger()
    for status in waiting:
        logger.warning("skipped %s %s: %s", status.symbol, f"{status.hour:%Y-%m-%dT%H}", status.reason)
    return run_hours(settings, keys, retry_delay_seconds=retry_delay_seconds,
                     artifact_key="midas-backfill-summary", title=f"backfill {start}..{end}")
