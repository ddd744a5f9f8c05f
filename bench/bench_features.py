"""Feature throughput: the features stage end to end, and its DuckDB SQL vs a plain Polars pipeline.

Measurements, all in one run, on synthetic books shaped like the real recordings (see
`real_shaped_book`), written as hourly clean partitions the way the book rebuild writes them:
  1. End to end: N book rows (default 10 M, all columns, ORDER_BOOK_DEPTH 10, ~278 hours) with
     trades through compute_features_hours (what `midas features` runs); then the compute alone
     over all rows in one query against the same columns computed by Polars (the yardstick),
     and the written partitions checked equal to that one pass.
  2. The hourly job: H consecutive hours (default 48) through compute_features_hour one after the
     other, and the same hours in one compute_features_hours call.
  3. One symbol-hour end to end through compute_features_hour.
  4. The features' size against the raw files' size, on the real futures recording.
Run: `.venv/bin/python -m bench features` (MIDAS_BENCH_ROWS=2000000, MIDAS_BENCH_HOURS=12 for a
quicker run).
"""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from midas.book.partitions import TRADES_SCHEMA, book_schema
from midas.config import load_settings
from midas.features import (FEATURE_COLUMNS, WRITE_OPTIONS, FeatureParams, book_input_table,
                            book_level_columns, compute_feature_columns, compute_features_hour,
                            compute_features_hours, feature_connection)
from midas.layout import partition_file

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "RESULTS.md"
RECORDING = REPO.parent / "shared" / "data" / "binance" / "usdm-btcusdt-2024-07-18T2357.txt.gz"
START_US = 1_721_260_800_000_000          # 2024-07-18T00:00 UTC
INTERVAL_US = 100_000
DEPTH = 10


# The futures recording's clean/book (BTCUSDT, 4,795 grid rows at 100 ms), measured 2026-11-24:
# the fraction of grid rows where each level's price / size differs from the previous row's
# (most rows repeat most levels: the best bid moves at 4% of the rows), the quantiles (0, 10, ..
# 100%) of the sizes at level 1 and at levels 2-10, and the gaps between adjacent price levels in
# ticks (0.1) with their counts.
PX_CHANGE = (0.043, 0.06, 0.092, 0.116, 0.138, 0.158, 0.173, 0.188, 0.2, 0.218)
SZ_CHANGE = (0.66, 0.14, 0.12, 0.144, 0.162, 0.178, 0.188, 0.206, 0.217, 0.238)
SZ1_QUANTILES = (0.002, 1.459, 4.414, 7.752, 10.027, 12.045, 13.193, 16.703, 21.689, 29.533, 67.252)
SZN_QUANTILES = (0.001, 0.002, 0.002, 0.004, 0.008, 0.032, 0.079, 0.159, 0.234, 0.602, 54.168)
GAP_TICKS = np.arange(1, 21)
GAP_COUNTS = np.array([19811, 6367, 4453, 4091, 2566, 1771, 1158, 640, 484, 802, 117, 179, 224,
                       118, 65, 91, 72, 78, 24, 41], dtype=float)


def _held(rng: np.random.Generator, n: int, change_rate: float, draw) -> np.ndarray:
    """n values that change at a fraction change_rate of the rows (to a value from draw) and
    otherwise repeat the previous row's."""
    change = rng.random(n) < change_rate
    change[0] = True
    last_change = np.maximum.accumulate(np.where(change, np.arange(n), 0))
    return draw(n)[last_change]


