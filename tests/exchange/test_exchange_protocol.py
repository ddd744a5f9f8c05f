"""The WebSocket protocol: live SUBSCRIBE/UNSUBSCRIBE/LIST_SUBSCRIPTIONS, Binance's errors, stream
speeds, pings, the message-rate limit, bad input, and the subprocess mode."""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import time

import pytest
from websockets.exceptions import InvalidStatus

from midas.errors import ExchangeError
from midas.exchange import LocalExchange, read_connections, read_sent_messages


def _replies(client, count):
    client.wait_for(lambda: len([f for f in client.frames if '"id"' in f]) >= count,
                    what=f"{count} replies")
    return [json.loads(f) for f in client.frames if '"id"' in f]


def test_live_subscribe_unsubscribe_list(stream_client):
    with LocalExchange(venue="binance-futures", symbols=["BTCUSDT", "ETHUSDT"]) as ex:
        client = stream_client(f"{ex.ws_url}/stream")
        client.send({"method": "SUBSCRIBE", "params": ["btcusdt@trade", "ethusdt@depth@100ms"], "id": 1})
        client.wait_for(lambda: any('"ethusdt@depth@100ms"' in f for f in client.frames), what="depth")
        client.send({"method": "LIST_SUBSCRIPTIONS", "id": 2})
        client.send({"method": "UNSUBSCRIBE", "params": ["ethusdt@depth@100ms"], "id": 3})
        client.send({"method": "LIST_SUBSCRIPTIONS", "id": 4})
        replies = _replies(client, 4)
        n_at_unsubscribe = len(client.frames)
        client.wait_for(lambda: len(client.frames) > n_at_unsubscribe + 3 or
                        all('"ethusdt@depth' not in f for f in client.frames[n_at_unsubscribe:]),
                        what="frames after unsubscribing")
        client.close()
    assert replies == [{"result": None, "id": 1},
                       {"result": ["btcusdt@trade", "ethusdt@depth@100ms"], "id": 2},
                       {"result": None, "id": 3}, {"result": ["btcusdt@trade"], "id": 4}]
    after = client.frames[client.frames.index(json.dumps({"result": None, "id": 3}, separators=(",", ":"))) + 1:]
    assert all('"ethusdt@depth@100ms"' not in f for f in after)
    streams = {json.loads(f)["stream"] for f in client.frames if '"stream"' in f}
    assert streams <= {"btcusdt@trade", "ethusdt@depth@100ms"}


