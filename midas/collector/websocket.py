"""The collector's WebSocket client: websockets' connection with each message handed to a callback.

`DeliveringConnection` replaces the library's per-message queue (read by `recv()` one message at a
time, with a future and a task switch each) by a callback run from the socket's `data_received`;
`Inbox` is the callback used until the router takes over: it keeps data messages in arrival order
and files the answers to SUBSCRIBE requests by id.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

import orjson
from websockets.asyncio.client import ClientConnection
from websockets.frames import Frame, Opcode


class DeliveringConnection(ClientConnection):
    """websockets' client connection handing each complete data message (undecoded bytes, as the
    `bytearray` the frame parser made: the JSON parser reads UTF-8 itself) to
    `deliver(message, local_ts, received_at)` from `data_received`.

    websockets documents subclassing through `connect(create_connection=...)`; `process_event` is
    where its connection puts data frames into the queue that `recv()` reads. Control frames
    (ping: answered by the protocol, pong, close) and the handshake keep the library's handling.
    """

    def __init__(self, *args, deliver: Callable[[bytes | bytearray, int, float], None], **kwargs):
        super().__init__(*args, **kwargs)
        self.deliver = deliver
        self._fragments: list | None = None
        self._local_ts = 0
        self._received_at = 0.0

    def data_received(self, data: bytes) -> None:
        # One clock reading per socket read: every message in it arrived at that moment.
        self._local_ts = time.time_ns() // 1000
        self._received_at = time.monotonic()
        super().data_received(data)

    def process_event(self, event) -> None:
        if type(event) is not Frame:
            super().process_event(event)          # the handshake response
            return
        opcode = event.opcode
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            if event.fin:
                self.deliver(event.data, self._local_ts, self._received_at)
            else:
                self._fragments = [event.data]
        elif opcode is Opcode.CONT and self._fragments is not None:
            self._fragments.append(event.data)
            if event.fin:
                message, self._fragments = b"".join(self._fragments), None
                self.deliver(message, self._local_ts, self._received_at)
        else:
            super().process_event(event)


class Inbox:
    """Receives a connection's messages until the router takes over: data messages are kept in
    arrival order, answers to requests (`{"result"|"error", "id"}`) are filed by id."""

    def __init__(self) -> None:
        self.messages: list[tuple[bytes | bytearray, int]] = []
        self.answers: dict[Any, dict] = {}
        self._answered = asyncio.Event()

    def __call__(self, message: bytes | bytearray, local_ts: int, received_at: float) -> None:
        answer = _control_answer(message)
        if answer is None:
            self.messages.append((message, local_ts))
        else:
            self.answers[answer.get("id")] = answer
            self._answered.set()

    async def answer(self, ws: ClientConnection, req_id: int, timeout: float) -> dict:
        """The answer to request `req_id`; `ConnectionClosed` if the connection ends first."""
        deadline = time.monotonic() + timeout
        closed = asyncio.ensure_future(ws.wait_closed())
        try:
            while req_id not in self.answers:
                if closed.done():
                    raise ws.protocol.close_exc
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"SUBSCRIBE {req_id} was not answered within {timeout:g}s")
                self._answered.clear()
                answered = asyncio.ensure_future(self._answered.wait())
                try:
                    await asyncio.wait([answered, closed], timeout=left, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    answered.cancel()
        finally:
            closed.cancel()
        return self.answers.pop(req_id)


def _control_answer(message) -> dict | None:
    """The answer to a request (`{"result":..,"id":..}` / `{"error":..,"id":..}`), or None for data."""
    marker = '"id"' if isinstance(message, str) else b'"id"'
    if marker not in message[:400]:
        return None
    try:
        obj = orjson.loads(message)
    except orjson.JSONDecodeError:
        return None
    if isinstance(obj, dict) and "id" in obj and "data" not in obj and ("result" in obj or "error" in obj):
        return obj
    return None
