"""Live sequence tracking on both venues, on hand-made ids and on the two real recordings."""

from __future__ import annotations

import gzip

import orjson
import pytest

from midas import wire
from midas.collector.sequence import DiffVerdict, SequenceTracker, SnapshotVerdict


def test_spot_continuity_gap_and_duplicate():
    t = SequenceTracker(futures=False)
    assert t.on_diff(101, 105, None) is DiffVerdict.FIRST
    assert t.run_floor == 100
    assert t.on_diff(106, 110, None) is DiffVerdict.OK
    assert t.on_diff(106, 110, None) is DiffVerdict.DUPLICATE
    assert t.on_diff(103, 108, None) is DiffVerdict.DUPLICATE
    assert t.last_update_id == 110
    assert t.on_diff(113, 120, None) is DiffVerdict.GAP
    assert t.gap_detail == "expected U=111, got U=113 (u=120)"
    assert t.run_floor == 112 and t.in_sync is False
    # A snapshot older than the new run cannot anchor it; one at its floor can.
    assert t.on_snapshot(111) is SnapshotVerdict.STALE
    assert t.in_sync is False
    assert t.on_snapshot(112) is SnapshotVerdict.ANCHORS
    assert t.in_sync is True


def test_futures_uses_pu_not_contiguity():
    t = SequenceTracker(futures=True)
    assert t.on_diff(1000, 1450, 990) is DiffVerdict.FIRST
    assert t.run_floor == 990
    # ids jump by thousands on futures; pu links the events.
    assert t.on_diff(5000, 9000, 1450) is DiffVerdict.OK
    assert t.on_diff(9500, 9600, 9001) is DiffVerdict.GAP
    assert t.gap_detail == "expected pu=9000, got pu=9001 (u=9600)"
    assert t.run_floor == 9001
    assert t.on_snapshot(9000) is SnapshotVerdict.STALE
    assert t.on_snapshot(9550) is SnapshotVerdict.ANCHORS


def test_snapshot_before_first_diff_is_checked_when_the_run_starts():
    t = SequenceTracker(futures=False)
    assert t.on_snapshot(200) is SnapshotVerdict.ANCHORS
    assert t.on_diff(150, 210, None) is DiffVerdict.FIRST
    assert t.in_sync is True
    t.new_run()
    assert t.last_update_id is None and t.in_sync is False
    assert t.on_snapshot(200) is SnapshotVerdict.ANCHORS
    # The stream starts after updates the snapshot does not have: not in sync, fetch again.
    assert t.on_diff(205, 210, None) is DiffVerdict.FIRST
    assert t.in_sync is False


def test_snapshot_opens_file_only_when_not_behind_the_stream():
    t = SequenceTracker(futures=False)
    assert t.snapshot_opens_file(5) is True
    t.on_diff(101, 105, None)
    t.on_diff(106, 110, None)
    assert t.snapshot_opens_file(109) is False
    assert t.snapshot_opens_file(110) is True
    assert t.snapshot_opens_file(500) is True


@pytest.mark.parametrize("venue,diffs", [("binance", 6495), ("binance-futures", 9022)])
def test_real_recordings_have_no_gap_and_their_snapshot_anchors(recordings, venue, diffs):
    tracker = SequenceTracker(futures=venue == "binance-futures")
    verdicts = {v: 0 for v in DiffVerdict}
    snapshot_id = None
    with gzip.open(recordings[venue], "rb") as fh:
        for line in fh:
            ts, _, payload = line.partition(b" ")
            obj = orjson.loads(payload)
            if "lastUpdateId" in obj:
                snapshot_id = obj["lastUpdateId"]
                assert tracker.on_snapshot(snapshot_id) is SnapshotVerdict.ANCHORS
                continue
            rec = wire.parse_stream_message(obj, venue, int(ts) // 1000)
            if rec["type"] == "depth":
                verdicts[tracker.on_diff(rec["first_update_id"], rec["last_update_id"],
                                         rec["prev_update_id"])] += 1
    assert snapshot_id is not None
    assert verdicts == {DiffVerdict.FIRST: 1, DiffVerdict.OK: diffs - 1, DiffVerdict.DUPLICATE: 0,
                        DiffVerdict.GAP: 0}
    assert tracker.in_sync is True


def test_real_recording_with_a_dropped_diff_reports_the_exact_gap(recordings):
    tracker = SequenceTracker(futures=False)
    diffs = []
    with gzip.open(recordings["binance"], "rb") as fh:
        for line in fh:
            ts, _, payload = line.partition(b" ")
            obj = orjson.loads(payload)
            if obj.get("data", {}).get("e") == "depthUpdate":
                diffs.append(obj["data"])
    gaps = []
    for i, d in enumerate(diffs):
        if i == 100:
            continue            # lost on the wire
        if tracker.on_diff(d["U"], d["u"], None) is DiffVerdict.GAP:
            gaps.append((i, tracker.gap_detail))
    assert gaps == [(101, f"expected U={diffs[100]['U']}, got U={diffs[101]['U']} (u={diffs[101]['u']})")]