def real_shaped_book(n: int, seed: int = 1) -> pa.Table:
    """n grid rows (0.1 % of grid times missing: gaps), 10 levels a side, tick 0.1, sizes in
    0.001, shaped like the real recording: each level's price and size repeat from row to row as
    often as there (PX_CHANGE, SZ_CHANGE), sizes follow its distribution (SZ*_QUANTILES, rounded to
    the lot), levels are GAP_TICKS apart as there. Uniformly random sizes on every row, as before
    2026-11-24, compress and encode quite differently from the real partitions."""
    rng = np.random.default_rng(seed)
    keep = rng.random(int(n * 1.01) + 100) > 0.001
    ts = START_US + np.nonzero(keep)[0][:n].astype(np.int64) * INTERVAL_US
    moves = rng.random(n) < PX_CHANGE[0]
    best_bid = 600_000 + np.cumsum(np.where(moves, rng.choice([-1, 1], n) * rng.geometric(0.35, n), 0))
    spread = _held(rng, n, 0.001, lambda m: 1 + (rng.random(m) < 0.01) * rng.integers(1, 4, m))

    def sizes(m: int, quantiles) -> np.ndarray:
        u = rng.random(m)
        return np.round(np.interp(u, np.linspace(0, 1, len(quantiles)), quantiles), 3).clip(0.001)

    def gaps(m: int) -> np.ndarray:
        return rng.choice(GAP_TICKS, m, p=GAP_COUNTS / GAP_COUNTS.sum())

    cols: dict[str, np.ndarray] = {"ts": ts}
    for side, sign, best in (("bid", -1, best_bid), ("ask", 1, best_bid + spread)):
        offset = np.zeros(n, np.int64)
        prices = []
        for i in range(DEPTH):
            if i:
                offset = offset + _held(rng, n, PX_CHANGE[i] - PX_CHANGE[i - 1] + 0.01, gaps)
            prices.append((best + sign * offset) / 10)
        for i in range(DEPTH):
            cols[f"{side}_px_{i + 1:02d}"] = prices[i]
        for i in range(DEPTH):
            quantiles = SZ1_QUANTILES if i == 0 else SZN_QUANTILES
            cols[f"{side}_sz_{i + 1:02d}"] = _held(rng, n, SZ_CHANGE[i],
                                                   lambda m, q=quantiles: sizes(m, q))
    cols["update_id"] = 4_984_028_384_610 + np.cumsum(rng.integers(1_800, 10_000, n)).astype(np.int64)
    cols["book_age_ms"] = rng.integers(0, 100, n).astype(np.int64)
    return pa.table(cols)


def synthetic_trades(book: pa.Table, per_row: float = 1.0, seed: int = 2) -> pa.Table:
    rng = np.random.default_rng(seed)
    ts_book = book.column("ts").to_numpy()
    m = int(len(ts_book) * per_row)
    ts = np.sort(rng.integers(ts_book[0] - INTERVAL_US, ts_book[-1], m))
    return pa.table({"ts": ts, "trade_id": np.arange(m, dtype=np.int64) + 1,
                     "price": rng.integers(590_000, 610_000, m) / 10,
                     "qty": rng.integers(1, 3000, m) / 1000,
                     "is_buyer_maker": rng.random(m) < 0.5,
                     "trade_type": pa.array(["MARKET"] * m, pa.string())})


