"""The compiled line reader (midas.book.lineparse) takes a line only when the checked path
(orjson + midas.book.records) would accept it with the same values; everything else is OTHER."""

from __future__ import annotations

import random

import orjson
import pytest

from midas.book.kernels import DEPTH, EMPTY, OTHER, TICKER, TRADE
from midas.book.lineparse import (F_ASK_HI, F_ASK_LO, F_BID_HI, F_BID_LO, F_FIRST, F_LAST, F_LOCAL,
                                  F_PREV, F_TS, T_ID, T_LOCAL, T_MAKER, T_PRICE, T_QTY, T_TS,
                                  T_TYPE_END, T_TYPE_START, parse_lines)
from midas.book.records import check_identity, parse_diff, parse_trade

V, S = "binance-futures", "BTCUSDT"
DEPTH_LINE = (b'{"type":"depth","venue":"binance-futures","symbol":"BTCUSDT","exchange_ts":1701936000000000,'
              b'"local_ts":1701936000001234,"transaction_ts":1701935999999000,"first_update_id":123456789,'
              b'"last_update_id":123456790,"prev_update_id":123456788,"bids":[["43250.50","2.5"],'
              b'["43250.4","0"]],"asks":[["43251.00","1.8"]]}')
TRADE_LINE = (b'{"type":"trade","venue":"binance-futures","symbol":"BTCUSDT","exchange_ts":1721300401299000,'
              b'"local_ts":1721300400025000,"trade_id":1589495620,"price":"58812.00","qty":"0.010",'
              b'"is_buyer_maker":false,"trade_ts":1721300401299000,"trade_type":"MARKET"}')


def _one(line: bytes, venue: str = V, futures: bool = True):
    kinds, fields, prices, qtys = parse_lines(line, venue, S, futures)
    assert len(kinds) == 1
    return int(kinds[0]), fields[0].tolist(), prices.tolist(), qtys.tolist()


def _checked(line: bytes, venue: str, futures: bool):
    """What the checked path makes of a line: ("depth", Diff) / ("trade", Trade) / None (rejected)."""
    try:
        rec = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if type(rec) is not dict:
        return None
    try:
        if rec.get("type") == "depth":
            check_identity(rec, venue, S)
            return "depth", parse_diff(rec, futures), rec.get("local_ts")
        if rec.get("type") == "trade":
            check_identity(rec, venue, S)
            return "trade", parse_trade(rec, futures), rec.get("local_ts")
    except ValueError:
        return None
    return None


def _same_as_checked(line: bytes, venue: str = V, futures: bool = True) -> int:
    kind, f, prices, qtys = _one(line, venue, futures)
    checked = _checked(line, venue, futures)
    local = checked[2] if checked and type(checked[2]) is int else None
    if kind == DEPTH:
        assert checked is not None and checked[0] == "depth", line
        d = checked[1]
        assert (f[F_TS], f[F_FIRST], f[F_LAST]) == (d.ts, d.first_id, d.last_id)
        assert (f[F_PREV] if futures else None) == d.prev_id
        assert list(zip(prices[f[F_BID_LO]:f[F_BID_HI]], qtys[f[F_BID_LO]:f[F_BID_HI]])) == d.bids
        assert list(zip(prices[f[F_ASK_LO]:f[F_ASK_HI]], qtys[f[F_ASK_LO]:f[F_ASK_HI]])) == d.asks
        assert (f[F_LOCAL] if f[F_LOCAL] >= 0 else None) == local
    elif kind == TRADE:
        assert checked is not None and checked[0] == "trade", line
        t = checked[1]
        assert (f[T_TS], f[T_ID], f[T_MAKER] == 1) == (t.ts, t.trade_id, t.is_buyer_maker)
        assert (f[T_PRICE] / 1e8, f[T_QTY] / 1e8) == (t.price, t.qty)
        trade_type = line[f[T_TYPE_START]:f[T_TYPE_END]].decode() if f[T_TYPE_START] >= 0 else None
        assert trade_type == t.trade_type
        assert (f[T_LOCAL] if f[T_LOCAL] >= 0 else None) == local
    return kind


def test_plain_records_are_read_with_exact_values():
    kind, f, prices, qtys = _one(DEPTH_LINE)
    assert kind == DEPTH
    assert f[F_TS:F_LOCAL + 1] == [1701936000000000, 123456789, 123456790, 123456788, 1701936000001234]
    assert prices == [4325050000000, 4325040000000, 4325100000000]
    assert qtys == [250000000, 0, 180000000]
    assert (f[F_BID_LO], f[F_BID_HI], f[F_ASK_LO], f[F_ASK_HI]) == (0, 2, 2, 3)
    kind, f, _, _ = _one(TRADE_LINE)
    assert kind == TRADE
    assert [f[T_TS], f[T_ID], f[T_PRICE], f[T_QTY], f[T_MAKER]] == [
        1721300401299000, 1589495620, 5881200000000, 1000000, 0]
    assert TRADE_LINE[f[T_TYPE_START]:f[T_TYPE_END]] == b"MARKET"
    assert _same_as_checked(DEPTH_LINE) == DEPTH and _same_as_checked(TRADE_LINE) == TRADE


