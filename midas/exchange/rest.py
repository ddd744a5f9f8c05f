"""The REST side of the local exchange: depth snapshots, request weights, Binance's errors.

Paths (served on the WebSocket port): `/api/v3/depth` (spot) or `/fapi/v1/depth` (futures),
`/api/v3/ping` | `/fapi/v1/ping` and `/api/v3/time` | `/fapi/v1/time`.

Weights are counted per calendar minute as Binance does; every answer carries
`X-MBX-USED-WEIGHT-1M`. A request that would exceed the budget gets 429 with `Retry-After` (the
seconds to the next minute); more than `ban_after_429` such requests in one minute get 418 (an IP
ban) for `ban_secs`, also with `Retry-After`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from typing import Callable
from urllib.parse import parse_qs, urlsplit

import orjson

from midas.exchange.faults import RestFaultState
from midas.logs import log_kv
from midas.venues import VenueSpec

log = logging.getLogger("midas.exchange")

DEFAULT_LIMIT = {"binance": 100, "binance-futures": 500}


@dataclass
class RestAnswer:
    status: int
    body: str
    headers: dict[str, str]


def _error(status: int, code: int, msg: str, headers: dict | None = None) -> RestAnswer:
    return RestAnswer(status, orjson.dumps({"code": code, "msg": msg}).decode(), dict(headers or {}))


class RestApi:
    """Answers REST requests. `snapshot(symbol, limit) -> body text` comes from the market or replay."""

    def __init__(self, spec: VenueSpec, symbols: set[str], snapshot: Callable[[str, int], str],
                 faults: RestFaultState, weight_budget: int | None = None, ban_after_429: int = 5,
                 ban_secs: int = 120, clock: Callable[[], float] = time.time,
                 exchange_ms: Callable[[], int] | None = None):
        self.spec = spec
        self.symbols = symbols
        self.snapshot = snapshot
        self.faults = faults
        self.budget = weight_budget if weight_budget is not None else spec.weight_budget_per_minute
        self.ban_after_429 = ban_after_429
        self.ban_secs = ban_secs
        self.clock = clock
        self.exchange_ms = exchange_ms or (lambda: int(clock() * 1000))
        self.minute = -1
        self.used = 0
        self.rejected_this_minute = 0
        self.banned_until = 0.0
        self.requests = 0

    def _window(self, now: float) -> None:
        minute = int(now // 60)
        if minute != self.minute:
            self.minute, self.used, self.rejected_this_minute = minute, 0, 0

    def _weight_headers(self) -> dict[str, str]:
        return {"X-MBX-USED-WEIGHT-1M": str(self.used)}

    async def handle(self, target: str) -> RestAnswer:
        """Answer one GET of `target` (path and query)."""
        self.requests += 1
        parts = urlsplit(target)
        path = parts.path
        prefix = self.spec.depth_path.rsplit("/", 1)[0]         # /api/v3 or /fapi/v1
        now = self.clock()
        self._window(now)
        if path == f"{prefix}/ping":
            return RestAnswer(200, "{}", self._weight_headers())
        if path == f"{prefix}/time":
            return RestAnswer(200, orjson.dumps({"serverTime": self.exchange_ms()}).decode(),
                              self._weight_headers())
        if path != self.spec.depth_path:
            return _error(404, -1, f"Not found: {path[:80]} (this {self.spec.name} exchange serves "
                                   f"{self.spec.depth_path}, {prefix}/ping, {prefix}/time)")
        if now < self.banned_until:
            wait = math.ceil(self.banned_until - now)
            return _error(418, -1003, f"Way too many requests; IP banned until {int(self.banned_until * 1000)}. "
                                      "Please use the websocket for live updates to avoid bans.",
                          {**self._weight_headers(), "Retry-After": str(wait)})
        query = parse_qs(parts.query, keep_blank_values=True)
        symbol = (query.get("symbol") or [""])[0]
        if not symbol:
            return _error(400, -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.",
                          self._weight_headers())
        if symbol.upper() != symbol or symbol not in self.symbols:
            return _error(400, -1121, "Invalid symbol.", self._weight_headers())
        limit_text = (query.get("limit") or [None])[0]
        if limit_text is None:
            limit = DEFAULT_LIMIT[self.spec.name]
        else:
            if not limit_text.isdigit() or len(limit_text) > 20:
                return _error(400, -1100, "Illegal characters found in parameter 'limit'; "
                                          "legal range is '^[0-9]{1,20}$'.", self._weight_headers())
            limit = int(limit_text)
            if self.spec.snapshot_limits is not None:
                if limit not in self.spec.snapshot_limits:
                    return _error(400, -1130, "Data sent for parameter 'limit' is not valid. "
                                              f"Allowed: {self.spec.allowed_limits_text()}.",
                                  self._weight_headers())
            elif limit < 1:
                return _error(400, -1130, "Data sent for parameter 'limit' is not valid.", self._weight_headers())
            else:
                limit = min(limit, self.spec.max_snapshot_limit)   # Binance truncates above 5000
        weight = self.spec.depth_weight(limit)
        if self.used + weight > self.budget:
            self.rejected_this_minute += 1
            if self.rejected_this_minute > self.ban_after_429:
                self.banned_until = now + self.ban_secs
                log_kv(log, "REST ban", level=logging.WARNING, seconds=self.ban_secs)
                return _error(418, -1003, f"Way too many requests; IP banned until "
                                          f"{int(self.banned_until * 1000)}.",
                              {**self._weight_headers(), "Retry-After": str(self.ban_secs)})
            retry = max(1, math.ceil((self.minute + 1) * 60 - now))
            return _error(429, -1003, f"Too much request weight used; current limit is {self.budget} "
                                      "request weight per 1 MINUTE. Please use WebSocket Streams for "
                                      "live updates to avoid polling the API.",
                          {**self._weight_headers(), "Retry-After": str(retry)})
        self.used += weight
        fail, delay = self.faults.next_request()
        if fail is not None:
            log_kv(log, "REST fault injected", level=logging.INFO, status=fail, symbol=symbol)
            if fail in (418, 429):
                return _error(fail, -1003, "Too many requests; injected by the local exchange's fault settings.",
                              {**self._weight_headers(),
                               "Retry-After": str(self.faults.f.rest_retry_after_secs)})
            return _error(fail, -1000 if fail == 500 else -1001,
                          "An unknown error occurred while processing the request." if fail == 500
                          else "Internal error; unable to process your request. Please try again.",
                          self._weight_headers())
        body = self.snapshot(symbol, limit)
        if delay:
            await asyncio.sleep(delay)
        return RestAnswer(200, body, self._weight_headers())
