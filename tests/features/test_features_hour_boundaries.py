"""Hour by hour equals one pass: windows, carries and buckets across hour and day boundaries,
checked against the plain-Python oracle of SPEC §3 in conftest.py (exact equality)."""

from __future__ import annotations

import os
import random
from datetime import timedelta

import pyarrow.parquet as pq
import pytest

from midas.config import load_settings
from midas.features import FEATURE_COLUMNS, compute_features_hour
from midas.layout import hour_start_us, parse_hour

FUT = "binance-futures"
SYM = "ETHUSDT"
HOURS = ["2024-07-18T22", "2024-07-18T23", "2024-07-19T00"]


def make_day(clean, seed: int, interval_us: int = 100_000):
    """Book rows around the two boundaries (with a gap) and trades, sizes with 3 decimals."""
    rng = random.Random(seed)
    stretches = []
    for hour in HOURS:
        start = hour_start_us(parse_hour(hour))
        stretches.append((start, start + 1_500_000))                    # first 1.5 s of the hour
        stretches.append((start + 3_598_000_000, start + 3_600_000_000))  # last 2 s
    stretches.append((hour_start_us(parse_hour(HOURS[1])) + 2_000_000,   # a stretch after a gap
                      hour_start_us(parse_hour(HOURS[1])) + 2_400_000))
    bid, ask = 3400.0, 3400.5
    rows, trades, trade_id = [], [], 1000
    for lo, hi in sorted(stretches):
        for ts in range(lo, hi, interval_us):
            move = rng.choice([-0.25, 0.0, 0.0, 0.25])
            bid, ask = bid + move, ask + move + rng.choice([0.0, 0.0, 0.25]) * (ask - bid < 1)
            depth_b, depth_a = rng.randint(1, 10), rng.randint(1, 10)
            rows.append({"ts": ts,
                         "bids": [(bid - 0.25 * i, rng.randint(1, 5000) / 1000) for i in range(depth_b)],
                         "asks": [(ask + 0.25 * i, rng.randint(1, 5000) / 1000) for i in range(depth_a)]})
            for _ in range(rng.choice([0, 0, 1, 3])):
                t = ts - rng.choice([0, 1, 30_000, 99_999, 100_000, 250_000])
                kind = rng.choice(["MARKET"] * 9 + ["INSURANCE_FUND"])
                trade_id += 1
                trades.append((t, trade_id, bid + 0.25 * rng.randint(0, 2), rng.randint(1, 3000) / 1000,
                               rng.random() < 0.5, kind))
    return rows, trades


def write_day(tmp_path, clean, rows, trades):
    """Write the three hours' partitions; returns the trades written (those inside the hours)."""
    written = []
    for hour in HOURS:
        lo = hour_start_us(parse_hour(hour))
        in_hour = [r for r in rows if lo <= r["ts"] < lo + 3_600_000_000]
        clean.write(tmp_path, "book", FUT, SYM, hour, clean.book_table(in_hour))
        in_hour = sorted((t for t in trades if lo <= t[0] < lo + 3_600_000_000), key=lambda t: t[1])
        clean.write(tmp_path, "trades", FUT, SYM, hour, clean.trades_table(in_hour))
        written += in_hour
    return written


def assert_matches_oracle(results, oracle):
    seen = 0
    for result in results:
        for row in pq.read_table(result.path).to_pylist():
            expected = oracle[row["ts"]]
            got = {name: row[name] for name in FEATURE_COLUMNS}
            assert got == expected, f"ts {row['ts']}: " + ", ".join(
                f"{k}: {got[k]!r} != {expected[k]!r}" for k in FEATURE_COLUMNS if got[k] != expected[k])
            seen += 1
    assert seen == len(oracle)


@pytest.mark.parametrize("bucket_ms,ofi_window", [(100, 10), (250, 4), (50, 3)])
def test_hour_by_hour_equals_one_pass_oracle(tmp_path, clean, bucket_ms, ofi_window):
    rows, trades = make_day(clean, seed=bucket_ms)
    trades = write_day(tmp_path, clean, rows, trades)
    s = load_settings(env_file=None, data_dir=tmp_path, symbols=[SYM], venue=FUT,
                      time_bucket_ms=bucket_ms, ofi_window=ofi_window)
    results = [compute_features_hour(s, FUT, SYM, h) for h in HOURS]
    assert [r.rows for r in results] == [35, 39, 35]
    # 22: first hour computed (sums the day's books); 23: previous features valid; 00: a new day
    assert [r.ofi_carry_source for r in results] == ["book", "features", "none"]
    oracle = clean.oracle(rows, trades, interval_us=100_000, ofi_window=ofi_window,
                          bucket_us=bucket_ms * 1000, market_only=True)
    assert_matches_oracle(results, oracle)
    first_new_day = pq.read_table(results[2].path).to_pylist()[0]
    assert first_new_day["ofi"] is not None          # uses 23:59:59.900 of the day before
    assert first_new_day["ofi_cumulative"] == first_new_day["ofi"]   # the day's sum restarts


