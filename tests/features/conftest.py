"""Hand-made clean partitions (SPEC §3 schemas) for the feature and catalog tests."""

from __future__ import annotations

import bisect

from datetime import datetime
from decimal import Decimal
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
    oracle = staticmethod(lambda *a, **k: oracle_features(*a, **k))
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


# An independent oracle: SPEC §3 computed in plain Python, one pass over all rows given --------------

def _d(x: float) -> Decimal:
    return Decimal(repr(x))


def _ratio(num: Decimal, den: Decimal) -> float:
    # Correctly rounded num/den (both exact decimals), as Python's int true division gives it.
    scale = 10 ** 8
    return int(num * scale) / int(den * scale)


def oracle_features(book_rows: list[dict], trades: list[tuple], *, interval_us: int, ofi_window: int,
                    bucket_us: int, market_only: bool, levels: int = 10) -> dict[int, dict]:
    """ts -> {feature: value} for every book row. book_rows as for book_table (any order, all hours),
    trades as for trades_table."""
    rows = sorted(book_rows, key=lambda r: r["ts"])
    by_ts = {r["ts"]: r for r in rows}
    market = sorted((t for t in trades if not market_only or t[5] == "MARKET"),
                    key=lambda t: (t[0], t[1]))
    market_ts = [t[0] for t in market]
    out: dict[int, dict] = {}
    ofi_of: dict[int, Decimal | None] = {}
    day_sum: dict[int, Decimal] = {}
    for r in rows:
        ts = r["ts"]
        bids, asks = r["bids"], r["asks"]
        b1 = bids[0] if bids else (None, None)
        a1 = asks[0] if asks else (None, None)
        f: dict = {}
        has_top = b1[0] is not None and a1[0] is not None
        f["midprice"] = (b1[0] + a1[0]) / 2 if has_top else None
        f["spread"] = a1[0] - b1[0] if has_top else None
        f["spread_bps"] = (a1[0] - b1[0]) / ((b1[0] + a1[0]) / 2) * 10000 if has_top else None
        f["microprice"] = ((b1[0] * a1[1] + a1[0] * b1[1]) / (b1[1] + a1[1])) if has_top else None

        def side_sum(levels_: list, n: int) -> float:
            total = 0.0
            for i in range(n):
                total = total + (levels_[i][1] if i < len(levels_) else 0)
            return total

        for n, suffix in ((1, ""), (5, "_5"), (10, "_10")):
            b, a = side_sum(bids, n), side_sum(asks, n)
            f["imbalance" + suffix] = (b - a) / (b + a) if b + a != 0 else None
            f[f"liquidity_{n}"] = b + a
        prev = by_ts.get(ts - interval_us)
        if prev is None or not has_top or not prev["bids"] or not prev["asks"]:
            e = None
        else:
            pb, pa_ = prev["bids"][0], prev["asks"][0]
            e = Decimal(0)
            if b1[0] >= pb[0]:
                e += _d(b1[1])
            if b1[0] <= pb[0]:
                e -= _d(pb[1])
            if a1[0] <= pa_[0]:
                e -= _d(a1[1])
            if a1[0] >= pa_[0]:
                e += _d(pa_[1])
        ofi_of[ts] = e
        f["ofi"] = None if e is None else float(e)
        window = [ofi_of[t] for t in (ts - k * interval_us for k in range(ofi_window))
                  if ofi_of.get(t) is not None]
        f["ofi_10"] = float(sum(window, Decimal(0))) if window else None
        day = ts // 86_400_000_000
        if e is not None:
            day_sum[day] = day_sum.get(day, Decimal(0)) + e
        f["ofi_cumulative"] = float(day_sum[day]) if day in day_sum else None
        lo = bisect.bisect_right(market_ts, ts - bucket_us)
        hi = bisect.bisect_right(market_ts, ts)
        in_bucket = market[lo:hi]
        buy = sum((_d(t[3]) for t in in_bucket if not t[4]), Decimal(0))
        sell = sum((_d(t[3]) for t in in_bucket if t[4]), Decimal(0))
        f["taker_buy_volume"] = float(buy)
        f["taker_sell_volume"] = float(sell)
        f["signed_volume"] = float(buy - sell)
        f["volume_imbalance"] = 0.0 if buy + sell == 0 else _ratio(buy - sell, buy + sell)
        f["trade_count"] = len(in_bucket)
        f["last_trade_px"] = market[hi - 1][2] if hi else None
        f["last_trade_qty"] = market[hi - 1][3] if hi else None
        out[ts] = f
    return out
