"""Wire parsing: real Binance messages become SPEC §2 records; malformed ones raise WireError."""

from __future__ import annotations

import gzip

import orjson
import pytest

from midas.errors import WireError
from midas.wire import event_record, parse_depth_snapshot, parse_stream_message

FUT_DEPTH = (b'{"stream":"btcusdt@depth@0ms","data":{"e":"depthUpdate","E":1721347022504,"T":1721347022503,'
             b'"s":"BTCUSDT","U":10,"u":20,"pu":9,"b":[["63939.80","0.100"]],"a":[["63951.10","0.000"]]}}')


def test_futures_depth():
    rec = parse_stream_message(FUT_DEPTH, "binance-futures", 1721347021000123)
    assert rec == {
        "type": "depth", "venue": "binance-futures", "symbol": "BTCUSDT",
        "exchange_ts": 1721347022504000, "local_ts": 1721347021000123, "transaction_ts": 1721347022503000,
        "first_update_id": 10, "last_update_id": 20, "prev_update_id": 9,
        "bids": [["63939.80", "0.100"]], "asks": [["63951.10", "0.000"]]}


def test_spot_trade_and_book_ticker():
    trade = parse_stream_message(
        b'{"stream":"btcusdt@trade","data":{"e":"trade","E":1723161255343,"s":"BTCUSDT","t":3735683259,'
        b'"p":"61837.63000000","q":"0.02000000","T":1723161255342,"m":true,"M":true}}', "binance", 5)
    assert trade == {"type": "trade", "venue": "binance", "symbol": "BTCUSDT", "exchange_ts": 1723161255343000,
                     "local_ts": 5, "trade_id": 3735683259, "price": "61837.63000000", "qty": "0.02000000",
                     "is_buyer_maker": True, "trade_ts": 1723161255342000, "trade_type": None}
    ticker = parse_stream_message(
        b'{"stream":"btcusdt@bookTicker","data":{"u":50093239212,"s":"BTCUSDT","b":"61837.63000000",'
        b'"B":"3.78826000","a":"61837.64000000","A":"1.54698000"}}', "binance", 6)
    assert ticker == {"type": "book_ticker", "venue": "binance", "symbol": "BTCUSDT", "exchange_ts": None,
                      "local_ts": 6, "update_id": 50093239212, "bid_px": "61837.63000000",
                      "bid_sz": "3.78826000", "ask_px": "61837.64000000", "ask_sz": "1.54698000"}


def test_futures_snapshot_and_control_message():
    snap = parse_depth_snapshot(b'{"lastUpdateId":7,"E":1721347022759,"T":1721347022750,'
                                b'"bids":[["1.0","2"]],"asks":[["1.1","3"]]}', "binance-futures", "btcusdt", 9, 1000)
    assert snap == {"type": "snapshot", "venue": "binance-futures", "symbol": "BTCUSDT",
                    "exchange_ts": 1721347022759000, "local_ts": 9, "last_update_id": 7,
                    "bids": [["1.0", "2"]], "asks": [["1.1", "3"]], "transaction_ts": 1721347022750000,
                    "depth_limit": 1000}
    assert parse_stream_message(b'{"result":null,"id":1}', "binance", 1) is None


@pytest.mark.parametrize(("message", "expected"), [
    (b'{"stream":"x","data":', "invalid JSON"),
    (b'[1,2]', "expected a JSON object"),
    (FUT_DEPTH.replace(b'"U":10', b'"U":"10"'), "field 'U' must be an integer"),
    (FUT_DEPTH.replace(b'"pu":9,', b''), "field 'pu' must be an integer"),
    (FUT_DEPTH.replace(b'["63939.80","0.100"]', b'["63939.80",0.1]'), "field 'b' has a bad level"),
    (FUT_DEPTH.replace(b'"63939.80"', b'"-1e5"'), "field 'b' has a bad level"),
    (FUT_DEPTH.replace(b'"depthUpdate"', b'"kline"'), "unknown event type 'kline'"),
    (FUT_DEPTH.replace(b'"s":"BTCUSDT",', b''), "field 's' must be a non-empty string"),
    # a time whose µs value would not fit 64 bits: it used to pass here and then stop the collector
    # in the writer (orjson cannot write it)
    (FUT_DEPTH.replace(b'"E":1721347022504', b'"E":9223372036854776'),
     "field 'E' must be a time in milliseconds since 1970, got 9223372036854776"),
    (FUT_DEPTH.replace(b'"T":1721347022503', b'"T":18446744073709551'), "field 'T' must be a time"),
    (FUT_DEPTH.replace(b'"U":10', b'"U":-10'), "field 'U' must be an integer from 0 to 2^63-1, got -10"),
    (FUT_DEPTH.replace(b'"u":20', b'"u":9223372036854775808'), "field 'u' must be an integer from 0 to 2^63-1"),
])
def test_malformed_messages_say_what_is_wrong(message, expected):
    with pytest.raises(WireError) as err:
        parse_stream_message(message, "binance-futures", 1)
    assert expected in str(err.value)


def test_event_record():
    assert event_record("binance", "btcusdt", "gap", "U 5 after u 3", 10) == {
        "type": "event", "venue": "binance", "symbol": "BTCUSDT", "exchange_ts": None, "local_ts": 10,
        "event": "gap", "detail": "U 5 after u 3"}
    with pytest.raises(ValueError):
        event_record("binance", "BTCUSDT", "exploded", "", 1)


def test_every_message_of_both_recordings_parses(recordings):
    counts = {}
    for venue, path in recordings.items():
        kinds: dict[str, int] = {}
        with gzip.open(path) as fh:
            for line in fh:
                ts, payload = line.split(b" ", 1)
                if payload.startswith(b'{"lastUpdateId"'):
                    rec = parse_depth_snapshot(payload, venue, "BTCUSDT", int(ts) // 1000, 1000)
                else:
                    rec = parse_stream_message(payload, venue, int(ts) // 1000)
                kinds[rec["type"]] = kinds.get(rec["type"], 0) + 1
                if rec["type"] == "depth":
                    raw = orjson.loads(payload)["data"]
                    assert rec["bids"] == raw["b"] and rec["asks"] == raw["a"]
        counts[venue] = kinds
    # Counts from ../shared/data/binance/README.md.
    assert counts["binance"] == {"depth": 6495, "trade": 19904, "book_ticker": 73174, "snapshot": 1}
    assert counts["binance-futures"] == {"depth": 9022, "trade": 10701, "book_ticker": 52260, "snapshot": 1}
