"""`midas inspect`: an inventory of a data directory built from real raw files, Parquet partitions
and a DuckDB catalog, checked exactly."""

from __future__ import annotations

from datetime import datetime, timezone

import duckdb

from midas.cli import main
from midas.inspection import take_inventory
from midas.layout import hour_start_us, parse_hour, raw_file_path
from midas.raw import RawFileWriter

H23 = parse_hour("2024-07-18T23")
H00 = parse_hour("2024-07-19T00")


def _raw(data_dir, venue, symbol, hour, part, records, close=True):
    w = RawFileWriter(raw_file_path(data_dir, venue, symbol, hour, part))
    for i in range(records):
        w.write({"type": "event", "venue": venue, "symbol": symbol, "exchange_ts": None,
                 "local_ts": hour_start_us(hour) + i, "event": "connected", "detail": "x" * 50})
    if close:
        return w.close()
    w.flush()
    w.abort()
    return w.partial_path


def _gap(h0, start_s, end_s, reason, ids=(None, None)):
    return {"start_ts": h0 + start_s * 1_000_000, "end_ts": None if end_s is None else h0 + end_s * 1_000_000,
            "reason": reason, "first_update_id": ids[0], "last_update_id": ids[1]}


def _make_data(features_hour):
    h0 = hour_start_us(H23)
    data_dir, _ = features_hour(hour="2024-07-18T23", ks=range(100),
                                gaps=[_gap(h0, 20, 25, "sequence_gap", (10, 20)), _gap(h0, 1, 2, "disconnected")])
    features_hour(hour="2024-07-19T00", ks=range(50), gaps=[_gap(hour_start_us(H00), 3000, None, "no_snapshot")])
    features_hour(symbol="ETHUSDT", hour="2024-07-19T00", ks=range(30))
    p1 = _raw(data_dir, "binance-futures", "BTCUSDT", H23, 0, 100)
    p2 = _raw(data_dir, "binance-futures", "BTCUSDT", H23, 1, 10)
    p3 = _raw(data_dir, "binance-futures", "BTCUSDT", H00, 0, 5, close=False)
    p4 = _raw(data_dir, "binance", "ETHUSDT", H00, 0, 7)
    return data_dir, (p1, p2, p3, p4)


def test_inventory_exact(features_hour):
    data_dir, (p1, p2, p3, p4) = _make_data(features_hour)
    inv = take_inventory(data_dir)
    assert [(r.venue, r.symbol, r.hour, r.files, r.partial_files, sorted(r.parts), r.bytes) for r in inv.raw] == [
        ("binance", "ETHUSDT", H00, 1, 0, [0], p4.stat().st_size),
        ("binance-futures", "BTCUSDT", H23, 2, 0, [0, 1], p1.stat().st_size + p2.stat().st_size),
        ("binance-futures", "BTCUSDT", H00, 0, 1, [], p3.stat().st_size),
    ]
    assert inv.raw_bytes() == sum(p.stat().st_size for p in (p1, p2, p3, p4))
    assert inv.rows_by_dataset() == {"book": 180, "trades": 0, "gaps": 3, "features": 180}
    assert sorted((p.dataset, p.symbol, p.hour, p.rows) for p in inv.partitions if p.dataset == "features") == [
        ("features", "BTCUSDT", H23, 100), ("features", "BTCUSDT", H00, 50), ("features", "ETHUSDT", H00, 30)]
    assert inv.gap_reasons() == {"disconnected": 1, "no_snapshot": 1, "sequence_gap": 1}
    assert [(g.reason, g.seconds, g.first_update_id) for g in inv.gaps] == [
        ("disconnected", 1.0, None), ("sequence_gap", 5.0, 10), ("no_snapshot", None, None)]
    assert not inv.catalog.exists and len(inv.catalog.unregistered) == 8
    assert inv.problems == []


