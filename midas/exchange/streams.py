"""Stream names and the live subscription protocol of Binance's market-data WebSocket.

Stream names: `<symbol>@trade`, `<symbol>@bookTicker`, `<symbol>@depth` and
`<symbol>@depth@<speed>ms` with speed 0, 100, 250, 500 or 1000 (`@depth` alone is 1000 ms on
spot and 250 ms on futures, as on Binance). Symbols are lower-case in stream names.

Requests (`{"method": ..., "params": [...], "id": N}`) and Binance's answers:
    SUBSCRIBE / UNSUBSCRIBE   -> {"result": null, "id": N}
    LIST_SUBSCRIPTIONS        -> {"result": ["btcusdt@trade", ...], "id": N}
    SET_PROPERTY ["combined", bool] -> {"result": null, "id": N}
    GET_PROPERTY ["combined"]        -> {"result": bool, "id": N}
    malformed                 -> {"error": {"code": 2|3, "msg": ...}, "id": N or null}
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from midas.venues import FUTURES

DEPTH_SPEEDS_MS = (0, 100, 250, 500, 1000)
METHODS = ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS", "SET_PROPERTY", "GET_PROPERTY")
_NAME_RE = re.compile(r"^([a-z0-9]{2,20})@(trade|bookTicker|depth)(?:@(\d+)ms)?$")


class StreamNameError(ValueError):
    """A stream name this exchange does not serve; the message says why."""


@dataclass(frozen=True)
class StreamKey:
    symbol: str      # upper case
    kind: str        # "trade", "bookTicker" or "depth"
    speed_ms: int    # depth update speed; 0 for trade and bookTicker


def parse_stream_name(name: Any, venue: str, symbols: set[str] | frozenset[str]) -> StreamKey:
    """The StreamKey of a stream name, or StreamNameError naming what is wrong with it."""
    if not isinstance(name, str):
        raise StreamNameError(f"stream name must be a string, got {name!r:.40}")
    m = _NAME_RE.match(name)
    if not m:
        raise StreamNameError(
            f"invalid stream name {name!r:.60}: use <symbol>@trade, <symbol>@bookTicker, "
            f"<symbol>@depth or <symbol>@depth@100ms (lower-case symbol)")
    symbol, kind, speed = m.group(1).upper(), m.group(2), m.group(3)
    if symbol not in symbols:
        raise StreamNameError(f"unknown symbol in stream {name!r}: this exchange serves "
                              f"{', '.join(sorted(symbols)).lower()}")
    if kind != "depth":
        if speed is not None:
            raise StreamNameError(f"invalid stream name {name!r}: only depth streams take a speed")
        return StreamKey(symbol, kind, 0)
    if speed is None:
        return StreamKey(symbol, kind, 250 if venue == FUTURES else 1000)
    if int(speed) not in DEPTH_SPEEDS_MS or speed != str(int(speed)):
        raise StreamNameError(f"invalid depth speed in {name!r}: use one of "
                              + ", ".join(f"@{s}ms" for s in DEPTH_SPEEDS_MS))
    return StreamKey(symbol, kind, int(speed))


def error_reply(code: int, msg: str, req_id: Any = None) -> str:
    return orjson.dumps({"error": {"code": code, "msg": msg}, "id": req_id}).decode()


def result_reply(result: Any, req_id: Any) -> str:
    return orjson.dumps({"result": result, "id": req_id}).decode()


@dataclass
class Request:
    method: str
    params: list
    id: Any


def parse_request(text: str | bytes) -> Request | str:
    """A client's request, or the error reply (text) Binance would send for it."""
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError as e:
        return error_reply(3, f"Invalid JSON: {e}")
    if not isinstance(obj, dict):
        return error_reply(2, "Invalid request: expected a JSON object with method, params and id")
    req_id = obj.get("id")
    if "id" not in obj:
        return error_reply(2, "Invalid request: missing field `id`")
    if not ((type(req_id) is int and 0 <= req_id < 2**64) or (isinstance(req_id, str) and len(req_id) <= 36)
            or req_id is None):
        return error_reply(2, "Invalid request: request ID must be an unsigned integer")
    unknown = set(obj) - {"method", "params", "id"}
    if unknown:
        return error_reply(0, f"Unknown property {sorted(unknown)[0]!r}", req_id)
    if "method" not in obj:
        return error_reply(2, "Invalid request: missing field `method`", req_id)
    method = obj["method"]
    if method not in METHODS:
        return error_reply(2, f"Invalid request: unknown variant `{method!s:.40}`, expected one of "
                              + ", ".join(f"`{m}`" for m in METHODS), req_id)
    params = obj.get("params", [])
    if not isinstance(params, list):
        return error_reply(2, "Invalid request: invalid type for `params`, expected a sequence", req_id)
    if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
        if not params:
            return error_reply(2, f"Invalid request: {method} needs at least one stream name in params", req_id)
        if any(not isinstance(p, str) for p in params):
            return error_reply(2, "Invalid request: params must be stream names (strings)", req_id)
    if method == "LIST_SUBSCRIPTIONS" and params:
        return error_reply(2, "Invalid request: too many parameters", req_id)
    if method == "SET_PROPERTY":
        if len(params) != 2 or params[0] != "combined":
            return error_reply(0, "Unknown property", req_id)
        if type(params[1]) is not bool:
            return error_reply(1, "Invalid value type: expected Boolean", req_id)
    if method == "GET_PROPERTY" and params != ["combined"]:
        return error_reply(0, "Unknown property", req_id)
    return Request(method, params, req_id)
