"""The DuckDB catalog `DATA_DIR/midas.duckdb` (SPEC §4): views over the Parquet datasets and two
manifest tables. It holds nothing that is not in the files: `rebuild_catalog` recreates it.

    views   book, trades, gaps, features   read_parquet over every partition, with the hive
                                           columns venue, symbol, date (DATE), hour (INTEGER)
    tables  partitions (dataset, venue, symbol, date, hour, rows, bytes, written_at)
            raw_files  (path, venue, symbol, hour, records, bytes, first_local_ts, last_local_ts)

DuckDB lets one process write a database file, and a read-only open conflicts with a writer.
Writers (`register_hour`, `rebuild_catalog`) keep their connection open for milliseconds and retry
with backoff while another process holds the file, up to `lock_timeout` seconds, then raise
CatalogLockedError. Queries (`run_query`) open the file read-only and retry the same way, so they
run while hourly jobs register partitions.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from midas.config import Settings
from midas.errors import CatalogError, CatalogLockedError
from midas.layout import (DATASETS, check_symbol, check_venue, dataset_dir, format_hour,
                          list_raw_files, list_symbols, parse_hour, parse_raw_file_name, partition_file)
from midas.logs import log_kv
from midas.raw import scan_raw_file
from midas.sqlfiles import check_identifier, sql_text
from midas.venues import VENUE_NAMES

logger = logging.getLogger("midas.catalog")

WRITE_LOCK_TIMEOUT_SECS = 120.0
READ_LOCK_TIMEOUT_SECS = 30.0
_GLOB_TOKEN = "__DATASET_GLOB__"
_ARROW_TO_SQL = {pa.int64(): "BIGINT", pa.float64(): "DOUBLE", pa.string(): "VARCHAR",
                 pa.bool_(): "BOOLEAN", pa.int32(): "INTEGER"}
PARTITION_SCHEMA = pa.schema([
    ("dataset", pa.string()), ("venue", pa.string()), ("symbol", pa.string()), ("date", pa.date32()),
    ("hour", pa.int32()), ("rows", pa.int64()), ("bytes", pa.int64()), ("written_at", pa.timestamp("us")),
])
RAW_FILE_SCHEMA = pa.schema([
    ("path", pa.string()), ("venue", pa.string()), ("symbol", pa.string()), ("hour", pa.timestamp("us")),
    ("records", pa.int64()), ("bytes", pa.int64()), ("first_local_ts", pa.int64()),
    ("last_local_ts", pa.int64()),
])


@dataclass
class RegisterResult:
    venue: str
    symbol: str
    hour: datetime
    partitions: int          # partition files registered for the hour
    raw_files_scanned: int   # raw files (re)scanned because they were new or had changed
    seconds: float


@dataclass
class CatalogSummary:
    path: Path
    partitions: int
    raw_files: int
    seconds: float


# Connections ------------------------------------------------------------------------------------

def _is_lock_error(err: Exception) -> bool:
    text = str(err).lower()
    return "lock" in text or "conflicting" in text


# Within one process DuckDB refuses a second connection to the same file with another
# configuration (read-only vs read-write) and raises write-write conflicts between two writers:
# the hourly flow runs several tasks as threads, so catalog connections of one process take turns.
_PROCESS_LOCK = threading.RLock()


@contextmanager
def _connect(path: Path, *, read_only: bool, timeout: float) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to the catalog file, retrying with backoff while another process holds it."""
    deadline = time.monotonic() + timeout
    if not _PROCESS_LOCK.acquire(timeout=timeout):
        raise CatalogLockedError(
            f"{path}: another thread of this process held the catalog for more than {timeout:g} s")
    try:
        with _connect_unlocked(path, read_only=read_only, deadline=deadline, timeout=timeout) as con:
            yield con
    finally:
        _PROCESS_LOCK.release()


