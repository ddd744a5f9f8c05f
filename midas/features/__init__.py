"""Features of one symbol-hour (SPEC §3): `clean/book` + `clean/trades` -> `features` partition.

The feature math is the SQL of `sql/features/` run by an in-memory DuckDB over Arrow tables; this
module only gathers the inputs (midas.features.reading), runs the SQL with named parameters and
writes the partition (midas.features.writing).

Windowed columns continue across hour boundaries exactly as a one-pass computation of the day:
  * `ofi`, `ofi_10` read the last `OFI_WINDOW` grid intervals of the previous hour(s);
  * `ofi_cumulative` starts from the day's ofi sum before the hour, carried from the previous hour's
    features partition when that partition was computed from the very book partitions that exist
    now (their sizes and modification times are stored in its metadata), else summed from the
    day's book partitions;
  * taker volumes read the trades of the last `TIME_BUCKET_MS` before the hour, and
    `last_trade_*` searches earlier trades partitions back to the last trade.
Sizes are summed as exact integers of 1e-8 units, so re-running an hour, or the whole day in one
pass, gives bit-identical values.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from midas.config import Settings
from midas.errors import DataError
from midas.features.reading import (FEATURE_LEVELS, TRADE_COLUMNS, TRADE_SCHEMA, book_input_table,
                                    book_level_columns, partition_hours, read_book_rows,
                                    read_partition, read_trades, trade_table)
from midas.features.writing import (WRITE_OPTIONS, WRITE_THREADS, new_partition_writer,
                                    replace_file, write_partition)
from midas.layout import (check_symbol, check_venue, format_hour, hour_of_us,
                          hour_start_us, hours_between, parse_hour, partition_file)
from midas.logs import log_kv
from midas.sqlfiles import sql_text
from midas.venues import FUTURES

__all__ = [  # the package's API; reading and writing live in their own modules
    "FEATURE_COLUMNS", "FEATURE_LEVELS", "TRADE_COLUMNS", "TRADE_SCHEMA", "WRITE_OPTIONS",
    "WRITE_THREADS", "FeatureParams", "FeaturesResult", "book_input_table", "book_level_columns",
    "compute_feature_columns", "compute_features_hour", "feature_connection", "last_trade_before",
    "ofi_carry", "partition_hours", "read_partition", "thread_connection", "write_partition",
]

logger = logging.getLogger("midas.features")

US_PER_HOUR = 3_600_000_000
US_PER_DAY = 24 * US_PER_HOUR
UNITS_PER_ONE = 100_000_000          # sizes are summed as integers of 1e-8 (see sql/features/to_units.sql)
FEATURE_COLUMNS = (
    "midprice", "spread", "spread_bps", "microprice", "imbalance", "imbalance_5", "imbalance_10",
    "ofi", "ofi_10", "ofi_cumulative", "taker_buy_volume", "taker_sell_volume", "signed_volume",
    "volume_imbalance", "trade_count", "last_trade_px", "last_trade_qty",
    "liquidity_1", "liquidity_5", "liquidity_10",
)
# Macros of sql/features/, in dependency order; loaded into every feature connection.
MACRO_FILES = ("to_units", "from_units", "cks_ofi", "grid_ofi", "trade_buckets", "features")
META_OFI_END = b"midas.ofi_day_end_units"
META_BOOK_SOURCES = b"midas.book_sources"
META_INTERVAL = b"midas.snapshot_interval_us"
# The settings behind the windowed columns, so that a partition says how it was computed
# (`ofi_10` keeps its SPEC name whatever OFI_WINDOW is).
META_OFI_WINDOW = b"midas.ofi_window"
META_TIME_BUCKET_US = b"midas.time_bucket_us"
# Rows per Arrow batch fetched from DuckDB (its own row group size). Passing a batch size
# explicitly takes another export path: on 10 M feature rows 13 CPU s instead of 31 with
# `to_arrow_table()`'s default (DuckDB 2.0, bench/RESULTS.md).
ARROW_BATCH_ROWS = 122_880


@dataclass
class FeaturesResult:
    venue: str
    symbol: str
    hour: datetime
    rows: int
    path: Path
    seconds: float
    read_seconds: float = 0.0
    compute_seconds: float = 0.0
    write_seconds: float = 0.0
    ofi_carry_source: str = "none"      # none (first hour of the day), features, or book


@dataclass(frozen=True)
class FeatureParams:
    """The settings the feature SQL depends on, in microseconds."""

    hour_start: int
    interval_us: int
    ofi_window: int
    bucket_us: int
    market_only: bool

    @property
    def ofi_window_us(self) -> int:
        return self.ofi_window * self.interval_us

    @property
    def hour_end(self) -> int:
        return self.hour_start + US_PER_HOUR

    @property
    def day_start(self) -> int:
        return self.hour_start - self.hour_start % US_PER_DAY

    @classmethod
    def from_settings(cls, settings: Settings, venue: str, hour: datetime) -> "FeatureParams":
        return cls(hour_start=hour_start_us(hour), interval_us=settings.snapshot_interval_us,
                   ofi_window=settings.ofi_window, bucket_us=settings.time_bucket_ms * 1000,
                   market_only=(venue == FUTURES))


# Connection ---------------------------------------------------------------------------------------

def feature_connection() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the macros of sql/features/ loaded."""
    con = duckdb.connect(":memory:")
    # features.sql's ASOF join reads a sorted CTE whose size DuckDB estimates as 0: without this it
    # would plan a nested-loop join (quadratic) instead of the ASOF merge.
    con.execute("SET asof_loop_join_threshold = 0")
    # a library call does not draw DuckDB's progress bar on the caller's terminal
    con.execute("SET enable_progress_bar = false")
    # The table macros refer to the relations book_input and trade_input: register empty ones so the
    # macros bind; each computation registers its own tables under these names.
    con.register("book_input", book_input_table(pa.table({"ts": pa.array([], pa.int64())})))
    con.register("trade_input", TRADE_SCHEMA.empty_table())
    for name in MACRO_FILES:
        con.execute(sql_text("features", name))
    return con


