"""Binance wire messages -> SPEC §2 raw records. The only module that knows `E`, `U`, `u`, `pu`.

Every function validates what it reads and raises `WireError` saying which field was wrong, so a
malformed message is reported and skipped at the edge and nothing downstream sees it. Prices and
quantities stay the exchange's decimal strings; times become integer microseconds.
"""

from __future__ import annotations

import re
from itertools import chain
from typing import Any

import orjson

from midas.errors import WireError

_MS = 1000  # Binance times are milliseconds; raw records hold microseconds.


_INT64_END = 1 << 63
_MS_TIME_END = _INT64_END // _MS     # a time in ms whose µs value still fits the int64 columns


def _int(data: dict, key: str, where: str) -> int:
    v = data.get(key)
    if type(v) is not int:
        raise WireError(f"{where}: field {key!r} must be an integer, got {v!r:.40}")
    if not 0 <= v < _INT64_END:
        raise WireError(f"{where}: field {key!r} must be an integer from 0 to 2^63-1, got {v!r:.40}")
    return v


def _ms_time(data: dict, key: str, where: str) -> int:
    """A Binance time (ms) as µs. Bounded so that the µs value fits int64: a larger one would pass
    as an integer here and then fail in the writer, stopping the collector."""
    v = _int(data, key, where)
    if v >= _MS_TIME_END:
        raise WireError(f"{where}: field {key!r} must be a time in milliseconds since 1970, got {v!r:.40}")
    return v * _MS


def _opt_ms_time(data: dict, key: str, where: str) -> int | None:
    return None if data.get(key) is None else _ms_time(data, key, where)


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
    if type(levels) is list and (not levels or _levels_ok(levels)):
        return levels
    return _levels_checked(levels, key, where)


# The fast checks of decimals (level lists here, scalar fields in `parse_payload`): the same rule
# as `_levels_checked`, in a few C-level passes instead of Python steps per level. Every level a list of exactly two `str`; all the strings
# joined by a space (which no decimal contains) match a run of decimals separated by single
# spaces, and the joined text holds exactly one space per join, so no string contains a space
# itself: then each string is exactly one decimal.
_DECIMALS_MATCH = re.compile(r"[0-9]++(?:\.[0-9]*+)?+(?: [0-9]++(?:\.[0-9]*+)?+)*+").fullmatch  # possessive: see _J_DEC
_ONLY_LIST = {list}
_ONLY_STR = {str}
_ONLY_TWO = {2}
_flatten = chain.from_iterable


def _levels_ok(levels: list) -> bool:
    if set(map(type, levels)) != _ONLY_LIST or set(map(len, levels)) != _ONLY_TWO:
        return False
    flat = list(_flatten(levels))
    if set(map(type, flat)) != _ONLY_STR:
        return False
    joined = " ".join(flat)
    return joined.count(" ") == len(flat) - 1 and _DECIMALS_MATCH(joined) is not None


def _levels_checked(levels: Any, key: str, where: str) -> list[list[str]]:
    """The level list checked level by level, raising `WireError` at the first bad one."""
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
    if isinstance(message, dict):
        obj = message
    else:
        try:
            obj = orjson.loads(message)
        except orjson.JSONDecodeError as e:
            raise WireError(f"{where}: invalid JSON ({e})") from None
        if not isinstance(obj, dict):
            raise WireError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    if "data" in obj and "stream" in obj:
        stream = obj["stream"]
        if type(stream) is not str:
            raise WireError(f"{where}: field 'stream' must be a string")
        data = obj["data"]
        if not isinstance(data, dict):
            raise WireError(f"{where} on {stream}: field 'data' must be an object")
        # On an error, parse again only to name the stream in it (that text is not built per message;
        # try/except, unlike contextlib.suppress, costs nothing when nothing is raised).
        try:
            return parse_payload(data, venue, local_ts, where)
        except WireError:
            return parse_payload(data, venue, local_ts, f"{where} on {stream}")
    if "id" in obj and ("result" in obj or "error" in obj) and "data" not in obj:
        return None
    return parse_payload(obj, venue, local_ts, where)


