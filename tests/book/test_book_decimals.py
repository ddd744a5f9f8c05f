"""Exact decimal strings -> integer units -> float64, and strict validation of levels."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings, strategies as st

from midas.book.decimals import to_units, units_to_float, units_to_str
from midas.book.orderbook import OrderBook
from midas.book.records import parse_diff


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(whole=st.integers(0, 10**12), frac=st.integers(0, 10**8 - 1), decimals=st.integers(0, 8),
       trailing_zeros=st.integers(0, 4))
def test_units_are_exact_and_floats_are_the_nearest(whole, frac, decimals, trailing_zeros):
    frac_text = str(frac).zfill(8)[:decimals]
    text = f"{whole}.{frac_text}" + "0" * trailing_zeros if decimals or trailing_zeros else str(whole)
    units = to_units(text)
    assert Decimal(units) / Decimal(10**8) == Decimal(text)
    assert units_to_float(units) == float(Decimal(text))
    assert Decimal(units_to_str(units)) == Decimal(text)


def test_large_units_still_round_correctly():
    text = "123456789012.12345678"          # above 2**53 units: the int / int path
    assert to_units(text) == 12345678901212345678
    assert units_to_float(to_units(text)) == float(Decimal(text))


@pytest.mark.parametrize("text", ["-1", "1e5", "", ".5", "1_0", " 1", "1.2.3", "1.000000001", "²", "0x10"])
def test_anything_but_a_plain_decimal_is_refused(text):
    with pytest.raises(ValueError):
        to_units(text)


@pytest.mark.parametrize("levels,message", [
    (["12"], "bad level '12'"),
    ([{"1": 0, "2": 0}], "bad level {'1': 0, '2': 0}"),
    ([["1", "2", "3"]], "too many values to unpack"),
    ([[1, 2]], "1 is not a decimal string"),
    ([["1", ["2"]]], "unhashable type"),
    ("1,2", "must be a list of [price, qty]"),
])
def test_malformed_levels_name_the_field(levels, message):
    rec = {"exchange_ts": 1, "first_update_id": 1, "last_update_id": 2, "bids": levels, "asks": []}
    with pytest.raises(ValueError, match="field 'bids'") as err:
        parse_diff(rec, futures=False)
    assert message in str(err.value)


def test_book_verbs():
    book = OrderBook(depth=2)
    book.reset([(100, 1), (99, 2), (98, 0)], [(101, 3), (103, 1)])
    assert book.top() == ([(100, 1), (99, 2)], [(101, 3), (103, 1)])
    assert book.top_changed is False
    book.apply([(97, 5)], [(104, 2)])          # below the best two on both sides
    assert book.top_changed is False
    book.apply([(99, 0), (50, 0)], [])         # removal inside the top; removal of an unknown level
    assert book.top_changed is True
    assert book.top() == ([(100, 1), (97, 5)], [(101, 3), (103, 1)])
    assert book.best_bid() == (100, 1) and book.best_ask() == (101, 3) and not book.is_crossed()
    book.apply([(101, 1)], [])
    assert book.is_crossed() and len(book) == 6


def test_top_columns_are_the_grid_row_layout():
    from midas.book.grid import FLOATS, level_values
    book = OrderBook(depth=3)
    book.reset([(10_000_000_000, 150_000_000), (9_900_000_000, 2)], [(10_100_000_000, 300_000_000)])
    columns = book.top_columns(FLOATS)
    assert columns == (100.0, 99.0, None, 1.5, 2e-08, None, 101.0, None, None, 3.0, None, None)
    assert columns == level_values(*book.top(), 3)
