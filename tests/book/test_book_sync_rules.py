"""Binance's sync procedure on small hand-made raw files: exact rows, gaps and problems."""

from __future__ import annotations

import importlib.util
from datetime import datetime, timezone
from pathlib import Path

import orjson
import pyarrow.parquet as pq

from midas.book import rebuild_hour
from midas.config import load_settings

_spec = importlib.util.spec_from_file_location("rawgen", Path(__file__).with_name("rawgen.py"))
g = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(g)

HOUR = datetime(2024, 1, 1, 0, tzinfo=timezone.utc)
B = g.BASE_MS


def _run(tmp_path, venue, items, depth=3):
    g.write_raw(tmp_path, venue, HOUR, items)
    s = load_settings(env_file=None, data_dir=tmp_path, venue=venue, order_book_depth=depth)
    r = rebuild_hour(s, venue, "BTCUSDT", HOUR)
    return r, {k: pq.read_table(p).to_pylist() for k, p in r.paths.items()}


def _row(ts_ms, bids, asks, u, age, depth=3):
    row = {"ts": (B + ts_ms) * 1000}
    for side, levels in (("bid", bids), ("ask", asks)):
        for i in range(depth):
            row[f"{side}_px_{i + 1:02d}"] = levels[i][0] if i < len(levels) else None
        for i in range(depth):
            row[f"{side}_sz_{i + 1:02d}"] = levels[i][1] if i < len(levels) else None
    row["update_id"] = u
    row["book_age_ms"] = age
    return row


def _gap(start_ms, end_ms, reason, first, last):
    return {"start_ts": (B + start_ms) * 1000, "end_ts": (B + end_ms) * 1000, "reason": reason,
            "first_update_id": first, "last_update_id": last}


def test_spot_bridge_before_snapshot_duplicate_and_sequence_gap(tmp_path):
    v = "binance"
    items = [
        g.depth(v, B + 1050, 95, 101, bids=[("100.0", "1")], asks=[("101.0", "2")]),
        g.snapshot(v, 100, [("99.5", "3"), ("100.0", "5")], [("101.0", "4"), ("102.0", "1")]),
        g.depth(v, B + 1250, 102, 103, bids=[("100.5", "1")]),
        g.depth(v, B + 1250, 102, 103, bids=[("100.5", "1")]),            # duplicate
        g.depth(v, B + 1420, 104, 104, asks=[("101.0", "0")]),
        g.depth(v, B + 1700, 107, 108, bids=[("1", "1")]),               # 105-106 missed
        g.depth(v, B + 1800, 109, 110, bids=[("99.0", "2")]),
        g.snapshot(v, 108, [("100.0", "7")], [("100.5", "1")]),
        g.depth(v, B + 2050, 111, 111, asks=[("100.5", "3")]),
    ]
    r, t = _run(tmp_path, v, items)
    after_d1 = ([(100.0, 1.0), (99.5, 3.0)], [(101.0, 2.0), (102.0, 1.0)])
    after_d2 = ([(100.5, 1.0), (100.0, 1.0), (99.5, 3.0)], [(101.0, 2.0), (102.0, 1.0)])
    resynced = ([(100.0, 7.0), (99.0, 2.0)], [(100.5, 1.0)])
    assert t["book"] == [
        _row(1100, *after_d1, 101, 50), _row(1200, *after_d1, 101, 150),
        _row(1300, *after_d2, 103, 50), _row(1400, *after_d2, 103, 150),
        _row(1800, *resynced, 110, 0), _row(1900, *resynced, 110, 100), _row(2000, *resynced, 110, 200),
    ]
    assert t["gaps"] == [_gap(1050, 1050, "no_snapshot", None, 101),
                         _gap(1420, 1800, "sequence_gap", 104, 110)]
    assert r.counts["duplicates"] == 1 and r.counts["sequence_gaps"] == 1
    assert r.counts["snapshots_used"] == 2 and r.problems == []


