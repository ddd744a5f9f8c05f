"""The message router on hand-made futures messages: duplicates, the overlap of a planned reconnect,
snapshots that anchor, stale ones, and a rotation that waits for a snapshot not behind the stream."""

from __future__ import annotations

import orjson

from midas.collector.connection import Connection
from midas.collector.health import HealthCounters
from midas.collector.router import MessageRouter, SymbolState
from midas.collector.sequence import SequenceTracker
from midas.collector.writer import SymbolFiles
from midas.raw import read_raw_records

VENUE = "binance-futures"


def depth(u_first, u_last, pu, e=1_700_000_000_000):
    return orjson.dumps({"stream": "btcusdt@depth@100ms", "data": {
        "e": "depthUpdate", "E": e, "T": e, "s": "BTCUSDT", "U": u_first, "u": u_last, "pu": pu,
        "b": [["100.0", "1.0"]], "a": [["101.0", "2.0"]]}})


def trade(t, e=1_700_000_000_000):
    return orjson.dumps({"stream": "btcusdt@trade", "data": {
        "e": "trade", "E": e, "T": e, "s": "BTCUSDT", "t": t, "p": "100.5", "q": "0.1", "m": True,
        "X": "MARKET"}})


def snapshot(lid, ts):
    return {"type": "snapshot", "venue": VENUE, "symbol": "BTCUSDT", "exchange_ts": ts, "local_ts": ts,
            "last_update_id": lid, "bids": [["100.0", "1.0"]], "asks": [["101.0", "2.0"]],
            "transaction_ts": ts, "depth_limit": 1000}


def conn(cid, joining=False):
    c = Connection(id=cid, group=0, url="ws://x/stream?streams=a/b", sockets=[], opened_at=0.0,
                   last_message_at=0.0)
    c.joining = joining
    return c


class Wall:
    t = 1_700_000_000.0

    def __call__(self):
        return self.t


def make(tmp_path):
    wall = Wall()
    files = SymbolFiles(tmp_path, VENUE, "BTCUSDT", rotation_hours=1, rotation_gb=1, wall_clock=wall,
                        fsync=False)
    state = SymbolState("BTCUSDT", files, SequenceTracker(futures=True))
    requests = []
    router = MessageRouter(VENUE, {"BTCUSDT": state}, HealthCounters(), requests.append, depth_enabled=True)
    return router, state, requests, wall


def ids(records):
    out = []
    for r in records:
        if r["type"] == "depth":
            out.append(("d", r["last_update_id"]))
        elif r["type"] == "trade":
            out.append(("t", r["trade_id"]))
        elif r["type"] == "snapshot":
            out.append(("S", r["last_update_id"]))
        else:
            out.append(("E", r["event"]))
    return out


def test_overlap_of_a_planned_reconnect_writes_each_message_once_in_order(tmp_path):
    router, state, requests, _ = make(tmp_path)
    old = conn(1)
    router.connected(old)
    assert requests == [state]
    router.on_message(old, depth(10, 20, 5), 1)
    router.on_snapshot(state, snapshot(15, 2))          # anchors (15 >= pu 5): opens the file
    router.on_message(old, trade(100), 3)
    router.on_message(old, depth(21, 30, 20), 4)
    new = conn(2, joining=True)
    router.begin_join(old, new)
    # The new connection starts behind the old one (it repeats 21..30 and trade 100) and goes on.
    for i, m in enumerate([depth(21, 30, 20), trade(100), trade(101), depth(31, 40, 30)]):
        router.on_message(new, m, 10 + i)
    assert router.join_ready(old, new) is True           # its first messages continue what was written
    router.on_message(old, trade(101), 20)               # the old one still delivers until the switch
    router.switch(old, new, timed_out=False)
    old.retired = True
    new.joining = False
    router.on_message(old, depth(41, 50, 40), 21)         # ignored: switched out
    router.on_message(new, depth(41, 50, 40), 22)
    router.on_message(new, depth(41, 50, 40), 23)         # a duplicate
    state.files.close("end")
    recs = read_raw_records(state.files.closed_files[0])
    assert ids(recs) == [("S", 15), ("E", "connected"), ("d", 20), ("t", 100), ("d", 30), ("t", 101),
                         ("E", "connected"), ("d", 40), ("d", 50), ("E", "shutdown")]
    assert recs[6]["detail"].endswith("replaces connection 1 (planned reconnect, overlapping: nothing missed)")
    assert state.duplicates == 4 and router.gaps_total == 0     # 21..30, trades 100 and 101, 41..50