_THREAD = threading.local()


def thread_connection() -> duckdb.DuckDBPyConnection:
    """This thread's feature connection, opened on first use and kept: opening one and loading the
    macros costs ~25 ms, about a tenth of an hour's features. A DuckDB connection is not shared
    between threads, hence one per thread; nothing stays registered on it between hours."""
    con = getattr(_THREAD, "connection", None)
    if con is None:
        con = _THREAD.connection = feature_connection()
    return con


def _drop_thread_connection() -> None:
    con = getattr(_THREAD, "connection", None)
    _THREAD.connection = None
    if con is not None:
        con.close()


def _unregister(con: duckdb.DuckDBPyConnection, *names: str) -> None:
    """Drop the computation's relations (the macros are bound; every use registers its own)."""
    for name in names:
        con.unregister(name)


def _require_ts_order(book_rows: pa.Table, what: str) -> None:
    """The feature SQL reads book rows in input order (streaming lag): they must be in ts order."""
    ts = book_rows.column("ts").to_numpy()
    if len(ts) > 1 and not bool(np.all(ts[1:] > ts[:-1])):
        bad = int(np.argmax(ts[1:] <= ts[:-1])) + 1
        raise DataError(f"{what}: grid times not strictly increasing at row {bad} (ts {ts[bad]}); "
                        "rebuild the hours involved")


