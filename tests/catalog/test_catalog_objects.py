"""The catalog's views and manifest tables, registration, rebuild from files, and queries."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pyarrow.parquet as pq
import pytest

from midas.book.partitions import book_schema
from midas.catalog import rebuild_catalog, register_hour, run_query
from midas.cli import main
from midas.config import load_settings
from midas.errors import CatalogError, LayoutError
from midas.features import FEATURE_COLUMNS, compute_features_hour
from midas.layout import raw_file_path
from midas.raw import RawFileWriter

FUT = "binance-futures"
SYM = "BTCUSDT"
H = "2024-07-18T10"


def settings(data_dir):
    return load_settings(env_file=None, data_dir=data_dir, symbols=[SYM], venue=FUT)


def write_hour(data_dir, clean, hour, n_rows=3, symbol=SYM):
    rows = [{"ts": clean.t(hour, 100 * k), "bids": [(100.0, 1.0 + k)], "asks": [(100.5, 2.0)]}
            for k in range(n_rows)]
    clean.write(data_dir, "book", FUT, symbol, hour, clean.book_table(rows))
    clean.write(data_dir, "trades", FUT, symbol, hour, clean.trades_table(
        [(clean.t(hour, 50), 1, 100.5, 0.5, False, "MARKET")]))
    clean.write(data_dir, "gaps", FUT, symbol, hour, clean.gaps_table(
        [(clean.t(hour, 0) - 500_000, clean.t(hour, 0), "no_snapshot", None, 7)]))
    compute_features_hour(settings(data_dir).model_copy(update={"symbols": [symbol]}), FUT, symbol, hour)


def write_raw(data_dir, hour, local_ts_list):
    path = raw_file_path(data_dir, FUT, SYM, datetime.fromisoformat(hour + ":00+00:00"), 0)
    writer = RawFileWriter(path, fsync=False)
    for ts in local_ts_list:
        writer.write({"type": "event", "venue": FUT, "symbol": SYM, "exchange_ts": None,
                      "local_ts": ts, "event": "connected", "detail": ""})
    return writer.close()


def test_views_exist_and_are_empty_before_any_file(tmp_path):
    s = settings(tmp_path)
    result = register_hour(s, FUT, SYM, H)
    assert (result.partitions, result.raw_files_scanned) == (0, 0)
    for view in ("book", "trades", "gaps", "features"):
        assert run_query(s, f"SELECT count(*) FROM {view}") == (["count_star()"], [(0,)])
    columns, rows = run_query(s, "SELECT column_name, column_type FROM (DESCRIBE features)")
    names = [r[0] for r in rows]
    assert names == [f.name for f in book_schema(10)] + list(FEATURE_COLUMNS) + ["venue", "symbol", "date", "hour"]
    assert dict(rows)["trade_count"] == "BIGINT" and dict(rows)["date"] == "DATE"
    assert run_query(s, "SELECT count(*) FROM partitions")[1] == [(0,)]


def test_register_hour_records_partitions_and_views_read_them(tmp_path, clean):
    s = settings(tmp_path)
    write_hour(tmp_path, clean, H)
    result = register_hour(s, FUT, SYM, H)
    assert result.partitions == 4
    _, rows = run_query(s, "SELECT dataset, venue, symbol, date, hour, rows, bytes, written_at "
                           "FROM partitions ORDER BY dataset")
    assert [r[:6] for r in rows] == [
        (ds, FUT, SYM, datetime(2024, 7, 18).date(), 10, n)
        for ds, n in (("book", 3), ("features", 3), ("gaps", 1), ("trades", 1))]
    for dataset, *_, size, written_at in rows:
        folder = {"book": "clean/book", "trades": "clean/trades", "gaps": "clean/gaps",
                  "features": "features"}[dataset]
        path = tmp_path / folder / f"venue={FUT}" / f"symbol={SYM}" / "date=2024-07-18" / "hour=10" / "part-0.parquet"
        assert size == path.stat().st_size
        assert written_at == datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc).replace(tzinfo=None)
    _, rows = run_query(s, "SELECT venue, symbol, date, hour, ts, ofi, taker_buy_volume FROM features ORDER BY ts")
    assert [r[5:] for r in rows] == [(None, 0.0), (1.0, 0.5), (1.0, 0.0)]
    assert run_query(s, "SELECT reason, last_update_id FROM gaps")[1] == [("no_snapshot", 7)]
    # a partition whose file is gone leaves the manifest at the next registration
    (tmp_path / "clean/gaps" / f"venue={FUT}" / f"symbol={SYM}" / "date=2024-07-18" / "hour=10" / "part-0.parquet").unlink()
    assert register_hour(s, FUT, SYM, H).partitions == 3
    assert run_query(s, "SELECT dataset FROM partitions ORDER BY dataset")[1] == [("book",), ("features",), ("trades",)]


def test_filters_on_partition_columns_read_only_matching_files(tmp_path, clean):
    s = settings(tmp_path)
    write_hour(tmp_path, clean, H)
    write_hour(tmp_path, clean, "2024-07-19T03")
    register_hour(s, FUT, SYM, H)
    # damage the other day's features file: a query filtered to 2024-07-18 never opens it
    other = tmp_path / "features" / f"venue={FUT}" / f"symbol={SYM}" / "date=2024-07-19" / "hour=03" / "part-0.parquet"
    other.write_bytes(b"not parquet")
    assert run_query(s, "SELECT count(*) FROM features WHERE symbol = 'BTCUSDT' AND date = '2024-07-18'")[1] == [(3,)]
    assert run_query(s, "SELECT count(*) FROM features WHERE hour = 10")[1] == [(3,)]
    with pytest.raises(CatalogError, match="query failed"):
        run_query(s, "SELECT count(*) FROM features")


def test_raw_files_registered_once_and_rescanned_when_changed(tmp_path, clean):
    s = settings(tmp_path)
    base = 1_721_296_800_000_000   # 2024-07-18T10:00 UTC in µs
    write_raw(tmp_path, "2024-07-18T09", [base - 5, base - 4])
    write_raw(tmp_path, "2024-07-18T10", [base + 1, base + 2, base + 3])
    write_raw(tmp_path, "2024-07-18T12", [base + 7_200_000_000])          # two hours away: not near
    first = register_hour(s, FUT, SYM, H)
    assert first.raw_files_scanned == 2
    _, rows = run_query(s, "SELECT path, venue, symbol, hour, records, first_local_ts, last_local_ts "
                           "FROM raw_files ORDER BY path")
    assert rows == [
        (f"raw/{FUT}/{SYM}/2024-07-18/{SYM}_20240718T09_0.jsonl.zst", FUT, SYM, datetime(2024, 7, 18, 9), 2,
         base - 5, base - 4),
        (f"raw/{FUT}/{SYM}/2024-07-18/{SYM}_20240718T10_0.jsonl.zst", FUT, SYM, datetime(2024, 7, 18, 10), 3,
         base + 1, base + 3),
    ]
    sizes = dict(run_query(s, "SELECT path, bytes FROM raw_files")[1])
    assert sizes[f"raw/{FUT}/{SYM}/2024-07-18/{SYM}_20240718T10_0.jsonl.zst"] == (
        tmp_path / f"raw/{FUT}/{SYM}/2024-07-18/{SYM}_20240718T10_0.jsonl.zst").stat().st_size
    assert register_hour(s, FUT, SYM, H).raw_files_scanned == 0
    changed = tmp_path / f"raw/{FUT}/{SYM}/2024-07-18/{SYM}_20240718T10_0.jsonl.zst"
    changed.unlink()
    write_raw(tmp_path, "2024-07-18T10", [base + 1, base + 2, base + 3, base + 4, base + 5])
    assert register_hour(s, FUT, SYM, H).raw_files_scanned == 1
    assert run_query(s, "SELECT records, last_local_ts FROM raw_files WHERE hour = TIMESTAMP '2024-07-18 10:00'")[1] == [
        (5, base + 5)]


def test_deleting_the_catalog_loses_nothing(tmp_path, clean):
    s = settings(tmp_path)
    for hour in (H, "2024-07-18T11"):
        write_hour(tmp_path, clean, hour)
        register_hour(s, FUT, SYM, hour)
    write_raw(tmp_path, "2024-07-18T10", [1, 2])
    register_hour(s, FUT, SYM, H)
    queries = ["SELECT * FROM partitions ORDER BY ALL", "SELECT * FROM raw_files ORDER BY ALL",
               "SELECT * FROM features ORDER BY ts", "SELECT count(*) FROM book"]
    before = [run_query(s, q) for q in queries]
    s.catalog_path.unlink()
    summary = rebuild_catalog(s)
    assert (summary.partitions, summary.raw_files) == (8, 1)
    assert [run_query(s, q) for q in queries] == before
    assert rebuild_catalog(s).partitions == 8          # rebuilding again is the same


def test_moved_data_dir_is_named_in_query_errors_and_fixed_by_rebuild(tmp_path, clean):
    old, new = tmp_path / "old", tmp_path / "new"
    write_hour(old, clean, H)
    register_hour(settings(old), FUT, SYM, H)
    old.rename(new)
    s = settings(new)
    with pytest.raises(CatalogError) as err:
        run_query(s, "SELECT count(*) FROM book")
    assert "No files found" in str(err.value)
    assert (f"the catalog's views book, features, gaps, trades read files outside DATA_DIR {new}: "
            "the data was moved or DATA_DIR changed; run `midas catalog rebuild`") in str(err.value)
    rebuild_catalog(s)
    assert run_query(s, "SELECT count(*) FROM book")[1] == [(3,)]
    with pytest.raises(CatalogError) as err:                   # other errors get no such hint
        run_query(s, "SELECT no_such_column FROM book")
    assert "outside DATA_DIR" not in str(err.value)


def test_data_dir_with_a_quote_in_its_name(tmp_path, clean):
    data_dir = tmp_path / "it's data"
    s = settings(data_dir)
    write_hour(data_dir, clean, H)
    register_hour(s, FUT, SYM, H)
    assert run_query(s, "SELECT count(*) FROM book")[1] == [(3,)]


def test_injection_and_writes_are_refused(tmp_path, clean):
    s = settings(tmp_path)
    with pytest.raises(LayoutError, match="is not allowed"):
        register_hour(s, FUT, "BTC'; DROP TABLE partitions; --", H)
    with pytest.raises(LayoutError, match="is not allowed"):
        register_hour(s, FUT, "../../etc", H)
    with pytest.raises(CatalogError, match="no catalog at"):
        run_query(s, "SELECT 1")
    register_hour(s, FUT, SYM, H)
    with pytest.raises(CatalogError, match="a statement of type CREATE is refused"):
        run_query(s, "CREATE TABLE x AS SELECT 1")


REFUSED_END = ("Give a query (SELECT, WITH, FROM, VALUES, DESCRIBE, SHOW, SUMMARIZE, EXPLAIN or TABLE); "
               "to write a result to a file, use --output FILE with --format csv, json or parquet")


def test_query_refuses_statements_that_write_or_change_settings(tmp_path, clean, capsys):
    """A read-only open stops writes to the catalog only: COPY TO, EXPORT DATABASE, ATTACH (of a new
    file), SET, EXPLAIN ANALYZE of a COPY would still act. They are refused by parsed statement type,
    before anything runs."""
    s = settings(tmp_path / "data")
    write_hour(tmp_path / "data", clean, H)
    register_hour(s, FUT, SYM, H)
    out = tmp_path / "out"
    refused = {
        f"COPY book TO '{out}.csv'": "COPY",
        f"copy (SELECT * FROM trades) TO '{out}.parquet' (FORMAT parquet)": "COPY",
        f"EXPORT DATABASE '{out}'": "EXPORT",
        f"ATTACH '{out}.duckdb' AS other": "ATTACH",
        "DETACH other": "DETACH",
        "INSTALL httpfs": "LOAD",
        "LOAD parquet": "LOAD",
        "SET threads = 1": "SET",
        "RESET threads": "SET",
        "PRAGMA threads = 1": "SET",
        "PRAGMA show_tables": "PRAGMA",
        "CALL pragma_version()": "CALL",
        "CHECKPOINT": "CALL",
        "USE memory": "SET",
        "PREPARE p AS SELECT 1": "PREPARE",
        "DROP VIEW book": "DROP",
        f"EXPLAIN ANALYZE COPY book TO '{out}.csv'": "EXPLAIN of COPY",
        f"/* profile */ explain (analyze, format json) copy book to '{out}.csv'": "EXPLAIN of COPY",
        "EXPLAIN ANALYZE SET threads = 1": "EXPLAIN of SET",
        "PIVOT book ON update_id": "MULTI",
    }
    for sql, kind in refused.items():
        with pytest.raises(CatalogError) as err:
            run_query(s, sql)
        hint = {"MULTI": " (a PIVOT without IN: name the values, PIVOT ... ON column IN (...))",
                "PRAGMA": " (table functions read in a query: SELECT * FROM pragma_table_info('book'))",
                "CALL": " (table functions read in a query: SELECT * FROM pragma_table_info('book'))",
                }.get(kind, "")
        assert str(err.value) == f"`midas query` only reads: a statement of type {kind} is refused{hint}. " \
            + REFUSED_END, sql
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]          # nothing was written
    assert run_query(s, "SELECT current_setting('threads') = (SELECT value FROM duckdb_settings() "
                        "WHERE name = 'threads')")[1] == [(True,)]

    # every reading form still runs
    t0 = clean.t(H, 0)
    reads = {
        "SELECT count(*) FROM book": [(3,)],
        "WITH b AS (SELECT ts FROM book) SELECT min(ts) FROM b": [(t0,)],
        "FROM book SELECT max(ts)": [(t0 + 200_000,)],
        "VALUES (1, 'a')": [(1, "a")],
        "TABLE trades": None,
        "DESCRIBE gaps": None,
        "SHOW TABLES": [("book",), ("features",), ("gaps",), ("partitions",), ("raw_files",), ("trades",)],
        "SUMMARIZE trades": None,
        "EXPLAIN SELECT count(*) FROM book": None,
        "EXPLAIN ANALYZE SELECT count(*) FROM book": None,
        "EXPLAIN (ANALYZE, FORMAT json) (SELECT 1)": None,
        "PIVOT book ON update_id IN (7) USING count(*) GROUP BY symbol": None,
    }
    for sql, rows in reads.items():
        columns, got = run_query(s, sql)
        assert got, sql
        if rows is not None:
            assert got == rows, sql
    assert run_query(s, "TABLE trades")[1] == [(t0 + 50_000, 1, 100.5, 0.5, False, "MARKET",
                                                 datetime(2024, 7, 18).date(), 10, SYM, FUT)]
    assert [r[0] for r in run_query(s, "EXPLAIN ANALYZE SELECT 1")[1]] == ["analyzed_plan"]

    # on the command line: exit code 2, the message, no file
    assert main(["query", "--data-dir", str(tmp_path / "data"), "--format", "csv",
                 f"COPY features TO '{out}.csv'"]) == 2
    assert ("error: `midas query` only reads: a statement of type COPY is refused. " + REFUSED_END
            ) in capsys.readouterr().err
    assert not (tmp_path / "out.csv").exists()
    assert main(["query", "--data-dir", str(tmp_path / "data"), "--format", "csv", "--output",
                 str(out) + ".csv", "SELECT count(*) AS n FROM features"]) == 0
    assert (tmp_path / "out.csv").read_text() == '"n"\n3\n'


def test_cli_query_formats_and_catalog_rebuild(tmp_path, clean, capsys):
    write_hour(tmp_path, clean, H)
    assert main(["catalog", "rebuild", "--data-dir", str(tmp_path)]) == 0
    assert "4 partitions, 0 raw files" in capsys.readouterr().out
    sql = "SELECT ts, ofi FROM features ORDER BY ts"
    assert main(["query", "--data-dir", str(tmp_path), "--format", "csv", sql]) == 0
    t0 = clean.t(H, 0)
    assert capsys.readouterr().out == f'"ts","ofi"\n{t0},\n{t0 + 100000},1\n{t0 + 200000},1\n'
    assert main(["query", "--data-dir", str(tmp_path), "--format", "json", sql]) == 0
    assert json.loads(capsys.readouterr().out) == [{"ts": t0, "ofi": None}, {"ts": t0 + 100000, "ofi": 1.0},
                                                   {"ts": t0 + 200000, "ofi": 1.0}]
    out = tmp_path / "new" / "folder" / "result.parquet"       # missing folders are created
    assert main(["query", "--data-dir", str(tmp_path), "--format", "parquet", "--output", str(out), sql]) == 0
    assert pq.read_table(out).to_pydict() == {"ts": [t0, t0 + 100000, t0 + 200000], "ofi": [None, 1.0, 1.0]}
    csv_out = tmp_path / "other" / "result.csv"
    assert main(["query", "--data-dir", str(tmp_path), "--format", "csv", "--output", str(csv_out), sql]) == 0
    assert csv_out.read_text().startswith('"ts","ofi"\n')
    assert main(["query", "--data-dir", str(tmp_path), "SELECT symbol, count(*) AS n FROM book GROUP BY symbol"]) == 0
    shown = capsys.readouterr().out
    assert "BTCUSDT" in shown and "1 rows" in shown
    assert main(["query", "--data-dir", str(tmp_path), "--format", "parquet", sql]) == 2
    assert "--format parquet needs --output FILE" in capsys.readouterr().err
    assert main(["query", "--data-dir", str(tmp_path), "SELECT * FROM nowhere"]) == 2
    assert "error: query failed" in capsys.readouterr().err


def test_commands_refuse_a_data_directory_that_does_not_exist(tmp_path, clean, capsys):
    typo = tmp_path / "typo"
    for command in (["inspect"], ["chart", "--symbol", "BTCUSDT"], ["catalog", "rebuild"],
                    ["ops", "status"]):
        assert main([*command, "--data-dir", str(typo)]) == 2, command
        assert f"error: data directory {typo} does not exist (DATA_DIR or --data-dir)" in capsys.readouterr().err
    assert not typo.exists()
    assert main(["query", "--data-dir", str(tmp_path), "  "]) == 2
    assert "the query is empty" in capsys.readouterr().err
    write_hour(tmp_path, clean, H)
    register_hour(settings(tmp_path), FUT, SYM, H)
    assert main(["query", "--data-dir", str(tmp_path), "SELECT 1; SELECT 2"]) == 2
    assert "2 statements given: `midas query` runs one query at a time" in capsys.readouterr().err
    assert main(["query", "--data-dir", str(tmp_path), "--format", "csv", "SELECT 1 AS one;"]) == 0
    assert capsys.readouterr().out == '"one"\n1\n'
    assert main(["query", "--data-dir", str(tmp_path), "SELEC 1"]) == 2
    assert "error: query failed" in capsys.readouterr().err