def test_a_new_connection_ahead_of_the_old_one_waits_until_they_overlap(tmp_path):
    router, state, _, _ = make(tmp_path)
    old = conn(1)
    router.connected(old)
    router.on_message(old, depth(10, 20, 5), 1)
    router.on_snapshot(state, snapshot(20, 2))
    new = conn(2, joining=True)
    router.begin_join(old, new)
    router.on_message(new, depth(31, 40, 30), 3)          # old has written only up to u=20
    assert router.join_ready(old, new) is False
    router.on_message(old, depth(21, 30, 20), 4)          # now old reaches pu=30 of the new one
    assert router.join_ready(old, new) is True
    router.switch(old, new, timed_out=False)
    assert state.tracker.last_update_id == 40 and router.gaps_total == 0


def test_stale_snapshots_are_not_written_and_a_rotation_waits_for_one_not_behind(tmp_path):
    router, state, requests, wall = make(tmp_path)
    c = conn(1)
    router.connected(c)
    router.on_message(c, depth(10, 20, 5), 1)
    router.on_snapshot(state, snapshot(3, 2))             # older than the run (pu 5): stale
    assert not state.files.has_file and state.stale_snapshots == 1
    assert router.needs_snapshot(state)
    router.on_snapshot(state, snapshot(12, 3))
    first = state.files.current.final_path
    router.on_message(c, depth(21, 30, 20), 4)
    router.on_message(c, depth(35, 40, 31), 5)            # pu 31 != 30: a gap
    assert router.gaps_total == 1 and not state.tracker.in_sync
    router.on_snapshot(state, snapshot(30, 6))            # before the gap's run (pu 31): stale
    assert state.stale_snapshots == 2
    router.on_snapshot(state, snapshot(38, 7))            # anchors: resync written in the file
    wall.t += 3600
    assert state.files.rotation_due() == "time"
    state.rotation_reason = "time"
    router.on_message(c, depth(41, 50, 40), 8)
    router.on_snapshot(state, snapshot(45, 9))            # behind u=50: cannot open a file
    assert state.files.current.final_path == first and router.needs_snapshot(state)
    assert router.retry_delay(state) == 0.5
    router.on_snapshot(state, snapshot(46, 9))
    assert router.retry_delay(state) == 1.0              # doubling while they stay behind
    router.on_snapshot(state, snapshot(50, 10))           # not behind: the new file starts with it
    router.on_message(c, depth(51, 60, 50), 11)
    state.files.close("end")
    f1, f2 = (read_raw_records(p) for p in state.files.closed_files)
    assert ids(f1) == [("S", 12), ("E", "connected"), ("d", 20), ("d", 30), ("E", "gap"), ("d", 40),
                       ("E", "resync"), ("S", 38), ("d", 50), ("E", "rotated")]
    assert f1[4]["detail"] == "sequence gap: expected pu=30, got pu=31 (u=40)"
    assert f1[6]["detail"] == "snapshot lastUpdateId=38 after gap"
    assert ids(f2) == [("S", 50), ("d", 60), ("E", "shutdown")]
    assert state.rotation_reason is None and state.stale_snapshots == 4
    assert router.retry_delay(state) == 0.0


def test_a_first_snapshot_is_held_until_a_diff_shows_it_anchors(tmp_path):
    router, state, requests, _ = make(tmp_path)
    c = conn(1)
    router.connected(c)
    router.on_message(c, trade(7), 1)
    router.on_snapshot(state, snapshot(100, 2))           # no diff yet: held
    assert not state.files.has_file and not router.needs_snapshot(state)
    router.on_message(c, depth(150, 160, 140), 3)         # pu 140 > 100: the snapshot is too old
    assert not state.files.has_file and state.stale_snapshots == 1
    assert router.needs_snapshot(state) and requests[-1] is state
    router.on_snapshot(state, snapshot(155, 4))           # anchors the run (>= pu 140)
    router.on_message(c, depth(161, 170, 160), 5)
    state.files.close("end")
    recs = read_raw_records(state.files.closed_files[0])
    assert ids(recs) == [("S", 155), ("E", "connected"), ("t", 7), ("d", 160), ("d", 170), ("E", "shutdown")]