@contextmanager
def _connect_unlocked(path: Path, *, read_only: bool, deadline: float, timeout: float
                      ) -> Iterator[duckdb.DuckDBPyConnection]:
    delay = 0.02
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only)
            break
        except duckdb.Error as e:
            if not _is_lock_error(e):
                raise CatalogError(f"{path}: cannot open the catalog ({e})") from None
            if time.monotonic() >= deadline:
                mode = "read" if read_only else "write"
                raise CatalogLockedError(
                    f"{path}: another process held the catalog for more than {timeout:g} s, so it "
                    f"could not be opened to {mode} ({e}). Wait for the running job or query to "
                    "finish and retry; nothing was lost (the partitions are on disk, and "
                    "`midas catalog rebuild` registers them all).") from None
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())) * (0.5 + random.random()))
            delay = min(delay * 2, 1.0)
    try:
        yield con
    finally:
        con.close()


def _quoted_literal(text: str) -> str:
    if any(ch in text for ch in "\0\n\r"):
        raise CatalogError(f"data directory path {text!r} contains a control character")
    return "'" + text.replace("'", "''") + "'"


def _empty_view_sql(dataset: str, settings: Settings) -> str:
    """The view of a dataset without files yet: its columns, typed, and no rows."""
    from midas.book.partitions import GAPS_SCHEMA, TRADES_SCHEMA, book_schema
    from midas.features import FEATURE_COLUMNS

    if dataset == "book":
        fields = [(f.name, f.type) for f in book_schema(settings.order_book_depth)]
    elif dataset == "trades":
        fields = [(f.name, f.type) for f in TRADES_SCHEMA]
    elif dataset == "gaps":
        fields = [(f.name, f.type) for f in GAPS_SCHEMA]
    else:
        fields = [(f.name, f.type) for f in book_schema(settings.order_book_depth)]
        fields += [(name, pa.int64() if name == "trade_count" else pa.float64())
                   for name in FEATURE_COLUMNS]
    fields += [("venue", pa.string()), ("symbol", pa.string()), ("date", None), ("hour", pa.int32())]
    columns = ",\n       ".join(
        f"CAST(NULL AS {'DATE' if typ is None else _ARROW_TO_SQL[typ]}) AS {check_identifier(name)}"
        for name, typ in fields)
    return f"CREATE OR REPLACE VIEW {check_identifier(dataset)} AS\nSELECT {columns}\nWHERE false"


def _create_objects(con: duckdb.DuckDBPyConnection, settings: Settings) -> None:
    """Tables if missing, and every view (over the files, or empty while a dataset has none)."""
    con.execute(sql_text("catalog", "partitions"))
    con.execute(sql_text("catalog", "raw_files"))
    data_dir = Path(settings.data_dir).resolve()
    for dataset in DATASETS:
        root = dataset_dir(data_dir, dataset)
        if any(root.glob("venue=*/symbol=*/date=*/hour=*/part-*.parquet")):
            glob = (root / "venue=*" / "symbol=*" / "date=*" / "hour=*" / "part-*.parquet").as_posix()
            con.execute(sql_text("catalog", dataset).replace(_GLOB_TOKEN, _quoted_literal(glob)))
        else:
            con.execute(_empty_view_sql(dataset, settings))


# What the files say -----------------------------------------------------------------------------

def _partition_row(path: Path, dataset: str, venue: str, symbol: str, hour: datetime) -> dict:
    try:
        rows = pq.ParquetFile(path).metadata.num_rows
        st = path.stat()
    except (OSError, pa.ArrowException) as e:
        raise CatalogError(f"{path}: cannot read the partition's Parquet footer ({e})") from None
    return {"dataset": dataset, "venue": venue, "symbol": symbol, "date": hour.date(),
            "hour": hour.hour, "rows": rows, "bytes": st.st_size,
            "written_at": datetime.fromtimestamp(st.st_mtime, tz=timezone.utc).replace(tzinfo=None)}