def polars_features(book: pl.DataFrame, trades: pl.DataFrame, ofi_window: int = 10,
                    bucket_us: int = 100_000) -> pl.DataFrame:
    """The same columns as a straightforward Polars expression pipeline (float sums)."""
    b = [pl.col(f"bid_sz_{i:02d}").fill_null(0) for i in range(1, 11)]
    a = [pl.col(f"ask_sz_{i:02d}").fill_null(0) for i in range(1, 11)]
    bpx, apx, bsz, asz = pl.col("bid_px_01"), pl.col("ask_px_01"), pl.col("bid_sz_01"), pl.col("ask_sz_01")
    prev = lambda e: e.shift(1)  # noqa: E731
    ofi = (pl.when(pl.col("ts").shift(1) == pl.col("ts") - INTERVAL_US).then(
        (bpx >= prev(bpx)).cast(pl.Float64) * bsz - (bpx <= prev(bpx)).cast(pl.Float64) * prev(bsz)
        - (apx <= prev(apx)).cast(pl.Float64) * asz + (apx >= prev(apx)).cast(pl.Float64) * prev(asz)))
    out = book.lazy().with_columns(
        midprice=(bpx + apx) / 2, spread=apx - bpx,
        spread_bps=(apx - bpx) / ((bpx + apx) / 2) * 10000,
        microprice=(bpx * asz + apx * bsz) / (bsz + asz),
        imbalance=(b[0] - a[0]) / (b[0] + a[0]),
        imbalance_5=(pl.sum_horizontal(b[:5]) - pl.sum_horizontal(a[:5])) / (pl.sum_horizontal(b[:5]) + pl.sum_horizontal(a[:5])),
        imbalance_10=(pl.sum_horizontal(b) - pl.sum_horizontal(a)) / (pl.sum_horizontal(b) + pl.sum_horizontal(a)),
        liquidity_1=b[0] + a[0], liquidity_5=pl.sum_horizontal(b[:5] + a[:5]),
        liquidity_10=pl.sum_horizontal(b + a), ofi=ofi,
    ).with_columns(
        ofi_10=pl.col("ofi").rolling_sum_by("ts", window_size=f"{ofi_window * INTERVAL_US}i"),
        ofi_cumulative=pl.col("ofi").cum_sum().over(pl.col("ts") // 86_400_000_000),
    )
    buckets = trades.lazy().filter(pl.col("trade_type") == "MARKET").with_columns(
        bucket=(pl.col("ts") + bucket_us - 1) // bucket_us * bucket_us).group_by("bucket").agg(
        taker_buy_volume=pl.col("qty").filter(~pl.col("is_buyer_maker")).sum(),
        taker_sell_volume=pl.col("qty").filter(pl.col("is_buyer_maker")).sum(),
        trade_count=pl.len())
    last = trades.lazy().select(pl.col("ts").alias("trade_ts"), pl.col("price").alias("last_trade_px"),
                                pl.col("qty").alias("last_trade_qty"))
    out = out.join(buckets, left_on="ts", right_on="bucket", how="left").with_columns(
        pl.col("taker_buy_volume", "taker_sell_volume").fill_null(0.0),
        pl.col("trade_count").fill_null(0)).with_columns(
        signed_volume=pl.col("taker_buy_volume") - pl.col("taker_sell_volume"),
        volume_imbalance=pl.when(pl.col("taker_buy_volume") + pl.col("taker_sell_volume") == 0).then(0.0)
        .otherwise((pl.col("taker_buy_volume") - pl.col("taker_sell_volume"))
                   / (pl.col("taker_buy_volume") + pl.col("taker_sell_volume"))))
    out = out.sort("ts").join_asof(last, left_on="ts", right_on="trade_ts", strategy="backward")
    return out.select(["ts", *FEATURE_COLUMNS]).collect()


CPU_SECONDS: dict[str, float] = {}    # step -> CPU seconds of this process (all its threads)


def _agreement(duck: pl.DataFrame, polars_out: pl.DataFrame) -> str:
    """Check that both pipelines computed the same thing: equal within 1e-9 relative wherever both
    are non-null (Polars keeps a null in cum_sum at null rows and gives 0 for an all-null rolling
    window, where SPEC §3 says otherwise). Raises if they disagree."""
    assert duck["ts"].equals(polars_out["ts"])
    compared = 0
    for name in FEATURE_COLUMNS:
        a = duck[name].cast(pl.Float64).to_numpy()
        b = polars_out[name].cast(pl.Float64).to_numpy()
        both = ~np.isnan(a) & ~np.isnan(b)
        bad = np.abs(a[both] - b[both]) > 1e-9 * np.maximum(1.0, np.abs(b[both]))
        if bad.any():
            raise AssertionError(f"{name}: DuckDB and Polars differ on {int(bad.sum())} rows")
        compared += int(both.sum())
    return f"{compared:,} values compared, all equal within 1e-9 relative"


def _timed(fn, step: str | None = None):
    started, cpu_started = time.perf_counter(), time.process_time()
    value = fn()
    if step:
        CPU_SECONDS[step] = time.process_time() - cpu_started
    return value, time.perf_counter() - started


FUT, SYM = "binance-futures", "BTCUSDT"
FIRST_HOUR = datetime(2024, 7, 18, 0, tzinfo=timezone.utc)       # START_US


def write_partitions(data_dir: Path, book: pa.Table, trades: pa.Table, row_group_size: int) -> list[datetime]:
    """The rows as hourly clean/book and clean/trades partitions, written the way the book rebuild
    writes them (ZSTD, dictionaries on, PARQUET_ROW_GROUP_SIZE rows per group). Returns the hours."""
    book_ts = book.column("ts").to_numpy()
    n_hours = int((book_ts[-1] - START_US) // 3_600_000_000) + 1
    hours = [FIRST_HOUR + timedelta(hours=h) for h in range(n_hours)]
    for dataset, table in (("book", book), ("trades", trades)):
        ts = table.column("ts").to_numpy()
        for h, hour in enumerate(hours):
            lo, hi = np.searchsorted(ts, [START_US + h * 3_600_000_000, START_US + (h + 1) * 3_600_000_000])
            path = partition_file(data_dir, dataset, FUT, SYM, hour)
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table.slice(lo, hi - lo), path, compression="zstd", row_group_size=row_group_size)
    return hours


def _split(results) -> dict:
    return {"read": sum(r.read_seconds for r in results), "compute": sum(r.compute_seconds for r in results),
            "write": sum(r.write_seconds for r in results), "rows": sum(r.rows for r in results)}


def bench_many_rows(n: int, work: Path) -> dict:
    """n book rows as hourly partitions (n / 36,000 hours, ~12 days for 10 M) through the stage as
    `midas features` runs it: compute_features_hours reads the partitions, computes and writes
    every hour's features partition. Then the compute alone over all rows in one query (on Arrow
    tables already in memory) against the Polars yardstick, and the cross-check of the written
    partitions against that one pass."""
    s = load_settings(env_file=None, data_dir=work / "many", symbols=[SYM], venue=FUT)
    book = real_shaped_book(n).cast(book_schema(DEPTH))
    trades = synthetic_trades(book).cast(TRADES_SCHEMA)
    trades = trades.filter(pa.compute.greater_equal(trades.column("ts"), START_US))  # none before the first hour
    hours = write_partitions(s.data_dir, book, trades, s.parquet_row_group_size)
    results, e2e_s = _timed(lambda: compute_features_hours(s, FUT, SYM, hours), "end_to_end")
    split = _split(results)
    con = feature_connection()
    params = FeatureParams(hour_start=START_US, interval_us=INTERVAL_US, ofi_window=10,
                           bucket_us=100_000, market_only=True)
    features, compute_s = _timed(lambda: compute_feature_columns(
        con, book_input_table(book), trades, params, None, None), "compute")
    con.close()
    written = pa.concat_tables([pq.read_table(r.path, columns=["ts", *FEATURE_COLUMNS]) for r in results])
    if not written.replace_schema_metadata().cast(features.schema).equals(features):
        raise AssertionError("features partitions written hour by day-pass differ from one pass over all rows")
    pl_book, pl_trades = pl.from_arrow(book), pl.from_arrow(trades)
    polars_out, polars_s = _timed(lambda: polars_features(pl_book, pl_trades), "polars_compute")
    assert polars_out.height == features.num_rows
    agree = _agreement(pl.from_arrow(features), polars_out)
    floors = bench_floors(s.data_dir, hours, features, work)
    return {"floors": floors, "rows": split["rows"], "hours": len(hours), "trades": trades.num_rows, "agree": agree,
            "e2e_s": e2e_s, "split": split, "compute_s": compute_s, "polars_compute_s": polars_s,
            "book_bytes": sum(partition_file(s.data_dir, "book", FUT, SYM, h).stat().st_size for h in hours),
            "features_bytes": sum(r.path.stat().st_size for r in results)}


def bench_floors(data_dir: Path, hours: list[datetime], features: pa.Table, work: Path) -> dict:
    """CPU seconds of three parts no implementation of the stage can skip, each alone: DuckDB
    reading the book columns the features need from the partitions (summed, nothing kept),
    DuckDB bucketing the trades per grid time (the trade features' one aggregate), and pyarrow
    writing the 20 feature columns as ZSTD Parquet (WRITE_OPTIONS, 50,000-row groups)."""
    con = duckdb.connect()
    books = [str(partition_file(data_dir, "book", FUT, SYM, h)) for h in hours]
    trades = [str(partition_file(data_dir, "trades", FUT, SYM, h)) for h in hours]
    sums = [duckdb.FunctionExpression("sum", duckdb.ColumnExpression(c)) for c in book_level_columns()]
    _timed(lambda: con.read_parquet(books, hive_partitioning=False).aggregate(sums).fetchall(), "floor_read")
    grid = duckdb.SQLExpression(f"(ts + {INTERVAL_US - 1}) // {INTERVAL_US}").alias("grid_ts")
    _timed(lambda: con.read_parquet(trades, hive_partitioning=False).select(
        grid, "qty", "is_buyer_maker", "price").aggregate(
        "grid_ts, sum(qty) FILTER (WHERE is_buyer_maker), sum(qty) FILTER (WHERE NOT is_buyer_maker), "
        "count(*), max(price)").to_arrow_table(122_880), "floor_trades")
    con.close()
    _timed(lambda: pq.write_table(features.select(list(FEATURE_COLUMNS)), work / "floor_write.parquet",
                                  row_group_size=50_000, **WRITE_OPTIONS), "floor_write")
    return {k: CPU_SECONDS[k] for k in ("floor_read", "floor_trades", "floor_write")}


def bench_hours(hours: int, work: Path) -> dict:
    """`hours` consecutive hours of real-shaped book and trades as clean partitions, then
    compute_features_hour hour after hour (the hourly job keeping up: one hour at a time), then
    the same hours in one compute_features_hours call (`midas features`, or catching up)."""
    s = load_settings(env_file=None, data_dir=work / "hours", symbols=[SYM], venue=FUT)
    book = real_shaped_book(36_000 * hours + 100, seed=5).cast(book_schema(DEPTH))
    trades = synthetic_trades(book, seed=6).cast(TRADES_SCHEMA)
    todo = write_partitions(s.data_dir, book, trades, s.parquet_row_group_size)[:hours]
    compute_features_hour(s, FUT, SYM, todo[0])                       # warm-up (numba, DuckDB)
    hourly, hourly_s = _timed(lambda: [compute_features_hour(s, FUT, SYM, h) for h in todo], "hourly")
    spans, spans_s = _timed(lambda: compute_features_hours(s, FUT, SYM, todo), "spans")
    return {"hours": hours, "rows": sum(r.rows for r in hourly), "hourly_s": hourly_s,
            "spans_s": spans_s, "hourly": _split(hourly), "spans": _split(spans)}


def bench_one_hour(work: Path) -> dict:
    s = load_settings(env_file=None, data_dir=work / "hour", symbols=["BTCUSDT"], venue="binance-futures")
    hour = datetime(2024, 7, 18, 0, tzinfo=timezone.utc)
    book = real_shaped_book(36_000, seed=3)
    book = book.filter(pa.compute.less(book.column("ts"), START_US + 3_600_000_000))
    trades = synthetic_trades(book, seed=4).filter(pa.compute.greater_equal(pa.compute.field("ts"), START_US))
    for dataset, table in (("book", book), ("trades", trades)):
        path = partition_file(s.data_dir, dataset, "binance-futures", "BTCUSDT", hour)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path, compression="zstd")
    compute_features_hour(s, "binance-futures", "BTCUSDT", hour)          # warm-up
    result = compute_features_hour(s, "binance-futures", "BTCUSDT", hour)
    return {"rows": result.rows, "seconds": result.seconds, "read_s": result.read_seconds,
            "compute_s": result.compute_seconds, "write_s": result.write_seconds}


