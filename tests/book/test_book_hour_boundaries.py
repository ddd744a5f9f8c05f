"""Hours cut by a skewed local clock: the simulated market of midas.exchange (pure, headless) is
written as raw files the way a recorder with a clock 2.5 s ahead or 1.4 s behind would write them
(one file per local hour, each opening with a snapshot), with one lost diff. Every grid row equals
the market's true book; every grid time of each hour appears once; hour by hour (checkpoints),
hour by hour in reverse order (replay from snapshots) and one pass give identical partitions."""

from __future__ import annotations

import importlib.util
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from midas.book import raw_hours, rebuild_hour
from midas.book.rebuild import rebuild_one_pass
from midas.config import load_settings
from midas.exchange import SymbolMarket
from midas.layout import hour_of_us, hour_start_us

_spec = importlib.util.spec_from_file_location("rawgen", Path(__file__).with_name("rawgen.py"))
g = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(g)

START_MS = 1704063570000     # 2023-12-31T22:59:30Z
END_MS = 1704070830000       # 2024-01-01T01:00:30Z
STEP_MS = 2000
DROPPED_AT_MS = 1704066000000 + 600_000 + 2000 * 7       # a diff in hour 00 that never arrives
RESYNC_AFTER_MS = 10_000
GRID_MS = 500                # SNAPSHOT_INTERVAL_MS of this test (keeps 2 h of rows small)


def _market_files(data_dir, venue, clock_offset_ms):
    """Write the raw files; return the truth: [(E_ms, u, bids, asks)] after each step, trades."""
    market = SymbolMarket("BTCUSDT", venue, seed=11)
    files: dict = {}
    truth, trades = [], []
    current_hour = None
    resync_due = None

    def snap(local_ms):
        return g.snapshot(venue, market.last_update_id, market.levels(True, 1000),
                          market.levels(False, 1000), e_ms=local_ms - clock_offset_ms,
                          local_ms=local_ms)

    for e_ms in range(START_MS, END_MS, STEP_MS):
        local_ms = e_ms + clock_offset_ms
        hour = hour_of_us(local_ms * 1000)
        if hour != current_hour:
            current_hour = hour
            files[hour] = [snap(local_ms)]          # each file opens with a snapshot
        step = market.step(e_ms)
        d = step.depth
        for t in step.trades:
            files[hour].append(g.trade(venue, t.trade_ms, t.trade_id, t.price, t.qty,
                                       t.is_buyer_maker, local_ms=local_ms))
            trades.append(t)
        if e_ms == DROPPED_AT_MS:
            resync_due = e_ms + RESYNC_AFTER_MS
        else:
            files[hour].append(g.depth(venue, e_ms, d.first_update_id, d.last_update_id,
                                       d.prev_update_id, d.bids, d.asks, local_ms=local_ms))
        if resync_due is not None and e_ms >= resync_due:
            files[hour].append(snap(local_ms))
            resync_due = None
        truth.append((e_ms, d.last_update_id, market.levels(True, 10), market.levels(False, 10)))
    for hour, items in files.items():
        g.write_raw(data_dir, venue, hour, items, frame_every=500)
    return truth, trades


def _resumed_ms(venue):
    """The snapshot written after the step at DROPPED + RESYNC_AFTER has that step's u as
    lastUpdateId: futures applies the diff with u == lastUpdateId (U <= L <= u), spot drops it
    (u <= L) and is bridged by the next step's diff (U == L + 1)."""
    return DROPPED_AT_MS + RESYNC_AFTER_MS + (0 if venue == "binance-futures" else STEP_MS)


def _expected_rows(truth, venue):
    """Grid rows per SPEC §3 from the market's truth. The first diff bridges the first file's
    snapshot; the lost diff ends the stretch at the step before it."""
    gap_from = DROPPED_AT_MS - STEP_MS
    resumed = _resumed_ms(venue)
    rows, i = {}, 0
    for ts in range(START_MS, truth[-1][0] + 1, GRID_MS):
        while i + 1 < len(truth) and truth[i + 1][0] <= ts:
            i += 1
        if gap_from < ts < resumed:
            continue
        e, u, bids, asks = truth[i]
        row = [ts * 1000]
        for levels in (bids, asks):
            row += [float(p) for p, _ in levels] + [float(q) for _, q in levels]
        rows[ts * 1000] = tuple(row) + (u, ts - e)
    return rows


@pytest.mark.parametrize("venue,offset_ms", [("binance-futures", 2500), ("binance", -1400)])
def test_hours_cut_by_a_skewed_clock(tmp_path, venue, offset_ms):
    data_dir = tmp_path / "data"
    truth, trades = _market_files(data_dir, venue, offset_ms)
    s = load_settings(env_file=None, data_dir=data_dir, venue=venue, snapshot_interval_ms=GRID_MS)
    hours = raw_hours(s, venue, "BTCUSDT")
    assert [h.hour for h in hours] == [22, 23, 0, 1]
    results = [rebuild_hour(s, venue, "BTCUSDT", h) for h in hours]
    assert [r.started_from for r in results] == ["replay", "checkpoint", "checkpoint", "checkpoint"]
    assert [r.complete for r in results] == [True, True, True, False]

    def tables():
        return {(r.hour, k): [tuple(x.values()) for x in pq.read_table(p).to_pylist()]
                for r in results for k, p in r.paths.items()}

    first = tables()
    expected = _expected_rows(truth, venue)
    got = {}
    for r in results:
        lo = hour_start_us(r.hour)
        book = first[(r.hour, "book")]
        assert [row[0] for row in book] == sorted({row[0] for row in book})
        assert all(lo <= row[0] < lo + 3_600_000_000 for row in book)
        got.update({row[0]: row for row in book})
    assert got == expected
    # 22:59:30.0 to 01:00:28.0, minus the grid times inside the gap
    assert len(got) == 14_517 - {"binance-futures": 23, "binance": 27}[venue]
    assert sum(len(first[(r.hour, "trades")]) for r in results) == len(trades)
    gaps = [x for r in results for x in first[(r.hour, "gaps")]]
    lost = (DROPPED_AT_MS - STEP_MS) * 1000
    assert [(x[0], x[1], x[2]) for x in gaps if x[2] != "no_snapshot"] == [
        (lost, _resumed_ms(venue) * 1000, "sequence_gap")]

    # reverse order without checkpoints: each hour replays from a snapshot, same partitions
    shutil.rmtree(data_dir / "state")
    results = [rebuild_hour(s, venue, "BTCUSDT", h) for h in reversed(hours)][::-1]
    assert [r.started_from for r in results] == ["replay"] * 4
    assert tables() == first
    one_pass, problems = rebuild_one_pass(s, venue, "BTCUSDT")
    assert problems == []
    for h in hours:
        assert one_pass[h].book == first[(h, "book")]
        assert one_pass[h].trades == first[(h, "trades")]
        assert one_pass[h].gaps == first[(h, "gaps")]
