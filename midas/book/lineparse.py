"""Compiled (numba) reading of the raw lines the rebuild needs most: depth and trade records in
the plain form the collector and `midas import` write (SPEC §2), straight from the bytes into
integer fields, prices and sizes in exact 10^-8 units, with no Python object per line or level.

A line is taken here only when it is certainly what the checked Python path (orjson + records.py)
would accept, with the same values: one flat JSON object, no whitespace, keys and strings of
printable ASCII without escapes, integers as plain digits (no sign, no leading zero, at most 18
digits), `true`/`false`/`null`, and `bids`/`asks` as lists of two decimal strings of the form
`digits[.digits]` with at most 8 decimals and at most 18 digits in all (so units fit int64). The
record must be a depth (every integer field there, U <= u) or trade (SPEC §2 field types) record
of the file's venue and symbol; a recognised key may appear once. Anything else, including every
damaged or odd line, is OTHER and goes through the checked path, which reports it exactly as
before. `{"type":"book_ticker"` lines are TICKER (the rebuild only counts them).

`parse_lines(buf, venue, symbol, futures)`, buf being lines joined by b"\\n", returns kinds
int8[lines], fields int64[lines, NFIELDS] (columns below), and the level prices and sizes.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from midas.book.kernels import DEPTH, EMPTY, OTHER, TICKER, TRADE

NFIELDS = 10
# fields columns (depth): start of the line in buf, E, U, u, pu, local_ts, bid and ask level ranges
F_START, F_TS, F_FIRST, F_LAST, F_PREV, F_LOCAL, F_BID_LO, F_BID_HI, F_ASK_LO, F_ASK_HI = range(10)
# (trade): T, trade id, price units, qty units, local_ts, is_buyer_maker, trade_type's bytes in buf
T_TS, T_ID, T_PRICE, T_QTY, T_LOCAL, T_MAKER, T_TYPE_START, T_TYPE_END = 1, 2, 3, 4, 5, 6, 7, 8
ABSENT = np.iinfo(np.int64).min

_KEYS = (b"type", b"venue", b"symbol", b"exchange_ts", b"first_update_id", b"last_update_id",
         b"prev_update_id", b"bids", b"asks", b"local_ts", b"trade_ts", b"trade_id", b"price",
         b"qty", b"is_buyer_maker", b"trade_type")
(K_TYPE, K_VENUE, K_SYMBOL, K_EXCHANGE_TS, K_FIRST, K_LAST, K_PREV, K_BIDS, K_ASKS, K_LOCAL,
 K_TRADE_TS, K_TRADE_ID, K_PRICE, K_QTY, K_MAKER, K_TRADE_TYPE) = range(len(_KEYS))
NKEYS = len(_KEYS)
_KEY_BYTES = np.frombuffer(b"".join(_KEYS), dtype=np.uint8)
_KEY_ENDS = np.cumsum(np.array([len(k) for k in _KEYS], dtype=np.int64))


def _key_hash(length: int, first: int, last: int) -> int:
    return (length + first + last * 8) & 255


# hash of (length, first byte, last byte) -> key id (-1: no key); the recognised keys' hashes differ
_KEY_OF_HASH = np.full(256, -1, dtype=np.int64)
for _k, _key in enumerate(_KEYS):
    assert _KEY_OF_HASH[_key_hash(len(_key), _key[0], _key[-1])] == -1
    _KEY_OF_HASH[_key_hash(len(_key), _key[0], _key[-1])] = _k
_DEPTH = np.frombuffer(b"depth", dtype=np.uint8)
_TRADE = np.frombuffer(b"trade", dtype=np.uint8)
_TICKER_PREFIX = np.frombuffer(b'{"type":"book_ticker"', dtype=np.uint8)
_TRADE_PREFIX = np.frombuffer(b'{"type":"trade",', dtype=np.uint8)
_POW10 = np.array([10 ** i for i in range(9)], dtype=np.int64)
# value types
V_NONE, V_STR, V_INT, V_TRUE, V_FALSE, V_NULL, V_LEVELS = range(7)


@njit(cache=True)
def _same(buf, start, end, lit, lit_start, lit_end):
    if end - start != lit_end - lit_start:
        return False
    for i in range(end - start):
        if buf[start + i] != lit[lit_start + i]:
            return False
    return True


@njit(cache=True)
def _key_id(buf, start, end):
    if end <= start:
        return -1
    k = _KEY_OF_HASH[((end - start) + buf[start] + buf[end - 1] * 8) & 255]
    if k < 0:
        return -1
    lo = _KEY_ENDS[k - 1] if k > 0 else 0
    return k if _same(buf, start, end, _KEY_BYTES, lo, _KEY_ENDS[k]) else -1


@njit(cache=True)
def _string_end(buf, pos, end):
    """buf[pos] is the byte after an opening quote: the index of the closing quote, or -1 when the
    string holds anything but printable ASCII without escapes."""
    while pos < end:
        c = buf[pos]
        if c == 34:                 # '"'
            return pos
        if c < 32 or c > 126 or c == 92:
            return -1
        pos += 1
    return -1


@njit(cache=True)
def _decimal_units(buf, start, end):
    """The units of a decimal string digits[.digits] (<= 8 decimals, <= 18 digits), or -1."""
    value = 0
    digits = 0
    i = start
    while i < end and 48 <= buf[i] <= 57:
        value = value * 10 + (buf[i] - 48)
        digits += 1
        i += 1
    if digits == 0:
        return -1
    decimals = 0
    if i < end:
        if buf[i] != 46:            # '.'
            return -1
        i += 1
        while i < end and 48 <= buf[i] <= 57:
            value = value * 10 + (buf[i] - 48)
            decimals += 1
            i += 1
        if decimals == 0 or i != end or decimals > 8:
            return -1
        digits += decimals
    if digits + 8 - decimals > 18:
        return -1
    return value * _POW10[8 - decimals]


@njit(cache=True)
def _quoted_decimal(buf, pos, end):
    """buf[pos] is the byte after an opening quote: (units, index of the closing quote) of a
    decimal string digits[.digits] (<= 8 decimals, <= 18 digits), or (-1, -1)."""
    value = 0
    digits = 0
    i = pos
    while i < end and 48 <= buf[i] <= 57:
        value = value * 10 + (buf[i] - 48)
        digits += 1
        i += 1
    if digits == 0 or i >= end:
        return -1, -1
    decimals = 0
    if buf[i] == 46:                # '.'
        i += 1
        while i < end and 48 <= buf[i] <= 57:
            value = value * 10 + (buf[i] - 48)
            decimals += 1
            i += 1
        if decimals == 0 or decimals > 8:
            return -1, -1
        digits += decimals
    if i >= end or buf[i] != 34 or digits + 8 - decimals > 18:
        return -1, -1
    return value * _POW10[8 - decimals], i


@njit(cache=True)
def _parse_line(buf, pos, end, venue, symbol, futures, fields, prices, qtys, n_levels,
                seen, vtype, vint, vstart, vend):
    """Parse one line; returns (kind, levels used). Fills fields for DEPTH and TRADE. seen..vend
    are scratch arrays of NKEYS (reset here)."""
    if end - pos >= _TICKER_PREFIX.shape[0] and _same(buf, pos, pos + _TICKER_PREFIX.shape[0],
                                                       _TICKER_PREFIX, 0, _TICKER_PREFIX.shape[0]):
        return TICKER, n_levels
    if pos >= end or buf[pos] != 123:          # '{'
        return OTHER, n_levels
    seen[:] = False
    vtype[:] = V_NONE
    level_start = n_levels
    bid_lo = bid_hi = ask_lo = ask_hi = -1
    p = pos + 1
    if p < end and buf[p] == 125:              # '{}'
        return OTHER, level_start
    while True:
        if p >= end or buf[p] != 34:
            return OTHER, level_start
        key_end = _string_end(buf, p + 1, end)
        if key_end < 0:
            return OTHER, level_start
        key = _key_id(buf, p + 1, key_end)
        if key >= 0:
            if seen[key]:
                return OTHER, level_start
            seen[key] = True
        p = key_end + 1
        if p >= end or buf[p] != 58:           # ':'
            return OTHER, level_start
        p += 1
        if p >= end:
            return OTHER, level_start
        c = buf[p]
        if c == 34:                            # string
            s_end = _string_end(buf, p + 1, end)
            if s_end < 0:
                return OTHER, level_start
            if key >= 0:
                vtype[key] = V_STR
                vstart[key] = p + 1
                vend[key] = s_end
            p = s_end + 1
        elif 48 <= c <= 57:                    # integer
            value = 0
            digits = 0
            q = p
            while q < end and 48 <= buf[q] <= 57:
                value = value * 10 + (buf[q] - 48)
                digits += 1
                q += 1
            if digits > 18 or (c == 48 and digits > 1):
                return OTHER, level_start
            if key >= 0:
                vtype[key] = V_INT
                vint[key] = value
            p = q
        elif c == 116 and p + 4 <= end and buf[p + 1] == 114 and buf[p + 2] == 117 and buf[p + 3] == 101:
            if key >= 0:
                vtype[key] = V_TRUE
            p += 4
        elif (c == 102 and p + 5 <= end and buf[p + 1] == 97 and buf[p + 2] == 108
              and buf[p + 3] == 115 and buf[p + 4] == 101):
            if key >= 0:
                vtype[key] = V_FALSE
            p += 5
        elif c == 110 and p + 4 <= end and buf[p + 1] == 117 and buf[p + 2] == 108 and buf[p + 3] == 108:
            if key >= 0:
                vtype[key] = V_NULL
            p += 4
        elif c == 91 and (key == K_BIDS or key == K_ASKS):     # list of [price, qty]
            lo = n_levels
            p += 1
            if p < end and buf[p] == 93:
                p += 1
            else:
                while True:
                    if p + 1 >= end or buf[p] != 91 or buf[p + 1] != 34:
                        return OTHER, level_start
                    price, e1 = _quoted_decimal(buf, p + 2, end)
                    if price < 0:
                        return OTHER, level_start
                    p = e1 + 1
                    if p + 1 >= end or buf[p] != 44 or buf[p + 1] != 34:
                        return OTHER, level_start
                    qty, e2 = _quoted_decimal(buf, p + 2, end)
                    p = e2 + 1
                    if qty < 0 or p >= end or buf[p] != 93:
                        return OTHER, level_start
                    prices[n_levels] = price
                    qtys[n_levels] = qty
                    n_levels += 1
                    p += 1
                    if p < end and buf[p] == 44:
                        p += 1
                    elif p < end and buf[p] == 93:
                        p += 1
                        break
                    else:
                        return OTHER, level_start
            vtype[key] = V_LEVELS
            if key == K_BIDS:
                bid_lo, bid_hi = lo, n_levels
            else:
                ask_lo, ask_hi = lo, n_levels
        else:
            return OTHER, level_start
        if p >= end:
            return OTHER, level_start
        if buf[p] == 44:                       # ','
            p += 1
        elif buf[p] == 125:                    # '}'
            if p + 1 != end:
                return OTHER, level_start
            break
        else:
            return OTHER, level_start

    if vtype[K_TYPE] != V_STR or vtype[K_VENUE] != V_STR or vtype[K_SYMBOL] != V_STR:
        return OTHER, level_start
    if not (_same(buf, vstart[K_VENUE], vend[K_VENUE], venue, 0, venue.shape[0])
            and _same(buf, vstart[K_SYMBOL], vend[K_SYMBOL], symbol, 0, symbol.shape[0])):
        return OTHER, level_start
    local = vint[K_LOCAL] if vtype[K_LOCAL] == V_INT else ABSENT
    t0, t1 = vstart[K_TYPE], vend[K_TYPE]
    if _same(buf, t0, t1, _DEPTH, 0, 5):
        if (vtype[K_EXCHANGE_TS] != V_INT or vtype[K_FIRST] != V_INT or vtype[K_LAST] != V_INT
                or vtype[K_BIDS] != V_LEVELS or vtype[K_ASKS] != V_LEVELS
                or vint[K_FIRST] > vint[K_LAST]):
            return OTHER, level_start
        if futures and vtype[K_PREV] != V_INT:
            return OTHER, level_start
        fields[F_START] = pos
        fields[F_TS] = vint[K_EXCHANGE_TS]
        fields[F_FIRST] = vint[K_FIRST]
        fields[F_LAST] = vint[K_LAST]
        fields[F_PREV] = vint[K_PREV] if futures else ABSENT
        fields[F_LOCAL] = local
        fields[F_BID_LO] = bid_lo
        fields[F_BID_HI] = bid_hi
        fields[F_ASK_LO] = ask_lo
        fields[F_ASK_HI] = ask_hi
        return DEPTH, n_levels
    if _same(buf, t0, t1, _TRADE, 0, 5):
        if (vtype[K_TRADE_TS] != V_INT or vtype[K_TRADE_ID] != V_INT or vtype[K_PRICE] != V_STR
                or vtype[K_QTY] != V_STR or not (vtype[K_MAKER] == V_TRUE or vtype[K_MAKER] == V_FALSE)
                or seen[K_BIDS] or seen[K_ASKS]):
            return OTHER, level_start
        if futures:
            if vtype[K_TRADE_TYPE] != V_STR or vend[K_TRADE_TYPE] == vstart[K_TRADE_TYPE]:
                return OTHER, level_start
        elif seen[K_TRADE_TYPE] and vtype[K_TRADE_TYPE] != V_NULL:
            return OTHER, level_start
        price = _decimal_units(buf, vstart[K_PRICE], vend[K_PRICE])
        qty = _decimal_units(buf, vstart[K_QTY], vend[K_QTY])
        if price < 0 or qty < 0:
            return OTHER, level_start
        fields[F_START] = pos
        fields[T_TS] = vint[K_TRADE_TS]
        fields[T_ID] = vint[K_TRADE_ID]
        fields[T_PRICE] = price
        fields[T_QTY] = qty
        fields[T_LOCAL] = local
        fields[T_MAKER] = 1 if vtype[K_MAKER] == V_TRUE else 0
        fields[T_TYPE_START] = vstart[K_TRADE_TYPE] if futures else -1
        fields[T_TYPE_END] = vend[K_TRADE_TYPE] if futures else -1
        return TRADE, level_start
    return OTHER, level_start


@njit(cache=True)
def _parse_all(buf, venue, symbol, futures, trades_only):
    n = buf.shape[0]
    lines = 1
    for i in range(n):
        if buf[i] == 10:
            lines += 1
    kinds = np.empty(lines, dtype=np.int8)
    fields = np.zeros((lines, NFIELDS), dtype=np.int64)
    cap = n // 9 + 1                          # a level takes at least 9 bytes: ["1","1"]
    prices = np.empty(cap, dtype=np.int64)
    qtys = np.empty(cap, dtype=np.int64)
    n_levels = 0
    start = 0
    line = 0
    seen = np.zeros(NKEYS, dtype=np.bool_)
    vtype = np.zeros(NKEYS, dtype=np.int64)
    vint = np.zeros(NKEYS, dtype=np.int64)
    vstart = np.zeros(NKEYS, dtype=np.int64)
    vend = np.zeros(NKEYS, dtype=np.int64)
    for i in range(n + 1):
        if i == n or buf[i] == 10:
            if i == start:
                kinds[line] = EMPTY
            elif trades_only and not (i - start >= _TRADE_PREFIX.shape[0] and _same(
                    buf, start, start + _TRADE_PREFIX.shape[0], _TRADE_PREFIX, 0, _TRADE_PREFIX.shape[0])):
                kinds[line] = OTHER
            else:
                kind, n_levels = _parse_line(buf, start, i, venue, symbol, futures, fields[line],
                                             prices, qtys, n_levels, seen, vtype, vint, vstart, vend)
                kinds[line] = kind
            line += 1
            start = i + 1
    return kinds, fields, prices[:n_levels], qtys[:n_levels]


def parse_lines(buf: bytes, venue: str, symbol: str, futures: bool, trades_only: bool = False):
    """(kinds, fields, prices, qtys) of the lines of buf (joined by b"\\n"); see the module doc.
    trades_only: only lines starting `{"type":"trade",` are parsed, the others are OTHER."""
    return _parse_all(np.frombuffer(buf, dtype=np.uint8), np.frombuffer(venue.encode(), dtype=np.uint8),
                      np.frombuffer(symbol.encode(), dtype=np.uint8), futures, trades_only)
