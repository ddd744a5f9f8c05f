"""One client WebSocket connection of the local exchange: subscriptions, its outgoing queue and
sender (where the stream faults are applied), the request reader (SUBSCRIBE..., rate limit),
and, in replay mode, the replay of the recording for this connection."""

from __future__ import annotations

from contextlib import suppress

import asyncio
import collections
import logging
import time
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, unquote, urlsplit

import orjson
from websockets.exceptions import ConnectionClosed

from midas.exchange.faults import StreamFaultState, malformed_frame
from midas.exchange.streams import (Request, StreamKey, StreamNameError, error_reply, parse_request,
                                    result_reply)
from midas.logs import log_kv
from midas.venues import FUTURES, STREAM_ROUTES

if TYPE_CHECKING:
    from midas.exchange.server import ExchangeServer

log = logging.getLogger("midas.exchange")

# Binance's USD-M futures routes streams by path (midas.venues.STREAM_ROUTES): /public carries depth
# and bookTicker, /market trades, and a connection without a routed path only /public's streams.
# A stream on the wrong route is accepted and silently never sent, as Binance does. Spot has no
# routes; the prefixes are accepted there too and change nothing.
_PATH_PREFIXES = ("/public", "/market")
SEND_BATCH = 256          # frames written to the socket at once


def route_of_path(target: str) -> str:
    """The route a WebSocket request target asks for: 'public', 'market', or '' (none)."""
    path = unquote(urlsplit(target).path)
    for prefix in _PATH_PREFIXES:
        if path.startswith(prefix + "/"):
            return prefix[1:]
    return ""


def delivered_kinds(venue: str, route: str) -> frozenset[str]:
    """The stream kinds a connection on `route` receives."""
    if venue != FUTURES:
        return frozenset(STREAM_ROUTES)
    wanted = route or "public"
    return frozenset(kind for kind, r in STREAM_ROUTES.items() if r == wanted)


def streams_of_path(target: str, server: "ExchangeServer") -> tuple[bool, list[str]]:
    """(combined?, stream names) of a WebSocket request target; StreamNameError or LookupError."""
    parts = urlsplit(target)
    path = unquote(parts.path)          # /ws/btcusdt%40trade is /ws/btcusdt@trade
    for prefix in _PATH_PREFIXES:
        if path.startswith(prefix + "/"):
            path = path[len(prefix):]
    if path.rstrip("/") == "/stream":
        combined = True
        query = parse_qs(parts.query, keep_blank_values=True).get("streams")
        names = query[0].split("/") if query and query[0] else []
    elif path.rstrip("/") == "/ws":
        combined, names = False, []
    elif path.startswith("/ws/"):
        combined, names = False, [path[len("/ws/"):]]
    else:
        raise LookupError(f"no WebSocket at {path[:80]!r}: use /stream?streams=<name>/<name> or /ws/<name>")
    if len(names) > server.spec.max_streams_per_connection:
        raise StreamNameError(f"too many streams ({len(names)}): at most "
                              f"{server.spec.max_streams_per_connection} per connection")
    for name in names:
        server.parse_stream(name)
    return combined, names


