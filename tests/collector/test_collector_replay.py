"""Replaying the real Binance recordings through the local exchange: the raw records equal, field by
field and in order, what midas.wire makes of the recording's lines (local_ts aside: it is ours)."""

from __future__ import annotations

import gzip

import orjson
import pytest

from midas import wire
from midas.collector import CollectorOptions
from midas.config import load_settings
from midas.exchange import LocalExchange


def _recording(path, venue):
    data, snapshot = [], None
    with gzip.open(path, "rb") as fh:
        for line in fh:
            ts, _, payload = line.partition(b" ")
            obj = orjson.loads(payload)
            if "lastUpdateId" in obj:
                snapshot = obj
                continue
            data.append(wire.parse_stream_message(obj, venue, int(ts) // 1000))
    return data, snapshot


@pytest.mark.parametrize("venue,counts", [
    ("binance", {"depth": 6495, "trade": 19904, "book_ticker": 73174}),
    ("binance-futures", {"depth": 9022, "trade": 10701, "book_ticker": 52260})])
def test_replayed_recording_is_collected_exactly(tmp_path, coll, recordings, venue, counts):
    expected, snapshot = _recording(recordings[venue], venue)
    assert {k: sum(1 for r in expected if r["type"] == k) for k in counts} == counts
    with LocalExchange(venue=venue, replay=[recordings[venue]], speed=0) as ex:
        settings = load_settings(env_file=None, data_dir=tmp_path / "data", ws_url=ex.ws_url,
                                 rest_url=ex.rest_url, venue=venue, symbols=["BTCUSDT"],
                                 streams=["depth", "trade", "bookTicker"], stall_timeout_secs=120)
        with coll.RunningCollector(settings, CollectorOptions(health_interval_secs=5)) as run:
            run.wait_for(lambda: sum(run.collector.router.accepted.values()) >= len(expected), timeout=120,
                         what="every recorded message")
        summary = run.summary
    assert summary.messages == counts
    assert summary.gaps == 0 and summary.duplicates == 0 and summary.malformed == 0
    records = coll.collected(tmp_path / "data", venue, "BTCUSDT")
    got = coll.data_records(records)
    assert len(got) == len(expected)
    coll.assert_same_order(got, expected, venue)
    assert records[0]["type"] == "snapshot"
    want = wire.parse_depth_snapshot(snapshot, venue, "BTCUSDT", 0, 1000)
    assert coll.strip_local(records[0]) == coll.strip_local(want)
    assert len(records[0]["bids"]) == 1000
    events = [(r["event"], r["detail"]) for r in records if r["type"] == "event"]
    assert [e for e, _ in events] == ["connected", "disconnected", "shutdown"]
    assert events[1][1] == "connection 1: shutdown" and events[2][1] == "collector stopped"
