"""The collector's fast paths in midas.wire accept and reject exactly what the checked path does.

midas/wire.py validates valid payloads in a few C-level passes and sends anything else through the
field-by-field check that writes the error text; the two state the same rules twice, so they are
compared here on random inputs.
"""

from __future__ import annotations

import gzip
import random
import re
import threading
import warnings

import orjson
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.errors import HypothesisDeprecationWarning

from midas import wire
from midas.errors import WireError

# The module-level functions of `random` that advance the global generator.
_GLOBAL_RANDOM_DRAWS = ("random", "uniform", "triangular", "randint", "choice", "randrange", "sample",
                        "shuffle", "choices", "normalvariate", "lognormvariate", "expovariate",
                        "vonmisesvariate", "gammavariate", "gauss", "betavariate", "binomialvariate",
                        "paretovariate", "weibullvariate", "getrandbits", "randbytes")


@pytest.fixture(autouse=True, scope="module")
def _other_threads_draw_from_their_own_random():
    """Hypothesis warns ("Do not use the `random` module inside strategies") when the global
    `random` state changes while a strategy draws. These strategies never use it, but other threads
    of the test process do: in the full suite, Prefect's event-loop thread (left by the flow tests'
    session server) keeps pinging the events WebSocket, and each websockets ping takes
    `random.getrandbits(32)`; one that lands inside a draw gave the warning, at random. While this
    module runs, calls from threads other than the main one draw from a private generator; the
    main thread (the tests and Hypothesis) keeps the global one."""
    own = random.Random()
    main = threading.main_thread()

    def route(shared, private):
        def call(*args, **kwargs):
            return (shared if threading.current_thread() is main else private)(*args, **kwargs)
        return call

    with pytest.MonkeyPatch.context() as patch:
        for name in _GLOBAL_RANDOM_DRAWS:
            if hasattr(random, name):
                patch.setattr(random, name, route(getattr(random, name), getattr(own, name)))
        yield


def test_a_thread_using_the_global_random_during_a_draw_does_not_disturb_generation():
    """The full suite's warning made certain: during each draw another thread takes
    `random.getrandbits(32)`, as a websockets keepalive ping in Prefect's event-loop thread does."""
    def while_another_thread_pings(x):
        ping = threading.Thread(target=lambda: random.getrandbits(32))
        ping.start()
        ping.join()
        return x

    drawn = []

    @settings(max_examples=5, database=None)
    @given(st.integers().map(while_another_thread_pings))
    def draws(x):
        drawn.append(x)

    with warnings.catch_warnings():
        warnings.simplefilter("error", HypothesisDeprecationWarning)
        draws()
    assert len(drawn) == 5

_text = (st.text(alphabet="0123456789. ,a-\n\t", max_size=6)
         | st.sampled_from(["1", "1.", "0.5", "", ".5", "1 2", "12.30", "٣", "1\n"]))
_level = (st.lists(_text, max_size=3) | st.tuples(_text, _text) | _text | st.integers()
          | st.lists(st.integers(), min_size=2, max_size=2))


def _checked_ok(levels) -> bool:
    try:
        wire._levels_checked(levels, "b", "test")
        return True
    except WireError:
        return False


@settings(max_examples=1500, deadline=None)
@given(st.lists(_level, max_size=4))
def test_level_lists_fast_check_equals_checked(levels):
    fast = not levels or wire._levels_ok(levels)
    assert fast == _checked_ok(levels), levels


_trade_field = st.one_of(st.none(), st.integers(), _text, st.booleans())


@settings(max_examples=1000, deadline=None)
@given(p=_trade_field, q=_trade_field, t=_trade_field, m=_trade_field, e=_trade_field)
def test_trade_payload_fast_path_equals_checked(p, q, t, m, e):
    data = {"e": "trade", "E": e, "s": "BTCUSDT", "t": t, "p": p, "q": q, "T": 5, "m": m}
    for venue in ("binance", "binance-futures"):
        try:
            expected = wire._parse_payload_checked(data, venue, 1, "test")
        except WireError as err:
            expected = str(err)
        try:
            got = wire.parse_payload(data, venue, 1, "test")
        except WireError as err:
            got = str(err)
        assert got == expected


# midas.wire.FastPath: messages in Binance's exact layout, matched on their bytes ------------------

_ints = st.one_of(st.integers(-5, 5), st.integers(-(2**63), 2**64 - 1), st.integers(0, 10**18),
                  st.integers(-(10**16), 10**16))
_decimal_text = st.one_of(st.from_regex(r"[0-9]{1,6}(\.[0-9]{0,8})?", fullmatch=True), _text)
_symbols = st.one_of(st.sampled_from(["BTCUSDT", "ETHUSDT", "BTCUSDT_240927", "1000SHIBUSDT"]),
                     st.text(alphabet="ABCxyz09_ \"\\é", min_size=0, max_size=8))
