"""One group of streams on one WebSocket at a time: connect, read, watch, reconnect.

`ConnectionSupervisor.run()` is the reconnect loop of one group of symbols. A connection is one
WebSocket per route the group's streams need (`Endpoint`): on Binance USD-M futures depth and
bookTicker come from `/public` and trades from `/market`; on spot one socket carries everything.
The sockets of a connection live and die together: when one ends, all are closed and reopened, so
an outage of either is one `disconnected`/`connected` pair and one resync of the book, never a
silent hole in the trades while the book looks healthy.

    connect (retry with `Backoff`) -> router.connected -> read until the connection ends
      ends because: server closed it / error / stall (no message for STALL_TIMEOUT_SECS) /
                    malformed-frame storm / stop requested
      -> router.disconnected -> wait the backoff delay -> connect again
    at MAX_CONNECTION_AGE_SECS: open a second connection while the first keeps reading; its
      messages are held until both streams overlap (router.join_ready), then router.switch
      writes the held ones that the first connection had not delivered and the old one closes.

Streams go in the URL (`/stream?streams=a/b/...`) while it stays short; a longer list (hundreds of
streams would exceed the request-line limits of HTTP servers) is sent as SUBSCRIBE requests of at
most `SUBSCRIBE_CHUNK` streams after connecting to `/stream`, paced under Binance's limit on client
messages per second; messages arriving meanwhile are kept and handed on in order.

Receiving: each complete message is handed to the router from the socket's `data_received` itself
(`midas.collector.websocket.DeliveringConnection`), not queued for a reader task to `recv()` one
at a time: that queue, its futures and the task switch per message cost about a third of the CPU
of receiving. Every message of one socket read gets that read's time as `local_ts`.

The supervisor never touches files: everything a message means is the router's job.
"""

from __future__ import annotations

from contextlib import suppress

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.protocol import State

from midas.collector.backoff import Backoff
from midas.collector.websocket import DeliveringConnection, Inbox
from midas.errors import CollectorError
from midas.logs import log_kv

log = logging.getLogger("midas.collector")

OPEN_TIMEOUT_SECS = 10.0
CLOSE_TIMEOUT_SECS = 2.0
HEALTHY_AFTER_SECS = 60.0        # a connection up this long resets the backoff schedule
WATCH_INTERVAL_SECS = 0.25
SUBSCRIBE_CHUNK = 200            # streams per SUBSCRIBE request
SUBSCRIBE_ANSWER_SECS = 10.0     # an unanswered SUBSCRIBE = a failed connect
KEEPALIVE_PING_SECS = 20.0       # ping interval and pong timeout of trades-only sockets


@dataclass
class StormRule:
    """`count` malformed messages within `window_secs` on one connection = reconnect."""

    count: int = 50
    window_secs: float = 10.0


@dataclass(frozen=True)
class Endpoint:
    """One WebSocket of a connection: its URL (streams in the query), or the `/stream` URL and the
    stream names to SUBSCRIBE with (`subscribe`: (url, names, client messages per second allowed)),
    and whether it needs keepalive pings because its streams may be quiet for long (trades only)."""

    url: str
    subscribe: tuple[str, list[str], float] | None = None
    keepalive: bool = False


@dataclass(eq=False)
class Connection:
    """The live WebSockets of one group (one per endpoint) and what the router needs to know."""

    id: int
    group: int
    url: str                             # every socket's URL, joined with " + "
    sockets: list[DeliveringConnection]
    opened_at: float                     # monotonic
    last_message_at: float
    joining: bool = False                # opened for a planned reconnect, not yet switched in
    retired: bool = False                # switched out or closed: its messages are ignored
    held: list[dict] = field(default_factory=list)
    messages: int = 0
    malformed: deque = field(default_factory=deque)
    end_reason: str | None = None
    reader: asyncio.Task | None = None
    inboxes: list[Inbox] = field(default_factory=list)   # per socket: what came before the router
    where: str = ""                      # how parse errors name it (built once, not per message)
    failure: BaseException | None = None  # what the router raised (a write error): stops the collector
    stopped: asyncio.Future | None = None  # done when messages must no longer be handed on
    handing_on: bool = True              # False once `stopped` (read per message: a plain flag)

    def __post_init__(self) -> None:
        self.where = f"message on connection {self.id}"

    def stop_reading(self) -> None:
        self.handing_on = False
        if self.stopped is not None and not self.stopped.done():
            self.stopped.set_result(None)

    def note_malformed(self, now: float, rule: StormRule) -> bool:
        """Count one malformed message; True when the storm rule says to reconnect."""
        self.malformed.append(now)
        while self.malformed and self.malformed[0] < now - rule.window_secs:
            self.malformed.popleft()
        return len(self.malformed) >= rule.count


