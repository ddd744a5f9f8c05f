"""Reading the clean partitions the features need (`clean/book`, `clean/trades`) as Arrow tables."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from midas.errors import DataError
from midas.layout import check_symbol, check_venue, dataset_dir, parse_hour

FEATURE_LEVELS = 10                  # imbalance_10 and liquidity_10 read levels 01..10
TRADE_COLUMNS = ("ts", "trade_id", "price", "qty", "is_buyer_maker", "trade_type")
TRADE_SCHEMA = pa.schema([("ts", pa.int64()), ("trade_id", pa.int64()), ("price", pa.float64()),
                          ("qty", pa.float64()), ("is_buyer_maker", pa.bool_()),
                          ("trade_type", pa.string())])


def _existing(paths: list[Path]) -> list[Path]:
    return [p for p in paths if p.is_file()]


_FILTER_OPS = {">=": pc.greater_equal, ">": pc.greater, "<=": pc.less_equal, "<": pc.less}
_STAT_EXCLUDES = {">=": lambda lo, hi, v: hi < v, ">": lambda lo, hi, v: hi <= v,
                  "<=": lambda lo, hi, v: lo > v, "<": lambda lo, hi, v: lo >= v}


def _row_group_may_match(group: pq.RowGroupMetaData, filters) -> bool:
    """False only when a column's min/max statistics prove no row of the group passes."""
    for i in range(group.num_columns):
        chunk = group.column(i)
        stats = chunk.statistics
        if stats is None or not stats.has_min_max:
            continue
        for column, op, value in filters:
            if chunk.path_in_schema == column and _STAT_EXCLUDES[op](stats.min, stats.max, value):
                return False
    return True


def read_partition(path: Path, columns: list[str] | None = None, filters=None) -> pa.Table:
    """The rows of `path` (in file order) matching `filters` [(column, op, value), ...] (all of
    them), as an Arrow table with the file's own schema (types, nullability, metadata).

    Read by pyarrow: the row groups whose statistics allow a match, then the filters applied in
    memory (a NULL never matches). On partitions shaped like the real recordings' this costs
    about half the CPU of DuckDB's reader for an hour of book rows (11 vs 29 ms for 36,000 rows)
    and less than pyarrow's dataset filters (7 vs 11 ms for the last second of an hour)."""
    try:
        parquet = pq.ParquetFile(path)
        groups = [i for i in range(parquet.num_row_groups)
                  if not filters or _row_group_may_match(parquet.metadata.row_group(i), filters)]
        wanted = columns
        if columns is not None and filters:
            wanted = [*columns, *{c for c, _op, _v in filters if c not in columns}]
        table = parquet.read_row_groups(groups, columns=wanted)
        if filters:
            mask = None
            for column, op, value in filters:
                test = _FILTER_OPS[op](table.column(column), value)
                mask = test if mask is None else pc.and_(mask, test)
            table = table.filter(mask)
        return table if wanted is columns else table.select(columns)
    except (OSError, pa.ArrowException) as e:
        raise DataError(f"{path}: cannot read this Parquet partition ({e})") from None


def book_level_columns(levels: int = FEATURE_LEVELS) -> list[str]:
    cols = ["ts", "bid_px_01", "ask_px_01"]
    cols += [f"bid_sz_{i:02d}" for i in range(1, levels + 1)]
    cols += [f"ask_sz_{i:02d}" for i in range(1, levels + 1)]
    return cols


def book_input_table(book: pa.Table) -> pa.Table:
    """The columns the feature SQL reads (book_level_columns), levels missing from `book` as NULL."""
    arrays, names = [], []
    for name in book_level_columns():
        if name in book.column_names:
            col = book.column(name)
            arrays.append(col.cast(pa.int64() if name == "ts" else pa.float64()))
        elif name == "ts":
            raise DataError("book table has no ts column")
        else:
            arrays.append(pa.nulls(book.num_rows, pa.float64()))
        names.append(name)
    return pa.table(arrays, names=names)


def read_book_rows(paths: list[Path], min_ts: int, max_ts: int) -> pa.Table:
    """Feature input columns of the book rows of `paths` with min_ts <= ts < max_ts."""
    tables = []
    for path in _existing(paths):
        names = pq.read_schema(path).names
        wanted = [c for c in book_level_columns() if c in names]
        table = read_partition(path, wanted, [("ts", ">=", min_ts), ("ts", "<", max_ts)])
        tables.append(book_input_table(table))
    if not tables:
        return book_input_table(pa.table({"ts": pa.array([], pa.int64())}))
    return pa.concat_tables(tables)


def trade_table(table: pa.Table) -> pa.Table:
    arrays = []
    for f in TRADE_SCHEMA:
        if f.name in table.column_names:
            arrays.append(table.column(f.name).cast(f.type))
        else:
            arrays.append(pa.nulls(table.num_rows, f.type))
    return pa.table(arrays, schema=TRADE_SCHEMA)


def read_trades(paths: list[Path], min_ts_exclusive: int, max_ts_exclusive: int) -> pa.Table:
    tables = []
    for path in _existing(paths):
        names = pq.read_schema(path).names
        table = read_partition(path, [c for c in TRADE_COLUMNS if c in names],
                              [("ts", ">", min_ts_exclusive), ("ts", "<", max_ts_exclusive)])
        tables.append(trade_table(table))
    if not tables:
        return TRADE_SCHEMA.empty_table()
    return pa.concat_tables(tables)


def partition_hours(data_dir: Path, dataset: str, venue: str, symbol: str) -> list[datetime]:
    """Hours that have a partition file of `dataset` for venue/symbol, newest first."""
    root = dataset_dir(data_dir, dataset) / f"venue={check_venue(venue)}" / f"symbol={check_symbol(symbol)}"
    hours = []
    for path in root.glob("date=*/hour=*/part-0.parquet"):
        day, hh = path.parent.parent.name.removeprefix("date="), path.parent.name.removeprefix("hour=")
        try:
            hours.append(parse_hour(f"{day}T{hh}"))
        except ValueError:
            continue
    return sorted(hours, reverse=True)