def _all_partitions(data_dir: Path) -> list[dict]:
    """Every partition file under DATA_DIR whose path is a valid venue/symbol/date/hour."""
    rows = []
    for dataset in DATASETS:
        root = dataset_dir(data_dir, dataset)
        for path in sorted(root.glob("venue=*/symbol=*/date=*/hour=*/part-0.parquet")):
            hour_dir, date_dir = path.parent, path.parent.parent
            venue = date_dir.parent.parent.name.removeprefix("venue=")
            symbol = date_dir.parent.name.removeprefix("symbol=")
            try:
                hour = parse_hour(f"{date_dir.name.removeprefix('date=')}T{hour_dir.name.removeprefix('hour=')}")
                venue, symbol = check_venue(venue), check_symbol(symbol)
            except ValueError:
                log_kv(logger, "skipping a file that is not a partition", logging.WARNING, file=path)
                continue
            rows.append(_partition_row(path, dataset, venue, symbol, hour))
    return rows


def _raw_file_row(data_dir: Path, path: Path, venue: str) -> dict:
    info = parse_raw_file_name(path.name)
    stats = scan_raw_file(path)
    return {"path": path.relative_to(data_dir).as_posix(), "venue": venue, "symbol": info.symbol,
            "hour": info.hour.replace(tzinfo=None), "records": stats.records, "bytes": stats.bytes,
            "first_local_ts": stats.first_local_ts, "last_local_ts": stats.last_local_ts}


def _upsert(con: duckdb.DuckDBPyConnection, rows: list[dict], schema: pa.Schema, relation: str,
            sql_name: str) -> None:
    if not rows:
        return
    con.register(relation, pa.Table.from_pylist(rows, schema=schema))
    try:
        con.execute(sql_text("catalog", sql_name))
    finally:
        con.unregister(relation)


# Public API -------------------------------------------------------------------------------------

def register_hour(settings: Settings, venue: str, symbol: str, hour, *,
                  lock_timeout: float = WRITE_LOCK_TIMEOUT_SECS) -> RegisterResult:
    """Register the book, trades, gaps and features partitions of one symbol-hour (rows, bytes,
    written_at; a partition whose file is gone is removed) and the raw files of the local hours
    around it that are new or changed. Creates the catalog if it does not exist yet."""
    started = time.perf_counter()
    venue, symbol, hour = check_venue(venue), check_symbol(symbol), parse_hour(hour)
    data_dir = Path(settings.data_dir).resolve()
    path = Path(settings.catalog_path).resolve()
    present, missing = [], []
    for dataset in DATASETS:
        part = partition_file(data_dir, dataset, venue, symbol, hour)
        if part.is_file():
            present.append(_partition_row(part, dataset, venue, symbol, hour))
        else:
            missing.append(dataset)
    # Raw files holding events of this exchange hour sit in the local hours around it.
    near = {hour - timedelta(hours=1), hour, hour + timedelta(hours=1)}
    candidates = [p for p in list_raw_files(data_dir, venue, symbol) if parse_raw_file_name(p.name).hour in near]
    known: dict[str, int] = {}
    if candidates and path.exists():
        with _connect(path, read_only=True, timeout=lock_timeout) as con:
            try:
                known = dict(con.execute(sql_text("catalog", "known_raw_files"),
                                         {"venue": venue, "symbol": symbol}).fetchall())
            except duckdb.CatalogException:
                known = {}
    raw_rows = [_raw_file_row(data_dir, p, venue) for p in candidates
                if known.get(p.relative_to(data_dir).as_posix()) != p.stat().st_size]
    path.parent.mkdir(parents=True, exist_ok=True)
    with _connect(path, read_only=False, timeout=lock_timeout) as con:
        con.execute("BEGIN TRANSACTION")
        try:
            _create_objects(con, settings)
            for dataset in missing:
                con.execute(sql_text("catalog", "delete_partition"), {
                    "dataset": dataset, "venue": venue, "symbol": symbol,
                    "date": hour.date(), "hour": hour.hour})
            _upsert(con, present, PARTITION_SCHEMA, "partition_rows", "upsert_partitions")
            _upsert(con, raw_rows, RAW_FILE_SCHEMA, "raw_file_rows", "upsert_raw_files")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    result = RegisterResult(venue, symbol, hour, len(present), len(raw_rows), time.perf_counter() - started)
    log_kv(logger, "hour registered", venue=venue, symbol=symbol, hour=format_hour(hour),
           partitions=result.partitions, raw_files=result.raw_files_scanned, file=path)
    return result


