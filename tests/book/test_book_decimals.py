"""Exact decimal strings -> integer units -> float64, and strict validation of levels."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
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
    book.apply([(97, 5)], [(104, 2)])          # below the best two on both sides
    assert book.top() == ([(100, 1), (99, 2)], [(101, 3), (103, 1)])
    book.apply([(99, 0), (50, 0)], [])         # removal inside the top; removal of an unknown level
    assert book.top() == ([(100, 1), (97, 5)], [(101, 3), (103, 1)])
    book.apply([(100, 7)], [(102, 4)])         # a new size for a level; a new level inside the top
    assert book.levels() == ([(100, 7), (97, 5)], [(101, 3), (102, 4), (103, 1), (104, 2)])
    assert book.best_bid() == (100, 7) and book.best_ask() == (101, 3) and not book.is_crossed()
    book.apply([(101, 1)], [])
    assert book.is_crossed() and len(book) == 7


def test_book_grows_past_its_initial_capacity():
    book = OrderBook(depth=3)
    book.reset([], [])
    for p in range(1, 10_001):                 # inserted out of order: each one shifts the others
        book.apply([(p * 7919 % 10_007, p)], [(20_000 + p, p)])
    bids, asks = book.levels()
    assert len(bids) == len(asks) == 10_000
    assert [p for p, _ in bids] == sorted({p * 7919 % 10_007 for p in range(1, 10_001)}, reverse=True)
    assert asks[:2] == [(20_001, 1), (20_002, 2)] and asks[-1] == (30_000, 10_000)


def test_grid_rows_are_the_row_layout_in_units_and_floats():
    from midas.book.grid import GridRows, units_to_floats
    book = OrderBook(depth=3)
    book.reset([(10_000_000_000, 150_000_000), (9_900_000_000, 2)], [(10_100_000_000, 300_000_000)])
    assert book.top_units().tolist() == [10_000_000_000, 9_900_000_000, -1, 150_000_000, 2, -1,
                                         10_100_000_000, -1, -1, 300_000_000, -1, -1]
    rows = GridRows(depth=3, capacity=1)
    rows.extend_lists([[100_000, *book.top_units().tolist(), 7, 12]])
    assert rows.as_tuples() == [(100_000, 100.0, 99.0, None, 1.5, 2e-08, None, 101.0, None, None,
                                 3.0, None, None, 7, 12)]
    # above 2^53 units one float division would round twice: the exact path gives float(Decimal)
    big = 2 ** 53 + 1
    assert units_to_floats(np.array([big, 12_345], dtype=np.int64)).tolist() == [
        float(Decimal(big) / 10 ** 8), 0.00012345]


def test_grid_rows_between_is_the_time_window():
    from midas.book.grid import GridRows
    rows = GridRows(depth=1, capacity=2)
    rows.extend_lists([[ts, 1, 2, 3, 4, ts // 100, 0] for ts in (100, 200, 300, 400)])
    assert rows.between(200, 400).as_lists() == [[200, 1, 2, 3, 4, 2, 0], [300, 1, 2, 3, 4, 3, 0]]
    assert rows.between(401, None).n == 0 and rows.between(None, 150).ts.tolist() == [100]
    assert rows.between(250, 250).n == 0
