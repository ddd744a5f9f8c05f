"""Against the local exchange without faults: every message sent is in the raw files exactly once, in
receive order, equal field by field; files rotate, each opening with a snapshot that anchors it."""

from __future__ import annotations

import pytest

from midas.collector import CollectorOptions
from midas.config import load_settings
from midas.exchange import LocalExchange, read_connections, read_sent_messages

SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]


def _bridges(futures: bool, lid: int, diff: dict) -> bool:
    if futures:
        return diff["first_update_id"] <= lid <= diff["last_update_id"] or diff["prev_update_id"] == lid
    return diff["first_update_id"] <= lid + 1 <= diff["last_update_id"]


def check_file_can_be_rebuilt_alone(recs: list[dict], futures: bool) -> None:
    """Binance's procedure on one file: the opening snapshot is bridged by a later diff of the file,
    and from there the diffs continue each other."""
    lid = recs[0]["last_update_id"]
    diffs = [r for r in recs if r["type"] == "depth"]
    kept = [d for d in diffs if (d["last_update_id"] >= lid if futures else d["last_update_id"] > lid)]
    if not kept:
        return
    assert _bridges(futures, lid, kept[0]), (lid, kept[0])
    for prev, d in zip(kept, kept[1:]):
        if futures:
            assert d["prev_update_id"] == prev["last_update_id"]
        else:
            assert d["first_update_id"] == prev["last_update_id"] + 1


@pytest.mark.parametrize("venue,streams,in_url", [
    ("binance-futures", ["depth", "trade"], False),          # streams sent as SUBSCRIBE requests
    ("binance", ["depth", "trade", "bookTicker"], True)],
    ids=["futures-subscribe", "spot-bookTicker-url"])
def test_no_loss_exactly_once_in_order_with_rotation(tmp_path, coll, venue, streams, in_url):
    truth = tmp_path / "truth"
    futures = venue == "binance-futures"
    with LocalExchange(venue=venue, symbols=SYMBOLS, seed=11, truth_dir=truth) as ex:
        settings = load_settings(env_file=None, data_dir=tmp_path / "data", ws_url=ex.ws_url,
                                 rest_url=ex.rest_url, venue=venue, symbols=SYMBOLS, streams=streams,
                                 file_rotation_hours=0.0005, reconnect_delay_secs=0.2)
        # 2 or 3 streams per symbol, at most 4 per connection: the symbols need 2 or 3 connections.
        options = CollectorOptions(max_streams_per_connection=4, health_interval_secs=1.0,
                                   max_url_chars=2000 if in_url else 0)
        with coll.RunningCollector(settings, options) as run:
            files = run.collector.states["BTCUSDT"].files
            run.wait_for(lambda: all(len(s.files.closed_files) >= 2 for s in run.collector.states.values()),
                         timeout=40, what="two rotations of every symbol")
            ex.stop()       # the exchange closes every connection: all it sent has been delivered
            run.wait_for(run.all_disconnected, timeout=20, what="the collector to see the close")
        summary = run.summary
    sent = coll.sent_records(truth, venue)
    paths = [c["path"] for c in read_connections(truth) if c["event"] == "open"]
    # Futures: each connection is a /public socket (depth) and a /market socket (trades).
    if in_url:
        assert all(p.startswith("/stream?streams=") for p in paths)
    else:
        assert sorted(paths) == ["/market/stream"] * (len(paths) // 2) + ["/public/stream"] * (len(paths) // 2)
        # The answers to SUBSCRIBE are on the wire too; they are not data.
        assert all(any(t.startswith('{"result":null,"id":1}') for t in texts)
                   for texts in read_sent_messages(truth).values())
    assert summary.connections == (2 if len(streams) == 2 else 3)
    assert len(sent.per_connection) == summary.connections * (2 if futures else 1)
    assert summary.gaps == 0 and summary.duplicates == 0 and summary.malformed == 0
    for symbol in SYMBOLS:
        expected = [coll.strip_local(r) for r in sent.unique(symbol)]
        got = coll.data_records(coll.collected(tmp_path / "data", venue, symbol))
        got = [coll.strip_local(r) for r in got]
        if futures:
            assert coll.per_stream(got) == coll.per_stream(expected), symbol
        else:
            assert got == expected, symbol
        assert len(expected) > 20
        per_file = coll.check_files_start_with_snapshots(tmp_path / "data", venue, symbol)
        assert len(per_file) >= 3
        for recs in per_file:
            check_file_can_be_rebuilt_alone(recs, futures)
        events = [(r["event"], r["detail"]) for recs in per_file for r in recs if r["type"] == "event"]
        kinds = [e for e, _ in events]
        assert kinds[0] == "connected" and kinds[-2:] == ["disconnected", "shutdown"]
        assert kinds.count("rotated") == len(per_file) - 1
        assert events[-2][1].startswith("connection ") and "closed by the server (code 1001" in events[-2][1]
    assert files.closed_files[0].name.startswith("BTCUSDT_")
    assert sum(summary.messages.values()) == sum(len(sent.unique(s)) for s in SYMBOLS)