_levels = st.lists(st.lists(_decimal_text, min_size=2, max_size=2)
                   | st.lists(_decimal_text | _ints, max_size=3), max_size=4)
_names = st.one_of(st.sampled_from(["btcusdt@depth@100ms", "btcusdt@trade", "btcusdt@bookTicker"]),
                   st.text(max_size=12))
# Values the checked path accepts, with the fast path's edges: 18/19-digit ids, 15/16-digit times.
_good_ints = st.one_of(st.sampled_from([0, 1, -1, 10**15 - 1, 10**15, -(10**15), 10**18 - 1, 10**18,
                                        1 - 10**18, -(10**18), 2**63 - 1, 2**64 - 1]),
                       st.integers(-(10**18), 10**18))
_good_times = st.one_of(st.sampled_from([0, -1, 10**15 - 1, 10**15, 1 - 10**15, -(10**15)]),
                        st.integers(1_500_000_000_000, 1_900_000_000_000))
_good_names = st.sampled_from(["btcusdt@depth@100ms", "btcusdt@trade", "btcusdt@bookTicker"]) | st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=12)
_good_decimals = st.from_regex(r"[0-9]{1,6}(\.[0-9]{0,8})?", fullmatch=True)
_good_symbols = st.sampled_from(["BTCUSDT", "ETHUSDT", "BTCUSDT_240927", "1000SHIBUSDT"]) | st.from_regex(
    r"[A-Z0-9_]{1,12}", fullmatch=True)
_good_levels = st.lists(st.lists(_good_decimals, min_size=2, max_size=2), max_size=6)


def _layouts(venue, good: bool, ordered: bool):
    """Payload strategies for `venue`; `good`: only values the checked path accepts, else anything;
    `ordered`: keys in Binance's order (as the exchange writes them), else in any order."""
    futures = venue == "binance-futures"
    if good:
        values = dict(E=_good_times, T=_good_times, s=_good_symbols, U=_good_ints, u=_good_ints, pu=_good_ints,
                      t=_good_ints, p=_good_decimals, q=_good_decimals, m=st.booleans(), M=st.booleans(),
                      b=_good_levels, a=_good_levels, B=_good_decimals, A=_good_decimals,
                      X=st.sampled_from(["MARKET", "LIQ_X"]))
        ticker_values = dict(values, b=_good_decimals, a=_good_decimals)
    else:
        values = dict(E=_ints, T=_ints, s=_symbols, U=_ints, u=_ints, pu=_ints, t=_ints, p=_decimal_text,
                      q=_decimal_text, m=st.booleans() | st.none(), M=st.booleans() | _ints,
                      b=_levels, a=_levels, B=_decimal_text, A=_decimal_text,
                      X=st.sampled_from(["MARKET", "LIQ_X", "ab"]))
        ticker_values = dict(values, b=_decimal_text, a=_decimal_text)
    if futures:
        keys = {"depthUpdate": "E T s U u pu b a", "trade": "E T s t p q X m",
                "bookTicker": "u s b B a A T E"}
    else:
        keys = {"depthUpdate": "E s U u b a", "trade": "E s t p q T m M", "bookTicker": "u s b B a A"}
    out = []
    for event, names in keys.items():
        vals = ticker_values if event == "bookTicker" else values
        head = {} if (event == "bookTicker" and not futures) else {"e": st.just(event)}
        fields = head | {k: vals[k] for k in names.split()}
        if ordered:
            out.append(st.tuples(*fields.values()).map(lambda v, keys=tuple(fields): dict(zip(keys, v))))
        else:        # hypothesis shuffles the keys
            out.append(st.fixed_dictionaries(fields))
    return st.one_of(out)


def _expected(message: bytes, venue: str) -> tuple[dict | None, bytes | None]:
    """The record of the checked path and its line (None: rejected / not serializable)."""
    try:
        rec = wire.parse_stream_message(message, venue, 1723161253937085)
    except WireError:
        return None, None
    try:
        return rec, orjson.dumps(rec) + b"\n"
    except TypeError:          # a time that overflows 64 bits in microseconds
        return rec, None


@settings(max_examples=3000, deadline=None)
@given(data=st.data(), venue=st.sampled_from(["binance", "binance-futures"]),
       cut=st.integers(0, 400),
       junk=st.sampled_from([b"", b" ", b"\\", b'"', b"}", b"\xff", b"1", b"0", b"-", b".", b"e", b"a"]))
