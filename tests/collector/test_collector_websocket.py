"""The collector's WebSocket client hands every complete message to its callback, in order.

`DeliveringConnection` replaces websockets' message queue with a callback run from the socket's
`data_received`; these tests hold it to what the queue gave: fragmented messages reassembled,
binary and text alike, pings answered, and what arrives before the router takes over kept.
"""

from __future__ import annotations

import asyncio

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

from midas.collector.websocket import DeliveringConnection, Inbox


def test_messages_fragments_and_pings_reach_the_callback_in_order():
    got: list[tuple[bytes, int, float]] = []
    ping_latency: list[float] = []

    async def handler(ws):
        await ws.send('{"n":1}')
        await ws.send(['{"n":', "2", "}"])            # one message in three frames
        await ws.send(b'{"n":3}')
        pong = await ws.ping(b"are you there")
        ping_latency.append(await asyncio.wait_for(pong, timeout=5))
        await ws.send('{"n":4}')
        await ws.close()

    async def main():
        async with serve(handler, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            ws = await connect(f"ws://127.0.0.1:{port}", ping_interval=None, compression=None,
                               create_connection=lambda *a, **kw: DeliveringConnection(
                                   *a, deliver=lambda m, ts, at: got.append((bytes(m), ts, at)), **kw))
            await asyncio.wait_for(ws.wait_closed(), timeout=5)
            return ws.protocol.close_rcvd.code

    code = asyncio.run(main())
    assert [m for m, _, _ in got] == [b'{"n":1}', b'{"n":2}', b'{"n":3}', b'{"n":4}']
    assert [ts for _, ts, _ in got] == sorted(ts for _, ts, _ in got)
    assert all(type(ts) is int and ts > 1_600_000_000_000_000 for _, ts, _ in got)
    assert len(ping_latency) == 1 and ping_latency[0] >= 0
    assert code == 1000


def test_the_inbox_keeps_data_in_order_files_answers_by_id_and_sees_the_connection_end():
    async def handler(ws):
        await ws.send('{"stream":"a","data":{}}')
        await ws.send('{"result":null,"id":2}')
        await ws.send('{"stream":"b","data":{}}')
        await ws.send('{"error":{"code":2},"id":1}')
        await ws.recv()                   # the client says when to close
        await ws.close()

    async def main():
        inbox = Inbox()
        async with serve(handler, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            ws = await connect(f"ws://127.0.0.1:{port}", ping_interval=None, compression=None,
                               create_connection=lambda *a, **kw: DeliveringConnection(*a, deliver=inbox, **kw))
            first = await inbox.answer(ws, 1, 5.0)
            second = await inbox.answer(ws, 2, 5.0)
            with pytest.raises(TimeoutError, match="SUBSCRIBE 3 was not answered within 0.2s"):
                await inbox.answer(ws, 3, 0.2)
            await ws.send("close")
            with pytest.raises(ConnectionClosed):
                await inbox.answer(ws, 4, 5.0)
        return inbox.messages, first, second

    messages, first, second = asyncio.run(main())
    assert [(bytes(m), type(ts)) for m, ts in messages] == [(b'{"stream":"a","data":{}}', int),
                                                            (b'{"stream":"b","data":{}}', int)]
    assert first == {"error": {"code": 2}, "id": 1}
    assert second == {"result": None, "id": 2}
