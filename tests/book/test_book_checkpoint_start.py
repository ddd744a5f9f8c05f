"""Where an hour resumed from a checkpoint starts reading: not ~10 minutes before the hour, but at
the first line of the previous file that can matter to it (a trade of the hour, or anything that
may be one), and it still finds every such line; the rows, trades and problems equal a replay."""

from __future__ import annotations

import importlib.util
import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

import orjson
import pyarrow.parquet as pq

from midas.book import rebuild_hour
from midas.book.checkpoint import checkpoint_path
from midas.book.rebuild import rebuild_one_pass
from midas.config import load_settings

_spec = importlib.util.spec_from_file_location("rawgen", Path(__file__).with_name("rawgen.py"))
g = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(g)

V = "binance-futures"
MIDNIGHT_MS = 1704067200000                     # 2024-01-01T00:00:00Z
START_MS = MIDNIGHT_MS - 600_000                # 23:50 exchange time
END_MS = MIDNIGHT_MS + 600_000                  # 00:10
BEHIND_MS = 1300                                # the recorder's clock


def _files(data_dir: Path, early_trade_local_ms: int | None, bad_trade_local_ms: int | None):
    """Two local-hour files; a diff a second; the diffs of the last minute before midnight written
    with spaces (so the checked path reads them, the one that ends hour 23 included); a trade of
    hour 00 recorded early, and a damaged trade of hour 00, at the given local times."""
    items: dict[int, list] = {23: [], 0: []}
    u = 101

    def put(local_ms, item):
        items[23 if local_ms < MIDNIGHT_MS else 0].append(item)

    def snap(local_ms, last_id):
        return g.snapshot(V, last_id, [("100.0", "1")], [("101.0", "1")], e_ms=local_ms + BEHIND_MS,
                          local_ms=local_ms)

    put(START_MS - BEHIND_MS, snap(START_MS - BEHIND_MS, 99))
    extra = sorted([(early_trade_local_ms, "early"), (bad_trade_local_ms, "bad")]
                   if early_trade_local_ms is not None else [])
    lines_of = {}
    opened_00 = False
    for k, e_ms in enumerate(range(START_MS, END_MS, 1000)):
        local_ms = e_ms - BEHIND_MS
        if local_ms >= MIDNIGHT_MS and not opened_00:
            put(local_ms, snap(local_ms, u))
            opened_00 = True
        while extra and extra[0][0] <= local_ms:
            at, what = extra.pop(0)
            if what == "early":
                put(at, g.trade(V, MIDNIGHT_MS + 1000, 7001, "100.5", "0.25", True, local_ms=at))
            else:
                rec = g.trade(V, MIDNIGHT_MS + 2000, 7002, "x", "0.25", False, local_ms=at)
                put(at, orjson.dumps(rec))
            lines_of[what] = len(items[23])        # (its line number: both are in file 23)
        d = g.depth(V, e_ms, u - 1 if k else 100, u if k else 101, u - 2 if k else 99,
                    bids=[("100.0", str(1 + k % 7))], asks=[("101.0", str(1 + k % 5))],
                    local_ms=local_ms)
        if k:
            d.update(first_update_id=u + 1, last_update_id=u + 2, prev_update_id=u)
            u += 2
        if MIDNIGHT_MS - 60_000 <= e_ms < MIDNIGHT_MS + 5000:
            put(local_ms, json.dumps(d).encode())      # ", " and ": ": not the plain form
        else:
            put(local_ms, d)
        put(local_ms, g.trade(V, e_ms - 500, 1000 + k, "100.5", "0.1", k % 2 == 0, local_ms=local_ms))
    paths = {h: g.write_raw(data_dir, V, datetime(2023 if h == 23 else 2024, 12 if h == 23 else 1,
                                                     31 if h == 23 else 1, h, tzinfo=timezone.utc),
                            items[h], frame_every=40)
             for h in (23, 0)}
    return paths, lines_of


def _tables(result):
    return {k: pq.read_table(p).to_pylist() for k, p in result.paths.items()}


def test_resumed_hour_reads_from_the_first_line_that_matters(tmp_path):
    data_dir = tmp_path / "data"
    early_ms, bad_ms = MIDNIGHT_MS - 300_000, MIDNIGHT_MS - 240_000    # 5 and 4 minutes early
    paths, lines_of = _files(data_dir, early_ms, bad_ms)
    s = load_settings(env_file=None, data_dir=data_dir, venue=V, snapshot_interval_ms=1000)
    h23 = rebuild_hour(s, V, "BTCUSDT", "2023-12-31T23")
    h00 = rebuild_hour(s, V, "BTCUSDT", "2024-01-01T00")
    assert (h23.started_from, h00.started_from, h23.complete) == ("replay", "checkpoint", True)
    bad = (f"{paths[23]}:{lines_of['bad']}: bad 'trade' record: field 'price': "
           "'x' is not a plain decimal number")
    assert h23.problems == [bad] and h00.problems == [bad]
    trades = _tables(h00)["trades"]
    assert trades[0] == {"ts": (MIDNIGHT_MS + 500) * 1000, "trade_id": 1601, "price": 100.5,
                         "qty": 0.1, "is_buyer_maker": False, "trade_type": "MARKET"}
    assert [t["trade_id"] for t in trades if t["trade_id"] > 7000] == [7001]
    assert h00.rows == {"book": 600, "trades": 600, "gaps": 0}     # 599 + the early one
    # the checkpoint names the frame of the early trade, not one ~10 minutes before midnight
    resume = orjson.loads(checkpoint_path(data_dir, V, "BTCUSDT", h23.hour).read_bytes())["resume"]
    assert resume[0] == paths[23].name and resume[2] == (lines_of["early"] - 1) // 40 * 40
    first = {h: _tables(r) for h, r in ((23, h23), (0, h00))}

    # the same hour replayed (no checkpoint), and the one pass: the same rows, trades, problems
    shutil.rmtree(data_dir / "state")
    replayed = rebuild_hour(s, V, "BTCUSDT", "2024-01-01T00")
    assert replayed.started_from == "replay" and replayed.problems == [bad]
    assert _tables(replayed) == first[0]
    one_pass, problems = rebuild_one_pass(s, V, "BTCUSDT")
    assert problems == [bad]
    assert [tuple(r.values()) for r in first[0]["book"]] == one_pass[h00.hour].book
    assert [tuple(r.values()) for r in first[0]["trades"]] == one_pass[h00.hour].trades


def test_nothing_before_the_stop_matters_then_the_hour_starts_at_the_stop(tmp_path):
    data_dir = tmp_path / "data"
    paths, _ = _files(data_dir, None, None)
    s = load_settings(env_file=None, data_dir=data_dir, venue=V, snapshot_interval_ms=1000)
    h23 = rebuild_hour(s, V, "BTCUSDT", "2023-12-31T23")
    cp = orjson.loads(checkpoint_path(data_dir, V, "BTCUSDT", h23.hour).read_bytes())
    # the diff at E = 00:00:00.000 ends hour 23 (a line read by the checked path): its frame
    assert cp["resume"][0] == paths[23].name and cp["resume"][2] == (cp["line"] - 1) // 40 * 40
    h00 = rebuild_hour(s, V, "BTCUSDT", "2024-01-01T00")
    assert h00.started_from == "checkpoint" and h00.problems == [] and h00.rows["trades"] == 599
    first = _tables(h00)
    shutil.rmtree(data_dir / "state")
    assert _tables(rebuild_hour(s, V, "BTCUSDT", "2024-01-01T00")) == first
