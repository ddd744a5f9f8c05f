"""REST depth snapshots: paced by Binance's request weights, `Retry-After` honoured, 5xx backed off.

* `WeightPacer` is a token bucket over request weight. With the venue budget B per minute it lets
  at most `burst_fraction` x B go at once and refills `use_fraction` x B per minute, so any
  one-minute window carries at most (burst + use) x B = 90 % of B: 200 futures symbols at weight 20
  against 2400/min are spread over about 125 s instead of earning a 429 (and then a 418 ban).
* A 429 or 418 answer blocks *every* request until its `Retry-After` has passed; the server's
  `X-MBX-USED-WEIGHT-1M` near the budget blocks until the next minute starts.
* 5xx answers and network errors are retried after a doubling delay (1 s up to 60 s).
* Other 4xx answers (an unknown symbol, a bad limit) are not retryable: `ExchangeError`.

HTTP uses the standard library in a daemon thread per request, so no extra dependency, and a
request still hanging at shutdown never holds the process back (`asyncio.to_thread` would: the
default executor is joined when the loop closes).
"""

from __future__ import annotations

from contextlib import suppress

import asyncio
import logging
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from midas import wire
from midas.collector.backoff import Backoff
from midas.errors import ExchangeError, WireError
from midas.logs import log_kv

log = logging.getLogger("midas.collector")

HTTP_TIMEOUT_SECS = 10.0
WEIGHT_HEADER = "x-mbx-used-weight-1m"


@dataclass
class WeightPacer:
    """Token bucket over request weight; times come from the caller (pure, testable)."""

    budget_per_window: float          # the venue's weight budget per window (Binance: per minute)
    window_secs: float = 60.0
    use_fraction: float = 0.8          # share of the budget refilled per window
    burst_fraction: float = 0.1        # share of the budget that may go at once
    tokens: float | None = None
    last: float | None = None
    blocked_until: float = 0.0

    @property
    def rate(self) -> float:
        """Weight refilled per second."""
        return self.budget_per_window * self.use_fraction / self.window_secs

    def capacity(self, weight: float) -> float:
        return max(weight, self.budget_per_window * self.burst_fraction)

    def reserve(self, weight: float, now: float) -> float:
        """Take `weight` now; return the seconds to wait before the request may be sent."""
        cap = self.capacity(weight)
        if self.tokens is None or self.last is None:
            self.tokens, self.last = cap, now
        self.tokens = min(cap, self.tokens + (now - self.last) * self.rate)
        self.last = now
        self.tokens -= weight
        wait = 0.0 if self.tokens >= 0 else -self.tokens / self.rate
        return max(wait, self.blocked_until - now)

    def block(self, until: float) -> None:
        """No request before `until` (a 429/418 `Retry-After`, or the weight header near the budget)."""
        self.blocked_until = max(self.blocked_until, until)

    def max_weight_in_any_window(self, sends: list[tuple[float, float]]) -> float:
        """The largest summed weight of `sends` [(time, weight)] inside any one window (for checks)."""
        best = 0.0
        times = sorted(sends)
        j = 0
        total = 0.0
        for i, (t, w) in enumerate(times):
            total += w
            while times[j][0] <= t - self.window_secs:
                total -= times[j][1]
                j += 1
            best = max(best, total)
        return best


@dataclass
class HttpAnswer:
    status: int
    body: bytes
    headers: dict[str, str]


