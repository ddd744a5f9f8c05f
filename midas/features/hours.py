"""Features partitions of symbol-hours: consecutive hours of a UTC day in one pass of the feature SQL.

A pass (a span) covers consecutive hours of one day (at most MAX_SPAN_ROWS book rows): DuckDB
reads the span's clean/book partitions itself (only the columns the features need, plus the rows
of the previous hour that ofi and ofi_10 look back at) and its trades, the feature SQL runs once,
and the result is cut into hours. A query has a fixed cost of ~25 ms and DuckDB decodes Parquet
in a fraction of the time pyarrow needs to build Arrow tables, so one pass over a day costs much
less than 24 hourly ones (bench/RESULTS.md). The values do not depend on how hours are grouped:
the SQL sums exact 1e-8 units and each span starts from the same carry and seed an hour alone
would (tests/features/test_features_spans.py).

Each hour's partition is written on its own thread while the next span is computed: the hour's
book columns copied from its clean/book partition, then its feature columns
(midas.features.splice), or the whole table encoded again when the book file cannot be copied.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from midas.config import Settings
from midas.errors import DataError
from midas.features.compute import (FEATURE_COLUMNS, META_BOOK_SOURCES, META_INTERVAL, META_OFI_END,
                                    META_OFI_WINDOW, META_TIME_BUCKET_US, FeatureParams,
                                    FeaturesResult, book_sources, check_book_ts,
                                    drop_thread_connection, hour_ofi_units, last_trade_before,
                                    ofi_carry, require_ts_order, run_feature_sql,
                                    thread_connection, unregister)
from midas.features.reading import (TRADE_SCHEMA, book_level_columns, read_book_rows,
                                    read_partition, read_trades)
from midas.features.splice import SpliceUnsupported, write_spliced_partition
from midas.features.writing import write_partition
from midas.layout import (check_symbol, check_venue, format_hour, hour_of_us, hours_between,
                          parse_hour, partition_file)
from midas.logs import log_kv

logger = logging.getLogger("midas.features")

# Book rows computed in one pass (~8 hours at the default 100 ms grid). Larger passes are no
# faster (the per-query costs are paid off by then) but hold more in memory: 96 hours with two
# days at a time, 4.4 s either way, peak RSS 0.70 GB at 300,000 vs 1.28 GB at 2,000,000 rows.
MAX_SPAN_ROWS = 300_000
# DuckDB's read_parquet expands these as a glob: a data directory whose path holds one is read
# through pyarrow instead (same values, slower).
GLOB_CHARS = frozenset("*?[")
# Threads writing hours' partitions while the next span is computed.
HOUR_WRITE_THREADS = 2
# Days computed at the same time when several are asked (each on its own thread and DuckDB
# connection): much of the feature SQL is DuckDB's single-threaded streaming windows, so one
# query leaves a core idle. Days are independent (a day's ofi_cumulative starts from zero).
DAY_THREADS = min(2, os.cpu_count() or 1)
_POOLS: dict[str, ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def _pool(name: str, threads: int) -> ThreadPoolExecutor:
    with _POOLS_LOCK:
        if name not in _POOLS:
            _POOLS[name] = ThreadPoolExecutor(threads, thread_name_prefix=f"features-{name}")
        return _POOLS[name]


def _hour_pool() -> ThreadPoolExecutor:
    return _pool("hour", HOUR_WRITE_THREADS)


@dataclass
class HourInput:
    """One hour to compute: its clean/book partition (checked to exist) and its output."""

    hour: datetime
    params: FeatureParams
    book_path: Path
    out_path: Path
    rows: int
    book_stat: os.stat_result        # taken before anything of the book partition was read
    row_groups: list[int]            # the book partition's row group sizes


def _hour_input(settings: Settings, data_dir: Path, venue: str, symbol: str,
                hour: datetime) -> HourInput:
    book_path = partition_file(data_dir, "book", venue, symbol, hour)
    if not book_path.is_file():
        raise DataError(f"no clean/book partition for {venue} {symbol} hour {format_hour(hour)} "
                        f"({book_path}): run the book rebuild for this hour first")
    try:
        book_stat = book_path.stat()
        meta = pq.read_metadata(book_path)
    except (OSError, pa.ArrowException) as e:
        raise DataError(f"{book_path}: cannot read this Parquet partition ({e})") from None
    if "ts" not in meta.schema.names:
        raise DataError(f"{book_path}: clean/book partition has no ts column")
    return HourInput(hour=hour, params=FeatureParams.from_settings(settings, venue, hour),
                     book_path=book_path,
                     out_path=partition_file(data_dir, "features", venue, symbol, hour),
                     rows=meta.num_rows, book_stat=book_stat,
                     row_groups=[meta.row_group(i).num_rows for i in range(meta.num_row_groups)])


def _spans(inputs: list[HourInput]) -> list[list[HourInput]]:
    """Runs of consecutive hours of one UTC day, each at most MAX_SPAN_ROWS rows (but one hour)."""
    spans: list[list[HourInput]] = []
    current: list[HourInput] = []
    rows = 0
    for item in inputs:
        if current and (item.hour != current[-1].hour + timedelta(hours=1)
                        or item.hour.date() != current[-1].hour.date()
                        or rows + item.rows > MAX_SPAN_ROWS):
            spans.append(current)
            current, rows = [], 0
        current.append(item)
        rows += item.rows
    if current:
        spans.append(current)
    return spans


def _read_ts(item: HourInput) -> np.ndarray:
    try:
        ts = pq.read_table(item.book_path, columns=["ts"]).column("ts")
    except (OSError, pa.ArrowException) as e:
        raise DataError(f"{item.book_path}: cannot read this Parquet partition ({e})") from None
    ts = ts.cast(pa.int64()).to_numpy()
    check_book_ts(ts, item.book_path, item.params)
    return ts


# Inputs of the feature SQL -----------------------------------------------------------------------

def _parquet_columns(paths: list[Path]) -> set[str]:
    names: set[str] = set()
    for path in paths:
        try:
            names.update(pq.read_schema(path).names)
        except (OSError, pa.ArrowException) as e:
            raise DataError(f"{path}: cannot read this Parquet partition ({e})") from None
    return names


def _scan(con: duckdb.DuckDBPyConnection, paths: list[Path], columns: list[tuple[str, str]],
          ts_after: int, ts_before: int, inclusive_start: bool) -> duckdb.DuckDBPyRelation:
    """The rows of `paths` (in file order, then row order) with ts in the range, as `columns`
    [(name, DuckDB type)]; a column no file has is NULL. Built with the relational API: no SQL
    text holds a path."""
    present = _parquet_columns(paths)
    ts = duckdb.ColumnExpression("ts")
    lower = ts >= duckdb.ConstantExpression(ts_after) if inclusive_start else \
        ts > duckdb.ConstantExpression(ts_after)
    relation = con.read_parquet([str(p) for p in paths], hive_partitioning=False,
                                union_by_name=True)
    relation = relation.filter(lower & (ts < duckdb.ConstantExpression(ts_before)))
    select = []
    for name, sqltype in columns:
        value = duckdb.ColumnExpression(name) if name in present else duckdb.ConstantExpression(None)
        select.append(value.cast(duckdb.sqltype(sqltype)).alias(name))
    return relation.select(*select)


def _define_inputs(con: duckdb.DuckDBPyConnection, book_paths: list[Path], book_from: int,
                   book_to: int, trade_paths: list[Path], trades_after: int, trades_before: int) -> None:
    """Define the relations book_input and trade_input the feature SQL reads."""
    # an object registered under either name would hide a view of that name
    unregister(con, "book_input", "trade_input")
    if any(GLOB_CHARS & set(str(p)) for p in [*book_paths, *trade_paths]):
        book_rows = read_book_rows(book_paths, book_from, book_to)
        require_ts_order(book_rows, "book rows given to the feature SQL")
        con.register("book_input", book_rows)
        con.register("trade_input", read_trades(trade_paths, trades_after, trades_before))
        return
    book_columns = [(name, "BIGINT" if name == "ts" else "DOUBLE") for name in book_level_columns()]
    _scan(con, book_paths, book_columns, book_from, book_to, True).create_view("book_input")
    if trade_paths:
        trade_columns = [(f.name, _DUCK_TYPES[f.type]) for f in TRADE_SCHEMA]
        _scan(con, trade_paths, trade_columns, trades_after, trades_before, False).create_view(
            "trade_input")
    else:
        con.register("trade_input", TRADE_SCHEMA.empty_table())


_DUCK_TYPES = {pa.int64(): "BIGINT", pa.float64(): "DOUBLE", pa.bool_(): "BOOLEAN",
               pa.string(): "VARCHAR"}


# A span ------------------------------------------------------------------------------------------

@dataclass
class _SpanTimes:
    started: float
    read_done: float
    compute_done: float
    rows: int


def _compute_span(con: duckdb.DuckDBPyConnection, settings: Settings, data_dir: Path, venue: str,
                  symbol: str, span: list[HourInput],
                  carry: tuple[int | None, str] | None) -> tuple[list[Future], int | None]:
    """Compute the span's features and queue its hours' writes. Returns the writes (futures of
    FeaturesResult) and the day's ofi sum in 1e-8 units at the end of the span's last hour."""
    started = time.perf_counter()
    first, last = span[0], span[-1]
    params = first.params
    ts_parts = [_read_ts(item) for item in span]

    lookback_start = params.hour_start - params.ofi_window_us
    lookback_paths = [p for p in (partition_file(data_dir, "book", venue, symbol, h)
                                  for h in hours_between(hour_of_us(lookback_start),
                                                         first.hour - timedelta(hours=1)))
                      if p.is_file()]
    if lookback_paths:
        # the rows ofi looks back at must be in ts order too (the SQL's lag reads input order)
        require_ts_order(pa.concat_tables([
            read_partition(path, ["ts"], [("ts", ">=", lookback_start), ("ts", "<", params.hour_start)])
            for path in lookback_paths]), f"book rows of {symbol} before {format_hour(first.hour)}")
    trade_from = params.hour_start - params.bucket_us
    trade_paths = [p for p in (partition_file(data_dir, "trades", venue, symbol, h)
                               for h in hours_between(hour_of_us(trade_from + 1), last.hour))
                   if p.is_file()]
    seed = last_trade_before(con, data_dir, venue, symbol, trade_from, params.market_only)
    if carry is None:
        carry_units, carry_source = ofi_carry(con, data_dir, venue, symbol, first.hour, params)
    else:
        carry_units, carry_source = carry
    _define_inputs(con, [*lookback_paths, *(item.book_path for item in span)], lookback_start,
                   last.params.hour_end, trade_paths, trade_from, last.params.hour_end)
    read_done = time.perf_counter()
    try:
        computed = run_feature_sql(con, params, carry_units, seed)
    except duckdb.Error as e:
        # the SQL's own checks (rows out of order, ...) and unreadable partitions
        raise DataError(f"features of {venue} {symbol} {format_hour(first.hour)}.."
                        f"{format_hour(last.hour)}: {e}") from None
    finally:
        unregister(con, "book_input", "trade_input")
    expected_ts = np.concatenate(ts_parts) if len(ts_parts) > 1 else ts_parts[0]
    got_ts = computed.column("ts").to_numpy()
    if len(got_ts) != len(expected_ts) or not np.array_equal(got_ts, expected_ts):
        raise DataError(f"{first.book_path}: feature rows do not line up with the book rows "
                        f"({len(got_ts)} vs {len(expected_ts)} rows over "
                        f"{format_hour(first.hour)}..{format_hour(last.hour)})")
    times = _SpanTimes(started, read_done, time.perf_counter(), max(1, len(expected_ts)))

    writes = []
    units = carry_units
    offset = 0
    # the book partitions each hour's ofi sum depends on (its day's up to it): stat them once
    day_sources = book_sources(data_dir, venue, symbol, last.hour)
    for n, item in enumerate(span):
        rows = len(ts_parts[n])
        part = computed.slice(offset, rows).select(list(FEATURE_COLUMNS))
        offset += rows
        hour_units = hour_ofi_units(part)
        units = None if units is None and hour_units is None else (units or 0) + (hour_units or 0)
        metadata = {
            META_OFI_END: b"null" if units is None else str(units).encode(),
            META_BOOK_SOURCES: json.dumps({h: v for h, v in day_sources.items()
                                           if h <= format_hour(item.hour)}, sort_keys=True).encode(),
            META_INTERVAL: str(item.params.interval_us).encode(),
            META_OFI_WINDOW: str(item.params.ofi_window).encode(),
            META_TIME_BUCKET_US: str(item.params.bucket_us).encode(),
        }
        source = carry_source if n == 0 else "span"
        writes.append(_hour_pool().submit(_write_hour, settings, venue, symbol, item, part,
                                          metadata, times, source))
    return writes, units


def _changed(item: HourInput) -> bool:
    try:
        now = item.book_path.stat()
    except FileNotFoundError:
        return True
    then = item.book_stat
    return (now.st_ino, now.st_size, now.st_mtime_ns) != (then.st_ino, then.st_size, then.st_mtime_ns)


def _row_groups_as_configured(sizes: list[int], row_group_size: int) -> bool:
    """True when `sizes` are the row groups PARQUET_ROW_GROUP_SIZE gives (all full but the last)."""
    return all(n == row_group_size for n in sizes[:-1]) and (not sizes or 0 < sizes[-1] <= row_group_size)


def write_features_partition(item: HourInput, features: pa.Table, metadata: dict[bytes, bytes],
                             row_group_size: int) -> int:
    """The hour's partition: the book partition's columns, then `features` (its rows, in order).
    The book columns' bytes are copied from the book partition (midas.features.splice) when its
    row groups are PARQUET_ROW_GROUP_SIZE ones and it holds nothing the copy cannot carry; else
    the whole table is encoded again. Returns the bytes written.

    Raises DataError when the book partition changed after the features were computed from it
    (the splice refuses such a file by its stat, the re-encode checks it after reading)."""
    changed = DataError(f"{item.book_path}: the clean/book partition changed while its features "
                        "were computed (a rebuild of the hour running at the same time?): run "
                        "the features of this hour again")
    if _row_groups_as_configured(item.row_groups, row_group_size):
        try:
            return write_spliced_partition(item.book_path, features, item.out_path, metadata,
                                           book_stat=item.book_stat)
        except SpliceUnsupported as e:
            log_kv(logger, "book columns encoded again", file=item.book_path, reason=str(e))
    book = read_partition(item.book_path)
    if _changed(item) or book.num_rows != features.num_rows:
        raise changed
    table = book
    for name in features.column_names:
        table = table.append_column(name, features.column(name))
    return write_partition(table, item.out_path, row_group_size, metadata)


def _write_hour(settings: Settings, venue: str, symbol: str, item: HourInput, features: pa.Table,
                metadata: dict[bytes, bytes], times: _SpanTimes, carry_source: str) -> FeaturesResult:
    started = time.perf_counter()
    write_features_partition(item, features, metadata, settings.parquet_row_group_size)
    write_s = time.perf_counter() - started
    share = features.num_rows / times.rows
    read_s = (times.read_done - times.started) * share
    compute_s = (times.compute_done - times.read_done) * share
    result = FeaturesResult(venue=venue, symbol=symbol, hour=item.hour, rows=features.num_rows,
                            path=item.out_path, seconds=read_s + compute_s + write_s,
                            read_seconds=read_s, compute_seconds=compute_s, write_seconds=write_s,
                            ofi_carry_source=carry_source)
    log_kv(logger, "features written", venue=venue, symbol=symbol, hour=format_hour(item.hour),
           rows=result.rows, file=item.out_path, seconds=f"{result.seconds:.3f}",
           ofi_carry=carry_source)
    return result


def _compute_day(settings: Settings, data_dir: Path, venue: str, symbol: str,
                 spans: list[list[HourInput]]) -> list[Future]:
    """Compute the spans of one day on this thread's connection, one after the other (a span
    continuing the previous one takes its ofi sum). Returns the hours' writes, oldest first; at
    most one span's writes are left running while the next is computed."""
    con = thread_connection()
    writes: list[Future] = []
    previous: tuple[datetime, int | None] | None = None
    try:
        for span in spans:
            carry = None
            if previous is not None and previous[0] + timedelta(hours=1) == span[0].hour:
                carry = (previous[1], "span")
            span_writes, units = _compute_span(con, settings, data_dir, venue, symbol, span, carry)
            previous = (span[-1].hour, units)
            for write in writes:        # the previous span's writes ran while this one computed
                write.exception()
            writes.extend(span_writes)
    except BaseException:
        # a failed query may leave the connection in any state: the next use opens a fresh one
        drop_thread_connection()
        for write in writes:            # let queued writes finish: each replaces its file whole
            write.exception()
        raise
    return writes