def test_any_order_and_stale_carry_give_the_same_features(tmp_path, clean):
    rows, trades = make_day(clean, seed=7)
    trades = write_day(tmp_path, clean, rows, trades)
    s = load_settings(env_file=None, data_dir=tmp_path, symbols=[SYM], venue=FUT)
    # last hour first, then backwards: no valid previous features, the carry comes from the books
    backwards = [compute_features_hour(s, FUT, SYM, h) for h in reversed(HOURS)]
    assert [r.ofi_carry_source for r in backwards] == ["none", "book", "book"]
    oracle = clean.oracle(rows, trades, interval_us=100_000, ofi_window=10, bucket_us=100_000,
                          market_only=True)
    assert_matches_oracle(backwards, oracle)

    # the hour 22 book is rebuilt with other sizes after its features were written: the features of
    # 22 are stale, so hour 23 must not carry from them
    changed = [dict(r, bids=[(px, round(sz + 1.0, 3)) for px, sz in r["bids"]]) if r["ts"] < hour_start_us(
        parse_hour(HOURS[1])) else r for r in rows]
    first = parse_hour(HOURS[0])
    book_22 = clean.write(tmp_path, "book", FUT, SYM, HOURS[0], clean.book_table(
        [r for r in changed if hour_start_us(first) <= r["ts"] < hour_start_us(first + timedelta(hours=1))]))
    st = book_22.stat()
    os.utime(book_22, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    again = compute_features_hour(s, FUT, SYM, HOURS[1])
    assert again.ofi_carry_source == "book"
    new_oracle = clean.oracle(changed, trades, interval_us=100_000, ofi_window=10, bucket_us=100_000,
                              market_only=True)
    assert_matches_oracle([again], {ts: f for ts, f in new_oracle.items()
                                    if hour_start_us(parse_hour(HOURS[1])) <= ts
                                    < hour_start_us(parse_hour(HOURS[2]))})


@pytest.mark.parametrize("by_hour", [True, False])
def test_ofi_cumulative_after_a_gap_at_the_hour_boundary(tmp_path, clean, by_hour):
    """The day's running ofi sum (nulls skipped) holds across a gap that starts at the hour: the
    hour's first rows, whose ofi is null (no previous grid row), carry the earlier hours' sum,
    as one pass over the day gives it -- not null."""
    from midas.features import compute_features_hours

    first, second = "2024-07-18T10", "2024-07-18T11"
    rows = [{"ts": clean.t(first, ms), "bids": [(100.0, 1.0 + k)], "asks": [(100.5, 2.0)]}
            for k, ms in enumerate((3_590_700, 3_590_800, 3_590_900))]  # 9 s before the hour
    rows += [{"ts": clean.t(second, ms), "bids": [(100.0, 5.0 + k)], "asks": [(100.5, 1.0)]}
             for k, ms in enumerate((500, 600, 700))]
    for hour in (first, second):
        lo = hour_start_us(parse_hour(hour))
        clean.write(tmp_path, "book", FUT, SYM, hour,
                    clean.book_table([r for r in rows if lo <= r["ts"] < lo + 3_600_000_000]))
    s = load_settings(env_file=None, data_dir=tmp_path, symbols=[SYM], venue=FUT)
    if by_hour:
        results = [compute_features_hour(s, FUT, SYM, h) for h in (first, second)]
    else:
        results = compute_features_hours(s, FUT, SYM, [first, second])
    got = [r["ofi_cumulative"] for res in results for r in pq.read_table(res.path).to_pylist()]
    # ofi: none, +1, +1 in the first hour; none after the gap, then +1, +1
    assert got == [None, 1.0, 2.0, 2.0, 3.0, 4.0]
    oracle = clean.oracle(rows, [], interval_us=100_000, ofi_window=10, bucket_us=100_000,
                          market_only=True)
    assert [oracle[r["ts"]]["ofi_cumulative"] for r in rows] == got