def _check_book_hour(book: pa.Table, path: Path, params: FeatureParams) -> None:
    if "ts" not in book.column_names:
        raise DataError(f"{path}: clean/book partition has no ts column")
    ts = book.column("ts").cast(pa.int64()).to_numpy()
    if len(ts) == 0:
        return
    if ts[0] < params.hour_start or ts[-1] >= params.hour_end:
        raise DataError(f"{path}: grid times outside the partition's hour "
                        f"(first ts {ts[0]}, last ts {ts[-1]}, hour starts at {params.hour_start})")
    if len(ts) > 1 and not bool(np.all(ts[1:] > ts[:-1])):
        bad = int(np.argmax(ts[1:] <= ts[:-1])) + 1
        raise DataError(f"{path}: grid times not strictly increasing at row {bad} (ts {ts[bad]})")
    off_grid = ts % params.interval_us != 0
    if bool(off_grid.any()):
        bad = int(np.argmax(off_grid))
        raise DataError(f"{path}: ts {ts[bad]} at row {bad} is not on the "
                        f"{params.interval_us // 1000} ms grid (SNAPSHOT_INTERVAL_MS changed?)")


def compute_feature_columns(con: duckdb.DuckDBPyConnection, book_rows: pa.Table, trades: pa.Table,
                            params: FeatureParams, ofi_carry_units: int | None,
                            seed_trade: tuple | None) -> pa.Table:
    """Run the features macro (sql/features/features.sql): `ts` plus FEATURE_COLUMNS for the rows of book_rows in the hour.

    book_rows: book_input_table rows from params.hour_start - ofi_window_us to the hour's end;
    trades: TRADE_SCHEMA rows with ts in (hour_start - bucket_us, hour_end).
    seed_trade: (ts, price, qty) of the last trade at or before hour_start - bucket_us, or None.
    """
    _require_ts_order(book_rows, "book rows given to the feature SQL")
    con.register("book_input", book_rows)
    con.register("trade_input", trades)
    try:
        seed_ts, seed_px, seed_qty = seed_trade if seed_trade else (None, None, None)
        return con.sql(sql_text("features", "features_of_hour"), params={
            "hour_start": params.hour_start, "interval_us": params.interval_us,
            "ofi_window_us": params.ofi_window_us, "bucket_us": params.bucket_us,
            "market_only": params.market_only,
            "ofi_carry_units": ofi_carry_units, "seed_ts": seed_ts, "seed_px": seed_px,
            "seed_qty": seed_qty,
        }).to_arrow_table(ARROW_BATCH_ROWS)
    finally:
        _unregister(con, "book_input", "trade_input")


# ofi_cumulative carry ----------------------------------------------------------------------------

def _book_sources(data_dir: Path, venue: str, symbol: str, hour: datetime) -> dict[str, list | None]:
    """Size and mtime_ns of the book partitions a day's ofi up to the end of `hour` depends on:
    every hour of the day up to `hour`, and the previous day's last hour (the day's first ofi)."""
    day = hour.replace(hour=0)
    out: dict[str, list | None] = {}
    for h in hours_between(day - timedelta(hours=1), hour):
        path = partition_file(data_dir, "book", venue, symbol, h)
        try:
            st = path.stat()
            out[format_hour(h)] = [st.st_size, st.st_mtime_ns]
        except FileNotFoundError:
            out[format_hour(h)] = None
    return out


def _carry_from_features(data_dir: Path, venue: str, symbol: str, hour: datetime,
                         params: FeatureParams) -> tuple[bool, int | None]:
    """(found, units) from the previous hour's features partition when it is still valid."""
    prev = hour - timedelta(hours=1)
    path = partition_file(data_dir, "features", venue, symbol, prev)
    if not path.is_file():
        return False, None
    try:
        meta = pq.read_schema(path).metadata or {}
    except (OSError, pa.ArrowException):
        return False, None
    if META_OFI_END not in meta or META_BOOK_SOURCES not in meta:
        return False, None
    if meta.get(META_INTERVAL) != str(params.interval_us).encode():
        return False, None
    try:
        recorded = json.loads(meta[META_BOOK_SOURCES])
    except ValueError:
        return False, None
    if recorded != _book_sources(data_dir, venue, symbol, prev):
        return False, None
    value = meta[META_OFI_END].decode()
    return True, (None if value == "null" else int(value))


