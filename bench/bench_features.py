"""Feature throughput: DuckDB SQL of sql/features/ vs a plain Polars expression pipeline.

Four measurements, all in one run, on synthetic books shaped like the real recordings (see
`real_shaped_book`):
  1. N book rows (default 10 M, all columns, ORDER_BOOK_DEPTH 10) with trades, one pass: time to
     read the Parquet input, compute the features (midas.features.compute_feature_columns) and
     write the features as ZSTD Parquet; the same columns computed by Polars as the yardstick.
  2. The real stage at scale: H consecutive hours (default 48, 36,000 grid rows each) written as
     clean partitions, then compute_features_hour hour after hour, as `midas features` runs them.
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

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from midas.book.partitions import TRADES_SCHEMA, book_schema
from midas.config import load_settings
from midas.features import (FEATURE_COLUMNS, FeatureParams, book_input_table,
                            compute_feature_columns, compute_features_hour, feature_connection,
                            read_partition, write_partition)
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


def bench_many_rows(n: int, work: Path) -> dict:
    book, trades = real_shaped_book(n), None
    trades = synthetic_trades(book)
    book_file, trades_file = work / "book.parquet", work / "trades.parquet"
    pq.write_table(book, book_file, compression="zstd", row_group_size=50_000)
    pq.write_table(trades, trades_file, compression="zstd", row_group_size=50_000)
    del book, trades
    con = feature_connection()
    # read as compute_features_hour reads (midas.features.read_partition)
    (book, trades), read_s = _timed(lambda: (read_partition(book_file),
                                             read_partition(trades_file)), "read")
    params = FeatureParams(hour_start=START_US, interval_us=INTERVAL_US, ofi_window=10,
                           bucket_us=100_000, market_only=True)
    features, compute_s = _timed(lambda: compute_feature_columns(
        con, book_input_table(book), trades, params, None, None), "compute")
    con.close()

    def assemble_and_write():
        # what compute_features_hour does: the book columns, then the features, written by
        # midas.features.write_partition (ZSTD, 50,000-row groups, temporary name + os.replace)
        table = book
        for name in FEATURE_COLUMNS:
            table = table.append_column(name, features.column(name))
        write_partition(table, work / "features.parquet", 50_000)
    _, write_s = _timed(assemble_and_write, "write")
    pl_book, pl_trades = pl.from_arrow(book), pl.from_arrow(trades)
    polars_out, polars_s = _timed(lambda: polars_features(pl_book, pl_trades), "polars_compute")
    assert polars_out.height == features.num_rows
    agree = _agreement(pl.from_arrow(features), polars_out)
    _, polars_write_s = _timed(lambda: pl.concat([pl_book, polars_out.drop("ts")], how="horizontal")
                               .write_parquet(work / "features_polars.parquet", compression="zstd",
                                              row_group_size=50_000), "polars_write")
    return {"rows": n, "trades": trades.num_rows, "agree": agree, "read_s": read_s, "compute_s": compute_s,
            "write_s": write_s, "polars_compute_s": polars_s, "polars_write_s": polars_write_s}


def bench_hours(hours: int, work: Path) -> dict:
    """`hours` consecutive hours of real-shaped book and trades, written as clean partitions the
    way the book rebuild writes them, then compute_features_hour hour after hour (as `midas
    features` runs them: each hour reads the previous hour's tail and carries its ofi)."""
    s = load_settings(env_file=None, data_dir=work / "hours", symbols=["BTCUSDT"], venue="binance-futures")
    first = datetime(2024, 7, 18, 0, tzinfo=timezone.utc)
    book = real_shaped_book(36_000 * hours + 100, seed=5).cast(book_schema(DEPTH))
    trades = synthetic_trades(book, seed=6).cast(TRADES_SCHEMA)
    for dataset, table in (("book", book), ("trades", trades)):
        ts = table.column("ts").to_numpy()
        for h in range(hours):
            lo, hi = np.searchsorted(ts, [START_US + h * 3_600_000_000, START_US + (h + 1) * 3_600_000_000])
            path = partition_file(s.data_dir, dataset, "binance-futures", "BTCUSDT", first + timedelta(hours=h))
            path.parent.mkdir(parents=True, exist_ok=True)
            # as midas.book.partitions.PartitionWriter writes them (ZSTD, dictionaries on)
            pq.write_table(table.slice(lo, hi - lo), path, compression="zstd",
                           row_group_size=s.parquet_row_group_size)
    rows, split = 0, {"read": 0.0, "compute": 0.0, "write": 0.0}
    started, cpu_started = time.perf_counter(), time.process_time()
    for h in range(hours):
        result = compute_features_hour(s, "binance-futures", "BTCUSDT", first + timedelta(hours=h))
        rows += result.rows
        split["read"] += result.read_seconds
        split["compute"] += result.compute_seconds
        split["write"] += result.write_seconds
    return {"hours": hours, "rows": rows, "seconds": time.perf_counter() - started,
            "cpu_s": time.process_time() - cpu_started, **split}


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
    total = many["read_s"] + many["compute_s"] + many["write_s"]
    cpu_s = CPU_SECONDS
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    section = f"""
## Features (bench/bench_features.py), {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC

Machine: {os.cpu_count()} cores (`nproc`), {platform.machine()}, {cpu}; shared with other jobs
(load average {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end). Synthetic books shaped
like the real recording (`real_shaped_book`: levels repeat from row to row as often as there).

{many['rows']:,} book rows (10 levels, all columns) and {many['trades']:,} trades, one pass:

| step | wall s | rows/s (wall) | CPU s |
|---|---|---|---|
| read Parquet (read_partition) | {many['read_s']:.2f} | {many['rows'] / many['read_s'] / 1e6:.2f} M | {cpu_s['read']:.2f} |
| compute, DuckDB SQL of sql/features/ | {many['compute_s']:.2f} | {many['rows'] / many['compute_s'] / 1e6:.2f} M | {cpu_s['compute']:.2f} |
| write ZSTD Parquet (write_partition, book + features) | {many['write_s']:.2f} | {many['rows'] / many['write_s'] / 1e6:.2f} M | {cpu_s['write']:.2f} |
| **end to end** | **{total:.2f}** | **{many['rows'] / total / 1e6:.2f} M** | {cpu_s['read'] + cpu_s['compute'] + cpu_s['write']:.2f} |
| yardstick: compute, Polars expressions | {many['polars_compute_s']:.2f} | {many['rows'] / many['polars_compute_s'] / 1e6:.2f} M | {cpu_s['polars_compute']:.2f} |
| yardstick: write, Polars | {many['polars_write_s']:.2f} | {many['rows'] / many['polars_write_s'] / 1e6:.2f} M | {cpu_s['polars_write']:.2f} |

DuckDB compute / Polars compute = **{many['compute_s'] / many['polars_compute_s']:.2f}x** wall,
**{cpu_s['compute'] / cpu_s['polars_compute']:.2f}x** CPU (target <= 4x); end to end
{many['rows'] / total / 1e6:.2f} M rows/s wall (target >= 2.5 M rows/s).
Cross-check: DuckDB vs Polars results, {many['agree']}.

The stage as it runs: {hours['hours']} consecutive hours ({hours['rows']:,} grid rows) through
compute_features_hour, one after the other: {hours['seconds']:.2f} s wall, {hours['cpu_s']:.2f} CPU s =
**{hours['rows'] / hours['seconds'] / 1e6:.2f} M rows/s** (read {hours['read']:.2f} s, compute {hours['compute']:.2f} s,
write {hours['write']:.2f} s of wall; the book columns are encoded while the features are computed).

One symbol-hour ({hour['rows']:,} grid rows) through compute_features_hour: {hour['seconds']:.3f} s
(read {hour['read_s']:.3f}, compute {hour['compute_s']:.3f}, write {hour['write_s']:.3f}) =
{hour['rows'] / hour['seconds'] / 1e6:.2f} M rows/s.

Size on the real futures recording (8 minutes): features {size['features_bytes']:,} bytes,
raw files {size['raw_bytes']:,} bytes: features = {size['features_bytes'] / size['raw_bytes']:.0%} of raw.
Writing those {size['real_rows']:,} real rows (book + features columns, ZSTD) again, CPU ms per write
(best of 20): with dictionary encoding {size['real_dict_ms']:.1f} ms ({size['real_dict_bytes']:,} bytes),
without (what write_partition does) {size['real_plain_ms']:.1f} ms ({size['real_plain_bytes']:,} bytes).
"""
    print(section)
    if os.environ.get("MIDAS_BENCH_NO_RESULTS") != "1":
        with open(RESULTS, "a", encoding="utf-8") as fh:
            fh.write(section)
    return section


if __name__ == "__main__":
    main()