def bench_size_ratio(work: Path) -> dict:
    from midas.book import raw_hours
    from midas.importer import import_recording
    from midas.pipeline import process_hour

    data_dir = work / "recording"
    import_recording(RECORDING, "binance-futures", data_dir)
    s = load_settings(env_file=None, data_dir=data_dir, symbols=["BTCUSDT"], venue="binance-futures")
    for hour in raw_hours(s, "binance-futures", "BTCUSDT"):
        process_hour(s, "binance-futures", "BTCUSDT", hour)
    raw = sum(p.stat().st_size for p in (data_dir / "raw").rglob("*.jsonl.zst"))
    feats = sum(p.stat().st_size for p in (data_dir / "features").rglob("*.parquet"))
    return {"raw_bytes": raw, "features_bytes": feats, **bench_real_write(data_dir, work)}


def bench_real_write(data_dir: Path, work: Path, repeat: int = 20) -> dict:
    """Writing the real recording's features partitions (book + features columns) again, with
    and without pyarrow's dictionary encoding: CPU ms per write (best of `repeat`) and bytes."""
    table = pa.concat_tables([pq.read_table(p) for p in sorted((data_dir / "features").rglob("*.parquet"))])
    out = {"real_rows": table.num_rows}
    for label, dictionary in (("dict", True), ("plain", False)):
        path = work / f"real_{label}.parquet"
        best = float("inf")
        for _ in range(repeat):
            started = time.process_time()
            pq.write_table(table, path, compression="zstd", row_group_size=50_000, use_dictionary=dictionary)
            best = min(best, time.process_time() - started)
        out[f"real_{label}_ms"], out[f"real_{label}_bytes"] = best * 1000, path.stat().st_size
    return out


