"""The local exchange's server: one asyncio event loop, one port for WebSocket and REST.

    ExchangeServer(ExchangeConfig(...))   await start() / await stop()

WebSocket paths: `/stream?streams=a/b` (combined: `{"stream","data"}` envelopes), `/stream` then
SUBSCRIBE, `/ws/<stream>` and `/ws` (bare payloads). Every connection has one queue and one
sender task, so what it is sent (data, answers, faults) goes out in one order, which is also the
order written to the truth directory.

Simulation: every `tick_ms` (wall clock, aligned) each symbol's market steps once with
E = scheduled local time + `clock_offset_ms` (+ a seeded 0..`tick_jitter_ms`, so E need not sit on
the 100 ms grid); a tick that is late is still produced with its scheduled E (so lag is
measurable: `stats()["max_lag_ms"]`).
"""

from __future__ import annotations

from contextlib import suppress

import asyncio
import collections
import http
import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from midas.exchange.connection import Connection, streams_of_path
from midas.exchange.depth_merge import DepthMerger
from midas.exchange.faults import Faults, RestFaultState
from midas.exchange.market import SymbolMarket
from midas.exchange.replay import Recording, load_recordings, snapshot_text
from midas.exchange.rest import RestApi
from midas.exchange.streams import StreamKey, StreamNameError, parse_stream_name
from midas.exchange.truth import TruthWriter
from midas.layout import check_symbol
from midas.logs import log_kv
from midas.venues import FUTURES, get_venue

log = logging.getLogger("midas.exchange")

# How long Binance waits for the pong to its ping before dropping the connection.
PONG_TIMEOUT_SECS = {"binance": 60.0, "binance-futures": 600.0}


@dataclass
class ExchangeConfig:
    venue: str | None = None                      # None: futures, or the recording's venue
    symbols: list[str] = field(default_factory=lambda: ["BTCUSDT"])
    seed: int = 7
    faults: Faults = field(default_factory=Faults)
    truth_dir: Path | None = None
    replay: list[Path] | None = None
    speed: float = 1.0
    clock_offset_ms: int = 1300
    host: str = "127.0.0.1"
    port: int = 0
    tick_ms: int = 100
    tick_jitter_ms: int = 0                       # E = schedule + offset + a seeded 0..jitter ms
    truth_depth: int = 10
    grid_ms: int = 100
    ping_interval_secs: float | None = None      # None: the venue's (spot 20 s, futures 180 s)
    pong_timeout_secs: float | None = None       # None: spot 60 s, futures 600 s (Binance's)
    weight_budget: int | None = None              # None: the venue's per-minute budget
    message_limit: int | None = None              # None: the venue's client messages per second
    levels_per_side: int = 2500
    max_queue_messages: int = 200_000             # a client this far behind is disconnected

    def __post_init__(self) -> None:
        if self.venue is not None:
            get_venue(self.venue)
        if not self.symbols and not self.replay:
            raise ValueError("at least one symbol is needed, e.g. BTCUSDT")
        self.symbols = [check_symbol(s) for s in self.symbols]
        if self.speed < 0:
            raise ValueError(f"speed={self.speed!r} must be 0 (as fast as the client reads) or positive")
        if self.tick_ms <= 0 or self.grid_ms <= 0:
            raise ValueError("tick_ms and grid_ms must be positive")
        if not 0 <= self.tick_jitter_ms < self.tick_ms:
            raise ValueError(f"tick_jitter_ms={self.tick_jitter_ms} must be from 0 to tick_ms - 1 "
                             f"({self.tick_ms - 1}) so that E keeps increasing")


def json_response(status: int, body: str, headers: dict[str, str]) -> Response:
    hdrs = Headers()
    hdrs["Content-Type"] = "application/json;charset=UTF-8"
    hdrs["Content-Length"] = str(len(body.encode()))
    hdrs["Connection"] = "close"
    for k, v in headers.items():
        hdrs[k] = v
    try:
        reason = http.HTTPStatus(status).phrase
    except ValueError:
        reason = "Error"
    return Response(status, reason, hdrs, body.encode())