class Connection:
    def __init__(self, server: "ExchangeServer", ws, conn_id: int):
        self.server = server
        self.ws = ws
        self.id = conn_id
        self.path = ws.request.path
        self.combined, self._initial = streams_of_path(self.path, server)
        self.delivers = delivered_kinds(server.venue, route_of_path(self.path))
        self.withheld: set[str] = set()      # subscribed on the wrong route: never sent
        self.subs: dict[str, StreamKey] = {}
        self.by_key: dict[StreamKey, list[str]] = {}
        self.by_kind: dict[tuple[str, str], list[str]] = {}
        self.queue: collections.deque = collections.deque()
        self.wake = asyncio.Event()
        self.space = asyncio.Event()
        self.subscribed = asyncio.Event()
        self.opened = time.monotonic()
        self.faults = StreamFaultState(server.cfg.faults, self.opened)
        self.recent_requests: collections.deque[float] = collections.deque()
        self.limit = server.cfg.message_limit or server.spec.max_client_messages_per_second
        self.closing = False

    # --- subscriptions ------------------------------------------------------------------------

    def _subscribe(self, name: str) -> None:
        if name in self.subs:
            return
        key = self.server.parse_stream(name)
        self.subs[name] = key
        if key.kind not in self.delivers:
            self.withheld.add(name)
            self.subscribed.set()
            return
        self.by_key.setdefault(key, []).append(name)
        self.by_kind.setdefault((key.symbol, key.kind), []).append(name)
        self.server.add_ref(key)
        self.subscribed.set()

    def _unsubscribe(self, name: str) -> None:
        key = self.subs.pop(name, None)
        if key is None:
            return
        if name in self.withheld:
            self.withheld.discard(name)
            return
        self.by_key[key].remove(name)
        if not self.by_key[key]:
            del self.by_key[key]
        self.by_kind[(key.symbol, key.kind)].remove(name)
        if not self.by_kind[(key.symbol, key.kind)]:
            del self.by_kind[(key.symbol, key.kind)]
        self.server.drop_ref(key)

    def release(self) -> None:
        for name in list(self.subs):
            self._unsubscribe(name)

    # --- outgoing -----------------------------------------------------------------------------

    def offer(self, out: list[tuple[StreamKey, str]]) -> None:
        """Queue this tick's data messages that this connection is subscribed to."""
        by_key = self.by_key
        added = False
        for key, data in out:
            names = by_key.get(key)
            if names:
                for name in names:
                    self.queue.append((key, name, data, None))
                added = True
        if added:
            self.wake.set()
            self._check_backlog()

    def _check_backlog(self) -> None:
        if len(self.queue) > self.server.cfg.max_queue_messages and not self.closing:
            self.closing = True
            log_kv(log, "client too slow, disconnecting", level=logging.WARNING, connection=self.id,
                   queued=len(self.queue))
            self.queue.clear()
            asyncio.ensure_future(self.ws.close(1008, "client too slow to read its streams"))

    def _reply(self, text: str) -> None:
        self.queue.append((None, None, text, None))
        self.wake.set()

    async def _write(self, texts: list[str]) -> None:
        """Send text frames in order, in one socket write when the websockets version allows it."""
        ws = self.ws
        send_context = getattr(ws, "send_context", None)
        if send_context is not None and len(texts) > 1:
            # The documented pattern of websockets' asyncio connections (see send_context):
            # queue every frame, then write and drain once. One syscall instead of one per frame.
            async with send_context():
                for text in texts:
                    ws.protocol.send_text(text.encode())
        else:
            for text in texts:
                await ws.send(text)
        self.server.messages_sent += len(texts)
        truth = self.server.truth
        if truth is not None:
            now = time.time_ns()
            for text in texts:
                truth.sent(self.id, text, now)

    async def _send_loop(self) -> None:
        queue, faults = self.queue, self.faults
        while True:
            await self.wake.wait()
            self.wake.clear()
            while queue:
                batch: list[str] = []
                while queue and len(batch) < SEND_BATCH:
                    key, name, data, envelope = queue.popleft()
                    if key is None:
                        batch.append(data)
                        continue
                    now = time.monotonic()
                    if faults.stalled(now):
                        continue
                    if key.kind == "depth" and faults.drop_depth(key.symbol, now):
                        continue
                    duplicate, malformed = faults.next_message()
                    if self.combined:
                        text = envelope or '{"stream":"' + name + '","data":' + data + "}"
                    else:   # an envelope queued before SET_PROPERTY combined=false
                        text = data if data is not None else orjson.dumps(orjson.loads(envelope)["data"]).decode()
                    if malformed is not None:
                        batch.append(malformed_frame(malformed, name if self.combined else None, key.symbol))
                    batch.append(text)
                    if duplicate:
                        batch.append(text)
                if len(queue) < 64:
                    self.space.set()
                if batch:
                    await self._write(batch)
            self.space.set()

    # --- incoming -----------------------------------------------------------------------------

    def _over_rate_limit(self) -> bool:
        now = time.monotonic()
        recent = self.recent_requests
        recent.append(now)
        while recent and recent[0] <= now - 1.0:
            recent.popleft()
        return len(recent) > self.limit

    def _handle_request(self, req: Request) -> None:
        if req.method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            try:
                for p in req.params:
                    self.server.parse_stream(p)     # all names valid, or nothing changes
            except StreamNameError as e:
                self._reply(error_reply(2, f"Invalid request: {e}", req.id))
                return
            if req.method == "SUBSCRIBE":
                new = [p for p in req.params if p not in self.subs]
                if len(self.subs) + len(new) > self.server.spec.max_streams_per_connection:
                    self._reply(error_reply(2, "Invalid request: too many streams on this connection "
                                               f"(at most {self.server.spec.max_streams_per_connection})",
                                            req.id))
                    return
                for p in req.params:
                    self._subscribe(p)
            else:
                for p in req.params:
                    self._unsubscribe(p)
            self._reply(result_reply(None, req.id))
        elif req.method == "LIST_SUBSCRIPTIONS":
            self._reply(result_reply(list(self.subs), req.id))
        elif req.method == "SET_PROPERTY":
            self.combined = req.params[1]
            self._reply(result_reply(None, req.id))
        elif req.method == "GET_PROPERTY":
            self._reply(result_reply(self.combined, req.id))

    async def _read_loop(self) -> None:
        async for message in self.ws:
            if self._over_rate_limit():
                log_kv(log, "client over the message rate limit, disconnecting", level=logging.WARNING,
                       connection=self.id, limit=self.limit)
                await self.ws.close(1008, f"Too many requests: more than {self.limit} messages per second")
                return
            req = parse_request(message)
            if isinstance(req, str):
                self._reply(req)
            else:
                self._handle_request(req)

    # --- lifecycle ----------------------------------------------------------------------------

    def abort(self) -> None:
        """Drop the TCP connection without a close frame (the disconnect fault)."""
        transport = getattr(self.ws, "transport", None)
        if transport is not None:
            transport.abort()

    async def _max_age(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        log_kv(log, "connection reached its maximum age, closing", connection=self.id, seconds=seconds)
        await self.ws.close(1001, "connection reached its maximum age")

    async def _replay(self) -> None:
        recording = self.server.recording
        speed = self.server.cfg.speed
        await self.subscribed.wait()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        ns0 = recording.messages[0].local_ns
        queue = self.queue
        for m in recording.messages:
            if speed > 0:
                delay = t0 + (m.local_ns - ns0) / 1e9 / speed - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            else:
                while len(queue) > 256:
                    self.space.clear()
                    await self.space.wait()
            names = self.by_kind.get((m.symbol, m.kind))
            if names:
                key = self.subs[names[0]]
                for name in names:
                    if self.combined and name == m.stream:
                        queue.append((key, name, None, m.envelope))     # the recorded text as is
                    else:
                        queue.append((key, name, m.data, None))
                self.wake.set()
        log_kv(log, "replay finished for connection", connection=self.id,
               messages=len(recording.messages))

    async def run(self) -> None:
        server = self.server
        truth = server.truth
        if truth is not None:
            truth.connection(self.id, "open", self.path, time.time_ns())
        log_kv(log, "connection opened", connection=self.id, path=self.path[:200])
        for name in self._initial:
            self._subscribe(name)
        tasks = [asyncio.create_task(self._send_loop(), name=f"send-{self.id}")]
        if server.cfg.faults.max_connection_age_secs:
            tasks.append(asyncio.create_task(self._max_age(server.cfg.faults.max_connection_age_secs)))
        if server.recording is not None:
            tasks.append(asyncio.create_task(self._replay(), name=f"replay-{self.id}"))
        try:
            reader = asyncio.create_task(self._read_loop(), name=f"read-{self.id}")
            done, _ = await asyncio.wait([reader, tasks[0]], return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                exc = t.exception()
                if exc is not None and not isinstance(exc, ConnectionClosed):
                    log_kv(log, "connection task failed", level=logging.ERROR, connection=self.id,
                           error=repr(exc))
            tasks.append(reader)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            with suppress(Exception):  # the client may be gone already; the close is best effort
                await self.ws.close()
            if truth is not None:
                truth.connection(self.id, "close", self.path, time.time_ns())
                truth.close_file(f"sent/{self.id}.jsonl")      # no file handle per closed connection
            log_kv(log, "connection closed", connection=self.id, code=self.ws.close_code)
