"""The collector: 24/7 capture of Binance streams into rotated, crash-safe raw files (SPEC §2).

Public API:

    run_collector(settings, duration=None, stop_event=None, on_health=None, options=None)
        -> CollectorSummary                      blocking; SIGINT/SIGTERM stop it in the main thread
    await collect(settings, duration=None, stop=None, on_health=None, options=None)
        -> CollectorSummary                      the same inside a running asyncio loop
    CollectorOptions                             non-setting knobs (health interval, streams per
                                                 connection, REST weight budget, overlap timeouts)
    HealthReport                                 what `on_health` receives every interval

Modules: connection (reconnect loop, planned overlapping reconnect), router (messages -> records,
de-duplication, joins), sequence (live update-id tracking), snapshots (REST, weight pacing,
Retry-After, 5xx backoff), writer (per-symbol files, rotation), health (per-interval summary),
backoff (delays), service (orchestration).
"""

from midas.collector.health import HealthReport
from midas.collector.service import (CollectorOptions, CollectorSummary, collect, plan_groups,
                                     run_collector, salvage_symbol)

__all__ = ["CollectorOptions", "CollectorSummary", "HealthReport", "collect", "plan_groups",
           "run_collector", "salvage_symbol"]