def test_the_fast_path_writes_exactly_the_serialized_record_or_leaves_the_message_alone(data, venue, cut, junk):
    good, ordered = data.draw(st.sampled_from([(True, True), (False, True), (False, False)]))
    payload = data.draw(_layouts(venue, good, ordered))
    stream = data.draw(_good_names if good else _names)
    message = orjson.dumps({"stream": stream, "data": payload})
    damage = data.draw(st.integers(0, 5))
    if damage <= 1:                             # damaged: a byte inserted somewhere
        cut = min(cut, len(message))
        message = message[:cut] + junk + message[cut:]
    elif damage == 2 and (numbers := [m.start() for m in re.finditer(rb'(?<=":)[0-9]', message)]):
        at = data.draw(st.sampled_from(numbers))  # a leading zero: no longer JSON
        message = message[:at] + b"0" + message[at:]
    fast = wire.FastPath(venue).parse(bytearray(message), 1723161253937085)
    rec, expected_line = _expected(message, venue)
    if fast is None:
        return
    assert expected_line is not None, message
    kind, symbol, first_id, last_id, prev_id, exchange_ts, line = fast
    assert line == expected_line
    assert (kind, symbol.decode(), exchange_ts) == (rec["type"], rec["symbol"], rec["exchange_ts"])
    if kind == "depth":
        assert (first_id, last_id, prev_id) == (rec["first_update_id"], rec["last_update_id"],
                                                rec["prev_update_id"])
    else:
        assert (first_id, last_id, prev_id) == (None, rec["trade_id" if kind == "trade" else "update_id"], None)


_E, _T = 1723161253937, 1723161253935
_BINANCE_LAYOUTS = {
    "binance": [
        {"e": "depthUpdate", "E": _E, "s": "BTCUSDT", "U": 100, "u": 105, "b": [["60000.10", "0.5"]],
         "a": [["60000.20", "1.25"], ["60001.00", "0"]]},
        {"e": "trade", "E": _E, "s": "BTCUSDT", "t": 12345, "p": "60000.10", "q": "0.001", "T": _T,
         "m": True, "M": True},
        {"u": 400, "s": "BTCUSDT", "b": "60000.10", "B": "1.5", "a": "60000.20", "A": "2.0"},
    ],
    "binance-futures": [
        {"e": "depthUpdate", "E": _E, "T": _T, "s": "BTCUSDT", "U": 100, "u": 105, "pu": 99,
         "b": [["60000.10", "0.5"]], "a": [["60000.20", "1.25"]]},
        {"e": "trade", "E": _E, "T": _T, "s": "BTCUSDT", "t": 12345, "p": "60000.10", "q": "0.001",
         "X": "MARKET", "m": False},
        {"e": "bookTicker", "u": 400, "s": "BTCUSDT", "b": "60000.10", "B": "1.5", "a": "60000.20",
         "A": "2.0", "T": _T, "E": _E},
    ],
}


def test_numbers_with_a_leading_zero_and_empty_decimals_are_left_to_the_checked_path():
    """Every number and decimal string of every layout, one at a time: a leading zero (not JSON)
    or a decimal without digits before the point ("", ".5") makes the fast path leave the message
    alone, as the checked path rejects it."""
    cases = 0
    for venue, payloads in _BINANCE_LAYOUTS.items():
        fast = wire.FastPath(venue)
        for payload in payloads:
            message = orjson.dumps({"stream": "btcusdt@x", "data": payload})
            assert fast.parse(bytearray(message), 1) is not None, message     # the layout is taken
            damaged = [message[:m.start()] + b"0" + message[m.start():]
                       for m in re.finditer(rb'(?<=":)[0-9]', message)]
            for m in re.finditer(rb'"([0-9]+)(\.[0-9]*)?"', message):
                damaged += [message[:m.start(1)] + message[m.end(1):],       # "60000.10" -> ".10", "0" -> ""
                            message[:m.start(1)] + message[m.end() - 1:]]     # -> ""
            for bad in damaged:
                assert fast.parse(bytearray(bad), 1) is None, bad
                assert _expected(bad, venue) == (None, None), bad
                cases += 1
    assert cases == 62      # 18 numbers and 22 decimals (twice) in the 6 layouts


def test_the_fast_path_takes_every_message_of_both_recordings(recordings):
    for venue, path in recordings.items():
        fast = wire.FastPath(venue)
        taken = 0
        with gzip.open(path) as fh:
            for line in fh:
                ts, message = line.rstrip(b"\n").split(b" ", 1)
                if message.startswith(b'{"lastUpdateId"'):
                    continue
                got = fast.parse(message, int(ts) // 1000)
                assert got is not None, message[:200]
                assert got[6] == orjson.dumps(wire.parse_stream_message(message, venue, int(ts) // 1000)) + b"\n"
                taken += 1
        assert taken == {"binance": 99573, "binance-futures": 71983}[venue]