class Router(Protocol):
    def on_message(self, conn: Connection, message: Any, local_ts: int) -> None: ...
    def connected(self, conn: Connection) -> None: ...
    def disconnected(self, conn: Connection, reason: str) -> None: ...
    def begin_join(self, old: Connection, new: Connection) -> None: ...
    def join_ready(self, old: Connection, new: Connection) -> bool: ...
    def switch(self, old: Connection, new: Connection, timed_out: bool) -> None: ...
    def abort_join(self, old: Connection, new: Connection) -> None: ...


class ConnectionSupervisor:
    """The reconnect loop of one group of symbols (its endpoints: one WebSocket per route)."""

    def __init__(self, *, group: int, endpoints: list[Endpoint], router: Router, stop: asyncio.Event,
                 stall_timeout: float, reconnect_delay: float, max_attempts: int,
                 max_age: float, overlap_timeout: float = 30.0, min_overlap: float = 1.0,
                 storm: StormRule | None = None, ids: "ConnectionIds | None" = None):
        if not endpoints:
            raise ValueError("a connection needs at least one endpoint")
        self.group = group
        self.endpoints = endpoints
        self.url = " + ".join(e.url for e in endpoints)
        self.connecting_to = endpoints[0].url      # named in errors: which socket failed
        self.router = router
        self.stop = stop
        self.stall_timeout = stall_timeout
        self.max_age = max_age
        self.overlap_timeout = overlap_timeout
        self.min_overlap = min_overlap
        self.storm = storm or StormRule()
        self.backoff = Backoff(reconnect_delay, max_attempts=max_attempts)
        self.ids = ids or ConnectionIds()
        self.connects = 0
        self.reconnects = 0

    # Connecting ----------------------------------------------------------------------------------

    async def _open(self) -> Connection:
        now = time.monotonic()
        conn = Connection(id=self.ids.next(), group=self.group, url=self.url, sockets=[],
                          opened_at=now, last_message_at=now)
        try:
            for endpoint in self.endpoints:
                self.connecting_to = endpoint.url
                target = endpoint.subscribe[0] if endpoint.subscribe else endpoint.url
                # Messages arriving before the router takes over (right after the handshake, or
                # while subscribing) are kept in arrival order; SUBSCRIBE answers are taken out.
                inbox = Inbox()
                # Depth streams prove a socket alive every 100 ms (the stall rule); a trades-only
                # socket can be quiet for minutes, so WebSocket pings watch it instead.
                ping = KEEPALIVE_PING_SECS if endpoint.keepalive else None
                ws = await connect(target, open_timeout=OPEN_TIMEOUT_SECS, close_timeout=CLOSE_TIMEOUT_SECS,
                                   ping_interval=ping, ping_timeout=ping, max_size=None, max_queue=256,
                                   compression=None,
                                   create_connection=lambda *a, _inbox=inbox, **kw: DeliveringConnection(
                                       *a, deliver=_inbox, **kw))
                conn.sockets.append(ws)
                conn.inboxes.append(inbox)
                if endpoint.subscribe:
                    await self._send_subscriptions(ws, inbox, endpoint.subscribe)
        except BaseException:
            await _close(conn)
            raise
        conn.last_message_at = time.monotonic()
        self.connects += 1
        return conn

    async def _send_subscriptions(self, ws: ClientConnection, inbox: Inbox,
                                  subscribe: tuple[str, list[str], float]) -> None:
        """SUBSCRIBE in chunks, each answered before the next; data arriving meanwhile is kept."""
        _, names, per_second = subscribe
        interval = 1.0 / max(0.5, per_second / 2)          # half of Binance's limit
        for i, start in enumerate(range(0, len(names), SUBSCRIBE_CHUNK)):
            if i:
                await asyncio.sleep(interval)
            req_id = i + 1
            await ws.send(orjson.dumps({"method": "SUBSCRIBE",
                                        "params": names[start:start + SUBSCRIBE_CHUNK],
                                        "id": req_id}).decode())
            answer = await inbox.answer(ws, req_id, SUBSCRIBE_ANSWER_SECS)
            if "error" in answer:
                raise CollectorError(f"the exchange refused the stream subscription: {answer['error']} "
                                     "(check SYMBOLS and STREAMS)")

    def _hand_on_pre_messages(self, conn: Connection) -> None:
        # Each socket's messages in its order; kinds on different sockets need no common order.
        pending = [m for inbox in conn.inboxes for m in inbox.messages]
        for inbox in conn.inboxes:
            inbox.messages = []
        for message, local_ts in pending:
            self.router.on_message(conn, message, local_ts)

    def _start_reader(self, conn: Connection) -> None:
        """Hand the messages kept so far to the router, then every new one as it arrives.

        No await between the two: nothing can arrive in between and be put out of order.
        """
        self._hand_on_pre_messages(conn)
        conn.stopped = asyncio.get_running_loop().create_future()
        deliver = self._deliverer(conn)
        for ws in conn.sockets:
            ws.deliver = deliver
        conn.reader = asyncio.create_task(self._read(conn), name=f"midas-ws-{conn.id}")

    def _deliverer(self, conn: Connection) -> Callable[[bytearray, int, float], None]:
        """The per-message callback of `conn` (runs inside the socket's `data_received`)."""
        on_message = self.router.on_message

        def deliver(message: bytearray, local_ts: int, received_at: float) -> None:
            if not conn.handing_on:
                return          # reading ended (storm, write error, switched out): drop the rest
            conn.last_message_at = received_at
            conn.messages += 1
            try:
                on_message(conn, message, local_ts)
            except Exception as e:   # a write error: the reader raises it, which stops the collector
                conn.failure = e
                conn.stop_reading()
                return
            if conn.end_reason is not None or conn.retired:
                conn.stop_reading()
        return deliver

    async def _read(self, conn: Connection) -> None:
        """Wait until a socket of the connection ends or reading must stop; say why (`end_reason`)."""
        closed = [asyncio.ensure_future(ws.wait_closed()) for ws in conn.sockets]
        try:
            await asyncio.wait([*closed, conn.stopped], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in closed:
                waiter.cancel()
        conn.stop_reading()
        if conn.failure is not None:
            raise conn.failure
        ended = next((ws for ws in conn.sockets if ws.protocol.state is State.CLOSED), None)
        if ended is not None:
            if not conn.retired:
                conn.end_reason = conn.end_reason or _closed_reason(ended)
            return
        if conn.end_reason is not None and not conn.retired:
            for ws in conn.sockets:
                await ws.close()

    async def _wait_delay(self, delay: float) -> bool:
        """Sleep `delay` unless stop is requested first; True when stopping."""
        try:
            await asyncio.wait_for(self.stop.wait(), timeout=delay)
            return True
        except TimeoutError:
            return False

    async def _connect_with_backoff(self) -> Connection | None:
        while not self.stop.is_set():
            try:
                return await self._open()
            except (OSError, TimeoutError, InvalidHandshake, InvalidURI, ConnectionClosed) as e:
                if isinstance(e, InvalidURI):
                    raise CollectorError(f"WS_URL gives an invalid WebSocket URL {self.connecting_to!r}: {e}") from e
                refused = _refused(e)
                if refused:
                    raise CollectorError(refused) from e
                if self.backoff.exhausted():
                    raise CollectorError(
                        f"cannot connect to {self.connecting_to}: {e}; gave up after {self.backoff.attempts} "
                        f"attempts (MAX_RECONNECT_ATTEMPTS)") from e
                delay = self.backoff.next_delay()
                log_kv(log, "connect failed, retrying", logging.WARNING, group=self.group,
                       error=str(e) or type(e).__name__, attempt=self.backoff.attempts,
                       retry_in=f"{delay:.2f}s")
                if await self._wait_delay(delay):
                    return None
        return None

    # The loop ------------------------------------------------------------------------------------

    async def run(self) -> None:
        conn: Connection | None = None
        try:
            while not self.stop.is_set():
                conn = await self._connect_with_backoff()
                if conn is None:
                    return
                log_kv(log, "connected", group=self.group, connection=conn.id)
                self.router.connected(conn)
                self._start_reader(conn)
                conn = await self._watch(conn)
                if conn is None:
                    return
                reason = conn.end_reason or "connection ended"
                await _close(conn)
                self.router.disconnected(conn, reason)
                log_kv(log, "disconnected", logging.WARNING, group=self.group, connection=conn.id,
                       reason=reason)
                if time.monotonic() - conn.opened_at >= HEALTHY_AFTER_SECS:
                    self.backoff.reset()
                if self.backoff.exhausted():
                    raise CollectorError(
                        f"connection to {self.url} lost ({reason}); gave up after "
                        f"{self.backoff.attempts} reconnects (MAX_RECONNECT_ATTEMPTS)")
                self.reconnects += 1
                conn = None
                if await self._wait_delay(self.backoff.next_delay()):
                    return
        finally:
            if conn is not None:
                await _close(conn)

    async def _watch(self, conn: Connection) -> Connection | None:
        """Watch `conn` until it ends (returned) or stop is requested (None, connection closed).

        Planned reconnects happen inside: the returned connection may be a newer one.
        """
        while True:
            if self.stop.is_set():
                await _close(conn)
                self.router.disconnected(conn, "shutdown")
                return None
            if conn.reader is not None and conn.reader.done():
                _reraise(conn.reader)
                return conn
            now = time.monotonic()
            if now - conn.last_message_at >= self.stall_timeout:
                conn.end_reason = f"stalled: no message for {self.stall_timeout:g}s"
                return conn
            if conn.end_reason is not None:
                await _wait_reader(conn)
                return conn
            if now - conn.opened_at >= self.max_age:
                conn = await self._planned_reconnect(conn)
                continue
            await _wait_any(self.stop, conn.reader, WATCH_INTERVAL_SECS)

    async def _planned_reconnect(self, old: Connection) -> Connection:
        """Open a new connection overlapping `old`; switch when their streams overlap."""
        try:
            new = await self._open()
        except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed) as e:
            log_kv(log, "planned reconnect failed, keeping the old connection", logging.WARNING,
                   group=self.group, connection=old.id, error=str(e) or type(e).__name__)
            old.opened_at = time.monotonic() - self.max_age + min(60.0, self.max_age / 2)
            return old
        new.joining = True
        self.router.begin_join(old, new)
        self._start_reader(new)
        started = time.monotonic()
        timed_out = False
        while True:
            if self.stop.is_set() or new.reader.done() or old.reader.done():
                break
            elapsed = time.monotonic() - started
            if elapsed >= self.min_overlap and self.router.join_ready(old, new):
                break
            if elapsed >= self.overlap_timeout:
                timed_out = True
                break
            await asyncio.sleep(0.05)
        if new.reader.done() and new.end_reason is not None and not old.reader.done():
            # The new connection died while joining: keep the old one, try again later.
            new.retired = True
            self.router.abort_join(old, new)
            _reraise(new.reader)
            log_kv(log, "planned reconnect failed, keeping the old connection", logging.WARNING,
                   group=self.group, connection=old.id, reason=new.end_reason)
            await _close(new)
            old.opened_at = time.monotonic() - self.max_age + min(60.0, self.max_age / 2)
            return old
        self.router.switch(old, new, timed_out)
        old.retired = True
        new.joining = False
        await _close(old)
        self.reconnects += 1
        log_kv(log, "planned reconnect done", group=self.group, old=old.id, new=new.id,
               overlap=f"{time.monotonic() - started:.2f}s", timed_out=timed_out)
        return new


