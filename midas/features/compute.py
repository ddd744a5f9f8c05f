"""The feature SQL and what it needs besides the hour's rows: the DuckDB connection with the macros of
sql/features/, the ofi_cumulative carry from earlier hours of the day, and the last trade before the
hour. midas.features.hours runs it over hours."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from midas.config import Settings
from midas.errors import DataError
from midas.features.reading import (TRADE_COLUMNS, TRADE_SCHEMA, book_input_table, partition_hours,
                                    read_book_rows, read_partition, trade_table)
from midas.layout import format_hour, hour_of_us, hour_start_us, hours_between, partition_file
from midas.sqlfiles import sql_text
from midas.venues import FUTURES


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
    # where the day's ofi sum before the hour came from: none (first hour of the day), features (the
    # previous hour's partition), book (summed from the day's book partitions), span (computed in the
    # same pass as the previous hour)
    ofi_carry_source: str = "none"


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


def drop_thread_connection() -> None:
    con = getattr(_THREAD, "connection", None)
    _THREAD.connection = None
    if con is not None:
        con.close()


def unregister(con: duckdb.DuckDBPyConnection, *names: str) -> None:
    """Drop the computation's relations (the macros are bound; every use registers its own)."""
    for name in names:
        con.unregister(name)


def require_ts_order(book_rows: pa.Table, what: str) -> None:
    """The feature SQL reads book rows in input order (streaming lag): they must be in ts order."""
    ts = book_rows.column("ts").to_numpy()
    if len(ts) > 1 and not bool(np.all(ts[1:] > ts[:-1])):
        bad = int(np.argmax(ts[1:] <= ts[:-1])) + 1
        raise DataError(f"{what}: grid times not strictly increasing at row {bad} (ts {ts[bad]}); "
                        "rebuild the hours involved")


def check_book_ts(ts: np.ndarray, path: Path, params: FeatureParams) -> None:
    """The grid times of the hour's clean/book partition: inside the hour, strictly increasing,
    on the SNAPSHOT_INTERVAL_MS grid."""
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


def run_feature_sql(con: duckdb.DuckDBPyConnection, params: FeatureParams,
                    ofi_carry_units: int | None, seed_trade: tuple | None) -> pa.Table:
    """Run the features macro (sql/features/features.sql) over the relations `book_input` and
    `trade_input` defined on `con`: `ts` plus FEATURE_COLUMNS for the book rows from
    params.hour_start on.

    book_input: book_input_table rows from params.hour_start - ofi_window_us on, in ts order;
    trade_input: TRADE_SCHEMA rows with ts in (hour_start - bucket_us, end of the book rows).
    seed_trade: (ts, price, qty) of the last trade at or before hour_start - bucket_us, or None.
    """
    seed_ts, seed_px, seed_qty = seed_trade if seed_trade else (None, None, None)
    return con.sql(sql_text("features", "features_of_hour"), params={
        "hour_start": params.hour_start, "interval_us": params.interval_us,
        "ofi_window_us": params.ofi_window_us, "bucket_us": params.bucket_us,
        "market_only": params.market_only,
        "ofi_carry_units": ofi_carry_units, "seed_ts": seed_ts, "seed_px": seed_px,
        "seed_qty": seed_qty,
    }).to_arrow_table(ARROW_BATCH_ROWS)


def compute_feature_columns(con: duckdb.DuckDBPyConnection, book_rows: pa.Table, trades: pa.Table,
                            params: FeatureParams, ofi_carry_units: int | None,
                            seed_trade: tuple | None) -> pa.Table:
    """run_feature_sql over Arrow tables: book_rows (book_input_table rows from
    params.hour_start - ofi_window_us on) and trades (TRADE_SCHEMA rows)."""
    require_ts_order(book_rows, "book rows given to the feature SQL")
    con.register("book_input", book_rows)
    con.register("trade_input", trades)
    try:
        return run_feature_sql(con, params, ofi_carry_units, seed_trade)
    finally:
        unregister(con, "book_input", "trade_input")


# ofi_cumulative carry ----------------------------------------------------------------------------

def book_sources(data_dir: Path, venue: str, symbol: str, hour: datetime) -> dict[str, list | None]:
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
    if recorded != book_sources(data_dir, venue, symbol, prev):
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
    require_ts_order(rows, f"book rows of {symbol} before {format_hour(hour)}")
    con.register("book_input", rows)
    try:
        units, _count = con.execute(sql_text("features", "ofi_before_hour"), {
            "interval_us": params.interval_us, "day_start": params.day_start,
            "hour_start": params.hour_start}).fetchall()[0]
    finally:
        unregister(con, "book_input")
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
        unregister(con, "trade_input")
    if not found:
        return None
    ts, _trade_id, price, qty = found[0]
    return ts, price, qty


def hour_ofi_units(features: pa.Table) -> int | None:
    ofi = features.column("ofi")
    if ofi.null_count == len(ofi):
        return None
    values = ofi.drop_null().to_numpy()
    return int(np.rint(values * UNITS_PER_ONE).astype(np.int64).sum(dtype=np.int64))