def test_inventory_reads_the_catalog_and_finds_unregistered(features_hour):
    data_dir, _ = _make_data(features_hour)
    con = duckdb.connect(str(data_dir / "midas.duckdb"))
    con.execute("CREATE TABLE partitions (dataset VARCHAR, venue VARCHAR, symbol VARCHAR, date DATE, "
                "hour INTEGER, rows BIGINT, bytes BIGINT, written_at TIMESTAMP)")
    con.execute("CREATE TABLE raw_files (path VARCHAR)")
    for ds in ("book", "features", "gaps"):
        con.execute("INSERT INTO partitions VALUES (?, 'binance-futures', 'BTCUSDT', DATE '2024-07-18', 23, 0, 0, "
                    "now())", [ds])
    con.execute("CREATE VIEW features AS SELECT 1 AS x")
    con.close()
    inv = take_inventory(data_dir)
    c = inv.catalog
    assert c.exists and c.error is None
    assert c.objects == {"features": "view", "partitions": "table", "raw_files": "table"}
    assert c.table_rows == {"partitions": 3, "raw_files": 0}
    assert sorted((p.dataset, p.symbol, p.hour) for p in c.unregistered) == [
        ("book", "BTCUSDT", H00), ("book", "ETHUSDT", H00), ("features", "BTCUSDT", H00),
        ("features", "ETHUSDT", H00), ("gaps", "BTCUSDT", H00)]


def test_inventory_reports_a_torn_partition(features_hour):
    data_dir, _ = features_hour(ks=range(3))
    bad = data_dir / "features" / "venue=binance" / "symbol=BTCUSDT" / "date=2024-07-18" / "hour=05"
    bad.mkdir(parents=True)
    (bad / "part-0.parquet").write_bytes(b"PAR1 torn")
    inv = take_inventory(data_dir)
    assert len(inv.problems) == 1 and inv.problems[0].startswith(f"{bad / 'part-0.parquet'}: unreadable")
    assert inv.rows_by_dataset()["features"] == 3


def test_inspect_command_prints_the_tables(features_hour, capsys):
    data_dir, _ = _make_data(features_hour)
    assert main(["inspect", "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert "raw files" in out and "processed partitions" in out
    assert "gaps (3: 1 disconnected, 1 no_snapshot, 1 sequence_gap)" in out
    assert "2024-07-18 23:00:20.000" in out and "5.000" in out
    assert "│ binance-futures │ BTCUSDT │ 2024-07-18T23 │  100 │      - │    2 │      100 │" in out
    assert "│ binance-futures │ ETHUSDT │ 2024-07-19T00 │   30 │      - │    - │       30 │" in out
    assert "│ binance-futures │ BTCUSDT │ 2024-07-19T00 │     0 │ -     │             1 │" in out
    assert "│ binance-futures │ BTCUSDT │ 2024-07-18T23 │     2 │ 0,1   │             0 │" in out
    assert "│ 2024-07-19 00:50:00.000 │ open                    │ -       │ no_snapshot  │" in out
    assert "not created yet" in out


def test_inspect_empty_directory(tmp_path, capsys):
    (tmp_path / "nothing").mkdir()
    assert main(["inspect", "--data-dir", str(tmp_path / "nothing")]) == 0
    assert "empty: nothing collected or processed yet (try `make demo`)" in capsys.readouterr().out


def test_inspect_lists_the_latest_gaps_per_symbol(features_hour, capsys):
    h0 = hour_start_us(H23)
    gaps = [_gap(h0, 10 * i, 10 * i + 1, "sequence_gap", (i, i + 1)) for i in range(5)]
    data_dir, _ = features_hour(ks=range(10), gaps=gaps)
    assert main(["inspect", "--data-dir", str(data_dir), "--gaps", "2"]) == 0
    out = capsys.readouterr().out
    assert "gaps (5: 5 sequence_gap); the last 2 per symbol shown, 3 earlier ones left out" in out
    assert "│ 3..4 " in out and "│ 4..5 " in out and "│ 2..3 " not in out
    assert main(["inspect", "--data-dir", str(data_dir)]) == 0          # default 30: all five
    out = capsys.readouterr().out
    assert all(f"│ {i}..{i + 1} " in out for i in range(5)) and "left out" not in out


def test_latest_hour(features_hour):
    from midas.inspection import latest_hour

    data_dir, _ = _make_data(features_hour)
    assert latest_hour(data_dir, "features", "binance-futures", "BTCUSDT") == H00
    assert latest_hour(data_dir, "features", "binance-futures", "XRPUSDT") is None
    assert latest_hour(data_dir, "gaps", "binance-futures", "ETHUSDT") is None
