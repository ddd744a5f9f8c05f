"""Hourly catch-up: every closed raw hour not yet processed (or whose raw files changed), for every
configured symbol, through rebuild -> features -> catalog. Deployed as `midas-hourly` (cron
`5 * * * *`, UTC). A second run right after the first processes nothing."""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from flows.common import flow_settings
from flows.hour_tasks import MAX_PARALLEL_HOURS, run_hours
from midas.config import Settings
from midas.scheduling import HourKey, pending_hours


@task(name="find-pending-hours", task_run_name="find-pending-hours", retries=2, retry_delay_seconds=10,
      cache_policy=NO_CACHE)
def find_pending_hours(settings: Settings) -> list[HourKey]:
    return pending_hours(settings)


@flow(name="midas-hourly", task_runner=ThreadPoolTaskRunner(max_workers=MAX_PARALLEL_HOURS),
      log_prints=True)
def hourly(data_dir: str | None = None, venue: str | None = None, symbols: list[str] | None = None,
           retry_delay_seconds: float = 30.0) -> list[dict]:
    """Process every pending symbol-hour. Parameters left empty come from the environment and .env."""
    settings = flow_settings("hourly", data_dir=data_dir, venue=venue, symbols=symbols)
    keys = find_pending_hours(settings)
    get_run_logger().info("%d pending symbol-hours: %s", len(keys),
                          ", ".join(f"{k.symbol} {k.hour:%Y-%m-%dT%H}" for k in keys) or "none")
    return run_hours(settings, keys, retry_delay_seconds=retry_delay_seconds,
                     artifact_key="midas-hourly-summary", title="hourly")


if __name__ == "__main__":
    hourly()