class ConnectionIds:
    """Connection numbers unique within one collector run (they appear in event details)."""

    def __init__(self) -> None:
        self._n = 0

    def next(self) -> int:
        self._n += 1
        return self._n


def _refused(err: Exception) -> str | None:
    """A handshake refused for good (HTTP 4xx other than 429): retrying cannot help."""
    if not isinstance(err, InvalidStatus):
        return None
    status = err.response.status_code
    if status < 400 or status >= 500 or status == 429:
        return None
    body = bytes(err.response.body or b"")[:300].decode("utf-8", "replace")
    return (f"the exchange refused the stream subscription: HTTP {status} {body} "
            f"(check SYMBOLS and STREAMS)")


def _closed_reason(ws: ClientConnection, err: ConnectionClosed | None = None) -> str:
    rcvd = err.rcvd if err is not None else ws.protocol.close_rcvd
    if rcvd is not None:
        return f"closed by the server (code {rcvd.code}{', ' + rcvd.reason if rcvd.reason else ''})"
    return "connection lost (no close frame)"


async def _close(conn: Connection) -> None:
    conn.retired = True
    # A peer that does not answer the close handshake, or a socket already gone, is closed anyway.
    for ws in conn.sockets:
        with suppress(TimeoutError, OSError, ConnectionClosed):
            await asyncio.wait_for(ws.close(), timeout=CLOSE_TIMEOUT_SECS)
    await _wait_reader(conn)


async def _wait_reader(conn: Connection) -> None:
    task = conn.reader
    if task is None or task.done():
        if task is not None:
            _reraise(task)
        return
    try:
        await asyncio.wait_for(asyncio.shield(task), timeout=CLOSE_TIMEOUT_SECS)
    except TimeoutError:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    _reraise(task)


def _reraise(task: asyncio.Task) -> None:
    """A reader that died of a collector error (a write error) stops the collector."""
    if task.done() and not task.cancelled():
        exc = task.exception()
        if exc is not None and not isinstance(exc, (ConnectionClosed, OSError)):
            raise exc


async def _wait_any(stop: asyncio.Event, task: asyncio.Task | None, timeout: float) -> None:
    waiter = asyncio.ensure_future(stop.wait())
    aws = {waiter} | ({task} if task is not None else set())
    try:
        await asyncio.wait(aws, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
