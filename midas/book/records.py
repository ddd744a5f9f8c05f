"""Raw records (SPEC §2) -> the typed values the rebuild uses. Parse once, at the edge.

Every function checks types strictly and raises `ValueError` naming the field that is wrong, so a
damaged record is reported (with its file and line, by the caller) and never half-used.
"""

from __future__ import annotations

from contextlib import suppress

from dataclasses import dataclass

from midas.book.decimals import UnitsCache, units_to_float

Level = tuple[int, int]


@dataclass(slots=True)
class Diff:
    """One diff-depth event. Times in µs; prices and sizes in 10^-8 units."""

    ts: int                 # exchange time E
    first_id: int           # U
    last_id: int            # u
    prev_id: int | None     # pu (futures)
    bids: list[Level]
    asks: list[Level]


@dataclass(slots=True)
class Snapshot:
    last_update_id: int
    ts: int | None          # the response's E (futures) or None (spot)
    bids: list[Level]
    asks: list[Level]


@dataclass(slots=True)
class Trade:
    ts: int                 # trade time T, µs
    trade_id: int
    price: float
    qty: float
    is_buyer_maker: bool
    trade_type: str | None


def _int(rec: dict, key: str) -> int:
    v = rec.get(key)
    if type(v) is not int:
        raise ValueError(f"field {key!r} must be an integer, got {v!r:.40}")
    return v


# The book holds int64 units (kernels.py): levels of 2^63 units (~9.2e10) or more are refused.
LEVEL_UNITS_LIMIT = 2 ** 63
_UNITS = UnitsCache(200_000)
_UNITS_OF = _UNITS.__getitem__
_LIST_ONLY = {list}


def _levels(rec: dict, key: str) -> list[Level]:
    levels = rec.get(key)
    if type(levels) is not list:
        raise ValueError(f"field {key!r} must be a list of [price, qty], got {levels!r:.40}")
    units = _UNITS_OF                  # (the bound method: cheaper than subscripting the subclass)
    try:
        out = [(units(p), units(q)) for p, q in levels]
    except (ValueError, TypeError) as e:
        raise ValueError(f"field {key!r} has a bad level: {e}") from None
    # `p, q = level` also unpacks 2-character strings and 2-key objects: only lists are levels
    if levels and set(map(type, levels)) != _LIST_ONLY:
        bad = next(lvl for lvl in levels if type(lvl) is not list)
        raise ValueError(f"field {key!r} has a bad level {bad!r:.60}")
    _check_limit(key, out)
    return out


def _check_limit(key: str, levels: list[Level]) -> None:
    for p, q in levels:
        if p >= LEVEL_UNITS_LIMIT or q >= LEVEL_UNITS_LIMIT:
            raise ValueError(f"field {key!r} has a level too large for the book: "
                             f"[{p / 10 ** 8:.0f}, {q / 10 ** 8:.0f}]")


def check_identity(rec: dict, venue: str, symbol: str) -> None:
    if rec.get("venue") != venue or rec.get("symbol") != symbol:
        raise ValueError(f"record of {rec.get('venue')!r}/{rec.get('symbol')!r:.30} "
                         f"in a file of {venue}/{symbol}")


def parse_diff(rec: dict, futures: bool) -> Diff:
    get = rec.get
    ts, first_id, last_id = get("exchange_ts"), get("first_update_id"), get("last_update_id")
    prev_id = get("prev_update_id") if futures else None
    if (type(ts) is not int or type(first_id) is not int or type(last_id) is not int
            or (futures and type(prev_id) is not int)):
        for key in ("exchange_ts", "first_update_id", "last_update_id") + (
                ("prev_update_id",) if futures else ()):
            _int(rec, key)          # raises, naming the field
    if first_id > last_id:
        raise ValueError(f"first_update_id {first_id} is above last_update_id {last_id}")
    bids, asks = get("bids"), get("asks")
    if type(bids) is list and type(asks) is list:
        # Fast path, inlined (one diff = two level lists); anything odd takes _levels, which names
        # what is wrong.
        units = _UNITS_OF
        with suppress(ValueError, TypeError):   # odd levels: _levels below names what is wrong
            bid_units = [(units(p), units(q)) for p, q in bids]
            ask_units = [(units(p), units(q)) for p, q in asks]
            if ((not bids or set(map(type, bids)) == _LIST_ONLY)
                    and (not asks or set(map(type, asks)) == _LIST_ONLY)):
                _check_limit("bids", bid_units)
                _check_limit("asks", ask_units)
                return Diff(ts, first_id, last_id, prev_id, bid_units, ask_units)
    return Diff(ts, first_id, last_id, prev_id, _levels(rec, "bids"), _levels(rec, "asks"))


def parse_snapshot(rec: dict) -> Snapshot:
    ts = rec.get("exchange_ts")
    if ts is not None and type(ts) is not int:
        raise ValueError(f"field 'exchange_ts' must be an integer or null, got {ts!r:.40}")
    return Snapshot(_int(rec, "last_update_id"), ts, _levels(rec, "bids"), _levels(rec, "asks"))


class _TradeFloats(dict):
    """decimal string -> float64 of its exact value (units_to_float of its units), remembered;
    bounded. Invalid strings raise ValueError like UnitsCache."""

    def __missing__(self, text):
        value = units_to_float(_UNITS_OF(text))
        if len(self) >= 200_000:
            self.clear()
        self[text] = value
        return value


_TRADE_FLOAT_OF = _TradeFloats().__getitem__


def parse_trade(rec: dict, futures: bool) -> Trade:
    get = rec.get
    ts, trade_id, price, qty = get("trade_ts"), get("trade_id"), get("price"), get("qty")
    maker, trade_type = get("is_buyer_maker"), get("trade_type")
    if (type(ts) is int and type(trade_id) is int and type(price) is str and type(qty) is str
            and type(maker) is bool
            and ((type(trade_type) is str and trade_type) if futures else trade_type is None)):
        with suppress(ValueError):      # the checks below name what is wrong
            return Trade(ts, trade_id, _TRADE_FLOAT_OF(price), _TRADE_FLOAT_OF(qty), maker, trade_type)
    return _parse_trade_checked(rec, futures)


def _parse_trade_checked(rec: dict, futures: bool) -> Trade:
    maker = rec.get("is_buyer_maker")
    if type(maker) is not bool:
        raise ValueError(f"field 'is_buyer_maker' must be true or false, got {maker!r:.40}")
    trade_type = rec.get("trade_type")
    if futures:
        if type(trade_type) is not str or not trade_type:
            raise ValueError(f"field 'trade_type' must be a string on futures, got {trade_type!r:.40}")
    elif trade_type is not None:
        raise ValueError(f"field 'trade_type' must be null on spot, got {trade_type!r:.40}")
    values = []
    for key in ("price", "qty"):
        v = rec.get(key)
        if type(v) is not str:
            raise ValueError(f"field {key!r} must be a decimal string, got {v!r:.40}")
        try:
            values.append(units_to_float(_UNITS[v]))
        except ValueError as e:
            raise ValueError(f"field {key!r}: {e}") from None
    return Trade(_int(rec, "trade_ts"), _int(rec, "trade_id"), values[0], values[1], maker, trade_type)


def parse_event(rec: dict) -> str:
    kind = rec.get("event")
    if type(kind) is not str:
        raise ValueError(f"field 'event' must be a string, got {kind!r:.40}")
    return kind
