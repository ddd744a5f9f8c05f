"""REST depth snapshots: Binance's error bodies, request weights, 429/418, injected faults."""

from __future__ import annotations

import json
import time

from midas.exchange import Faults, LocalExchange

FUT = "/fapi/v1/depth"
SPOT = "/api/v3/depth"


def test_binance_error_bodies(get):
    with LocalExchange(venue="binance-futures", symbols=["BTCUSDT"]) as ex:
        base = ex.rest_url
        cases = {
            f"{FUT}?symbol=XRPUSDT&limit=100": (400, {"code": -1121, "msg": "Invalid symbol."}),
            f"{FUT}?symbol=btcusdt": (400, {"code": -1121, "msg": "Invalid symbol."}),
            f"{FUT}?limit=100": (400, {"code": -1102, "msg": "Mandatory parameter 'symbol' was not sent, "
                                                             "was empty/null, or malformed."}),
            f"{FUT}?symbol=BTCUSDT&limit=abc": (400, {"code": -1100, "msg": "Illegal characters found in "
                                                      "parameter 'limit'; legal range is '^[0-9]{1,20}$'."}),
            f"{FUT}?symbol=BTCUSDT&limit=-5": (400, {"code": -1100, "msg": "Illegal characters found in "
                                                     "parameter 'limit'; legal range is '^[0-9]{1,20}$'."}),
        }
        for path, (status, body) in cases.items():
            got_status, headers, got_body = get(base + path)
            assert (got_status, json.loads(got_body)) == (status, body), path
            assert headers["Content-Type"] == "application/json;charset=UTF-8"
        status, _, body = get(base + f"{FUT}?symbol=BTCUSDT&limit=7")
        assert status == 400 and json.loads(body)["code"] == -1130
        assert "5, 10, 20, 50, 100, 500, 1000" in json.loads(body)["msg"]
        status, _, body = get(base + f"{SPOT}?symbol=BTCUSDT")   # the other venue's path
        assert status == 404 and json.loads(body)["code"] == -1
        status, _, body = get(base + "/fapi/v1/time")
        assert status == 200 and abs(json.loads(body)["serverTime"] - (time.time() * 1000 + 1300)) < 5000
        status, _, body = get(base + "/fapi/v1/ping")
        assert (status, body) == (200, "{}")
        status, headers, body = get(base + f"{FUT}?symbol=BTCUSDT")     # default limit 500
        snap = json.loads(body)
        assert status == 200 and len(snap["bids"]) == 500 and len(snap["asks"]) == 500


def test_spot_limits_and_weights(get):
    for _attempt in range(2):     # a calendar-minute boundary inside the burst restarts the count
        with LocalExchange(venue="binance", symbols=["ETHUSDT"]) as ex:
            minute = int(time.time() // 60)
            used = []
            for limit in (5, 100, 500, 1000, 6000):
                status, headers, body = get(f"{ex.rest_url}{SPOT}?symbol=ETHUSDT&limit={limit}")
                snap = json.loads(body)
                assert status == 200 and set(snap) == {"lastUpdateId", "bids", "asks"}
                if limit <= 1000:
                    assert len(snap["bids"]) == limit and len(snap["asks"]) == limit
                else:   # cut to 5000 as on Binance: the whole simulated book, about 2500 a side
                    assert 2000 < len(snap["bids"]) < 3000 and 2000 < len(snap["asks"]) < 3000
                used.append(int(headers["X-MBX-USED-WEIGHT-1M"]))
            status, _, body = get(f"{ex.rest_url}{SPOT}?symbol=ETHUSDT&limit=0")
            assert status == 400 and json.loads(body)["code"] == -1130
        if int(time.time() // 60) == minute:
            break
    # weights 5, 5, 25, 50, 250 accumulate within the minute
    assert used == [5, 10, 35, 85, 335]


def test_weight_budget_gives_429_with_retry_after_then_418(get):
    for _attempt in range(2):     # a calendar-minute boundary inside the burst restarts the count
        with LocalExchange(venue="binance-futures", weight_budget=100) as ex:
            minute = int(time.time() // 60)
            url = f"{ex.rest_url}{FUT}?symbol=BTCUSDT&limit=1000"       # weight 20
            answers = [get(url) for _ in range(12)]
        if int(time.time() // 60) == minute:
            break
    assert [a[0] for a in answers] == [200] * 5 + [429] * 5 + [418, 418]
    assert [int(a[1]["X-MBX-USED-WEIGHT-1M"]) for a in answers[:5]] == [20, 40, 60, 80, 100]
    for status, headers, body in answers[5:10]:
        assert 1 <= int(headers["Retry-After"]) <= 60
        assert headers["X-MBX-USED-WEIGHT-1M"] == "100"
        assert json.loads(body)["code"] == -1003
        assert "current limit is 100 request weight per 1 MINUTE" in json.loads(body)["msg"]
    assert answers[10][1]["Retry-After"] == "120"
    assert 118 <= int(answers[11][1]["Retry-After"]) <= 120
    assert json.loads(answers[10][2])["code"] == -1003


def test_injected_rest_failures_first_n_and_slow(get):
    faults = Faults(rest_fail_first=2, rest_fail_status=429, rest_retry_after_secs=3)
    with LocalExchange(venue="binance-futures", faults=faults) as ex:
        url = f"{ex.rest_url}{FUT}?symbol=BTCUSDT&limit=5"
        answers = [get(url) for _ in range(3)]
    assert [a[0] for a in answers] == [429, 429, 200]
    assert answers[0][1]["Retry-After"] == "3" and json.loads(answers[0][2])["code"] == -1003
    with LocalExchange(venue="binance", faults=Faults(rest_fail_first=1, rest_fail_status=500,
                                                      rest_slow_secs=1.0, rest_slow_first=2)) as ex:
        url = f"{ex.rest_url}{SPOT}?symbol=BTCUSDT&limit=5"
        status, _, body = get(url)
        assert status == 500 and json.loads(body) == {
            "code": -1000, "msg": "An unknown error occurred while processing the request."}
        started = time.monotonic()
        status, _, body = get(url)                 # the second request is slowed down
        assert status == 200 and time.monotonic() - started >= 1.0
        assert len(json.loads(body)["bids"]) == 5


def test_injected_failure_rate_is_reproducible_per_seed(get):
    def pattern(seed):
        with LocalExchange(venue="binance", seed=seed, faults=Faults(rest_fail_rate=0.5,
                                                                      rest_fail_status=503)) as ex:
            return [get(f"{ex.rest_url}{SPOT}?symbol=BTCUSDT&limit=5")[0] for _ in range(16)]

    first, again = pattern(21), pattern(21)
    assert first == again
    assert set(first) == {200, 503}
