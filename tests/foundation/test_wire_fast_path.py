"""The collector's fast path in midas.wire accepts and rejects exactly what the checked path does.

midas/wire.py validates valid payloads in a few C-level passes and sends anything else through the
field-by-field check that writes the error text; the two state the same rules twice, so they are
compared here on random inputs.
"""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from midas import wire
from midas.errors import WireError

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