# The API -----------------------------------------------------------------------------------------

def compute_features_hours(settings: Settings, venue: str, symbol: str, hours: Iterable,
                           on_written: Callable[[FeaturesResult], None] | None = None,
                           ) -> list[FeaturesResult]:
    """Compute and write the `features` partitions of `hours` (any order; each once), oldest first,
    consecutive hours of a day in one pass. `on_written` is called (in this thread) with each
    hour's result as its partition is in place. Returns the results, oldest first.

    Raises DataError when an hour's clean/book partition is missing or inconsistent (before
    anything is written when it is missing)."""
    venue, symbol = check_venue(venue), check_symbol(symbol)
    data_dir = Path(settings.data_dir)
    inputs = [_hour_input(settings, data_dir, venue, symbol, h)
              for h in sorted({parse_hour(h) for h in hours})]
    days: dict[object, list[list[HourInput]]] = {}
    for span in _spans(inputs):
        days.setdefault(span[0].hour.date(), []).append(span)
    results: list[FeaturesResult] = []

    def collect(writes: list[Future]) -> None:
        for write in writes:
            result = write.result()
            results.append(result)
            if on_written is not None:
                on_written(result)

    if len(days) <= 1:
        # one day (the hourly job, one hour): on this thread and its connection
        for spans in days.values():
            collect(_compute_day(settings, data_dir, venue, symbol, spans))
        return results
    started: list[Future] = []          # days submitted and not yet collected, oldest first
    try:
        for spans in days.values():
            started.append(_pool("day", DAY_THREADS).submit(
                _compute_day, settings, data_dir, venue, symbol, spans))
            # at most DAY_THREADS days computing, and one more day's writes, in memory
            while len(started) > DAY_THREADS:
                collect(started.pop(0).result())
        while started:
            collect(started.pop(0).result())
    except BaseException:
        for day in started:             # let the other days finish: each file is replaced whole
            if day.exception() is None:
                for write in day.result():
                    write.exception()
        raise
    return results


def compute_features_hour(settings: Settings, venue: str, symbol: str, hour) -> FeaturesResult:
    """Compute and write the `features` partition of one symbol-hour from its clean partitions.

    Raises DataError when the hour's clean/book partition is missing or inconsistent."""
    return compute_features_hours(settings, venue, symbol, [hour])[0]