def _carry_from_books(con: duckdb.DuckDBPyConnection, data_dir: Path, venue: str, symbol: str,
                      hour: datetime, params: FeatureParams) -> int | None:
    """The day's ofi sum before `hour` in 1e-8 units, from the day's book partitions."""
    day = hour.replace(hour=0)
    paths = [partition_file(data_dir, "book", venue, symbol, h)
             for h in hours_between(day - timedelta(hours=1), hour - timedelta(hours=1))]
    rows = read_book_rows(paths, params.day_start - params.interval_us, params.hour_start)
    _require_ts_order(rows, f"book rows of {symbol} before {format_hour(hour)}")
    con.register("book_input", rows)
    try:
        units, _count = con.execute(sql_text("features", "ofi_before_hour"), {
            "interval_us": params.interval_us, "day_start": params.day_start,
            "hour_start": params.hour_start}).fetchall()[0]
    finally:
        _unregister(con, "book_input")
    return None if units is None else int(units)


def ofi_carry(con: duckdb.DuckDBPyConnection, data_dir: Path, venue: str, symbol: str,
              hour: datetime, params: FeatureParams) -> tuple[int | None, str]:
    """(the day's ofi sum before `hour` in 1e-8 units or None, where it came from)."""
    if params.hour_start == params.day_start:
        return None, "none"
    found, units = _carry_from_features(data_dir, venue, symbol, hour, params)
    if found:
        return units, "features"
    return _carry_from_books(con, data_dir, venue, symbol, hour, params), "book"


# Last trade before the hour ----------------------------------------------------------------------

def last_trade_before(con: duckdb.DuckDBPyConnection, data_dir: Path, venue: str, symbol: str,
                      until_us: int, market_only: bool) -> tuple[int, float, float] | None:
    """(ts, price, qty) of the last trade with ts <= until_us in the trades partitions, or None.

    The hour of until_us is searched first (nearly always it has the trade); only when it has
    none are the symbol's trades partitions listed, a directory walk that grows with the days
    recorded, and searched newest first."""
    last_hour = hour_of_us(until_us)
    found = _last_trade_in(con, partition_file(data_dir, "trades", venue, symbol, last_hour),
                           until_us, market_only)
    if found is not None:
        return found
    for h in partition_hours(data_dir, "trades", venue, symbol):
        if h < last_hour:
            found = _last_trade_in(con, partition_file(data_dir, "trades", venue, symbol, h),
                                   until_us, market_only)
            if found is not None:
                return found
    return None


def _last_trade_in(con: duckdb.DuckDBPyConnection, path: Path, until_us: int,
                   market_only: bool) -> tuple[int, float, float] | None:
    if not path.is_file():
        return None
    names = pq.read_schema(path).names
    table = trade_table(read_partition(path, [c for c in TRADE_COLUMNS if c in names],
                                       [("ts", "<=", until_us)]))
    con.register("trade_input", table)
    try:
        found = con.execute(sql_text("features", "last_trade_before"),
                            {"until": until_us, "market_only": market_only}).fetchall()
    finally:
        _unregister(con, "trade_input")
    if not found:
        return None
    ts, _trade_id, price, qty = found[0]
    return ts, price, qty


def _hour_ofi_units(features: pa.Table) -> int | None:
    ofi = features.column("ofi")
    if ofi.null_count == len(ofi):
        return None
    values = ofi.drop_null().to_numpy()
    return int(np.rint(values * UNITS_PER_ONE).astype(np.int64).sum(dtype=np.int64))


# The hour ----------------------------------------------------------------------------------------