def rebuild_catalog(settings: Settings, *, lock_timeout: float = WRITE_LOCK_TIMEOUT_SECS) -> CatalogSummary:
    """Recreate every catalog object from the files under DATA_DIR (deleting the catalog loses
    nothing). Raw files are scanned first without holding the catalog."""
    started = time.perf_counter()
    data_dir = Path(settings.data_dir).resolve()
    path = Path(settings.catalog_path).resolve()
    raw_rows = [_raw_file_row(data_dir, p, venue)
                for venue in VENUE_NAMES for symbol in list_symbols(data_dir, venue)
                for p in list_raw_files(data_dir, venue, symbol)]
    path.parent.mkdir(parents=True, exist_ok=True)
    with _connect(path, read_only=False, timeout=lock_timeout) as con:
        con.execute("BEGIN TRANSACTION")
        try:
            for view in DATASETS:
                con.execute(f"DROP VIEW IF EXISTS {view}")
            con.execute("DROP TABLE IF EXISTS partitions")
            con.execute("DROP TABLE IF EXISTS raw_files")
            _create_objects(con, settings)
            partitions = _all_partitions(data_dir)
            _upsert(con, partitions, PARTITION_SCHEMA, "partition_rows", "upsert_partitions")
            _upsert(con, raw_rows, RAW_FILE_SCHEMA, "raw_file_rows", "upsert_raw_files")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    summary = CatalogSummary(path, len(partitions), len(raw_rows), time.perf_counter() - started)
    log_kv(logger, "catalog rebuilt", file=path, partitions=summary.partitions,
           raw_files=summary.raw_files, seconds=f"{summary.seconds:.2f}")
    return summary


def _require_catalog(settings: Settings) -> Path:
    path = Path(settings.catalog_path).resolve()
    if not path.is_file():
        raise CatalogError(f"no catalog at {path}: process an hour (`midas process`) or run "
                           "`midas catalog rebuild` first")
    return path


def query_arrow(settings: Settings, sql: str, *, timeout: float = READ_LOCK_TIMEOUT_SECS) -> pa.Table:
    """Run one SQL query on the catalog, opened read-only; the result as an Arrow table."""
    path = _require_catalog(settings)
    with _connect(path, read_only=True, timeout=timeout) as con:
        try:
            statements = con.extract_statements(sql)
        except duckdb.Error as e:
            raise CatalogError(f"query failed: {e}") from None
        if len(statements) > 1:
            # DuckDB would run them all and show only the last result
            raise CatalogError(f"{len(statements)} statements given: `midas query` runs one query at a "
                               "time (drop the `;` between them, or run them one by one)")
        if statements:
            _check_read_only(statements[0])
        try:
            relation = con.sql(sql)
        except duckdb.Error as e:
            raise CatalogError(f"query failed: {e}{_moved_data_hint(con, settings)}") from None
        if relation is None:
            raise CatalogError("the statement returned no result: `midas query` runs queries "
                               "(SELECT, DESCRIBE, SHOW ...); the catalog is read-only here")
        try:
            return relation.to_arrow_table()
        except duckdb.Error as e:
            raise CatalogError(f"query failed: {e}{_moved_data_hint(con, settings)}") from None


READ_STATEMENTS = "SELECT, WITH, FROM, VALUES, DESCRIBE, SHOW, SUMMARIZE, EXPLAIN or TABLE"


