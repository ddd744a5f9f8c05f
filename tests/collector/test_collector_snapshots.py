"""Snapshot pacing by weight, Retry-After on 429/418, backoff on 5xx: the math on a virtual clock.

(The same behaviour against the local exchange's REST faults is in test_collector_exchange_faults.py.)
"""

from __future__ import annotations

import asyncio

import orjson
import pytest

from midas.collector.snapshots import HttpAnswer, SnapshotClient, WeightPacer
from midas.errors import ExchangeError


def _max_in_window(sends, window):
    # Independent brute force: the heaviest set of sends inside any half-open window (t - window, t].
    best = 0
    for t, _ in sends:
        best = max(best, sum(w for s, w in sends if t - window < s <= t))
    return best


def test_pacer_spreads_200_futures_symbols_over_the_minute_budget():
    pacer = WeightPacer(2400)
    sends = [(pacer.reserve(20, 0.0), 20) for _ in range(200)]
    # 240 weight of burst (12 requests at once), then 1920 per minute = 32 per second.
    assert [t for t, _ in sends[:12]] == [0.0] * 12
    assert sends[12][0] == pytest.approx(20 / 32)
    assert sends[-1][0] == pytest.approx((200 * 20 - 240) / 32)      # 117.5 s
    assert _max_in_window(sends, 60.0) == 2140
    assert pacer.max_weight_in_any_window(sends) == 2140
    assert 2140 <= 0.9 * 2400


def test_pacer_refills_while_idle_and_honours_a_block():
    pacer = WeightPacer(100, window_secs=1.0, use_fraction=0.5, burst_fraction=0.2)
    assert pacer.capacity(10) == 20
    assert pacer.reserve(10, 0.0) == 0.0
    assert pacer.reserve(10, 0.0) == 0.0
    assert pacer.reserve(10, 0.0) == pytest.approx(10 / 50)
    assert pacer.reserve(10, 10.0) == 0.0      # refilled to the burst capacity, not beyond
    assert pacer.reserve(10, 10.0) == 0.0
    assert pacer.reserve(10, 10.0) == pytest.approx(0.2)
    pacer.block(25.0)
    assert pacer.reserve(10, 20.0) == pytest.approx(5.0)


class VirtualTime:
    def __init__(self):
        self.now = 0.0

    def clock(self):
        return self.now

    async def sleep(self, secs):
        self.now += max(0.0, secs)
        await asyncio.sleep(0)


def _client(answers, vt, calls, budget=2400.0):
    def get(url):
        calls.append((vt.now, url))
        return answers.pop(0)
    return SnapshotClient("binance-futures", "http://127.0.0.1:9", 1000, WeightPacer(budget),
                          clock=vt.clock, sleep=vt.sleep, get=get)


BODY = orjson.dumps({"lastUpdateId": 77, "E": 1700000000123, "T": 1700000000120,
                     "bids": [["100.10", "2.000"]], "asks": [["100.20", "1.500"]]})


def test_retry_after_is_honoured_and_5xx_backs_off():
    vt = VirtualTime()
    calls = []
    answers = [HttpAnswer(429, b'{"code":-1003,"msg":"Too many requests"}', {"retry-after": "7"}),
               HttpAnswer(503, b"busy", {}),
               HttpAnswer(500, b"oops", {}),
               HttpAnswer(200, BODY, {})]
    client = _client(answers, vt, calls)
    rec = asyncio.run(client.fetch("BTCUSDT"))
    times = [t for t, _ in calls]
    assert calls[0][1] == "http://127.0.0.1:9/fapi/v1/depth?symbol=BTCUSDT&limit=1000"
    assert times[0] == 0.0
    assert times[1] >= 7.0                       # nothing before Retry-After
    assert 0.9 <= times[2] - times[1] <= 1.1     # first 5xx delay: 1 s +/- 10 %
    assert 1.8 <= times[3] - times[2] <= 2.2     # doubled
    assert client.answers == {429: 1, 503: 1, 500: 1, 200: 1}
    assert rec == {"type": "snapshot", "venue": "binance-futures", "symbol": "BTCUSDT",
                   "exchange_ts": 1700000000123000, "local_ts": rec["local_ts"], "last_update_id": 77,
                   "bids": [["100.10", "2.000"]], "asks": [["100.20", "1.500"]],
                   "transaction_ts": 1700000000120000, "depth_limit": 1000}


def test_a_418_ban_blocks_every_symbol_until_it_ends():
    vt = VirtualTime()
    calls = []
    answers = [HttpAnswer(418, b'{"code":-1003,"msg":"banned"}', {"retry-after": "120"}),
               HttpAnswer(200, BODY, {}), HttpAnswer(200, BODY, {})]
    client = _client(answers, vt, calls)

    async def both():
        first = await client.fetch("BTCUSDT")
        second = await client.fetch("ETHUSDT")
        return first, second

    asyncio.run(both())
    assert [round(t, 6) for t, _ in calls] == [0.0, 120.0, 120.0]
    assert calls[2][1].endswith("symbol=ETHUSDT&limit=1000")


def test_a_refused_symbol_is_an_error_naming_it():
    vt = VirtualTime()
    calls = []
    answers = [HttpAnswer(400, b'{"code":-1121,"msg":"Invalid symbol."}', {})]
    client = _client(answers, vt, calls)
    with pytest.raises(ExchangeError) as err:
        asyncio.run(client.fetch("NOPEUSDT"))
    assert "depth snapshot of NOPEUSDT on binance-futures refused: HTTP 400" in str(err.value)
    assert "Invalid symbol." in str(err.value)
    assert err.value.status == 400