def http_get(url: str, timeout: float = HTTP_TIMEOUT_SECS) -> HttpAnswer:
    """One blocking GET; HTTP error statuses are answers, not exceptions. Network errors raise OSError."""
    req = urllib.request.Request(url, headers={"User-Agent": "midas-collector"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return HttpAnswer(resp.status, resp.read(), {k.lower(): v for k, v in resp.headers.items()})
    except urllib.error.HTTPError as e:
        body = e.read() if e.fp is not None else b""
        return HttpAnswer(e.code, body, {k.lower(): v for k, v in (e.headers or {}).items()})


async def in_daemon_thread(fn, *args):
    """`fn(*args)` in a daemon thread; its result (or exception) delivered to this event loop."""
    loop = asyncio.get_running_loop()
    future = loop.create_future()

    def deliver(ok: bool, value) -> None:
        if future.cancelled():
            return
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)

    def run() -> None:
        try:
            result = fn(*args)
        except BaseException as e:  # handed to the awaiting coroutine
            ok, value = False, e
        else:
            ok, value = True, result
        with suppress(RuntimeError):  # the loop is closed: nobody waits for this answer any more
            loop.call_soon_threadsafe(deliver, ok, value)

    threading.Thread(target=run, name="midas-rest", daemon=True).start()
    return await future


def _retry_after(headers: dict[str, str], default: float) -> float:
    value = headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else default
    except ValueError:
        return default


@dataclass
class SnapshotClient:
    """Fetches `snapshot` raw records for one venue through a shared `WeightPacer`."""

    venue: str
    rest_url: str
    depth_limit: int
    pacer: WeightPacer
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    get: Callable[[str], HttpAnswer] = http_get
    retry_first_delay: float = 1.0
    sends: list[tuple[float, float]] = field(default_factory=list)   # (clock time, weight) per request
    answers: dict[int, int] = field(default_factory=dict)            # HTTP status -> count
    max_used_weight: int = 0          # highest X-MBX-USED-WEIGHT-1M the exchange reported

    def __post_init__(self) -> None:
        from midas.venues import get_venue

        self.spec = get_venue(self.venue)
        self.weight = self.spec.depth_weight(self.depth_limit)

    def url(self, symbol: str) -> str:
        query = urllib.parse.urlencode({"symbol": symbol.upper(), "limit": self.depth_limit})
        return f"{self.spec.depth_url(self.rest_url)}?{query}"

    async def _paced(self) -> None:
        while True:
            now = self.clock()
            if now < self.pacer.blocked_until:
                await self.sleep(self.pacer.blocked_until - now)
                continue
            wait = self.pacer.reserve(self.weight, now)
            if wait > 0:
                await self.sleep(wait)
            if self.clock() >= self.pacer.blocked_until:
                return

    async def fetch(self, symbol: str, on_wait: Callable[[str], None] | None = None) -> dict:
        """A `snapshot` record for `symbol`; retries 429/418/5xx/network errors until it succeeds."""
        backoff = Backoff(self.retry_first_delay, jitter=0.1)
        url = self.url(symbol)
        while True:
            await self._paced()
            self.sends.append((self.clock(), self.weight))
            try:
                answer = await in_daemon_thread(self.get, url)
            except OSError as e:
                delay = backoff.next_delay()
                log_kv(log, "snapshot request failed, retrying", logging.WARNING, symbol=symbol,
                       error=str(e), retry_in=f"{delay:.1f}s")
                await self.sleep(delay)
                continue
            self.answers[answer.status] = self.answers.get(answer.status, 0) + 1
            self._note_used_weight(answer.headers)
            if answer.status == 200:
                local_ts = time.time_ns() // 1000
                try:
                    return wire.parse_depth_snapshot(answer.body, self.venue, symbol, local_ts,
                                                     self.depth_limit, where=f"depth snapshot of {symbol}")
                except WireError as e:
                    delay = backoff.next_delay()
                    log_kv(log, "malformed snapshot, retrying", logging.WARNING, symbol=symbol,
                           error=str(e), retry_in=f"{delay:.1f}s")
                    await self.sleep(delay)
                    continue
            if answer.status in (429, 418):
                pause = _retry_after(answer.headers, 60.0)
                self.pacer.block(self.clock() + pause)
                log_kv(log, "REST rate limit hit, pausing every snapshot request", logging.WARNING,
                       symbol=symbol, status=answer.status, retry_after=f"{pause:g}s")
                if on_wait:
                    on_wait(f"HTTP {answer.status}, Retry-After {pause:g}s")
                continue
            if answer.status >= 500:
                delay = backoff.next_delay()
                log_kv(log, "REST server error, backing off", logging.WARNING, symbol=symbol,
                       status=answer.status, retry_in=f"{delay:.1f}s")
                await self.sleep(delay)
                continue
            raise ExchangeError(
                f"depth snapshot of {symbol} on {self.venue} refused: HTTP {answer.status} "
                f"{answer.body[:200].decode('utf-8', 'replace')} (check the symbol and SNAPSHOT_DEPTH_LIMIT)",
                status=answer.status)

    def _note_used_weight(self, headers: dict[str, str]) -> None:
        used = headers.get(WEIGHT_HEADER)
        if used is None:
            return
        try:
            used_weight = float(used)
        except ValueError:
            return
        self.max_used_weight = max(self.max_used_weight, int(used_weight))
        if used_weight + self.weight > self.pacer.budget_per_window * 0.95:
            # Binance counts weight per calendar minute: wait for the next one to start.
            now_wall = time.time()
            rest = self.pacer.window_secs - (now_wall % self.pacer.window_secs)
            self.pacer.block(self.clock() + rest)
            log_kv(log, "REST weight near the budget, pausing snapshot requests", logging.WARNING,
                   used_weight=int(used_weight), budget=int(self.pacer.budget_per_window),
                   pause=f"{rest:.1f}s")