def parse_payload(data: dict, venue: str, local_ts: int, where: str = "message") -> dict:
    """One stream payload -> a raw record; `WireError` naming the bad field otherwise.

    The common, valid messages take a fast path checking every field at once (the same rules);
    anything it does not accept goes through `_parse_payload_checked`, which says what is wrong.
    """
    kind = data.get("e")
    symbol = data.get("s")
    if type(symbol) is str and symbol:
        get = data.get
        if kind == "depthUpdate":
            e, u_first, u_last = get("E"), get("U"), get("u")
            bids, asks = get("b"), get("a")
            if (type(e) is int and type(u_first) is int and type(u_last) is int
                    and 0 <= e < _MS_TIME_END and 0 <= u_first < _INT64_END and 0 <= u_last < _INT64_END
                    and type(bids) is list and type(asks) is list
                    and (not bids or _levels_ok(bids)) and (not asks or _levels_ok(asks))):
                if venue != "binance-futures":
                    return {
                        "type": "depth", "venue": venue, "symbol": symbol.upper(),
                        "exchange_ts": e * _MS, "local_ts": local_ts, "transaction_ts": None,
                        "first_update_id": u_first, "last_update_id": u_last, "prev_update_id": None,
                        "bids": bids, "asks": asks,
                    }
                t, pu = get("T"), get("pu")
                if type(t) is int and type(pu) is int and 0 <= t < _MS_TIME_END and 0 <= pu < _INT64_END:
                    return {
                        "type": "depth", "venue": venue, "symbol": symbol.upper(),
                        "exchange_ts": e * _MS, "local_ts": local_ts, "transaction_ts": t * _MS,
                        "first_update_id": u_first, "last_update_id": u_last, "prev_update_id": pu,
                        "bids": bids, "asks": asks,
                    }
        elif kind == "trade":
            e, tid, t, maker = get("E"), get("t"), get("T"), get("m")
            price, qty = get("p"), get("q")
            futures = venue == "binance-futures"
            trade_type = get("X", "MARKET") if futures else None
            if (type(e) is int and type(tid) is int and type(t) is int and type(maker) is bool
                    and 0 <= e < _MS_TIME_END and 0 <= t < _MS_TIME_END and 0 <= tid < _INT64_END
                    and (not futures or type(trade_type) is str) and type(price) is str
                    and type(qty) is str and _DECIMALS_MATCH(joined := f"{price} {qty}") is not None
                    and joined.count(" ") == 1):
                return {
                    "type": "trade", "venue": venue, "symbol": symbol.upper(),
                    "exchange_ts": e * _MS, "local_ts": local_ts, "trade_id": tid,
                    "price": price, "qty": qty, "is_buyer_maker": maker, "trade_ts": t * _MS,
                    "trade_type": trade_type,
                }
        elif kind == "bookTicker" or (kind is None and "u" in data and "b" in data and "A" in data):
            e, uid = get("E"), get("u")
            bid_px, bid_sz, ask_px, ask_sz = get("b"), get("B"), get("a"), get("A")
            if ((e is None or (type(e) is int and 0 <= e < _MS_TIME_END)) and type(uid) is int
                    and 0 <= uid < _INT64_END and type(bid_px) is str
                    and type(bid_sz) is str and type(ask_px) is str and type(ask_sz) is str
                    and _DECIMALS_MATCH(joined := f"{bid_px} {bid_sz} {ask_px} {ask_sz}") is not None
                    and joined.count(" ") == 3):
                return {
                    "type": "book_ticker", "venue": venue, "symbol": symbol.upper(),
                    "exchange_ts": e * _MS if e is not None else None, "local_ts": local_ts,
                    "update_id": uid, "bid_px": bid_px, "bid_sz": bid_sz, "ask_px": ask_px,
                    "ask_sz": ask_sz,
                }
    return _parse_payload_checked(data, venue, local_ts, where)


def _parse_payload_checked(data: dict, venue: str, local_ts: int, where: str) -> dict:
    """`parse_payload` field by field, raising `WireError` at the first bad field."""
    futures = venue == "binance-futures"
    kind = data.get("e")
    symbol = _str(data, "s", where)
    if kind == "depthUpdate":
        return {
            "type": "depth", "venue": venue, "symbol": symbol.upper(),
            "exchange_ts": _ms_time(data, "E", where), "local_ts": local_ts,
            "transaction_ts": _ms_time(data, "T", where) if futures else None,
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
            "exchange_ts": _ms_time(data, "E", where), "local_ts": local_ts,
            "trade_id": _int(data, "t", where),
            "price": _decimal_str(data, "p", where), "qty": _decimal_str(data, "q", where),
            "is_buyer_maker": maker, "trade_ts": _ms_time(data, "T", where),
            "trade_type": trade_type,
        }
    if kind == "bookTicker" or (kind is None and "u" in data and "b" in data and "A" in data):
        return {
            "type": "book_ticker", "venue": venue, "symbol": symbol.upper(),
            "exchange_ts": _opt_ms_time(data, "E", where), "local_ts": local_ts,
            "update_id": _int(data, "u", where),
            "bid_px": _decimal_str(data, "b", where), "bid_sz": _decimal_str(data, "B", where),
            "ask_px": _decimal_str(data, "a", where), "ask_sz": _decimal_str(data, "A", where),
        }
    raise WireError(f"{where}: unknown event type {kind!r:.40}")