def test_futures_pu_chain_disconnect_and_crossed_book(tmp_path):
    v = "binance-futures"
    items = [
        g.snapshot(v, 1000, [("50", "1")], [("51", "1")], e_ms=B + 1000),
        g.depth(v, B + 1010, 990, 1005, 980, bids=[("50.5", "2")]),
        g.depth(v, B + 1150, 1006, 1010, 1005, asks=[("51", "3")]),
        g.event(v, "disconnected", B + 1200, "server closed"),
        g.event(v, "connected", B + 1300),
        g.depth(v, B + 1330, 1030, 1040, 1020, bids=[("50.5", "0")]),
        g.snapshot(v, 1035, [("50.5", "1"), ("50", "4")], [("51", "2")], e_ms=B + 1340),
        g.depth(v, B + 1560, 1041, 1045, 1040, bids=[("52", "1")]),     # crosses the book
        g.depth(v, B + 1600, 1046, 1050, 1045, asks=[("53", "1")]),
    ]
    r, t = _run(tmp_path, v, items)
    after_d1 = ([(50.5, 2.0), (50.0, 1.0)], [(51.0, 1.0)])
    resynced = ([(50.0, 4.0)], [(51.0, 2.0)])
    assert t["book"] == [_row(1100, *after_d1, 1005, 90),
                         _row(1400, *resynced, 1040, 70), _row(1500, *resynced, 1040, 170)]
    assert t["gaps"] == [_gap(1000, 1010, "no_snapshot", None, 1005),
                         _gap(1150, 1330, "disconnected", 1010, 1040),
                         _gap(1560, 1600, "crossed_book", 1040, None)]
    assert r.counts["crossed"] == 1 and r.counts["sequence_gaps"] == 1
    assert r.complete is False


def test_snapshot_older_than_the_buffer_waits_for_the_next(tmp_path):
    v = "binance"
    items = [
        g.depth(v, B + 1000, 200, 210, bids=[("10", "1")], asks=[("11", "1")]),
        g.snapshot(v, 150, [("9", "1")], [("12", "1")]),                  # too old: 151-199 unknown
        g.depth(v, B + 1100, 211, 215, bids=[("10", "2")]),
        g.snapshot(v, 212, [("10", "5")], [("11", "5")]),
        g.depth(v, B + 1300, 216, 220, asks=[("11", "6")]),
    ]
    r, t = _run(tmp_path, v, items, depth=1)
    assert t["book"] == [_row(1100, [(10.0, 2.0)], [(11.0, 5.0)], 215, 0, depth=1),
                         _row(1200, [(10.0, 2.0)], [(11.0, 5.0)], 215, 100, depth=1),
                         _row(1300, [(10.0, 2.0)], [(11.0, 6.0)], 220, 0, depth=1)]
    assert t["gaps"] == [_gap(1000, 1100, "no_snapshot", None, 215)]
    assert r.counts["snapshots_unusable"] == 1 and r.counts["snapshots_used"] == 1


def test_bad_lines_are_reported_with_file_and_line_and_make_a_gap(tmp_path):
    v = "binance-futures"
    bad_type = g.depth(v, B + 1200, 13, 14, 12, bids=[("50", "2")])
    bad_type["last_update_id"] = "14"
    items = [
        g.snapshot(v, 10, [("50", "1")], [("51", "1")], e_ms=B + 1000),
        g.depth(v, B + 1100, 9, 12, 8, bids=[("50", "3")]),
        b'{"type":"depth","venue":"binance-futures"',
        b'{"type":"mystery","venue":"binance-futures","symbol":"BTCUSDT"}',
        orjson.dumps(bad_type),
        g.depth(v, B + 1300, 15, 16, 14, bids=[("50", "4")]),
        b'[1,2]',
    ]
    path = g.write_raw(tmp_path, v, HOUR, items)
    g.append_torn_frame(path, orjson.dumps(g.depth(v, B + 1400, 17, 18, 16)) + b"\n")
    s = load_settings(env_file=None, data_dir=tmp_path, venue=v, order_book_depth=1)
    r = rebuild_hour(s, v, "BTCUSDT", HOUR)
    assert r.problem_count == 5
    assert r.problems[0].startswith(f"{path}:3: invalid JSON")
    assert r.problems[1] == f"{path}:4: unknown record type 'mystery'"
    assert r.problems[2] == (f"{path}:5: bad 'depth' record: field 'last_update_id' must be an "
                             "integer, got '14'")
    assert r.problems[3] == f"{path}:7: line is not a JSON object"
    assert r.problems[4].startswith(f"{path}:8: ")
    book = pq.read_table(r.paths["book"]).to_pylist()
    assert [(x["ts"], x["bid_sz_01"], x["update_id"]) for x in book] == [((B + 1100) * 1000, 3.0, 12)]
    gaps = pq.read_table(r.paths["gaps"]).to_pylist()
    assert gaps == [_gap(1000, 1100, "no_snapshot", None, 12), _gap(1100, 1300, "sequence_gap", 12, None)]