def main() -> str:
    n = int(os.environ.get("MIDAS_BENCH_ROWS", "10000000"))
    n_hours = int(os.environ.get("MIDAS_BENCH_HOURS", "48"))
    work = Path(tempfile.mkdtemp(prefix="midas-bench-features-"))
    load_before = os.getloadavg()[0]
    try:
        many = bench_many_rows(n, work)
        hours = bench_hours(n_hours, work)
        hour = bench_one_hour(work)
        size = bench_size_ratio(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    cpu_s = CPU_SECONDS
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    sp, hs = many["split"], hours
    fl = many["floors"]
    fl_sum = sum(fl.values())
    section = f"""
## Features (bench/bench_features.py), {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC

Machine: {os.cpu_count()} cores (`nproc`), {platform.machine()}, {cpu}; shared with other jobs
(load average {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end). Synthetic books shaped
like the real recording (`real_shaped_book`: levels repeat from row to row as often as there),
written as hourly clean partitions the way the book rebuild writes them.

**End to end, {many['rows']:,} book rows** (10 levels, all columns; {many['hours']} hourly partitions,
{many['trades']:,} trades) through `compute_features_hours` (what `midas features` runs): read the
partitions, compute, write {many['hours']} features partitions:
**{many['e2e_s']:.2f} s wall = {many['rows'] / many['e2e_s'] / 1e6:.2f} M rows/s** (target >= 2.5 M rows/s),
{cpu_s['end_to_end']:.2f} CPU s. Split, in seconds summed over threads (days are computed two at
a time, and hours written on threads beside them, so the parts overlap): read {sp['read']:.2f} s,
compute {sp['compute']:.2f} s, write {sp['write']:.2f} s. Bytes: book partitions
{many['book_bytes']:,}, features partitions {many['features_bytes']:,}.

Compute alone, all rows in one query on Arrow tables in memory: DuckDB SQL of sql/features/
{many['compute_s']:.2f} s wall, {cpu_s['compute']:.2f} CPU s; the Polars yardstick {many['polars_compute_s']:.2f} s wall,
{cpu_s['polars_compute']:.2f} CPU s: **{cpu_s['compute'] / cpu_s['polars_compute']:.2f}x Polars by CPU** (target <= 4x),
{many['compute_s'] / many['polars_compute_s']:.2f}x by wall. Cross-checks: the partitions written hour by hour
equal this one pass (`Table.equals`); DuckDB vs Polars {many['agree']}.

The budget: {many['rows']:,} rows at 2.5 M rows/s is {many['rows'] / 2.5e6:.1f} s of wall, at most
{many['rows'] / 2.5e6 * os.cpu_count():.1f} CPU s on {os.cpu_count()} cores. Three parts no implementation can skip, each
measured alone (`bench_floors`): DuckDB reading the {len(book_level_columns())} book columns the features need
{fl['floor_read']:.2f} CPU s, bucketing the trades per grid time {fl['floor_trades']:.2f} CPU s, pyarrow writing
the 20 feature columns as ZSTD Parquet {fl['floor_write']:.2f} CPU s: **{fl_sum:.2f} CPU s**, i.e. at most
{many['rows'] / fl_sum * os.cpu_count() / 1e6:.2f} M rows/s on {os.cpu_count()} cores with nothing else computed and both
cores busy all the time; the stage as a whole used {cpu_s['end_to_end']:.2f} CPU s.

The hourly job: {hs['hours']} consecutive hours ({hs['rows']:,} rows), one `compute_features_hour` after
the other: {hs['hourly_s']:.2f} s wall, {cpu_s['hourly']:.2f} CPU s = **{hs['rows'] / hs['hourly_s'] / 1e6:.2f} M rows/s**
(read {hs['hourly']['read']:.2f} s, compute {hs['hourly']['compute']:.2f} s, write {hs['hourly']['write']:.2f} s);
the same hours in one `compute_features_hours` call: {hs['spans_s']:.2f} s wall, {cpu_s['spans']:.2f} CPU s =
**{hs['rows'] / hs['spans_s'] / 1e6:.2f} M rows/s**.

One symbol-hour ({hour['rows']:,} grid rows) through compute_features_hour: {hour['seconds']:.3f} s
(read {hour['read_s']:.3f}, compute {hour['compute_s']:.3f}, write {hour['write_s']:.3f}) =
{hour['rows'] / hour['seconds'] / 1e6:.2f} M rows/s.

Size on the real futures recording (8 minutes): features {size['features_bytes']:,} bytes,
raw files {size['raw_bytes']:,} bytes: features = {size['features_bytes'] / size['raw_bytes']:.0%} of raw.
Writing those {size['real_rows']:,} real rows (book + features columns, ZSTD) again, CPU ms per write
(best of 20): with dictionary encoding {size['real_dict_ms']:.1f} ms ({size['real_dict_bytes']:,} bytes),
without {size['real_plain_ms']:.1f} ms ({size['real_plain_bytes']:,} bytes).
"""
    print(section)
    if os.environ.get("MIDAS_BENCH_NO_RESULTS") != "1":
        with open(RESULTS, "a", encoding="utf-8") as fh:
            fh.write(section)
    return section


if __name__ == "__main__":
    main()