# The fast path: Binance's own message layouts matched whole, on the bytes ------------------------
#
# Binance (and `midas exchange`) write every stream message with the same keys in the same order and
# no whitespace. A message in exactly that layout is validated by one regular expression over its
# bytes, and its raw record is written by filling a template with the matched bytes, without
# building the JSON objects, the record dict and serializing it again. The pieces below only accept
# text whose JSON value is plain and whose re-serialization is that same text:
#   integers without sign or leading zeros, at most 18 digits (orjson writes them back as read; ids
#   and times are never negative, `_int`), times (`E`, `T`) at most 15 digits (times 1000 they still
#   fit the 64 bits orjson writes);
#   decimal strings as `_DECIMAL_MATCH`; symbols and trade types of capitals, digits, `_`;
#   the stream name in printable ASCII without quote or backslash (never written, only checked).
# So for a matched message the line is byte for byte `orjson.dumps(parse_stream_message(...))`
# (tests/foundation/test_wire_fast_path.py checks that on random messages); anything else, valid or
# not, goes through `parse_stream_message`, which has the errors.
_J_INT = rb"(0|[1-9][0-9]{0,17})"
_J_TIME = rb"(0|[1-9][0-9]{0,14})"
# Possessive quantifiers (`++`, `*+`, `?+`: never give back what they matched) take ~40% less time
# on long level lists and match the same texts here: what follows each (`.`, `"`, `,`, `]`) is
# never something they could have matched.
_J_DEC = rb'"([0-9]++(?:\.[0-9]*+)?+)"'
_J_SYM = rb'"([A-Z0-9_]{1,40})"'
_J_BOOL = rb"(true|false)"
_J_LEVEL = rb'\["[0-9]++(?:\.[0-9]*+)?+","[0-9]++(?:\.[0-9]*+)?+"\]'
_J_LEVELS = rb"(\[(?:" + _J_LEVEL + rb"(?:," + _J_LEVEL + rb")*+)?+\])"


def _layout(fields: dict[str, bytes]):
    """The matcher of a combined-stream message whose payload has exactly these keys, in this order."""
    payload = b",".join(b'"%s":%s' % (key.encode(), pattern) for key, pattern in fields.items())
    stream = rb'"[\x20\x21\x23-\x5b\x5d-\x7e]*+"'
    return re.compile(rb'\{"stream":' + stream + rb',"data":\{' + payload + rb"\}\}").fullmatch


_SPOT_LAYOUTS = (   # bookTicker, trade, depth
    _layout({"u": _J_INT, "s": _J_SYM, "b": _J_DEC, "B": _J_DEC, "a": _J_DEC, "A": _J_DEC}),
    _layout({"e": b'"trade"', "E": _J_TIME, "s": _J_SYM, "t": _J_INT, "p": _J_DEC, "q": _J_DEC,
             "T": _J_TIME, "m": _J_BOOL, "M": b"(?:true|false)"}),
    _layout({"e": b'"depthUpdate"', "E": _J_TIME, "s": _J_SYM, "U": _J_INT, "u": _J_INT,
             "b": _J_LEVELS, "a": _J_LEVELS}),
)
_FUTURES_LAYOUTS = (
    _layout({"e": b'"bookTicker"', "u": _J_INT, "s": _J_SYM, "b": _J_DEC, "B": _J_DEC, "a": _J_DEC,
             "A": _J_DEC, "T": _J_TIME, "E": _J_TIME}),
    _layout({"e": b'"trade"', "E": _J_TIME, "T": _J_TIME, "s": _J_SYM, "t": _J_INT, "p": _J_DEC,
             "q": _J_DEC, "X": b'"([A-Z_]{1,32})"', "m": _J_BOOL}),
    _layout({"e": b'"depthUpdate"', "E": _J_TIME, "T": _J_TIME, "s": _J_SYM, "U": _J_INT, "u": _J_INT,
             "pu": _J_INT, "b": _J_LEVELS, "a": _J_LEVELS}),
)


