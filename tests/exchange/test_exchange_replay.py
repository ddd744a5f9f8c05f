"""Replaying the real recordings: every recorded message arrives in order, and a client following
Binance's procedure rebuilds a book whose best levels equal every bookTicker with the same `u`."""

from __future__ import annotations

import gzip
import json
import re

import orjson
import pytest

from midas.exchange import LocalExchange, read_sent_messages

# From shared/data/binance/README.md: bookTickers whose u equals a diff's u.
ORACLE_TICKERS = {"binance": 1072, "binance-futures": 625}


def read_recording(path):
    """(envelopes in order, the snapshot) read independently of midas."""
    envelopes, snapshot = [], None
    with gzip.open(path, "rt") as f:
        for line in f:
            _, _, text = line.rstrip("\n").partition(" ")
            if text.startswith('{"lastUpdateId"'):
                snapshot = text
            else:
                envelopes.append(text)
    return envelopes, snapshot


@pytest.mark.parametrize("venue", ["binance", "binance-futures"])
def test_replay_delivers_everything_and_matches_book_ticker_oracle(venue, recordings, tmp_path, refbook,
                                                                   stream_client, get, route_prefix):
    envelopes, snapshot_text = read_recording(recordings[venue])
    streams = sorted({re.match(r'\{"stream":"([^"]+)"', e).group(1) for e in envelopes})
    futures = venue == "binance-futures"
    depth_path = "/fapi/v1/depth" if futures else "/api/v3/depth"
    # One connection per route, as on Binance (futures: trades on /market, the rest on /public).
    by_route: dict[str, list[str]] = {}
    for e in envelopes:
        stream = re.match(r'\{"stream":"([^"]+)"', e).group(1)
        by_route.setdefault(route_prefix(stream, futures), []).append(e)
    assert len(by_route) == (2 if futures else 1)
    with LocalExchange(replay=[recordings[venue]], speed=0, truth_dir=tmp_path) as ex:
        clients = {}
        for prefix in sorted(by_route):
            names = [n for n in streams if route_prefix(n, futures) == prefix]
            clients[prefix] = stream_client(f"{ex.ws_url}{prefix}/stream?streams={'/'.join(names)}")
        status, headers, body = get(f"{ex.rest_url}{depth_path}?symbol=BTCUSDT&limit=1000")
        for prefix, client in clients.items():
            client.wait_for(lambda: len(client.frames) >= len(by_route[prefix]), timeout=120,
                            what=f"{len(by_route[prefix])} replayed messages on {prefix or '/'}")
            client.close()
    assert status == 200
    assert body == snapshot_text                      # the recorded snapshot, byte for byte
    sent = read_sent_messages(tmp_path)
    for n, prefix in enumerate(sorted(by_route), start=1):
        # every message of the route, in order, as recorded
        assert clients[prefix].frames == by_route[prefix]
        assert sent[n] == by_route[prefix]
    client = clients["/public" if futures else ""]    # depth and bookTicker share it

    book = refbook("BTCUSDT", futures)
    book.track_depth = False
    snapshot = json.loads(body)
    tickers = []
    loaded = False
    for frame in client.frames:
        msg = orjson.loads(frame)
        data = msg["data"]
        if msg["stream"].endswith("@bookTicker"):
            tickers.append(data)
        elif data.get("e") == "depthUpdate":
            book.on_diff(data)
            if not loaded and data["u"] >= snapshot["lastUpdateId"]:
                assert book.load_snapshot(snapshot)
                loaded = True
    assert book.synced and book.gaps == 0
    checked = 0
    for t in tickers:
        best = book.bests.get(t["u"])
        if best is not None:
            assert best == (t["b"], t["B"], t["a"], t["A"]), f"bookTicker u={t['u']}"
            checked += 1
    assert checked == ORACLE_TICKERS[venue]