class ExchangeServer:
    def __init__(self, config: ExchangeConfig):
        self.cfg = config
        self.recording: Recording | None = None
        if config.replay:
            self.recording = load_recordings(config.replay, venue=config.venue)
            self.venue = self.recording.venue
            self.symbols = self.recording.symbols
        else:
            self.venue = config.venue or FUTURES
            self.symbols = list(dict.fromkeys(config.symbols))
        self.spec = get_venue(self.venue)
        self.symbol_set = frozenset(self.symbols)
        self.markets: dict[str, SymbolMarket] = {}
        if self.recording is None:
            self.markets = {s: SymbolMarket(s, self.venue, config.seed, config.levels_per_side)
                            for s in self.symbols}
        self.truth = (TruthWriter(config.truth_dir, config.grid_ms * 1000, config.truth_depth)
                      if config.truth_dir else None)
        self.rest = RestApi(self.spec, set(self.symbols), self._snapshot,
                            RestFaultState(config.faults, config.seed), config.weight_budget,
                            exchange_ms=self.exchange_ms)
        self.connections: dict[int, Connection] = {}
        self.key_refs: collections.Counter[StreamKey] = collections.Counter()
        self.mergers: dict[tuple[str, int], DepthMerger] = {}
        self._next_conn_id = 1
        self._server = None
        self._tasks: list[asyncio.Task] = []
        self.port: int | None = None
        self.ticks = 0
        self.max_lag_ms = 0.0
        self.lag_sum_ms = 0.0
        self.messages_sent = 0
        self.started_at = 0.0
        self._last_transaction_ms: dict[str, int] = {}

    # --- clocks -------------------------------------------------------------------------------

    def exchange_ms(self) -> int:
        return int(time.time() * 1000) + self.cfg.clock_offset_ms

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        ping = self.cfg.ping_interval_secs
        if ping is None:
            ping = self.spec.server_ping_interval_secs
        pong = self.cfg.pong_timeout_secs
        if pong is None:
            pong = PONG_TIMEOUT_SECS[self.venue]
        self._server = await serve(
            self._handle_ws, self.cfg.host, self.cfg.port, process_request=self._process_request,
            ping_interval=ping or None, ping_timeout=pong,
            max_size=1 << 20, write_limit=1 << 20, compression=None,   # Binance does not deflate
            logger=logging.getLogger("midas.exchange.ws"))
        self.port = self._server.sockets[0].getsockname()[1]
        self.started_at = time.monotonic()
        if self.recording is None:
            self._tasks.append(asyncio.create_task(self._market_loop(), name="market"))
        if self.cfg.faults.disconnect_every_secs:
            self._tasks.append(asyncio.create_task(self._disconnect_loop(), name="disconnects"))
        log_kv(log, "exchange started", venue=self.venue, port=self.port,
               mode="replay" if self.recording else "simulation", symbols=",".join(self.symbols),
               faults=",".join(self.cfg.faults.active()) or None)

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with suppress(asyncio.CancelledError, Exception):   # cancelled just above
                await t
        self._tasks.clear()
        if self._server is not None:
            self._server.close()
            with suppress(asyncio.TimeoutError):    # stop within 10 s even if a client lingers
                await asyncio.wait_for(self._server.wait_closed(), 10)
        if self.truth is not None:
            for symbol, market in self.markets.items():
                if market.last_event_ms is not None:
                    self.truth.finish_book(symbol, market.last_event_ms,
                                           *self._top_levels(market))
            self.truth.close()
        log_kv(log, "exchange stopped", venue=self.venue, port=self.port, ticks=self.ticks,
               messages=self.messages_sent)

    def stats(self) -> dict:
        return {"ticks": self.ticks, "max_lag_ms": round(self.max_lag_ms, 3),
                "mean_lag_ms": round(self.lag_sum_ms / self.ticks, 3) if self.ticks else 0.0,
                "messages_sent": self.messages_sent, "connections": len(self.connections),
                "rest_requests": self.rest.requests}

    # --- simulation ---------------------------------------------------------------------------

    def _top_levels(self, market: SymbolMarket) -> tuple[list, list]:
        n = self.cfg.truth_depth
        return market.levels(True, n), market.levels(False, n)

    async def _market_loop(self) -> None:
        tick = self.cfg.tick_ms / 1000
        next_t = (int(time.time() / tick) + 1) * tick
        jitter_rng = random.Random(f"jitter:{self.cfg.seed}")
        while True:
            now = time.time()
            if now < next_t:
                await asyncio.sleep(next_t - now)
                continue
            scheduled_ms = round(next_t * 1000)
            jitter = int(jitter_rng.random() * (self.cfg.tick_jitter_ms + 1)) if self.cfg.tick_jitter_ms else 0
            self._step_all(scheduled_ms + self.cfg.clock_offset_ms + jitter)
            lag_ms = (time.time() - next_t) * 1000
            self.ticks += 1
            self.lag_sum_ms += lag_ms
            self.max_lag_ms = max(self.max_lag_ms, lag_ms)
            next_t += tick
            await asyncio.sleep(0)

    def _step_all(self, event_ms: int) -> None:
        out: list[tuple[StreamKey, str]] = []
        refs = self.key_refs
        truth = self.truth
        futures = self.venue == FUTURES
        for symbol, market in self.markets.items():
            if truth is not None and truth.needs_rows(symbol, event_ms):
                truth.before_diff(symbol, event_ms, *self._top_levels(market))
            res = market.step(event_ms)
            if truth is not None:
                truth.after_diff(symbol, event_ms)
            trade_key = StreamKey(symbol, "trade", 0)
            for t in res.trades:
                if truth is not None:
                    truth.trade(symbol, {"trade_id": t.trade_id, "price": t.price, "qty": t.qty,
                                         "is_buyer_maker": t.is_buyer_maker, "trade_ts": t.trade_ms * 1000,
                                         "exchange_ts": t.event_ms * 1000,
                                         "trade_type": "MARKET" if futures else None})
                if refs[trade_key]:
                    if futures:
                        payload = {"e": "trade", "E": t.event_ms, "T": t.trade_ms, "s": symbol,
                                   "t": t.trade_id, "p": t.price, "q": t.qty, "X": "MARKET",
                                   "m": t.is_buyer_maker}
                    else:
                        payload = {"e": "trade", "E": t.event_ms, "s": symbol, "t": t.trade_id,
                                   "p": t.price, "q": t.qty, "T": t.trade_ms, "m": t.is_buyer_maker,
                                   "M": True}
                    out.append((trade_key, orjson.dumps(payload).decode()))
            d = res.depth
            self._last_transaction_ms[symbol] = d.transaction_ms
            for speed in (0, 100):
                key = StreamKey(symbol, "depth", speed)
                if refs[key]:
                    out.append((key, self._depth_text(symbol, d.event_ms, d.transaction_ms,
                                                      d.first_update_id, d.last_update_id,
                                                      d.prev_update_id, d.bids, d.asks)))
            for (msym, speed), merger in self.mergers.items():
                if msym == symbol:
                    merged = merger.add(d)
                    if merged is not None:
                        out.append((StreamKey(symbol, "depth", speed), self._depth_text(symbol, *merged)))
            bt_key = StreamKey(symbol, "bookTicker", 0)
            if res.top_changed and refs[bt_key]:
                out.append((bt_key, self._book_ticker_text(market, d)))
        if out:
            for conn in self.connections.values():
                conn.offer(out)
        if truth is not None:
            truth.flush()

    def _depth_text(self, symbol, event_ms, transaction_ms, first, last, prev, bids, asks) -> str:
        if self.venue == FUTURES:
            payload = {"e": "depthUpdate", "E": event_ms, "T": transaction_ms, "s": symbol, "U": first,
                       "u": last, "pu": prev, "b": bids, "a": asks}
        else:
            payload = {"e": "depthUpdate", "E": event_ms, "s": symbol, "U": first, "u": last,
                       "b": bids, "a": asks}
        return orjson.dumps(payload).decode()

    def _book_ticker_text(self, market: SymbolMarket, d) -> str:
        bid = market.levels(True, 1)
        ask = market.levels(False, 1)
        b, bq = bid[0] if bid else ("0", "0")
        a, aq = ask[0] if ask else ("0", "0")
        if self.venue == FUTURES:
            payload = {"e": "bookTicker", "u": d.last_update_id, "s": market.symbol, "b": b, "B": bq,
                       "a": a, "A": aq, "T": d.transaction_ms, "E": d.event_ms}
        else:
            payload = {"u": d.last_update_id, "s": market.symbol, "b": b, "B": bq, "a": a, "A": aq}
        return orjson.dumps(payload).decode()

    def _snapshot(self, symbol: str, limit: int) -> str:
        if self.recording is not None:
            return snapshot_text(self.recording, symbol, limit)
        market = self.markets[symbol]
        bids, asks = market.levels(True, limit), market.levels(False, limit)
        if self.venue == FUTURES:
            body = {"lastUpdateId": market.last_update_id, "E": self.exchange_ms(),
                    "T": self._last_transaction_ms.get(symbol, self.exchange_ms()),
                    "bids": bids, "asks": asks}
        else:
            body = {"lastUpdateId": market.last_update_id, "bids": bids, "asks": asks}
        return orjson.dumps(body).decode()

    # --- subscriptions (called by connections) ------------------------------------------------

    def add_ref(self, key: StreamKey) -> None:
        self.key_refs[key] += 1
        if key.kind == "depth" and key.speed_ms > 100 and (key.symbol, key.speed_ms) not in self.mergers:
            self.mergers[(key.symbol, key.speed_ms)] = DepthMerger(key.speed_ms, self.cfg.tick_ms)

    def drop_ref(self, key: StreamKey) -> None:
        self.key_refs[key] -= 1
        if self.key_refs[key] <= 0:
            del self.key_refs[key]
            self.mergers.pop((key.symbol, key.speed_ms), None)

    def parse_stream(self, name) -> StreamKey:
        return parse_stream_name(name, self.venue, self.symbol_set)

    # --- HTTP / handshake ---------------------------------------------------------------------

    async def _process_request(self, connection: ServerConnection, request: Request):
        upgrade = request.headers.get("Upgrade", "")
        if upgrade.lower() == "websocket":
            error = self._check_ws_path(request.path)
            if error is None:
                return None
            status, code, msg = error
            return json_response(status, orjson.dumps({"code": code, "msg": msg}).decode(), {})
        answer = await self.rest.handle(request.path)
        return json_response(answer.status, answer.body, answer.headers)

    def _check_ws_path(self, target: str) -> tuple[int, int, str] | None:
        try:
            streams_of_path(target, self)
        except StreamNameError as e:
            return 400, -1121 if "unknown symbol" in str(e) else -1100, str(e)
        except LookupError as e:
            return 404, -1, str(e)
        return None

    async def _handle_ws(self, ws: ServerConnection) -> None:
        conn_id = self._next_conn_id
        self._next_conn_id += 1
        conn = Connection(self, ws, conn_id)
        self.connections[conn_id] = conn
        try:
            with suppress(ConnectionClosed):    # a client leaving is the normal end of a connection
                await conn.run()
        finally:
            self.connections.pop(conn_id, None)
            conn.release()

    async def _disconnect_loop(self) -> None:
        every = self.cfg.faults.disconnect_every_secs
        while True:
            await asyncio.sleep(every)
            conns = list(self.connections.values())
            log_kv(log, "fault: dropping every connection", connections=len(conns))
            for conn in conns:
                conn.abort()
