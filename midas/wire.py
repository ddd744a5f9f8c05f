"""Binance wire messages -> SPEC §2 raw records. The only module that knows `E`, `U`, `u`, `pu`.

Every function validates what it reads and raises `WireError` saying which field was wrong, so a
malformed message is reported and skipped at the edge and nothing downstream sees it. Prices and
quantities stay the exchange's decimal strings; times become integer microseconds.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from midas.errors import WireError

_MS = 1000  # Binance times are milliseconds; raw records hold microseconds.


def _int(data: dict, key: str, where: str) -> int:
    v = data.get(key)
    if type(v) is not int:
        raise WireError(f"{where}: field {key!r} must be an integer, got {v!r:.40}")
    return v


def _opt_int(data: dict, key: str, where: str) -> int | None:
    v = data.get(key)
    if v is None:
        return None
    if type(v) is not int:
        raise WireError(f"{where}: field {key!r} must be an integer, got {v!r:.40}")
    return v


def _str(data: dict, key: str, where: str) -> str:
    v = data.get(key)
    if type(v) is not str or not v:
        raise WireError(f"{where}: field {key!r} must be a non-empty string, got {v!r:.40}")
    return v


def _decimal_str(data: dict, key: str, where: str) -> str:
    v = _str(data, key, where)
    if not _is_decimal(v):
        raise WireError(f"{where}: field {key!r} must be a decimal string, got {v!r:.40}")
    return v


# Binance decimals look like "61737.63000000": ASCII digits with at most one dot, no sign.
# (A compiled pattern: this runs for every price and quantity of every message, ~1 M per minute.)
_DECIMAL_MATCH = re.compile(r"[0-9]+(?:\.[0-9]*)?").fullmatch


def _is_decimal(v: str) -> bool:
    return _DECIMAL_MATCH(v) is not None


def _levels(data: dict, key: str, where: str) -> list[list[str]]:
    levels = data.get(key)
    if type(levels) is not list:
        raise WireError(f"{where}: field {key!r} must be a list of [price, qty], got {levels!r:.40}")
    match = _DECIMAL_MATCH
    for lvl in levels:
        if (type(lvl) is not list or len(lvl) != 2 or type(lvl[0]) is not str
                or type(lvl[1]) is not str or match(lvl[0]) is None or match(lvl[1]) is None):
            raise WireError(f"{where}: field {key!r} has a bad level {lvl!r:.60}")
    return levels


def loads(message: bytes | str, where: str = "message") -> Any:
    try:
        return orjson.loads(message)
    except orjson.JSONDecodeError as e:
        raise WireError(f"{where}: invalid JSON ({e})") from None


def parse_stream_message(message: bytes | str | dict, venue: str, local_ts: int,
                         where: str = "message") -> dict | None:
    """One WebSocket message -> a raw record, or None for a control message (`{"result":..,"id":..}`).

    Accepts the combined-stream envelope `{"stream","data"}` and bare single-stream payloads.
    """
    obj = loads(message, where) if not isinstance(message, dict) else message
    if not isinstance(obj, dict):
        raise WireError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    if "id" in obj and ("result" in obj or "error" in obj) and "data" not in obj:
        return None
    stream = None
    if "data" in obj and "stream" in obj:
        stream = obj["stream"]
        if type(stream) is not str:
            raise WireError(f"{where}: field 'stream' must be a string")
        where = f"{where} on {stream}"
        obj = obj["data"]
        if not isinstance(obj, dict):
            raise WireError(f"{where}: field 'data' must be an object")
    return parse_payload(obj, venue, local_ts, where)


def parse_payload(data: dict, venue: str, local_ts: int, where: str = "message") -> dict:
    futures = venue == "binance-futures"
    kind = data.get("e")
    symbol = _str(data, "s", where)
    if kind == "depthUpdate":
        return {
            "type": "depth", "venue": venue, "symbol": symbol.upper(),
            "exchange_ts": _int(data, "E", where) * _MS, "local_ts": local_ts,
            "transaction_ts": (_int(data, "T", where) * _MS) if futures else None,
            "first_update_id": _int(data, "U", where),
            "last_update_id": _int(data, "u", where),
            "prev_update_id": _int(data, "pu", where) if futures else None,
            "bids": _levels(data, "b", where), "asks": _levels(data, "a", where),
        }
    if kind == "trade":
        maker = data.get("m")
        if type(maker) is not bool:
            raise WireError(f"{where}: field 'm' must be true or false, got {maker!r:.40}")
        trade_type = None
        if futures:
            trade_type = data.get("X", "MARKET")
            if type(trade_type) is not str:
                raise WireError(f"{where}: field 'X' must be a string")
        return {
            "type": "trade", "venue": venue, "symbol": symbol.upper(),
            "exchange_ts": _int(data, "E", where) * _MS, "local_ts": local_ts,
            "trade_id": _int(data, "t", where),
            "price": _decimal_str(data, "p", where), "qty": _decimal_str(data, "q", where),
            "is_buyer_maker": maker, "trade_ts": _int(data, "T", where) * _MS,
            "trade_type": trade_type,
        }
    if kind == "bookTicker" or (kind is None and "u" in data and "b" in data and "A" in data):
        e = _opt_int(data, "E", where)
        return {
            "type": "book_ticker", "venue": venue, "symbol": symbol.upper(),
            "exchange_ts": e * _MS if e is not None else None, "local_ts": local_ts,
            "update_id": _int(data, "u", where),
            "bid_px": _decimal_str(data, "b", where), "bid_sz": _decimal_str(data, "B", where),
            "ask_px": _decimal_str(data, "a", where), "ask_sz": _decimal_str(data, "A", where),
        }
    raise WireError(f"{where}: unknown event type {kind!r:.40}")


def parse_depth_snapshot(body: bytes | str | dict, venue: str, symbol: str, local_ts: int,
                         depth_limit: int, where: str = "depth snapshot") -> dict:
    """A REST `/depth` answer -> a `snapshot` raw record."""
    data = loads(body, where) if not isinstance(body, dict) else body
    if not isinstance(data, dict):
        raise WireError(f"{where}: expected a JSON object")
    if "code" in data and "lastUpdateId" not in data:
        raise WireError(f"{where}: the exchange answered an error {data!r:.120}")
    e = _opt_int(data, "E", where)
    t = _opt_int(data, "T", where)
    return {
        "type": "snapshot", "venue": venue, "symbol": symbol.upper(),
        "exchange_ts": e * _MS if e is not None else None, "local_ts": local_ts,
        "last_update_id": _int(data, "lastUpdateId", where),
        "bids": _levels(data, "bids", where), "asks": _levels(data, "asks", where),
        "transaction_ts": t * _MS if t is not None else None,
        "depth_limit": depth_limit,
    }


EVENT_KINDS = ("connected", "disconnected", "gap", "resync", "rotated", "shutdown", "salvaged")


def event_record(venue: str, symbol: str, event: str, detail: str, local_ts: int,
                 exchange_ts: int | None = None) -> dict:
    """An `event` raw record (SPEC §2)."""
    if event not in EVENT_KINDS:
        raise ValueError(f"unknown event {event!r}")
    return {"type": "event", "venue": venue, "symbol": symbol.upper(), "exchange_ts": exchange_ts,
            "local_ts": local_ts, "event": event, "detail": detail}