def test_snapshot_written_before_the_new_connections_first_diff_resyncs_at_once(tmp_path):
    """The collector fetches a snapshot at every connect, so after a reconnect the snapshot record
    usually comes before the new connection's first diff, while the old stretch is still synced."""
    v = "binance-futures"
    items = [
        g.snapshot(v, 100, [("50", "1")], [("51", "1")], e_ms=B + 1000),
        g.depth(v, B + 1000, 90, 110, 95, bids=[("50", "2")]),
        g.event(v, "disconnected", B + 1150),
        g.event(v, "connected", B + 1200),
        g.snapshot(v, 150, [("50", "3")], [("51", "4")], e_ms=B + 1250),
        g.depth(v, B + 1300, 160, 170, 150, asks=[("51", "5")]),      # pu == lastUpdateId
        g.depth(v, B + 1400, 171, 180, 170, asks=[("51", "6")]),
    ]
    r, t = _run(tmp_path, v, items, depth=1)
    assert t["book"] == [_row(1000, [(50.0, 2.0)], [(51.0, 1.0)], 110, 0, depth=1),
                         _row(1300, [(50.0, 3.0)], [(51.0, 5.0)], 170, 0, depth=1),
                         _row(1400, [(50.0, 3.0)], [(51.0, 6.0)], 180, 0, depth=1)]
    assert t["gaps"] == [_gap(1000, 1000, "no_snapshot", None, 110),
                         _gap(1000, 1300, "disconnected", 110, 170)]


def test_a_recorder_clock_far_off_is_reported(tmp_path):
    v = "binance"
    items = [g.trade(v, B + 1000, 7, "10.5", "0.25", False, local_ms=B + 1000 - 20 * 60_000),
             g.trade(v, B + 2000, 8, "10.6", "0.5", True, local_ms=B + 2000 - 20 * 60_000)]
    path = g.write_raw(tmp_path, v, datetime(2023, 12, 31, 23, tzinfo=timezone.utc), items)
    s = load_settings(env_file=None, data_dir=tmp_path, venue=v)
    r = rebuild_hour(s, v, "BTCUSDT", HOUR)
    assert r.problems == [f"{path}:1: the recorder's clock is off the exchange's by -1200 s (more than "
                          "10 min): trades near the hour's edges may be missed; fix the recorder's "
                          "clock (NTP)"]
    trades = pq.read_table(r.paths["trades"]).to_pylist()
    assert trades == [
        {"ts": (B + 1000) * 1000, "trade_id": 7, "price": 10.5, "qty": 0.25, "is_buyer_maker": False, "trade_type": None},
        {"ts": (B + 2000) * 1000, "trade_id": 8, "price": 10.6, "qty": 0.5, "is_buyer_maker": True, "trade_type": None}]


def test_a_gap_never_ends_before_it_starts(tmp_path):
    """The first record is a futures snapshot whose E is later than the diff that bridges it."""
    v = "binance-futures"
    items = [g.snapshot(v, 100, [("50", "1")], [("51", "1")], e_ms=B + 1100),
             g.depth(v, B + 1050, 90, 105, 80, bids=[("50", "2")]),
             g.depth(v, B + 1200, 106, 110, 105, asks=[("51", "3")])]
    r, t = _run(tmp_path, v, items, depth=1)
    assert t["gaps"] == [_gap(1050, 1050, "no_snapshot", None, 105)]
    assert t["book"] == [_row(1100, [(50.0, 2.0)], [(51.0, 1.0)], 105, 50, depth=1),
                         _row(1200, [(50.0, 2.0)], [(51.0, 3.0)], 110, 0, depth=1)]