def compute_features_hour(settings: Settings, venue: str, symbol: str, hour) -> FeaturesResult:
    """Compute and write the `features` partition of one symbol-hour from its clean partitions.

    Raises DataError when the hour's clean/book partition is missing or inconsistent.
    """
    started = time.perf_counter()
    venue, symbol, hour = check_venue(venue), check_symbol(symbol), parse_hour(hour)
    data_dir = Path(settings.data_dir)
    params = FeatureParams.from_settings(settings, venue, hour)
    book_path = partition_file(data_dir, "book", venue, symbol, hour)
    out_path = partition_file(data_dir, "features", venue, symbol, hour)
    if not book_path.is_file():
        raise DataError(f"no clean/book partition for {venue} {symbol} hour {format_hour(hour)} "
                        f"({book_path}): run the book rebuild for this hour first")
    con = thread_connection()
    try:
        book_hour = read_partition(book_path)
        _check_book_hour(book_hour, book_path, params)
        # the partition's book columns are encoded on the write threads while the rest is done
        writer = new_partition_writer(settings.parquet_row_group_size)
        writer.encode(book_hour)
        lookback_start = params.hour_start - params.ofi_window_us
        lookback_paths = [partition_file(data_dir, "book", venue, symbol, h)
                          for h in hours_between(hour_of_us(lookback_start), hour - timedelta(hours=1))]
        book_rows = pa.concat_tables([read_book_rows(lookback_paths, lookback_start,
                                                      params.hour_start),
                                      book_input_table(book_hour)])
        trade_from = params.hour_start - params.bucket_us
        trade_paths = [partition_file(data_dir, "trades", venue, symbol, h)
                       for h in hours_between(hour_of_us(trade_from + 1), hour)]
        trades = read_trades(trade_paths, trade_from, params.hour_end)
        seed = last_trade_before(con, data_dir, venue, symbol, trade_from, params.market_only)
        carry_units, carry_source = ofi_carry(con, data_dir, venue, symbol, hour, params)
        read_done = time.perf_counter()

        computed = compute_feature_columns(con, book_rows, trades, params, carry_units, seed)
        if computed.num_rows != book_hour.num_rows or not computed.column("ts").equals(
                book_hour.column("ts").cast(pa.int64())):
            raise DataError(f"{book_path}: feature rows do not line up with the book rows "
                            f"({computed.num_rows} vs {book_hour.num_rows})")
        table = book_hour
        for name in FEATURE_COLUMNS:
            table = table.append_column(name, computed.column(name))
        hour_units = _hour_ofi_units(computed)
        end_units = (None if carry_units is None and hour_units is None
                     else (carry_units or 0) + (hour_units or 0))
        compute_done = time.perf_counter()

        metadata = {
            META_OFI_END: b"null" if end_units is None else str(end_units).encode(),
            META_BOOK_SOURCES: json.dumps(_book_sources(data_dir, venue, symbol, hour),
                                          sort_keys=True).encode(),
            META_INTERVAL: str(params.interval_us).encode(),
            META_OFI_WINDOW: str(params.ofi_window).encode(),
            META_TIME_BUCKET_US: str(params.bucket_us).encode(),
        }
        writer.encode(table.select(list(FEATURE_COLUMNS)))
        replace_file(out_path, writer, table.schema.with_metadata(
            {**(table.schema.metadata or {}), **metadata}))
    except BaseException:
        # a failed query may leave the connection in any state: the next hour opens a fresh one
        _drop_thread_connection()
        raise
    done = time.perf_counter()
    result = FeaturesResult(venue=venue, symbol=symbol, hour=hour, rows=table.num_rows, path=out_path,
                            seconds=done - started, read_seconds=read_done - started,
                            compute_seconds=compute_done - read_done, write_seconds=done - compute_done,
                            ofi_carry_source=carry_source)
    log_kv(logger, "features written", venue=venue, symbol=symbol, hour=format_hour(hour),
           rows=result.rows, file=out_path, seconds=f"{result.seconds:.3f}", ofi_carry=carry_source)
    return result
