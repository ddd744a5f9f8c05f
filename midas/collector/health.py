"""The collector's periodic health summary: one log line and one `HealthReport` per interval.

Per interval: messages/s per stream kind (depth, trade, bookTicker), bytes written, gaps,
reconnects, malformed messages, and the receive lag `local_ts - exchange_ts` p50/p99 per symbol
in whole milliseconds (it can be negative: the exchange's and this machine's clocks differ).
"""

from __future__ import annotations

from dataclasses import dataclass, field

KINDS = ("depth", "trade", "book_ticker")
_KIND_LABEL = {"depth": "depth", "trade": "trade", "book_ticker": "bookTicker"}


def histogram_percentile(counts: dict[int, int], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of values given as {value: count}; NaN when empty."""
    total = sum(counts.values())
    if total == 0:
        return float("nan")
    rank = max(1, min(total, int(-(-q * total // 100))))
    seen = 0
    for value in sorted(counts):
        seen += counts[value]
        if seen >= rank:
            return float(value)
    raise AssertionError("unreachable: the ranks add up to the total")


def percentile(sorted_values, q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of an ascending sequence; NaN when empty."""
    n = len(sorted_values)
    if n == 0:
        return float("nan")
    rank = max(1, min(n, int(-(-q * n // 100))))
    return float(sorted_values[rank - 1])


@dataclass
class HealthReport:
    """What happened during one interval (also what `on_health` receives)."""

    interval_secs: float
    messages: dict[str, int]                 # per stream kind
    messages_per_sec: dict[str, float]
    bytes_written: int
    gaps: int
    reconnects: int
    malformed: int
    snapshots: int
    lag_ms: dict[str, tuple[float, float]]   # symbol -> (p50, p99)

    def line(self) -> str:
        rates = " ".join(f"{_KIND_LABEL[k]}={v:.1f}/s" for k, v in self.messages_per_sec.items())
        lags = " ".join(f"{s}:p50={p50:.0f}ms,p99={p99:.0f}ms" for s, (p50, p99) in self.lag_ms.items())
        return (f"collector health {rates} bytes={self.bytes_written} gaps={self.gaps} "
                f"reconnects={self.reconnects} malformed={self.malformed} snapshots={self.snapshots} "
                f"lag {lags or 'none'}")

    def as_dict(self) -> dict:
        return {"interval_secs": self.interval_secs, "messages": dict(self.messages),
                "messages_per_sec": dict(self.messages_per_sec), "bytes_written": self.bytes_written,
                "gaps": self.gaps, "reconnects": self.reconnects, "malformed": self.malformed,
                "snapshots": self.snapshots,
                "lag_ms": {s: {"p50": a, "p99": b} for s, (a, b) in self.lag_ms.items()}}


@dataclass
class HealthCounters:
    """Counters of the running interval; `report()` returns them and starts a new interval."""

    messages: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    gaps: int = 0
    reconnects: int = 0
    malformed: int = 0
    snapshots: int = 0
    # Receive lag per symbol as a histogram of whole milliseconds (floor): constant memory and a
    # cheap percentile however many messages an interval has.
    lags_ms: dict[str, dict[int, int]] = field(default_factory=dict)

    def message(self, kind: str, symbol: str, local_ts: int, exchange_ts: int | None) -> None:
        self.messages[kind] += 1
        if exchange_ts is not None:
            lags = self.lags_ms.get(symbol)
            if lags is None:
                lags = self.lags_ms[symbol] = {}
            ms = (local_ts - exchange_ts) // 1000
            lags[ms] = lags.get(ms, 0) + 1

    def report(self, interval_secs: float, bytes_written: int) -> HealthReport:
        lag_ms = {}
        for symbol in sorted(self.lags_ms):
            counts = self.lags_ms[symbol]
            lag_ms[symbol] = (histogram_percentile(counts, 50), histogram_percentile(counts, 99))
        secs = max(interval_secs, 1e-9)
        report = HealthReport(
            interval_secs=interval_secs, messages=dict(self.messages),
            messages_per_sec={k: v / secs for k, v in self.messages.items()},
            bytes_written=bytes_written, gaps=self.gaps, reconnects=self.reconnects,
            malformed=self.malformed, snapshots=self.snapshots, lag_ms=lag_ms)
        self.messages = dict.fromkeys(KINDS, 0)
        self.gaps = self.reconnects = self.malformed = self.snapshots = 0
        self.lags_ms = {}
        return report
