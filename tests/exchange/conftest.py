"""A reference Binance client for the exchange tests, written from Binance's documented procedure
(SPEC §1) and independent of midas code: Decimal book, REST snapshot over urllib, WebSocket
over the websockets client."""

from __future__ import annotations

import asyncio
import bisect
import json
import threading
import time
import urllib.error
import urllib.request
from decimal import Decimal

import pytest


def route_prefix(stream: str, futures: bool) -> str:
    """Where Binance serves a stream: USD-M futures routes trades to /market and depth and
    bookTicker to /public (a connection on the wrong route silently gets nothing); spot has one path."""
    if not futures:
        return ""
    return "/market" if stream.endswith("@trade") else "/public"


def http_get(url: str, timeout: float = 30.0) -> tuple[int, dict, str]:
    """(status, headers, body) of a GET, also for 4xx/5xx answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as f:
            return f.status, dict(f.headers), f.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


class RefBook:
    """One symbol's book kept by Binance's procedure. Records the top levels after every applied diff."""

    def __init__(self, symbol: str, futures: bool, depth: int = 10):
        self.symbol = symbol
        self.futures = futures
        self.depth = depth
        self.bids: dict[str, str] = {}
        self.asks: dict[str, str] = {}
        self.bid_keys: list[tuple[Decimal, str]] = []   # ascending; best bid last
        self.ask_keys: list[tuple[Decimal, str]] = []   # ascending; best ask first
        self.track_depth = True
        self.bests: dict[int, tuple[str, str, str, str]] = {}   # u -> best levels after that diff
        self.buffer: list[dict] = []
        self.last_u: int | None = None
        self.synced = False
        self.applied: list[tuple[int, int, list, list]] = []   # (E, u, top bids, top asks)
        self.gaps = 0
        self.duplicates = 0

    def top(self) -> tuple[list, list]:
        bids = [p for _, p in self.bid_keys[-self.depth:][::-1]]
        asks = [p for _, p in self.ask_keys[: self.depth]]
        return [[p, self.bids[p]] for p in bids], [[p, self.asks[p]] for p in asks]

    def best(self) -> tuple[str, str, str, str]:
        b = self.bid_keys[-1][1]
        a = self.ask_keys[0][1]
        return b, self.bids[b], a, self.asks[a]

    def _set(self, side: dict, keys: list, price: str, qty: str) -> None:
        if Decimal(qty) == 0:
            if side.pop(price, None) is not None:
                del keys[bisect.bisect_left(keys, (Decimal(price), price))]
        else:
            if price not in side:
                bisect.insort(keys, (Decimal(price), price))
            side[price] = qty

    def _apply_levels(self, diff: dict) -> None:
        for price, qty in diff["b"]:
            self._set(self.bids, self.bid_keys, price, qty)
        for price, qty in diff["a"]:
            self._set(self.asks, self.ask_keys, price, qty)

    def load_snapshot(self, snap: dict) -> bool:
        """Apply a REST snapshot to the buffered diffs; False if a newer snapshot is needed."""
        last_id = snap["lastUpdateId"]
        if self.buffer:
            first = self.buffer[0]
            if self.futures and first["U"] > last_id and first["pu"] != last_id:
                return False
            if not self.futures and first["U"] > last_id + 1:
                return False
        self.bids, self.asks, self.bid_keys, self.ask_keys = {}, {}, [], []
        for p, q in snap["bids"]:
            self._set(self.bids, self.bid_keys, p, q)
        for p, q in snap["asks"]:
            self._set(self.asks, self.ask_keys, p, q)
        self.last_u = last_id
        self.synced = True
        self.first_applied = False
        pending, self.buffer = self.buffer, []
        for diff in pending:
            self.on_diff(diff)
        return True

    def on_diff(self, diff: dict) -> None:
        if not self.synced:
            self.buffer.append(diff)
            return
        U, u = diff["U"], diff["u"]
        if not self.first_applied:
            if self.futures:
                if u < self.last_u:
                    return
                if not (U <= self.last_u <= u or diff.get("pu") == self.last_u):
                    self.gaps += 1
                    self.synced = False
                    self.buffer = [diff]
                    return
            else:
                if u <= self.last_u:
                    return
                if not (U <= self.last_u + 1 <= u):
                    self.gaps += 1
                    self.synced = False
                    self.buffer = [diff]
                    return
            self.first_applied = True
        else:
            if u <= self.last_u:
                self.duplicates += 1
                return
            continues = diff["pu"] == self.last_u if self.futures else U == self.last_u + 1
            if not continues:
                self.gaps += 1
                self.synced = False
                self.buffer = [diff]
                return
        self._apply_levels(diff)
        self.last_u = u
        if self.track_depth:
            self.applied.append((diff["E"], u, *self.top()))
        else:
            self.bests[u] = self.best()


def book_at(applied: list, ts_us: int):
    """The tracked top levels after the last applied diff with E*1000 <= ts_us (None before any)."""
    result = None
    for e, _, bids, asks in applied:
        if e * 1000 <= ts_us:
            result = (bids, asks)
        else:
            break
    return result


class StreamClient:
    """Reads a WebSocket URL in a background thread; keeps every text frame received, in order."""

    def __init__(self, url: str):
        self.url = url
        self.frames: list[str] = []
        self.times: list[float] = []          # monotonic receive time of each frame
        self.closed = threading.Event()
        self.opened = threading.Event()
        self.close_code: int | None = None
        self.opened_at: float | None = None
        self.closed_at: float | None = None
        self.error: BaseException | None = None
        self._loop = asyncio.new_event_loop()
        self._ws = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self.opened.wait(30):
            raise TimeoutError(f"could not connect to {url}")
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed

        async def main() -> None:
            try:
                async with connect(self.url, max_size=None, ping_interval=None) as ws:
                    self._ws = ws
                    self.opened_at = time.monotonic()
                    self.opened.set()
                    try:
                        async for frame in ws:
                            self.times.append(time.monotonic())
                            self.frames.append(frame)
                    except ConnectionClosed:
                        pass
                    self.close_code = ws.close_code
                    self.closed_at = time.monotonic()
            except BaseException as e:  # reported to the test
                self.error = e
                self.opened.set()
            finally:
                self.closed.set()

        try:
            self._loop.run_until_complete(main())
        finally:
            self._loop.close()

    def send(self, obj) -> bool:
        """Send a text (or bytes, or JSON of an object); False if the connection closed meanwhile."""
        text = obj if isinstance(obj, (str, bytes)) else json.dumps(obj)
        if self.closed.is_set():
            return False
        future = asyncio.run_coroutine_threadsafe(self._ws.send(text), self._loop)
        deadline = time.monotonic() + 30
        while not future.done():
            if self.closed.is_set():
                return False        # the loop has stopped: the send will never complete
            if time.monotonic() > deadline:
                raise TimeoutError(f"sending on {self.url} took longer than 30 s")
            time.sleep(0.005)
        return future.exception() is None

    def send_burst(self, objs: list) -> None:
        """Send several messages back to back from the client's loop (no waiting in between)."""
        texts = [o if isinstance(o, (str, bytes)) else json.dumps(o) for o in objs]

        async def burst() -> None:
            for t in texts:
                await self._ws.send(t)

        asyncio.run_coroutine_threadsafe(burst(), self._loop)

    def close(self) -> None:
        if self._ws is not None and not self.closed.is_set():
            # The reading loop ends with the connection and stops the loop: wait for that.
            asyncio.run_coroutine_threadsafe(self._ws.close(), self._loop)
        if not self.closed.wait(30):
            raise TimeoutError(f"the connection to {self.url} did not close within 30 s")
        self._thread.join(30)

    def wait_for(self, predicate, timeout: float = 30.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            if self.error is not None:
                raise self.error
            time.sleep(0.02)


@pytest.fixture
def refbook():
    return RefBook


@pytest.fixture
def stream_client():
    clients: list[StreamClient] = []

    def make(url: str) -> StreamClient:
        c = StreamClient(url)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()


@pytest.fixture(name="route_prefix")
def route_prefix_fixture():
    return route_prefix


@pytest.fixture
def get():
    return http_get


@pytest.fixture
def book_at_fn():
    return book_at
