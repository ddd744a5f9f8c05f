"""The compiled in-sync path (kernels.run_synced through BookSync.run_synced) against a plain
dict book and the grid rule, including growth of the book and row arrays past their first size."""

from __future__ import annotations

import random

import orjson

from midas.book import kernels
from midas.book.lineparse import parse_lines
from midas.book.records import Snapshot
from midas.book.sync import SYNCED, BookSync

V, S = "binance-futures", "BTCUSDT"
SCALE = 10 ** 8


def _line(e_ms, first, last, prev, bids, asks):
    return orjson.dumps({"type": "depth", "venue": V, "symbol": S, "exchange_ts": e_ms * 1000,
                         "local_ts": e_ms * 1000, "first_update_id": first, "last_update_id": last,
                         "prev_update_id": prev, "bids": bids, "asks": asks})


def test_runs_of_diffs_equal_a_dict_book_and_the_grid_rule():
    rng = random.Random(3)
    machine = BookSync(V, depth=5, interval_us=100_000)
    machine.on_snapshot(Snapshot(10, None, [(100 * SCALE, SCALE)], [(10_000 * SCALE, SCALE)]))
    bids, asks = {100 * SCALE: SCALE}, {10_000 * SCALE: SCALE}
    lines, truth = [], []
    u = 10
    for k in range(400):
        # ~25 new levels a diff, far from the top: 10,000 bid levels by the end (> 4,096)
        b = [[f"{rng.randrange(1, 99_999) / 1000:.3f}", str(rng.randrange(0, 4))] for _ in range(25)]
        a = [[f"{10_000 + rng.randrange(0, 5_000) / 100:.2f}", str(rng.randrange(0, 3))]
             for _ in range(25)]
        e_ms = 1_000_000 + k * 30 + (500_000 if k >= 300 else 0)  # 500 s of silence: 5,000 rows at once
        lines.append(_line(e_ms, u, u + 1, u, b, a))
        u += 1
        for side, levels in ((bids, b), (asks, a)):
            for p, q in levels:
                p_units, q_units = round(float(p) * SCALE), int(q) * SCALE
                if q_units:
                    side[p_units] = q_units
                else:
                    side.pop(p_units, None)
        truth.append((e_ms * 1000, u, sorted(bids.items(), reverse=True), sorted(asks.items())))
    kinds, fields, prices, qtys = parse_lines(b"\n".join(lines), V, S, True)
    assert set(kinds.tolist()) == {kernels.DEPTH}
    machine.on_diff(_first_diff(fields, prices, qtys))        # bridges the snapshot (pu == 10)
    assert machine.status == SYNCED and machine.fast_ready()
    line, reason = machine.run_synced(kinds, fields, prices, qtys, 1, len(lines), None)
    assert (line, reason) == (len(lines), kernels.END)
    assert machine.counts["applied"] == 400 and machine.counts["duplicates"] == 0
    got_bids, got_asks = machine.book.levels()
    assert got_bids == truth[-1][2] and got_asks == truth[-1][3] and len(got_bids) > 4_096
    # grid rows: each grid time before the last diff, the book after every diff with E <= it
    rows = machine.rows.as_lists()
    # grid times 1000.0 s .. 1511.9 s (the last diff is at 1511.97 s): 5,120 rows, more than the 4,096
    # the row arrays start with
    assert len(rows) == 5_120 and machine.rows.n == len(rows)
    i = 0
    for ts, *levels, uid, age in rows:
        while i + 1 < len(truth) and truth[i + 1][0] <= ts:
            i += 1
        e, last_u, tb, ta = truth[i]
        expect = ([p for p, _ in tb[:5]] + [q for _, q in tb[:5]]
                  + [p for p, _ in ta[:5]] + [q for _, q in ta[:5]])
        assert (levels, uid, age) == (expect, last_u, (ts - e) // 1000)
    assert [r[0] for r in rows] == list(range(rows[0][0], rows[-1][0] + 1, 100_000))


def _first_diff(fields, prices, qtys):
    from midas.book.records import Diff
    f = fields[0].tolist()
    levels = list(zip(prices.tolist(), qtys.tolist()))
    return Diff(f[1], f[2], f[3], f[4], levels[f[6]:f[7]], levels[f[8]:f[9]])


def test_run_stops_at_what_python_must_handle():
    machine = BookSync(V, depth=2, interval_us=100_000)
    machine.on_snapshot(Snapshot(10, None, [(100 * SCALE, SCALE)], [(101 * SCALE, SCALE)]))
    lines = [_line(1_000, 10, 11, 10, [["100", "2"]], []),
             _line(1_050, 12, 12, 11, [["99", "1"]], []),
             _line(1_060, 12, 12, 11, [["98", "1"]], []),          # the same u again: a duplicate
             _line(1_250, 13, 13, 12, [], [["101", "3"]]),
             _line(1_300, 15, 15, 14, [["97", "1"]], []),          # pu 14 != 13: a sequence break
             _line(1_400, 16, 16, 13, [["101.5", "1"]], [])]        # bid >= best ask: crossed
    kinds, fields, prices, qtys = parse_lines(b"\n".join(lines), V, S, True)
    machine.on_diff(_first_diff(fields, prices, qtys))
    assert machine.run_synced(kinds, fields, prices, qtys, 1, 6, None) == (4, kernels.PYTHON)
    assert (machine.last_u, machine.last_ts, machine.counts["duplicates"]) == (13, 1_250_000, 1)
    assert machine.book.levels() == ([(100 * SCALE, 2 * SCALE), (99 * SCALE, SCALE)],
                                     [(101 * SCALE, 3 * SCALE)])
    # rows 1.0, 1.1, 1.2 s: before the diffs at 1.05 (u 11) and 1.25 s (u 12)
    assert [(r[0], r[-2], r[-1]) for r in machine.rows.as_lists()] == [
        (1_000_000, 11, 0), (1_100_000, 12, 50), (1_200_000, 12, 150)]
    # the next line: pu 13 == last u, so it is applied, and it crosses the book
    assert machine.run_synced(kinds, fields, prices, qtys, 5, 6, None) == (5, kernels.CROSSED)
    assert machine.book.best_bid() == (10_150_000_000, SCALE) and machine.book.is_crossed()
    assert machine.last_u == 13                                  # (not applied as far as sync goes)