def test_malformed_requests_get_binance_errors_and_the_connection_lives(stream_client):
    bad = [
        ("not json", 3, None),
        (json.dumps([1, 2]), 2, None),
        (json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@trade"]}), 2, None),
        (json.dumps({"method": "JUMP", "params": [], "id": 5}), 2, 5),
        (json.dumps({"method": "SUBSCRIBE", "params": "btcusdt@trade", "id": 6}), 2, 6),
        (json.dumps({"method": "SUBSCRIBE", "params": ["xyzusdt@trade"], "id": 7}), 2, 7),
        (json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@kline"], "id": 8}), 2, 8),
        (json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@depth@7ms"], "id": 9}), 2, 9),
        (json.dumps({"method": "SUBSCRIBE", "params": [3], "id": 10}), 2, 10),
        (json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": -1}), 2, None),
        (json.dumps({"method": "SET_PROPERTY", "params": ["combined", "yes"], "id": 11}), 1, 11),
    ]
    with LocalExchange(venue="binance", symbols=["BTCUSDT"], message_limit=100) as ex:
        client = stream_client(f"{ex.ws_url}/ws")
        for text, _, _ in bad:
            client.send(text)
        replies = _replies(client, len(bad))
        client.send({"method": "LIST_SUBSCRIPTIONS", "id": 12})
        replies = _replies(client, len(bad) + 1)
        client.close()
    for (text, code, req_id), reply in zip(bad, replies):
        assert reply["id"] == req_id and reply["error"]["code"] == code, (text, reply)
        assert reply["error"]["msg"]
    assert "xyzusdt@trade" in replies[5]["error"]["msg"]
    assert replies[-1] == {"result": [], "id": 12}


def test_combined_property_and_single_stream_payloads(stream_client):
    with LocalExchange(venue="binance", symbols=["BTCUSDT"]) as ex:
        client = stream_client(f"{ex.ws_url}/ws/btcusdt@depth@100ms")
        client.wait_for(lambda: len(client.frames) >= 2, what="two diffs")
        client.send({"method": "GET_PROPERTY", "params": ["combined"], "id": 1})
        client.send({"method": "SET_PROPERTY", "params": ["combined", True], "id": 2})
        _replies(client, 2)
        n = len(client.frames)
        client.wait_for(lambda: len(client.frames) >= n + 2, what="two more diffs")
        client.close()
    first = json.loads(client.frames[0])
    assert first["e"] == "depthUpdate" and "stream" not in first
    assert set(first) == {"e", "E", "s", "U", "u", "b", "a"}
    replies = [json.loads(f) for f in client.frames if '"id"' in f]
    assert replies == [{"result": False, "id": 1}, {"result": None, "id": 2}]
    last = json.loads(client.frames[-1])
    assert last["stream"] == "btcusdt@depth@100ms" and last["data"]["e"] == "depthUpdate"


def test_slow_depth_speeds_and_book_ticker(stream_client, refbook, get):
    with LocalExchange(venue="binance-futures", symbols=["BTCUSDT"]) as ex:
        client = stream_client(f"{ex.ws_url}/stream?streams=btcusdt@depth/btcusdt@depth@500ms/"
                               "btcusdt@bookTicker/btcusdt@depth@0ms")
        client.wait_for(lambda: sum('"btcusdt@depth@500ms"' in f for f in client.frames) >= 2,
                        what="two 500 ms diffs")
        snap = json.loads(get(f"{ex.rest_url}/fapi/v1/depth?symbol=BTCUSDT&limit=1000")[2])
        client.wait_for(lambda: sum('"btcusdt@depth@500ms"' in f for f in client.frames) >= 4,
                        what="four 500 ms diffs")
        client.close()
    by_stream: dict[str, list] = {}
    for f in client.frames:
        msg = json.loads(f)
        by_stream.setdefault(msg["stream"], []).append(msg["data"])
    for name, step in (("btcusdt@depth", 250), ("btcusdt@depth@500ms", 500)):
        diffs = by_stream[name]
        assert all(b["pu"] == a["u"] for a, b in zip(diffs, diffs[1:]))
        assert all(b["E"] // step == a["E"] // step + 1 for a, b in zip(diffs, diffs[1:]))
    fast = by_stream["btcusdt@depth@0ms"]
    assert all(b["E"] - a["E"] == 100 for a, b in zip(fast, fast[1:]))
    # every bookTicker describes the book after the diff with the same u
    book = refbook("BTCUSDT", futures=True)
    book.track_depth = False
    loaded = False
    for d in fast:
        book.on_diff(d)
        if not loaded and d["u"] >= snap["lastUpdateId"]:
            assert book.load_snapshot(snap)
            loaded = True
    tickers = [t for t in by_stream["btcusdt@bookTicker"] if t["u"] in book.bests]
    assert len(tickers) >= 5
    for t in tickers:
        assert set(t) == {"e", "u", "s", "b", "B", "a", "A", "T", "E"}
        assert book.bests[t["u"]] == (t["b"], t["B"], t["a"], t["A"])


def test_handshake_rejects_unknown_paths_and_streams(stream_client):
    with LocalExchange(venue="binance", symbols=["BTCUSDT"]) as ex:
        for path, status in (("/stream?streams=btcusdt@nope", 400), ("/ws/ethusdt@trade", 400),
                             ("/somewhere", 404)):
            with pytest.raises(InvalidStatus) as err:
                stream_client(ex.ws_url + path)
            assert err.value.response.status_code == status
            body = json.loads(err.value.response.body)
            assert body["code"] in (-1100, -1121, -1) and body["msg"]
        # the /public and /market prefixes of Binance's split futures endpoints are accepted
        client = stream_client(f"{ex.ws_url}/public/stream?streams=btcusdt@depth@100ms")
        client.wait_for(lambda: len(client.frames) >= 1, what="a diff")
        encoded = stream_client(f"{ex.ws_url}/market/ws/btcusdt%40depth%40100ms")
        encoded.wait_for(lambda: len(encoded.frames) >= 1, what="a diff")
        assert json.loads(encoded.frames[0])["e"] == "depthUpdate"


def test_client_over_message_rate_is_disconnected(stream_client):
    with LocalExchange(venue="binance", symbols=["BTCUSDT"]) as ex:     # spot: 5 messages/s
        client = stream_client(f"{ex.ws_url}/ws")
        client.send_burst([{"method": "LIST_SUBSCRIPTIONS", "id": i} for i in range(12)])
        assert client.closed.wait(30)
    assert client.close_code == 1008
    assert len([f for f in client.frames if '"id"' in f]) <= 5


def _raw_ws_connect(port: int, path: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
                 .encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101")
    return sock


def _read_frame(sock: socket.socket) -> tuple[int, bytes]:
    def exact(n):
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data
    b0, b1 = exact(2)
    length = b1 & 0x7F
    if length == 126:
        length = struct.unpack(">H", exact(2))[0]
    elif length == 127:
        length = struct.unpack(">Q", exact(8))[0]
    return b0 & 0x0F, exact(length)


def test_server_pings_and_drops_a_client_that_never_pongs():
    with LocalExchange(venue="binance-futures", symbols=["BTCUSDT"], ping_interval_secs=0.3,
                       pong_timeout_secs=0.5) as ex:
        sock = _raw_ws_connect(ex.port, "/ws")       # no streams: only control frames arrive
        opcodes = []
        try:
            while True:
                opcode, _ = _read_frame(sock)
                opcodes.append(opcode)
                if opcode == 0x8:
                    break
        except ConnectionError:     # dropped without a close frame; a timeout fails the test
            pass
        sock.close()
    assert opcodes[0] == 0x9                      # a ping first
    assert 0x9 in opcodes and set(opcodes) <= {0x9, 0x8}


def test_bad_input_never_crashes_the_server(stream_client, get):
    with LocalExchange(venue="binance-futures", symbols=["BTCUSDT"], message_limit=1000) as ex:
        for junk in (b"GARBAGE\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n", b"\x00\xff" * 100,
                     b"POST /fapi/v1/depth HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"):
            s = socket.create_connection(("127.0.0.1", ex.port), timeout=30)
            s.sendall(junk)
            s.settimeout(0.5)      # an unfinished handshake is dropped by the server later
            try:
                s.recv(1024)
            except OSError:
                pass
            s.close()
        client = stream_client(f"{ex.ws_url}/ws")
        client.send(b"\x00\x01binary")
        client.send("{" * 5000)
        client.send({"method": "SUBSCRIBE", "params": ["btcusdt@trade"] * 3000, "id": 1})
        client.send({"method": "LIST_SUBSCRIPTIONS", "id": 2})
        replies = _replies(client, 4)
        assert [r.get("error", {}).get("code") for r in replies[:3]] == [3, 3, 2]
        assert "at most 1024" in replies[2]["error"]["msg"]
        assert replies[3] == {"result": [], "id": 2}
        status, _, body = get(f"{ex.rest_url}/fapi/v1/depth?symbol=BTCUSDT&limit=5")
        assert status == 200 and len(json.loads(body)["bids"]) == 5
        good = stream_client(f"{ex.ws_url}/ws/btcusdt@depth@100ms")
        good.wait_for(lambda: len(good.frames) >= 1, what="a diff after the junk")


def test_subprocess_mode_serves_and_writes_truth(tmp_path, stream_client, get):
    with LocalExchange(venue="binance", symbols=["SOLUSDT"], subprocess=True, truth_dir=tmp_path) as ex:
        assert ex.process is not None and ex.port > 0
        client = stream_client(f"{ex.ws_url}/ws/solusdt@trade")
        status, _, body = get(f"{ex.rest_url}/api/v3/depth?symbol=SOLUSDT&limit=5")
        assert status == 200 and json.loads(body)["bids"][0][0].endswith("000000")
        client.wait_for(lambda: len(client.frames) >= 2, what="two trades")
        client.close()
    assert any(line.startswith("WS_URL=ws://127.0.0.1:") for line in ex.output)
    sent = read_sent_messages(tmp_path)
    assert sent[1] == client.frames
    assert [c["event"] for c in read_connections(tmp_path)] == ["open", "close"]


def test_truth_keeps_no_file_open_per_closed_connection(tmp_path, stream_client):
    with LocalExchange(venue="binance", symbols=["BTCUSDT"], truth_dir=tmp_path) as ex:
        client = stream_client(f"{ex.ws_url}/ws/btcusdt@depth@100ms")
        client.wait_for(lambda: len(client.frames) >= 1, what="a diff")
        client.close()
        open_before = len(os.listdir("/proc/self/fd"))
        for _ in range(10):
            c = stream_client(f"{ex.ws_url}/ws/btcusdt@depth@100ms")
            c.wait_for(lambda: len(c.frames) >= 1, what="a diff")
            c.close()
        deadline = time.monotonic() + 30
        while sum(e["event"] == "close" for e in read_connections(tmp_path)) < 11:
            assert time.monotonic() < deadline, "the exchange did not record 11 closed connections"
            time.sleep(0.05)
        open_after = len(os.listdir("/proc/self/fd"))
    assert open_after - open_before <= 2
    assert sorted(read_sent_messages(tmp_path)) == list(range(1, 12))


def test_subprocess_mode_reports_a_port_in_use(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ExchangeError, match=r"exited with code 2 .*cannot listen on 127.0.0.1:"):
            LocalExchange(venue="binance", subprocess=True, port=port).start()


def test_futures_streams_are_routed_by_path_like_binance(stream_client):
    """Binance's USD-M split: depth and bookTicker on /public, trades on /market; a stream asked on
    the wrong route (or on the legacy path without a route, for trades) is accepted and never sent."""
    names = "btcusdt@depth@100ms/btcusdt@trade/btcusdt@bookTicker"
    with LocalExchange(venue="binance-futures", symbols=["BTCUSDT"], seed=5) as ex:
        clients = {prefix: stream_client(f"{ex.ws_url}{prefix}/stream?streams={names}")
                   for prefix in ("", "/public", "/market")}
        for prefix, client in clients.items():
            client.wait_for(lambda: len(client.frames) >= 20, what=f"20 frames on {prefix or '/'}")
        trades_seen = len(clients["/market"].frames)
        # give the public connections as long again to receive a trade they must not get
        time.sleep(1.0)
        kinds = {prefix: {json.loads(f)["stream"].split("@", 1)[1] for f in client.frames}
                 for prefix, client in clients.items()}
    assert trades_seen >= 20
    assert kinds[""] == {"depth@100ms", "bookTicker"}
    assert kinds["/public"] == {"depth@100ms", "bookTicker"}
    assert kinds["/market"] == {"trade"}


def test_spot_serves_every_stream_on_every_path(stream_client):
    names = "btcusdt@depth@100ms/btcusdt@trade"
    with LocalExchange(venue="binance", symbols=["BTCUSDT"], seed=5) as ex:
        client = stream_client(f"{ex.ws_url}/stream?streams={names}")
        client.wait_for(lambda: {json.loads(f)["stream"] for f in client.frames} ==
                        {"btcusdt@depth@100ms", "btcusdt@trade"}, what="depth and trades on one connection")