def _check_read_only(statement: duckdb.Statement) -> None:
    """Refuse a statement that is not a query. Opening the catalog read-only stops writes to the
    catalog, not `COPY ... TO`, `EXPORT DATABASE`, `ATTACH`, `INSTALL`/`LOAD`, `SET`/`PRAGMA` or
    `CALL`. The decision is DuckDB's parsed statement type: SELECT covers WITH, FROM, VALUES,
    DESCRIBE, SHOW, SUMMARIZE, TABLE and PIVOT ... IN (...); an EXPLAIN is allowed when the
    statement it explains is one (EXPLAIN ANALYZE runs it)."""
    kind = statement.type
    if kind == duckdb.StatementType.SELECT:
        return
    if kind == duckdb.StatementType.EXPLAIN:
        explained = _explained_statement(statement.query)
        if explained is not None and explained.type == duckdb.StatementType.SELECT:
            return
        kind_name = f"EXPLAIN of {explained.type.name}" if explained is not None else "EXPLAIN (unreadable)"
    else:
        kind_name = kind.name
    hint = ""
    if kind == duckdb.StatementType.MULTI:              # what PIVOT without IN (...) parses into
        hint = " (a PIVOT without IN: name the values, PIVOT ... ON column IN (...))"
    elif kind in (duckdb.StatementType.CALL, duckdb.StatementType.PRAGMA):
        hint = " (table functions read in a query: SELECT * FROM pragma_table_info('book'))"
    raise CatalogError(f"`midas query` only reads: a statement of type {kind_name} is refused{hint}. "
                       f"Give a query ({READ_STATEMENTS}); to write a result to a file, use "
                       "--output FILE with --format csv, json or parquet")


def _explained_statement(sql: str) -> duckdb.Statement | None:
    """The statement inside `EXPLAIN [ANALYZE] stmt` or `EXPLAIN (options) stmt`, found with
    DuckDB's tokenizer and parsed again; None when that fails."""
    found = duckdb.tokenize(sql)
    ends = [pos for pos, _ in found[1:]] + [len(sql)]
    tokens = [(kind, pos, sql[pos:end].strip()) for (pos, kind), end in zip(found, ends)
              if kind != duckdb.token_type.comment]
    starts = []                                             # where the explained statement may start
    i = 1                                                   # tokens[0] is EXPLAIN
    if i < len(tokens) and tokens[i][0] == duckdb.token_type.operator and tokens[i][2].startswith("("):
        depth = 0                                           # EXPLAIN (ANALYZE, FORMAT json) stmt
        for j in range(i, len(tokens)):
            kind, _, text = tokens[j]
            if kind == duckdb.token_type.operator:
                depth += text.count("(") - text.count(")")
                if depth <= 0:
                    starts.append(j + 1)
                    break
        starts.append(i)                                    # or EXPLAIN (SELECT ...)
    elif i < len(tokens) and tokens[i][0] == duckdb.token_type.keyword and \
            tokens[i][2].upper() in ("ANALYZE", "ANALYSE"):
        starts.append(i + 1)
    else:
        starts.append(i)
    for i in starts:
        if i >= len(tokens):
            continue
        try:
            inner = duckdb.extract_statements(sql[tokens[i][1]:])
        except duckdb.Error:
            continue
        if len(inner) == 1:
            return inner[0]
    return None


def _moved_data_hint(con: duckdb.DuckDBPyConnection, settings: Settings) -> str:
    """Views hold the absolute path of the data they read (so the catalog also works from the plain
    `duckdb` shell, whatever its working directory). After DATA_DIR is moved they point at the old
    place until rebuilt: say so, rather than leave a bare "No files found"."""
    here = _quoted_literal(Path(settings.data_dir).resolve().as_posix())[1:-1]
    try:
        views = con.execute("SELECT view_name, sql FROM duckdb_views() WHERE NOT internal").fetchall()
    except duckdb.Error:
        return ""
    elsewhere = sorted(name for name, text in views if "read_parquet(" in text and here not in text)
    if not elsewhere:
        return ""
    return (f" (the catalog's views {', '.join(elsewhere)} read files outside DATA_DIR "
            f"{Path(settings.data_dir).resolve()}: the data was moved or DATA_DIR changed; run "
            "`midas catalog rebuild` to point them here)")


def run_query(settings: Settings, sql: str, *, timeout: float = READ_LOCK_TIMEOUT_SECS
              ) -> tuple[list[str], list[tuple]]:
    """Run one SQL query on the catalog, opened read-only: (column names, rows as tuples)."""
    table = query_arrow(settings, sql, timeout=timeout)
    return table.column_names, list(zip(*(col.to_pylist() for col in table.columns)))
