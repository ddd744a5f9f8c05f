"""One symbol-hour through the whole batch path: book rebuild -> features -> catalog registration.

`process_hour` is what `midas process` and the hourly Prefect flow run for each pending hour; it is
safe to re-run (every partition is replaced whole, registration is an upsert).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from midas.catalog import register_hour
from midas.config import Settings
from midas.features import compute_features_hour
from midas.layout import check_symbol, check_venue, format_hour, parse_hour
from midas.logs import log_kv

logger = logging.getLogger("midas.pipeline")


@dataclass
class HourSummary:
    venue: str
    symbol: str
    hour: datetime
    rows: dict[str, int]                 # book, trades, gaps, features -> rows written
    gaps: int                            # gap intervals in the hour
    gap_reasons: dict[str, int]          # reason -> gap intervals
    seconds: float
    stage_seconds: dict[str, float]      # rebuild, features, catalog
    problems: list[str] = field(default_factory=list)   # data problems the rebuild reported
    complete: bool = True                # False: the raw data ends inside the hour
    trades_missing: int = 0              # trade ids skipped within the hour (trades lost)

    def line(self) -> str:
        """A one-line summary for people: rows per dataset, gaps, time."""
        rows = " ".join(f"{k}={v}" for k, v in self.rows.items() if k != "gaps")
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(self.gap_reasons.items()))
        gaps = f"gaps={self.gaps}" + (f" ({reasons})" if reasons else "")
        lost = f" trades_missing={self.trades_missing}" if self.trades_missing else ""
        return (f"{self.venue} {self.symbol} {format_hour(self.hour)}: {rows} {gaps}{lost} "
                f"in {self.seconds:.2f} s" + ("" if self.complete else " (data ends inside the hour)"))


def process_hour(settings: Settings, venue: str, symbol: str, hour) -> HourSummary:
    """Rebuild the hour's clean partitions, compute its features and register it in the catalog."""
    from midas.book import rebuild_hour

    venue, symbol, hour = check_venue(venue), check_symbol(symbol), parse_hour(hour)
    started = time.perf_counter()
    rebuilt = rebuild_hour(settings, venue, symbol, hour)
    rebuilt_at = time.perf_counter()
    features = compute_features_hour(settings, venue, symbol, hour)
    features_at = time.perf_counter()
    register_hour(settings, venue, symbol, hour)
    done = time.perf_counter()
    reasons = Counter(str(gap.get("reason")) for gap in rebuilt.gaps)
    summary = HourSummary(
        venue=venue, symbol=symbol, hour=hour,
        rows={**rebuilt.rows, "features": features.rows},
        gaps=len(rebuilt.gaps), gap_reasons=dict(reasons), seconds=done - started,
        stage_seconds={"rebuild": rebuilt_at - started, "features": features_at - rebuilt_at,
                       "catalog": done - features_at},
        problems=list(rebuilt.problems), complete=rebuilt.complete,
        trades_missing=rebuilt.counts.get("trade_ids_missing", 0))
    log_kv(logger, "hour processed", venue=venue, symbol=symbol, hour=format_hour(hour),
           book=summary.rows.get("book"), trades=summary.rows.get("trades"),
           features=features.rows, gaps=summary.gaps, seconds=f"{summary.seconds:.2f}")
    return summary
