"""`midas inspect` and `midas chart` on full hours: how long they take against reading the data.

Builds a data directory of H full hours (36,000 grid rows each, the SPEC §3 features columns) for 2
symbols, then measures:

  * `take_inventory` (row counts from the Parquet footers) against the baseline of reading every
    partition whole to count its rows (what an inventory without footers would cost);
  * `write_chart` of one full hour against the baseline of reading that hour's features partition.

`python -m bench inspect` prints the figures and returns a Markdown section for bench/RESULTS.md.
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
import pyarrow as pa
import pyarrow.parquet as pq

from midas.chart import write_chart
from midas.config import load_settings
from midas.inspection import take_inventory
from midas.layout import hour_start_us, partition_file

HOURS = 6
SYMBOLS = ("BTCUSDT", "ETHUSDT")
ROWS_PER_HOUR = 36_000
DEPTH = 10
FEATURES = ("midprice", "spread", "spread_bps", "microprice", "imbalance", "imbalance_5", "imbalance_10", "ofi",
            "ofi_10", "ofi_cumulative", "taker_buy_volume", "taker_sell_volume", "signed_volume",
            "volume_imbalance", "last_trade_px", "last_trade_qty", "liquidity_1", "liquidity_5", "liquidity_10")


def _hour_table(hour: datetime, rng: np.random.Generator) -> pa.Table:
    """One full hour of features rows: a random-walk book, 10 levels a side."""
    ts = hour_start_us(hour) + np.arange(ROWS_PER_HOUR, dtype=np.int64) * 100_000
    mid = 60_000 + np.cumsum(rng.normal(0, 0.5, ROWS_PER_HOUR))
    cols: dict[str, np.ndarray] = {"ts": ts}
    for i in range(1, DEPTH + 1):
        cols[f"bid_px_{i:02d}"] = mid - 0.05 - (i - 1) * 0.1
        cols[f"bid_sz_{i:02d}"] = rng.exponential(1.0, ROWS_PER_HOUR)
        cols[f"ask_px_{i:02d}"] = mid + 0.05 + (i - 1) * 0.1
        cols[f"ask_sz_{i:02d}"] = rng.exponential(1.0, ROWS_PER_HOUR)
    cols["update_id"] = np.arange(ROWS_PER_HOUR, dtype=np.int64) * 7 + 10**12
    cols["book_age_ms"] = rng.integers(0, 100, ROWS_PER_HOUR)
    for name in FEATURES:
        cols[name] = rng.normal(0, 1, ROWS_PER_HOUR)
    cols["midprice"] = mid
    cols["imbalance"] = np.tanh(cols["imbalance"])
    cols["imbalance_5"] = np.tanh(cols["imbalance_5"])
    cols["taker_buy_volume"] = np.abs(cols["taker_buy_volume"])
    cols["taker_sell_volume"] = np.abs(cols["taker_sell_volume"])
    cols["trade_count"] = rng.integers(0, 5, ROWS_PER_HOUR)
    return pa.table(cols)


def _build(data_dir: Path) -> int:
    rng = np.random.default_rng(7)
    first = datetime(2024, 7, 18, 0, tzinfo=timezone.utc)
    files = 0
    for symbol in SYMBOLS:
        for h in range(HOURS):
            hour = first + timedelta(hours=h)
            table = _hour_table(hour, rng)
            for dataset, t in (("features", table), ("book", table.select([c for c in table.column_names
                                                                            if c not in FEATURES]))):
                path = partition_file(data_dir, dataset, "binance-futures", symbol, hour)
                path.parent.mkdir(parents=True, exist_ok=True)
                pq.write_table(t, path, compression="zstd", row_group_size=50_000)
                files += 1
    return files


def _best(fn, runs: int = 3) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> str:
    root = Path(tempfile.mkdtemp(prefix="midas-bench-inspect-"))
    try:
        data_dir = root / "data"
        started = time.perf_counter()
        files = _build(data_dir)
        build_seconds = time.perf_counter() - started
        paths = sorted(data_dir.glob("**/part-0.parquet"))

        def read_everything() -> int:
            return sum(pq.read_table(p).num_rows for p in paths)

        inventory = _best(lambda: take_inventory(data_dir))
        baseline_inventory = _best(read_everything)
        rows = sum(p.rows for p in take_inventory(data_dir).partitions)

        settings = load_settings(env_file=None, data_dir=data_dir)
        hour = datetime(2024, 7, 18, 3, tzinfo=timezone.utc)
        chart = _best(lambda: write_chart(settings, "binance-futures", "BTCUSDT", hour, root / "c.png"), runs=2)
        features_path = partition_file(data_dir, "features", "binance-futures", "BTCUSDT", hour)
        baseline_chart = _best(lambda: pq.read_table(features_path))
    finally:
        shutil.rmtree(root, ignore_errors=True)

    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load = os.getloadavg()[0]
    print(f"{files} partitions, {rows:,} rows (built in {build_seconds:.1f} s)")
    print(f"take_inventory {inventory:.3f} s vs reading every partition {baseline_inventory:.3f} s")
    print(f"write_chart {chart:.3f} s vs reading the hour's features {baseline_chart:.3f} s")
    section = f"""
## Inspect and chart (bench/bench_inspect.py), {when}

Machine: nproc {os.cpu_count()}, {platform.machine()}, {_cpu_model()}; load average {load:.1f} (shared box).
Data: {len(SYMBOLS)} symbols x {HOURS} full hours of `book` and `features` partitions ({ROWS_PER_HOUR:,} rows
an hour, SPEC §3 columns, ZSTD): {files} files, {rows:,} rows. Best of 3 (chart: of 2).

| measure | seconds | baseline | baseline seconds | ratio |
|---|---|---|---|---|
| `take_inventory` (rows from Parquet footers) | {inventory:.3f} | read every partition whole to count rows | {baseline_inventory:.3f} | {inventory / baseline_inventory:.3f} |
| `write_chart` of one full hour (read, arrays, 4 panels, PNG) | {chart:.3f} | read that hour's features partition | {baseline_chart:.3f} | {chart / baseline_chart:.1f} |

The inventory costs {inventory / baseline_inventory:.1%} of reading the data, so `midas inspect` stays
interactive on a data directory of months. A chart is dominated by drawing, not by reading.
"""
    with open(Path(__file__).with_name("RESULTS.md"), "a", encoding="utf-8") as fh:
        fh.write(section)
    return section


if __name__ == "__main__":
    main()
