"""The per-interval health summary: exact rates, counts and lag percentiles."""

from __future__ import annotations

import math

from midas.collector.health import HealthCounters, histogram_percentile, percentile


def test_nearest_rank_percentile():
    values = list(range(1, 101))
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([7], 99) == 7.0
    assert math.isnan(percentile([], 50))
    counts = {-5: 1, 0: 97, 250: 2}            # 100 values
    assert histogram_percentile(counts, 50) == 0.0
    assert histogram_percentile(counts, 98) == 0.0           # ranks 2..98 are 0
    assert histogram_percentile(counts, 99) == 250.0
    assert histogram_percentile(counts, 1) == -5.0
    assert histogram_percentile(counts, 99) == percentile(sorted([-5] + [0] * 97 + [250] * 2), 99)
    assert math.isnan(histogram_percentile({}, 50))


def test_report_counts_rates_and_lags_then_starts_a_new_interval():
    c = HealthCounters()
    for i in range(100):
        c.message("depth", "BTCUSDT", local_ts=1_000_000 + i * 1000 + 999, exchange_ts=1_000_000)  # 0..99 ms
    for i in range(30):
        c.message("trade", "ETHUSDT", local_ts=5_000, exchange_ts=1_305_000)                   # lag -1300 ms
    c.message("book_ticker", "ETHUSDT", local_ts=5_000, exchange_ts=None)                     # no E on spot
    c.gaps = 2
    c.reconnects = 1
    c.malformed = 3
    c.snapshots = 4
    r = c.report(10.0, bytes_written=12345)
    assert r.messages == {"depth": 100, "trade": 30, "book_ticker": 1}
    assert r.messages_per_sec == {"depth": 10.0, "trade": 3.0, "book_ticker": 0.1}
    assert r.lag_ms == {"BTCUSDT": (49.0, 98.0), "ETHUSDT": (-1300.0, -1300.0)}
    assert (r.bytes_written, r.gaps, r.reconnects, r.malformed, r.snapshots) == (12345, 2, 1, 3, 4)
    assert r.line() == (
        "collector health depth=10.0/s trade=3.0/s bookTicker=0.1/s bytes=12345 gaps=2 reconnects=1 "
        "malformed=3 snapshots=4 lag BTCUSDT:p50=49ms,p99=98ms ETHUSDT:p50=-1300ms,p99=-1300ms")
    assert r.as_dict()["lag_ms"]["BTCUSDT"] == {"p50": 49.0, "p99": 98.0}
    empty = c.report(5.0, 0)
    assert empty.messages == {"depth": 0, "trade": 0, "book_ticker": 0}
    assert empty.lag_ms == {} and empty.gaps == 0
    assert empty.line().endswith("lag none")
