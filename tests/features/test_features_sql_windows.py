"""The windowed columns of sql/features/features.sql against a plain Python computation of SPEC §3.

features.sql takes ofi_10 from the row OFI_WINDOW rows back when that row is exactly
ofi_window_us earlier and searches only the other rows (the first rows, the rows after a gap,
rows denser than the grid); ofi_cumulative carries each UTC day's base forward; the trades are
joined by one sort of bucket and grid-row events. These tests build books that exercise every
one of those paths (gaps of several lengths, a UTC midnight, a lookback denser than the grid, an
empty book side, trades tied on T, trades in grid times without a book row, a seed trade) and
compare every windowed value exactly with a straightforward computation written here.
"""

from __future__ import annotations

import random

import pyarrow as pa
import pytest

from midas.features import (FeatureParams, TRADE_SCHEMA, book_input_table, compute_feature_columns,
                            feature_connection)

GRID = 100_000                      # µs
DAY = 86_400_000_000
MIDNIGHT = 1_721_347_200_000_000    # 2024-07-19 00:00 UTC
UNITS = 100_000_000


def units(x: float | None) -> int | None:
    return None if x is None else int(round(x * UNITS))


def make_book(seed: int, dense_lookback: bool):
    """Grid rows from 30 s before to 30 s after a UTC midnight, with gaps of 1-25 grid times,
    an empty ask side now and then, and optionally 50 ms rows (a finer old grid) in the first 3 s."""
    rng = random.Random(seed)
    start = MIDNIGHT - 30_000_000
    rows, ts = [], start
    if dense_lookback:
        for k in range(60):
            rows.append(start + k * (GRID // 2))
        ts = start + 60 * (GRID // 2)
    while ts < MIDNIGHT + 30_000_000:
        rows.append(ts)
        ts += GRID * (rng.choice([2, 3, 5, 12, 25]) if rng.random() < 0.04 else 1)
    bid, ask = 65000.0, 65000.5
    book = []
    for ts in rows:
        if rng.random() < 0.1:
            bid = round(bid + rng.choice([-0.5, 0.5]), 1)
            ask = round(bid + rng.choice([0.5, 1.0]), 1)
        bsz = round(rng.uniform(0.001, 5), 3)
        asz = round(rng.uniform(0.001, 5), 3)
        empty_ask = rng.random() < 0.01
        book.append((ts, bid, bsz, None if empty_ask else ask, None if empty_ask else asz))
    return book


def make_trades(seed: int, book, shuffled: bool = True):
    rng = random.Random(seed + 1)
    t0, t1 = book[0][0] - 2_000_000, book[-1][0]
    trades, tid = [], 10_000
    t = t0
    while t < t1:
        t += rng.randrange(1, 150_000)
        for _ in range(rng.choice([1, 1, 1, 2, 3])):          # trades tied on T
            tid += 1
            trades.append((t, tid, round(65000 + rng.uniform(-5, 5), 1), round(rng.uniform(0.001, 2), 3),
                           rng.random() < 0.5, "MARKET" if rng.random() < 0.9 else "LIQUIDATION"))
    if shuffled:
        # the SQL does not depend on the trades' order (in (ts, trade_id) order, as stored, it
        # takes its one-pass path when TIME_BUCKET_MS equals the grid)
        rng.shuffle(trades)
    return trades


def expected(book, trades, hour_start, ofi_window, bucket_us, market_only, carry, seed):
    W = ofi_window * GRID
    ofi: list[int | None] = []
    for i, (ts, bp, bs, ap, az) in enumerate(book):
        e = None
        if i and book[i - 1][0] == ts - GRID:
            _, pbp, pbs, pap, paz = book[i - 1]
            if None not in (bp, bs, ap, az, pbp, pbs, pap, paz):
                e = ((bp >= pbp) * units(bs) - (bp <= pbp) * units(pbs)
                     - (ap <= pap) * units(az) + (ap >= pap) * units(paz))
        ofi.append(e)
    kept = [t for t in trades if not market_only or t[5] == "MARKET"]
    out = []
    for i, (ts, *_rest) in enumerate(book):
        if ts < hour_start:
            continue
        window = [ofi[j] for j in range(i + 1) if ts - W < book[j][0] and ofi[j] is not None]
        day = [ofi[j] for j in range(i + 1) if book[j][0] >= hour_start and book[j][0] // DAY == ts // DAY
               and ofi[j] is not None]
        first_day = ts // DAY == hour_start // DAY
        if first_day and carry is not None:
            cumulative = (carry + sum(day)) / UNITS
        else:
            cumulative = sum(day) / UNITS if day else None
        bucket = [t for t in kept if ts - bucket_us < t[0] <= ts]
        buy = sum(units(t[3]) for t in bucket if not t[4])
        sell = sum(units(t[3]) for t in bucket if t[4])
        before = [t for t in kept if t[0] <= ts]
        last = max(before, key=lambda t: (t[0], t[1])) if before else None
        if last is None and seed is not None and seed[0] <= ts:
            last = (seed[0], None, seed[1], seed[2])
        out.append({
            "ts": ts,
            "ofi": None if ofi[i] is None else ofi[i] / UNITS,
            "ofi_10": sum(window) / UNITS if window else None,
            "ofi_cumulative": cumulative,
            "taker_buy_volume": buy / UNITS, "taker_sell_volume": sell / UNITS,
            "signed_volume": (buy - sell) / UNITS,
            "volume_imbalance": 0.0 if buy + sell == 0 else float(buy - sell) / float(buy + sell),
            "trade_count": len(bucket),
            "last_trade_px": None if last is None else last[2],
            "last_trade_qty": None if last is None else last[3],
        })
    return out


def computed(book, trades, hour_start, ofi_window, bucket_us, market_only, carry, seed):
    table = pa.table({"ts": pa.array([r[0] for r in book], pa.int64()),
                      "bid_px_01": [r[1] for r in book], "bid_sz_01": [r[2] for r in book],
                      "ask_px_01": [r[3] for r in book], "ask_sz_01": [r[4] for r in book]})
    trade_table = pa.Table.from_pylist(
        [dict(zip(TRADE_SCHEMA.names, t)) for t in trades], schema=TRADE_SCHEMA)
    params = FeatureParams(hour_start=hour_start, interval_us=GRID, ofi_window=ofi_window,
                           bucket_us=bucket_us, market_only=market_only)
    con = feature_connection()
    try:
        return compute_feature_columns(con, book_input_table(table), trade_table, params, carry,
                                       seed).to_pylist()
    finally:
        con.close()


COLUMNS = ("ts", "ofi", "ofi_10", "ofi_cumulative", "taker_buy_volume", "taker_sell_volume",
           "signed_volume", "volume_imbalance", "trade_count", "last_trade_px", "last_trade_qty")


@pytest.mark.parametrize("ofi_window", [1, 3, 10])
@pytest.mark.parametrize("bucket_us", [50_000, 100_000, 250_000])
@pytest.mark.parametrize("dense_lookback", [False, True])
@pytest.mark.parametrize("shuffled", [False, True])
def test_windowed_columns_equal_plain_python(ofi_window, bucket_us, dense_lookback, shuffled):
    book = make_book(7 + ofi_window, dense_lookback)
    trades = make_trades(7 + ofi_window, book, shuffled)
    # one pass over everything: hour_start is the first grid row (after the 50 ms rows, which are
    # only ever lookback); the trades from before it are given
    hour_start = book[60][0] if dense_lookback else book[0][0]
    got = computed(book, trades, hour_start, ofi_window, bucket_us, True, None, None)
    want = expected(book, trades, hour_start, ofi_window, bucket_us, True, None, None)
    assert len(got) == len(want) == len(book) - (60 if dense_lookback else 0)
    assert sum(r["ofi_10"] is None for r in want) > 0          # the searched rows are exercised
    for g, w in zip(got, want):
        assert {c: g[c] for c in COLUMNS} == w, w["ts"]


@pytest.mark.parametrize("ofi_window", [1, 10])
@pytest.mark.parametrize("shuffled", [False, True])
def test_hour_start_inside_the_book_with_carry_and_seed(ofi_window, shuffled):
    """Rows before hour_start are only the lookback; the first day adds the carry; trades before
    hour_start - bucket_us are not given, the seed stands for them; every trade type counted."""
    book = make_book(3, dense_lookback=False)
    bucket_us = 100_000
    hour_start = MIDNIGHT - 10_000_000
    lookback = [r for r in book if r[0] >= hour_start - ofi_window * GRID]
    all_trades = make_trades(3, book, shuffled)
    given = [t for t in all_trades if t[0] > hour_start - bucket_us]
    before = [t for t in all_trades if t[0] <= hour_start - bucket_us]
    last = max(before, key=lambda t: (t[0], t[1]))
    seed = (last[0], last[2], last[3])
    carry = 123_456_789
    got = computed(lookback, given, hour_start, ofi_window, bucket_us, False, carry, seed)
    want = expected(book, all_trades, hour_start, ofi_window, bucket_us, False, carry, None)
    assert len(got) == len(want) == sum(r[0] >= hour_start for r in book)
    # both UTC days: the carry only before midnight, the new day from zero
    assert any(r["ts"] >= MIDNIGHT for r in want) and any(r["ts"] < MIDNIGHT for r in want)
    for g, w in zip(got, want):
        assert {c: g[c] for c in COLUMNS} == w, w["ts"]