class FastPath:
    """Raw record lines straight from messages in Binance's exact layout (see above), for one venue.

    `parse(message, local_ts)` returns `(kind, symbol, first_id, last_id, prev_id, exchange_ts, line)`
    or None (then `parse_stream_message` decides). `line` is the serialized record with its newline;
    the ids are what the collector tracks: depth `U`, `u`, `pu` (None on spot); trade id; bookTicker
    `u` (in `last_id`, the others None).
    """

    def __init__(self, venue: str):
        self.futures = venue == "binance-futures"
        self.book_ticker, self.trade, self.depth = _FUTURES_LAYOUTS if self.futures else _SPOT_LAYOUTS
        v = orjson.dumps(venue)
        # The records of `parse_payload`, key for key, as orjson writes them (compact, in order).
        self._ticker_line = (b'{"type":"book_ticker","venue":' + v + b',"symbol":"%b","exchange_ts":%b,'
                             b'"local_ts":%d,"update_id":%b,"bid_px":"%b","bid_sz":"%b",'
                             b'"ask_px":"%b","ask_sz":"%b"}\n')
        self._trade_line = (b'{"type":"trade","venue":' + v + b',"symbol":"%b","exchange_ts":%d,'
                            b'"local_ts":%d,"trade_id":%b,"price":"%b","qty":"%b","is_buyer_maker":%b,'
                            b'"trade_ts":%d,"trade_type":%b}\n')
        self._depth_line = (b'{"type":"depth","venue":' + v + b',"symbol":"%b","exchange_ts":%d,'
                            b'"local_ts":%d,"transaction_ts":%b,"first_update_id":%b,"last_update_id":%b,'
                            b'"prev_update_id":%b,"bids":%b,"asks":%b}\n')

    def parse(self, message, local_ts: int) -> tuple | None:
        m = self.book_ticker(message)
        if m is not None:
            if self.futures:
                uid, sym, bid_px, bid_sz, ask_px, ask_sz, _t, e = m.groups()
                exchange_ts = int(e) * _MS
                ets = b"%d" % exchange_ts
            else:
                uid, sym, bid_px, bid_sz, ask_px, ask_sz = m.groups()
                exchange_ts, ets = None, b"null"
            return ("book_ticker", sym, None, int(uid), None, exchange_ts,
                    self._ticker_line % (sym, ets, local_ts, uid, bid_px, bid_sz, ask_px, ask_sz))
        m = self.trade(message)
        if m is not None:
            if self.futures:
                e, t, sym, tid, price, qty, trade_type, maker = m.groups()
                trade_type = b'"' + trade_type + b'"'
            else:
                e, sym, tid, price, qty, t, maker = m.groups()
                trade_type = b"null"
            exchange_ts = int(e) * _MS
            return ("trade", sym, None, int(tid), None, exchange_ts,
                    self._trade_line % (sym, exchange_ts, local_ts, tid, price, qty, maker, int(t) * _MS,
                                        trade_type))
        m = self.depth(message)
        if m is not None:
            if self.futures:
                e, t, sym, first, last, prev, bids, asks = m.groups()
                prev_id, transaction_ts = int(prev), b"%d" % (int(t) * _MS)
            else:
                e, sym, first, last, bids, asks = m.groups()
                prev, prev_id, transaction_ts = b"null", None, b"null"
            exchange_ts = int(e) * _MS
            return ("depth", sym, int(first), int(last), prev_id, exchange_ts,
                    self._depth_line % (sym, exchange_ts, local_ts, transaction_ts, first, last, prev,
                                        bids, asks))
        return None


def parse_depth_snapshot(body: bytes | str | dict, venue: str, symbol: str, local_ts: int,
                         depth_limit: int, where: str = "depth snapshot") -> dict:
    """A REST `/depth` answer -> a `snapshot` raw record."""
    data = loads(body, where) if not isinstance(body, dict) else body
    if not isinstance(data, dict):
        raise WireError(f"{where}: expected a JSON object")
    if "code" in data and "lastUpdateId" not in data:
        raise WireError(f"{where}: the exchange answered an error {data!r:.120}")
    return {
        "type": "snapshot", "venue": venue, "symbol": symbol.upper(),
        "exchange_ts": _opt_ms_time(data, "E", where), "local_ts": local_ts,
        "last_update_id": _int(data, "lastUpdateId", where),
        "bids": _levels(data, "bids", where), "asks": _levels(data, "asks", where),
        "transaction_ts": _opt_ms_time(data, "T", where),
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
