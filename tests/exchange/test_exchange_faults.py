"""Every stream fault is observable from the client side (real sockets)."""

from __future__ import annotations

import json

from midas.exchange import Faults, LocalExchange, read_sent_messages

DEPTH = "btcusdt@depth@100ms"


def _diffs(frames):
    return [json.loads(f)["data"] for f in frames]


def test_disconnect_every_drops_connections_without_close_frame(stream_client):
    with LocalExchange(venue="binance", faults=Faults(disconnect_every_secs=0.7)) as ex:
        client = stream_client(f"{ex.ws_url}/stream?streams={DEPTH}")
        assert client.closed.wait(30)
        assert client.close_code == 1006          # abnormal closure: no close frame


def test_drop_diffs_makes_one_sequence_gap_of_exactly_n_diffs(stream_client):
    with LocalExchange(venue="binance", faults=Faults(drop_diffs=3, drop_every_secs=1.0)) as ex:
        client = stream_client(f"{ex.ws_url}/stream?streams={DEPTH}")
        client.wait_for(lambda: len(client.frames) >= 12, what="12 diffs")
        client.close()
    diffs = _diffs(client.frames)
    gaps = [(a, b) for a, b in zip(diffs, diffs[1:]) if b["U"] != a["u"] + 1]
    assert len(gaps) >= 1
    a, b = gaps[0]
    assert b["E"] - a["E"] == 400                   # 3 diffs of 100 ms are missing
    assert b["U"] > a["u"] + 1
    # each window (one per second of connection age) leaves out exactly 3 diffs
    assert all(y["E"] - x["E"] == 400 for x, y in gaps)


def test_duplicate_every_sends_every_nth_message_twice(stream_client, tmp_path):
    with LocalExchange(venue="binance-futures", faults=Faults(duplicate_every=4), truth_dir=tmp_path) as ex:
        client = stream_client(f"{ex.ws_url}/stream?streams={DEPTH}")
        client.wait_for(lambda: len(client.frames) >= 20, what="20 frames")
        client.close()
    frames = client.frames
    unique = []
    for f in frames:
        if unique and unique[-1] == f:
            continue
        unique.append(f)
    assert len(frames) - len(unique) >= 4
    expected = []
    for i, f in enumerate(unique, 1):
        expected.append(f)
        if i % 4 == 0:
            expected.append(f)
    assert frames == expected[: len(frames)]
    assert read_sent_messages(tmp_path)[1] == frames


def test_malformed_every_inserts_broken_frames_cycling_kinds(stream_client):
    with LocalExchange(venue="binance-futures", faults=Faults(malformed_every=3)) as ex:
        client = stream_client(f"{ex.ws_url}/stream?streams={DEPTH}")
        client.wait_for(lambda: len(client.frames) >= 16, what="16 frames")
        client.close()
    kinds = []
    good = []
    for f in client.frames[:16]:
        try:
            msg = json.loads(f)
        except json.JSONDecodeError:
            kinds.append("invalid_json")
            continue
        data = msg["data"]
        if "s" not in data or "u" not in data:
            kinds.append("missing_fields")
        elif not isinstance(data["E"], int) or not isinstance(data["U"], int):
            kinds.append("wrong_types")
        else:
            kinds.append("ok")
            good.append(data)
    # every 3rd data message is preceded by a malformed frame: ok ok X ok ...
    assert kinds == ["ok", "ok", "invalid_json", "ok", "ok", "ok", "wrong_types", "ok", "ok", "ok",
                     "missing_fields", "ok", "ok", "ok", "invalid_json", "ok"]
    # the real messages are all there: futures ids still chain
    assert all(b["pu"] == a["u"] for a, b in zip(good, good[1:]))


def test_stall_keeps_connection_open_and_loses_the_stalled_messages(stream_client):
    faults = Faults(stall_secs=1.5, stall_after_secs=0.5)
    with LocalExchange(venue="binance", faults=faults) as ex:
        client = stream_client(f"{ex.ws_url}/stream?streams={DEPTH}")
        client.wait_for(lambda: len(client.times) >= 2 and client.times[-1] - client.times[0] > 2.5,
                        what="messages after the stall")
        client.close()
    assert client.close_code == 1000             # we closed it; the server never did
    times = client.times
    pauses = [b - a for a, b in zip(times, times[1:])]
    longest = max(pauses)
    assert longest >= 1.3
    i = pauses.index(longest)
    diffs = _diffs(client.frames)
    before, after = diffs[i], diffs[i + 1]
    assert after["U"] > before["u"] + 1          # what the market did meanwhile was not sent
    assert after["E"] - before["E"] >= 1300


def test_max_connection_age_closes_with_a_close_frame(stream_client):
    with LocalExchange(venue="binance-futures", faults=Faults(max_connection_age_secs=0.8)) as ex:
        client = stream_client(f"{ex.ws_url}/stream?streams={DEPTH}")
        assert client.closed.wait(30)
        assert client.close_code == 1001
        assert client.closed_at - client.opened_at >= 0.75    # closed at its age, not before
