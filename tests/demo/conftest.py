"""Small, exact clean/features partitions written with the SPEC §3 columns, for the demo-area tests."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from midas.layout import hour_start_us, parse_hour, partition_file

DEPTH = 10
LEVEL_NAMES = [f"{side}_{kind}_{i:02d}" for side, kind in (("bid", "px"), ("bid", "sz"), ("ask", "px"),
                                                             ("ask", "sz")) for i in range(1, DEPTH + 1)]
FEATURE_NAMES = ["midprice", "spread", "spread_bps", "microprice", "imbalance", "imbalance_5", "imbalance_10",
                 "ofi", "ofi_10", "ofi_cumulative", "taker_buy_volume", "taker_sell_volume", "signed_volume",
                 "volume_imbalance", "trade_count", "last_trade_px", "last_trade_qty", "liquidity_1",
                 "liquidity_5", "liquidity_10"]


def synthetic_rows(hour: datetime, ks: list[int], interval_us: int = 100_000) -> list[dict]:
    """One features row per grid index k: a 10-level book around 100 + k/100, a buy every 7th row
    (qty k/1000), a sell every 5th row (qty 0.002). Values are simple so tests can recompute them."""
    rows, prev, cum = [], None, 0.0
    for k in ks:
        ts = hour_start_us(parse_hour(hour)) + k * interval_us
        mid = 100 + k / 100
        row: dict = {"ts": ts}
        for i in range(1, DEPTH + 1):
            row[f"bid_px_{i:02d}"] = mid - 0.05 - (i - 1) * 0.1
            row[f"ask_px_{i:02d}"] = mid + 0.05 + (i - 1) * 0.1
            row[f"bid_sz_{i:02d}"] = 1.0 + (k % 3)
            row[f"ask_sz_{i:02d}"] = 2.0
        row["update_id"] = 1000 + k
        row["book_age_ms"] = 0
        b1, a1 = row["bid_sz_01"], row["ask_sz_01"]
        row["midprice"] = mid
        row["spread"] = 0.1
        row["spread_bps"] = 0.1 / mid * 10_000
        row["microprice"] = (row["bid_px_01"] * a1 + row["ask_px_01"] * b1) / (a1 + b1)
        row["imbalance"] = row["imbalance_5"] = row["imbalance_10"] = (b1 - a1) / (b1 + a1)
        contiguous = prev is not None and prev["ts"] == ts - interval_us
        row["ofi"] = (b1 - prev["bid_sz_01"]) if contiguous else None
        if row["ofi"] is not None:
            cum += row["ofi"]
        row["ofi_10"] = row["ofi"]
        row["ofi_cumulative"] = cum if prev is not None else None
        buy = k / 1000 if k % 7 == 0 else 0.0
        sell = 0.002 if k % 5 == 0 else 0.0
        row["taker_buy_volume"], row["taker_sell_volume"] = buy, sell
        row["signed_volume"] = buy - sell
        row["volume_imbalance"] = (buy - sell) / (buy + sell) if buy + sell else 0.0
        row["trade_count"] = int(buy > 0) + int(sell > 0)
        row["last_trade_px"], row["last_trade_qty"] = mid, 0.002
        row["liquidity_1"] = b1 + a1
        row["liquidity_5"] = 5 * (b1 + a1)
        row["liquidity_10"] = 10 * (b1 + a1)
        rows.append(row)
        prev = row
    return rows


def _schema(names: list[str]) -> pa.Schema:
    types = {"ts": pa.int64(), "update_id": pa.int64(), "book_age_ms": pa.int64(), "trade_count": pa.int64()}
    return pa.schema([(n, types.get(n, pa.float64())) for n in names])


def write_partition(data_dir: Path, dataset: str, venue: str, symbol: str, hour: datetime,
                    rows: list[dict]) -> Path:
    if dataset == "features":
        names = ["ts"] + LEVEL_NAMES + ["update_id", "book_age_ms"] + FEATURE_NAMES
        schema = _schema(names)
    elif dataset == "book":
        names = ["ts"] + LEVEL_NAMES + ["update_id", "book_age_ms"]
        schema = _schema(names)
    elif dataset == "gaps":
        schema = pa.schema([("start_ts", pa.int64()), ("end_ts", pa.int64()), ("reason", pa.string()),
                            ("first_update_id", pa.int64()), ("last_update_id", pa.int64())])
    elif dataset == "trades":
        schema = pa.schema([("ts", pa.int64()), ("trade_id", pa.int64()), ("price", pa.float64()),
                            ("qty", pa.float64()), ("is_buyer_maker", pa.bool_()), ("trade_type", pa.string())])
    else:
        raise ValueError(dataset)
    table = pa.Table.from_pylist([{n: r.get(n) for n in schema.names} for r in rows], schema=schema)
    path = partition_file(data_dir, dataset, venue, symbol, hour)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="zstd")
    return path


@pytest.fixture
def features_hour(tmp_path):
    """Writes book + features (+ gaps) partitions of one symbol-hour under tmp_path/data."""

    def make(symbol="BTCUSDT", venue="binance-futures", hour="2024-07-18T23", ks=None, gaps=()):
        data_dir = tmp_path / "data"
        rows = synthetic_rows(parse_hour(hour), list(ks if ks is not None else range(600)))
        write_partition(data_dir, "book", venue, symbol, parse_hour(hour), rows)
        write_partition(data_dir, "features", venue, symbol, parse_hour(hour), rows)
        if gaps:
            write_partition(data_dir, "gaps", venue, symbol, parse_hour(hour), list(gaps))
        return data_dir, rows

    return make
