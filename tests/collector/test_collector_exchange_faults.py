"""Each fault of the local exchange in turn: nothing lost, each message once, in order; every outage
and gap is in the files as event records followed by a snapshot; REST limits are honoured."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from midas.collector import CollectorOptions
from midas.collector.connection import StormRule
from midas.config import load_settings
from midas.exchange import Faults, LocalExchange

SYMBOLS = ["BTCUSDT", "ETHUSDT"]
VENUE = "binance-futures"


@dataclass
class Outcome:
    summary: object
    sent: object
    records: dict            # symbol -> every record of its files, in order
    got: dict                # symbol -> data records only


def run_against(tmp_path, coll, faults, until, *, options=None, timeout=30.0, venue=VENUE, **settings_kw):
    truth = tmp_path / "truth"
    data = tmp_path / "data"
    kw = dict(reconnect_delay_secs=0.2, stall_timeout_secs=5.0) | settings_kw
    with LocalExchange(venue=venue, symbols=SYMBOLS, seed=5, faults=faults, truth_dir=truth) as ex:
        settings = load_settings(env_file=None, data_dir=data, ws_url=ex.ws_url, rest_url=ex.rest_url,
                                 venue=venue, symbols=SYMBOLS, **kw)
        with coll.RunningCollector(settings, options or CollectorOptions(health_interval_secs=1)) as run:
            run.wait_for(lambda: until(run.collector), timeout=timeout, what="the fault to show")
            ex.stop()
            run.wait_for(run.all_disconnected, timeout=20, what="the final disconnect")
    records = {s: coll.collected(data, venue, s) for s in SYMBOLS}
    return Outcome(run.summary, coll.sent_records(truth, venue), records,
                   {s: coll.data_records(r) for s, r in records.items()})


def _reconnects(c):
    return sum(s.reconnects for s in c.supervisors)


def _connects(c):
    return sum(s.connects for s in c.supervisors)


def _settled_after(n):
    """At least `n` connections opened and every symbol back in sync on the latest one."""
    def check(c):
        return _connects(c) >= n and all(s.connection is not None and s.tracker.in_sync
                                         and s.tracker.last_update_id is not None
                                         for s in c.states.values())
    return check


def _written(c):
    return sum(c.router.accepted.values())


def _events(records, kind):
    return [r["detail"] for r in records if r["type"] == "event" and r["event"] == kind]


def test_disconnects_lose_nothing_the_socket_delivered(tmp_path, coll):
    out = run_against(tmp_path, coll, Faults(disconnect_every_secs=1.0), _settled_after(3))
    assert len(out.sent.per_connection) >= 3
    for s in SYMBOLS:
        lost = coll.match_connection_prefixes(out.got[s], out.sent, s)
        # An aborted socket can swallow what was in flight; the last connection closed cleanly.
        assert lost[max(lost)] == 0
        assert all(n <= 20 for n in lost.values()), lost
        tails = coll.events_after(out.records[s], "disconnected")
        assert tails[:-1] == [["connected", "resync", "snapshot"]] * (len(tails) - 1)
        assert tails[-1] == ["shutdown"]
        assert all("connection lost (no close frame)" in d for d in _events(out.records[s], "disconnected")[:-1])


def test_dropped_diffs_are_gaps_followed_by_a_snapshot_that_anchors(tmp_path, coll):
    out = run_against(tmp_path, coll, Faults(drop_diffs=2, drop_every_secs=1.2),
                      lambda c: c.router.gaps_total >= 4 and all(s.tracker.in_sync for s in c.states.values()))
    assert out.summary.gaps >= 4 and out.summary.connections == 1
    for s in SYMBOLS:
        coll.assert_same_order(out.got[s], out.sent.unique(s), VENUE)
        recs = out.records[s]
        gaps = [i for i, r in enumerate(recs) if r["type"] == "event" and r["event"] == "gap"]
        assert len(gaps) >= 2
        for i in gaps:
            before = [r for r in recs[:i] if r["type"] == "depth"][-1]
            after = recs[i + 1]
            assert after["type"] == "depth"          # the gap event sits right before the diff
            assert recs[i]["detail"] == (f"sequence gap: expected pu={before['last_update_id']}, "
                                         f"got pu={after['prev_update_id']} (u={after['last_update_id']})")
            snap_at = next((j for j in range(i, len(recs)) if recs[j]["type"] == "snapshot"), None)
            if snap_at is None:
                # Only a gap in the last moments before the exchange stopped may lack its snapshot.
                assert i == gaps[-1]
                assert [r["event"] for r in recs[i + 1:] if r["type"] == "event"] == ["disconnected", "shutdown"]
                continue
            assert recs[snap_at - 1]["event"] == "resync"
            assert recs[snap_at]["last_update_id"] >= after["prev_update_id"]   # anchors the new run
        tails = coll.events_after(recs, "gap")
        assert tails[:-1] == [["resync", "snapshot"]] * (len(gaps) - 1)
        assert tails[-1] in (["resync", "snapshot"], ["disconnected", "shutdown"])


def test_duplicates_are_written_once(tmp_path, coll):
    out = run_against(tmp_path, coll, Faults(duplicate_every=5), lambda c: _written(c) >= 100)
    sent_dups = sum(out.sent.duplicates.values())
    assert sent_dups >= 15
    assert out.summary.duplicates == sent_dups
    for s in SYMBOLS:
        coll.assert_same_order(out.got[s], out.sent.unique(s), VENUE)


def test_malformed_frames_are_counted_and_skipped(tmp_path, coll, caplog):
    out = run_against(tmp_path, coll, Faults(malformed_every=8), lambda c: c.router.malformed_total >= 12)
    assert out.summary.malformed == sum(out.sent.malformed.values()) >= 12
    assert out.summary.connections == 1
    for s in SYMBOLS:
        coll.assert_same_order(out.got[s], out.sent.unique(s), VENUE)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("malformed message skipped")]
    assert len(lines) == out.summary.malformed
    assert all("connection=1" in line and "copy=" in line for line in lines)


def test_a_malformed_storm_reconnects_with_growing_delays(tmp_path, coll):
    # Every connection storms (a malformed frame before every 2nd message): the collector keeps
    # reconnecting, each time after a longer delay (0.2 s doubling, +/-20 % jitter).
    options = CollectorOptions(health_interval_secs=1, storm=StormRule(count=5, window_secs=10))
    out = run_against(tmp_path, coll, Faults(malformed_every=2), lambda c: _connects(c) >= 4,
                      options=options)
    for s in SYMBOLS:
        coll.match_connection_prefixes(out.got[s], out.sent, s)
        recs = out.records[s]
        events = [r for r in recs if r["type"] == "event" and r["event"] in ("connected", "disconnected")]
        storms = [e for e in events if e["event"] == "disconnected"][:3]
        assert [e["detail"] for e in storms] == [
            f"connection {n}: malformed-message storm: 5 malformed messages within 10s" for n in (1, 2, 3)]
        waits = [(b["local_ts"] - a["local_ts"]) / 1e6 for a, b in zip(events, events[1:])
                 if a["event"] == "disconnected" and b["event"] == "connected"][:3]
        for wait, base in zip(waits, (0.2, 0.4, 0.8)):
            assert wait >= base * 0.8, waits


def test_a_stall_reconnects_after_the_stall_timeout(tmp_path, coll):
    out = run_against(tmp_path, coll, Faults(stall_secs=4, stall_after_secs=1),
                      _settled_after(2), stall_timeout_secs=1)
    for s in SYMBOLS:
        lost = coll.match_connection_prefixes(out.got[s], out.sent, s)
        assert set(lost.values()) == {0}
        assert _events(out.records[s], "disconnected")[0] == "connection 1: stalled: no message for 1s"
        assert coll.events_after(out.records[s], "disconnected")[0] == ["connected", "resync", "snapshot"]


def test_server_closing_old_connections_loses_nothing(tmp_path, coll):
    out = run_against(tmp_path, coll, Faults(max_connection_age_secs=1.0), _settled_after(3))
    for s in SYMBOLS:
        lost = coll.match_connection_prefixes(out.got[s], out.sent, s)
        assert set(lost.values()) == {0}
        assert "closed by the server (code 1001" in _events(out.records[s], "disconnected")[0]


@pytest.mark.parametrize("venue,streams,max_url_chars", [
    ("binance-futures", ["depth", "trade"], 2000),
    ("binance", ["depth", "trade", "bookTicker"], 2000),
    ("binance-futures", ["depth", "trade"], 0)],            # streams sent as SUBSCRIBE requests
    ids=["futures", "spot-bookTicker", "futures-subscribe"])
def test_planned_reconnect_overlaps_and_writes_each_message_once(tmp_path, coll, venue, streams,
                                                                 max_url_chars):
    options = CollectorOptions(health_interval_secs=1, min_overlap_secs=0.3, overlap_timeout_secs=10,
                               max_url_chars=max_url_chars)
    out = run_against(tmp_path, coll, Faults(), lambda c: sum(s.connects for s in c.supervisors) >= 3,
                      options=options, max_connection_age_secs=1.0, venue=venue, streams=streams)
    assert out.summary.gaps == 0
    kinds = [("depth", "last_update_id"), ("trade", "trade_id")]
    if "bookTicker" in streams:
        kinds.append(("book_ticker", "update_id"))
        assert out.summary.messages["book_ticker"] > 20
    for s in SYMBOLS:
        for kind, key in kinds:
            sent = {}
            for recs in out.sent.per_connection.values():
                for r in recs:
                    if r["symbol"] == s and r["type"] == kind:
                        sent[r[key]] = coll.strip_local(r)
            got = [r for r in out.got[s] if r["type"] == kind]
            # Every message sent on any connection, once, in exchange order, equal field by field.
            assert [coll.strip_local(r) for r in got] == [sent[k] for k in sorted(sent)], (s, kind)
        depth = [r for r in out.got[s] if r["type"] == "depth"]
        if venue == "binance-futures":
            assert all(b["prev_update_id"] == a["last_update_id"] for a, b in zip(depth, depth[1:]))
        else:
            assert all(b["first_update_id"] == a["last_update_id"] + 1 for a, b in zip(depth, depth[1:]))
        connected = _events(out.records[s], "connected")
        assert len(connected) >= 3
        assert all("(planned reconnect, overlapping: nothing missed)" in d for d in connected[1:])
        assert len(_events(out.records[s], "disconnected")) == 1      # only the final one


@pytest.mark.parametrize("status", [429, 418])
def test_rest_429_and_418_retry_after_is_honoured(tmp_path, coll, status):
    faults = Faults(rest_fail_first=2, rest_fail_status=status, rest_retry_after_secs=1)
    out = run_against(tmp_path, coll, faults, lambda c: all(s.files.has_file for s in c.states.values()))
    assert out.summary.rest_answers[status] == 2 and out.summary.rest_answers[200] >= 2
    times = [t for t, _ in out.summary.rest_sends]
    # Both first requests got the status + Retry-After: 1; nothing was sent in the second after.
    assert times[2] - max(times[:2]) >= 1.0
    for s in SYMBOLS:
        assert out.records[s][0]["type"] == "snapshot"


def test_rest_5xx_backs_off(tmp_path, coll):
    faults = Faults(rest_fail_first=2, rest_fail_status=500)
    out = run_against(tmp_path, coll, faults, lambda c: all(s.files.has_file for s in c.states.values()))
    assert out.summary.rest_answers[500] == 2
    times = [t for t, _ in out.summary.rest_sends]
    assert 0.9 <= times[2] - times[0]      # retried after the first backoff delay (1 s - 10 %)
    for s in SYMBOLS:
        assert out.records[s][0]["type"] == "snapshot"
        coll.assert_same_order(out.got[s], out.sent.unique(s), VENUE)


def test_slow_rest_answers_keep_every_message_in_receive_order(tmp_path, coll):
    # The first snapshots take 2 s: what arrives meanwhile waits (compressed) and follows them.
    faults = Faults(rest_slow_secs=2, rest_slow_first=2)
    out = run_against(tmp_path, coll, faults,
                      lambda c: all(s.files.has_file for s in c.states.values()) and _written(c) >= 150)
    for s in SYMBOLS:
        recs = out.records[s]
        assert recs[0]["type"] == "snapshot"
        held = [r for r in recs[1:] if r["type"] in ("depth", "trade") and r["local_ts"] < recs[0]["local_ts"]]
        assert len(held) >= 10           # received during the 2 s the snapshot took
        coll.assert_same_order(out.got[s], out.sent.unique(s), VENUE)
        local = [r["local_ts"] for r in out.got[s]]
        assert local == sorted(local)    # receive order