def test_a_chunk_of_lines():
    ticker = b'{"type":"book_ticker","venue":"binance-futures","symbol":"BTCUSDT"}'
    buf = b"\n".join([DEPTH_LINE, b"", TRADE_LINE, ticker, b'{"type":"event","event":"connected"}', DEPTH_LINE])
    kinds, fields, prices, _ = parse_lines(buf, V, S, True)
    assert kinds.tolist() == [DEPTH, EMPTY, TRADE, TICKER, OTHER, DEPTH]
    assert fields[5, F_BID_LO] == 3 and fields[5, F_ASK_HI] == 6 and len(prices) == 6


@pytest.mark.parametrize("old, new", [
    (b'"43250.50"', b'"43250.123456789"'),          # more than 8 decimals
    (b'"43250.50"', b'"43250."'),                   # no decimals after the dot
    (b'"43250.50"', b'".5"'),
    (b'"43250.50"', b'"-1"'),
    (b'"43250.50"', b'"1e3"'),
    (b'"43250.50"', b'"92233720368.5"'),            # too many digits for int64 units
    (b'"43250.50"', b'"4325\\u0030"'),              # an escape
    (b'"43250.50"', b'43250.50'),                   # a number, not a string
    (b'123456789,', b'-123456789,'),
    (b'123456789,', b'0123456789,'),                # leading zero: invalid JSON
    (b'123456789,', b'123456789.0,'),
    (b'123456789,', b'"123456789",'),
    (b'123456790', b'123456780'),                   # U > u
    (b'"BTCUSDT"', b'"ETHUSDT"'),                   # another symbol
    (b'"depth"', b'"snapshot"'),
    (b'"prev_update_id":123456788,', b''),          # futures without pu
    (b'"type":"depth",', b'"type":"depth","type":"depth",'),   # a repeated key
    (b'{"type"', b'{ "type"'),                      # whitespace
    (b'"asks":[["43251.00","1.8"]]', b'"asks":[["43251.00","1.8","1"]]'),
    (b'"asks":[["43251.00","1.8"]]', b'"asks":[["43251.00"]]'),
    (b'"asks":[["43251.00","1.8"]]', b'"asks":{}'),
    (b'"asks":[["43251.00","1.8"]]', b'"asks":[["43251.00","1.8"],]'),
    (b'}', b'}x'),
    (b'}', b''),
])
def test_anything_unusual_goes_to_the_checked_path(old, new):
    line = DEPTH_LINE.replace(old, new, 1)
    assert line != DEPTH_LINE
    assert _one(line)[0] == OTHER


def test_accepted_variants_equal_the_checked_path():
    variants = [
        DEPTH_LINE.replace(b'"local_ts":1701936000001234,', b''),
        DEPTH_LINE.replace(b'"local_ts":1701936000001234', b'"local_ts":null'),
        DEPTH_LINE.replace(b'"bids":[["43250.50","2.5"],["43250.4","0"]]', b'"bids":[]'),
        DEPTH_LINE.replace(b'"43250.50"', b'"0043250.50000000"'),
        DEPTH_LINE.replace(b'"transaction_ts":1701935999999000,', b'"extra":"x","flag":true,'),
        TRADE_LINE.replace(b'"is_buyer_maker":false', b'"is_buyer_maker":true'),
    ]
    assert [_same_as_checked(line) for line in variants] == [DEPTH] * 5 + [TRADE]
    spot_depth = DEPTH_LINE.replace(b"binance-futures", b"binance").replace(b"123456788", b"null")
    assert _same_as_checked(spot_depth, "binance", futures=False) == DEPTH
    spot_trade = TRADE_LINE.replace(b"binance-futures", b"binance").replace(b'"MARKET"', b"null")
    assert _same_as_checked(spot_trade, "binance", futures=False) == TRADE
    assert _one(TRADE_LINE.replace(b"binance-futures", b"binance"), "binance", futures=False)[0] == OTHER
    assert _one(TRADE_LINE.replace(b'"MARKET"', b'""'))[0] == OTHER


def test_random_damage_never_gives_a_value_the_checked_path_would_not():
    rng = random.Random(7)
    alphabet = b'0123456789.,:[]{}"-aetrunlsx \\'
    kinds = {DEPTH: 0, TRADE: 0, OTHER: 0}
    for i in range(4000):
        line = bytearray(DEPTH_LINE if i % 2 else TRADE_LINE)
        for _ in range(rng.randint(1, 3)):
            pos = rng.randrange(len(line))
            action = rng.random()
            if action < 0.4:
                line[pos] = rng.choice(alphabet)
            elif action < 0.7:
                del line[pos:pos + rng.randint(1, 4)]
            else:
                line[pos:pos] = bytes([rng.choice(alphabet)])
        line = bytes(line).replace(b"\n", b"")
        kinds[_same_as_checked(line)] += 1
    assert kinds[OTHER] > 1000 and kinds[DEPTH] > 100 and kinds[TRADE] > 100


def test_trades_only_parses_only_plain_trade_lines():
    other_order = TRADE_LINE.replace(b'{"type":"trade","venue":"binance-futures",',
                                     b'{"venue":"binance-futures","type":"trade",')
    buf = b"\n".join([DEPTH_LINE, TRADE_LINE, b"", other_order])
    kinds, fields, prices, _ = parse_lines(buf, V, S, True, trades_only=True)
    assert kinds.tolist() == [OTHER, TRADE, EMPTY, OTHER]
    assert fields[1, T_ID] == 1589495620 and len(prices) == 0
    assert parse_lines(buf, V, S, True)[0].tolist() == [DEPTH, TRADE, EMPTY, TRADE]
