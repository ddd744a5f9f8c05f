"""Supervised collection: the collector runs in a child process (`midas.supervisor`); when it dies,
the task fails and Prefect restarts it (a retry in the UI). The new collector salvages the `.partial`
files the dead one left, so raw files stay valid. Per-minute health reports go to this flow's log,
and the collector's own `midas.*` log lines reach the UI (PREFECT_LOGGING_EXTRA_LOGGERS=midas).
Deployed as `midas-collect`."""

from __future__ import annotations

import time

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.common import flow_settings
from midas.config import Settings
from midas.supervisor import CollectorRun, run_collector_process


@task(name="run-collector", task_run_name="run-collector", retries=1000, retry_delay_seconds=10,
      cache_policy=NO_CACHE)
def run_collector_task(settings: Settings, until: float | None, health_interval_secs: float) -> CollectorRun:
    logger = get_run_logger()
    return run_collector_process(settings, until=until, health_interval_secs=health_interval_secs,
                                 on_health=lambda line, report: logger.info(line))


@flow(name="midas-collect")
def collect(duration_seconds: float | None = None, symbols: list[str] | None = None,
            data_dir: str | None = None, venue: str | None = None, ws_url: str | None = None,
            rest_url: str | None = None, restarts: int = 1000, restart_delay_seconds: float = 10.0,
            health_interval_secs: float = 60.0) -> CollectorRun:
    """Collect `symbols` (default: SYMBOLS) for `duration_seconds` (default: until cancelled),
    restarting a dead collector up to `restarts` times, `restart_delay_seconds` apart, and logging
    its health every `health_interval_secs`."""
    settings = flow_settings("collect", symbols=symbols, data_dir=data_dir, venue=venue, ws_url=ws_url,
                             rest_url=rest_url)
    until = None if duration_seconds is None else time.time() + duration_seconds
    task_ = run_collector_task.with_options(retries=restarts, retry_delay_seconds=restart_delay_seconds)
    return task_(settings, until, health_interval_secs)


if __name__ == "__main__":
    # `python -m flows.collect`: collect until stopped (the compose `collector` service).
    collect()
