"""Hand-made clean partitions (SPEC §3 schemas) for the feature and catalog tests."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from midas.layout import hour_start_us, parse_hour, partition_file


def book_table(rows: list[dict], depth: int = 10) -> pa.Table:
    """rows: {"ts": µs, "bids": [(px, sz), ...], "asks": [...], "update_id": int} -> clean/book table."""
    cols: dict[str, list] = {"ts": [], "update_id": [], "book_age_ms": []}
    for side in ("bid", "ask"):
        for kind in ("px", "sz"):
            for i in range(1, depth + 1):
                cols[f"{side}_{kind}_{i:02d}"] = []
    for n, row in enumerate(rows):
        cols["ts"].append(row["ts"])
        cols["update_id"].append(row.get("update_id", 1000 + n))
        cols["book_age_ms"].append(row.get("book_age_ms", 0.0))
        for side, levels in (("bid", row["bids"]), ("ask", row["asks"])):
            for i in range(1, depth + 1):
                px, sz = levels[i - 1] if i <= len(levels) else (None, None)
                cols[f"{side}_px_{i:02d}"].append(px)
                cols[f"{side}_sz_{i:02d}"].append(sz)
    fields = [pa.field("ts", pa.int64()), pa.field("update_id", pa.int64()),
              pa.field("book_age_ms", pa.float64())]
    fields += [pa.field(name, pa.float64()) for name in cols if name[:3] in ("bid", "ask")]
    return pa.table({f.name: pa.array(cols[f.name], f.type) for f in fields},
                     schema=pa.schema(fields))


def trades_table(trades: list[tuple]) -> pa.Table:
    """trades: (ts, trade_id, price, qty, is_buyer_maker, trade_type) -> clean/trades table."""
    schema = pa.schema([("ts", pa.int64()), ("trade_id", pa.int64()), ("price", pa.float64()),
                        ("qty", pa.float64()), ("is_buyer_maker", pa.bool_()),
                        ("trade_type", pa.string())])
    columns = list(zip(*trades)) if trades else [[] for _ in schema]
    return pa.table([pa.array(list(c), f.type) for c, f in zip(columns, schema)], schema=schema)


def write_clean(data_dir: Path, dataset: str, venue: str, symbol: str, hour, table: pa.Table) -> Path:
    path = partition_file(data_dir, dataset, venue, symbol, parse_hour(hour))
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="zstd")
    return path


def gaps_table(gaps: list[tuple]) -> pa.Table:
    schema = pa.schema([("start_ts", pa.int64()), ("end_ts", pa.int64()), ("reason", pa.string()),
                        ("first_update_id", pa.int64()), ("last_update_id", pa.int64())])
    columns = list(zip(*gaps)) if gaps else [[] for _ in schema]
    return pa.table([pa.array(list(c), f.type) for c, f in zip(columns, schema)], schema=schema)


class CleanData:
    book_table = staticmethod(book_table)
    trades_table = staticmethod(trades_table)
    gaps_table = staticmethod(gaps_table)
    write = staticmethod(write_clean)

    @staticmethod
    def t(hour: str | datetime, ms: int) -> int:
        """µs timestamp `ms` milliseconds after the start of `hour`."""
        return hour_start_us(parse_hour(hour)) + ms * 1000


@pytest.fixture
def clean():
    return CleanData
