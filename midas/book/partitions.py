"""Writing clean/book, clean/trades and clean/gaps partitions (SPEC §3): ZSTD Parquet,
PARQUET_ROW_GROUP_SIZE rows per group, written to a temporary name and renamed into place, so a
partition is always either the old one or the new one, whole."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Iterable, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from midas.book.grid import GridRows, book_columns


def book_schema(depth: int) -> pa.Schema:
    fields = []
    for name in book_columns(depth):
        if name in ("ts", "update_id", "book_age_ms"):
            fields.append(pa.field(name, pa.int64(), nullable=False))
        else:
            fields.append(pa.field(name, pa.float64()))
    return pa.schema(fields)


TRADES_SCHEMA = pa.schema([
    pa.field("ts", pa.int64(), nullable=False), pa.field("trade_id", pa.int64(), nullable=False),
    pa.field("price", pa.float64(), nullable=False), pa.field("qty", pa.float64(), nullable=False),
    pa.field("is_buyer_maker", pa.bool_(), nullable=False), pa.field("trade_type", pa.string()),
])

GAPS_SCHEMA = pa.schema([
    pa.field("start_ts", pa.int64(), nullable=False), pa.field("end_ts", pa.int64(), nullable=False),
    pa.field("reason", pa.string(), nullable=False),
    pa.field("first_update_id", pa.int64()), pa.field("last_update_id", pa.int64()),
])


class PartitionWriter:
    """Rows in, one Parquet file out: `add_rows` buffers and writes full row groups; `close` renames
    the temporary file into place (an empty partition gets the schema and zero rows)."""

    def __init__(self, path: Path, schema: pa.Schema, row_group_size: int):
        self.path = Path(path)
        self.schema = schema
        self.row_group_size = row_group_size
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
        self._writer = pq.ParquetWriter(self.tmp, schema, compression="zstd")
        self._pending: list[Sequence] = []
        self.rows = 0

    def add_rows(self, rows: Iterable[Sequence]) -> None:
        self._pending.extend(rows)
        while len(self._pending) >= self.row_group_size:
            chunk = self._pending[: self.row_group_size]
            del self._pending[: self.row_group_size]
            self._write(chunk)

    def _write(self, rows: list[Sequence]) -> None:
        columns = list(zip(*rows)) if rows else [[] for _ in self.schema]
        table = pa.Table.from_arrays([pa.array(col, type=f.type) for col, f in zip(columns, self.schema)],
                                     schema=self.schema)
        self._writer.write_table(table, row_group_size=self.row_group_size)
        self.rows += len(rows)

    def write_table(self, table: pa.Table) -> None:
        """Write a whole table (after any buffered rows), PARQUET_ROW_GROUP_SIZE rows per group."""
        if self._pending:
            self._write(self._pending)
            self._pending = []
        if table.num_rows:
            self._writer.write_table(table, row_group_size=self.row_group_size)
            self.rows += table.num_rows

    def close(self) -> Path:
        if self._pending or self.rows == 0:
            self._write(self._pending)
            self._pending = []
        self._writer.close()
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        try:
            self._writer.close()
        finally:
            self.tmp.unlink(missing_ok=True)


def write_partition(path: Path, schema: pa.Schema, rows: Sequence[Sequence], row_group_size: int) -> Path:
    writer = PartitionWriter(path, schema, row_group_size)
    try:
        writer.add_rows(rows)
        return writer.close()
    except BaseException:
        writer.abort()
        raise


def write_book_partition(path: Path, schema: pa.Schema, rows: GridRows, row_group_size: int) -> Path:
    """clean/book from grid rows in units: the level columns become float64 here, once (null
    where a side has fewer levels), in PARQUET_ROW_GROUP_SIZE row groups."""
    ts, levels, uid, age = rows.float_columns()
    arrays = [pa.array(ts, type=pa.int64())]
    arrays += [pa.array(values, type=pa.float64(), mask=missing) for values, missing in levels]
    arrays += [pa.array(uid, type=pa.int64()), pa.array(age, type=pa.int64())]
    table = pa.Table.from_arrays(arrays, schema=schema)
    writer = PartitionWriter(path, schema, row_group_size)
    try:
        writer.write_table(table)
        return writer.close()
    except BaseException:
        writer.abort()
        raise
