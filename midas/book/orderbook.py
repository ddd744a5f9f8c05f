"""The order book of one symbol: exact integer prices and sizes (see decimals.py), a small verb API.

Each side is a dict price -> size plus a sorted list of its prices, so the best N levels are a
slice and a change costs one bisect. `top_changed` says whether any change since the last `top()`
touched the best N levels, so grid sampling can reuse the previous row when nothing moved there.
Pure: no I/O, no clock, no logging.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from typing import Iterable, Sequence

Level = tuple[int, int]  # (price units, size units)


class OrderBook:
    """Bids and asks as exact integers. A size of 0 removes the level (unknown levels: no-op)."""

    __slots__ = ("bids", "asks", "_bid_prices", "_ask_prices", "depth", "top_changed")

    def __init__(self, depth: int = 10):
        self.depth = depth
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self._bid_prices: list[int] = []   # ascending; best bid is the last
        self._ask_prices: list[int] = []   # ascending; best ask is the first
        self.top_changed = True

    # Verbs ----------------------------------------------------------------------------------------

    def reset(self, bids: Iterable[Level], asks: Iterable[Level]) -> None:
        """Replace the whole book (a snapshot). Zero sizes are skipped."""
        self.bids = {p: q for p, q in bids if q}
        self.asks = {p: q for p, q in asks if q}
        self._bid_prices = sorted(self.bids)
        self._ask_prices = sorted(self.asks)
        self.top_changed = True

    def apply(self, bids: Sequence[Level], asks: Sequence[Level]) -> None:
        """Apply one diff: every level gets its new absolute size."""
        depth = self.depth
        if bids:
            prices = self._bid_prices
            # (max/min of (price, size) tuples compare prices first, in C)
            if not self.top_changed and (len(prices) < depth or max(bids)[0] >= prices[-depth]):
                self.top_changed = True
            sizes = self.bids
            for p, q in bids:               # (_apply_side inlined: this runs per level)
                if q:
                    if p not in sizes:
                        insort(prices, p)
                    sizes[p] = q
                elif p in sizes:
                    del sizes[p]
                    del prices[bisect_left(prices, p)]
        if asks:
            prices = self._ask_prices
            if not self.top_changed and (len(prices) < depth or min(asks)[0] <= prices[depth - 1]):
                self.top_changed = True
            sizes = self.asks
            for p, q in asks:
                if q:
                    if p not in sizes:
                        insort(prices, p)
                    sizes[p] = q
                elif p in sizes:
                    del sizes[p]
                    del prices[bisect_left(prices, p)]

    # Questions ------------------------------------------------------------------------------------

    def best_bid(self) -> Level | None:
        if not self._bid_prices:
            return None
        p = self._bid_prices[-1]
        return p, self.bids[p]

    def best_ask(self) -> Level | None:
        if not self._ask_prices:
            return None
        p = self._ask_prices[0]
        return p, self.asks[p]

    def is_crossed(self) -> bool:
        """Best bid >= best ask: impossible on a real exchange, so the book is wrong."""
        return bool(self._bid_prices and self._ask_prices
                    and self._bid_prices[-1] >= self._ask_prices[0])

    def top(self, n: int | None = None) -> tuple[list[Level], list[Level]]:
        """The best n (default: depth) bid levels (highest first) and ask levels (lowest first)."""
        n = self.depth if n is None else n
        bid_prices = self._bid_prices[-n:][::-1] if n else []
        ask_prices = self._ask_prices[:n]
        bids, asks = self.bids, self.asks
        self.top_changed = False
        return [(p, bids[p]) for p in bid_prices], [(p, asks[p]) for p in ask_prices]

    def top_columns(self, to_float) -> tuple:
        """The best `depth` levels as grid-row columns: bid prices, bid sizes, ask prices, ask
        sizes (best first, None where a side has fewer levels), each value mapped by to_float."""
        depth = self.depth
        bid_prices = self._bid_prices[-depth:][::-1]
        ask_prices = self._ask_prices[:depth]
        self.top_changed = False
        fl = to_float.__getitem__
        bid_pad = (None,) * (depth - len(bid_prices))
        ask_pad = (None,) * (depth - len(ask_prices))
        return (*map(fl, bid_prices), *bid_pad,
                *map(fl, map(self.bids.__getitem__, bid_prices)), *bid_pad,
                *map(fl, ask_prices), *ask_pad,
                *map(fl, map(self.asks.__getitem__, ask_prices)), *ask_pad)

    def __len__(self) -> int:
        return len(self.bids) + len(self.asks)

    def copy(self) -> "OrderBook":
        other = OrderBook(self.depth)
        other.bids = dict(self.bids)
        other.asks = dict(self.asks)
        other._bid_prices = list(self._bid_prices)
        other._ask_prices = list(self._ask_prices)
        other.top_changed = True
        return other

    def levels(self) -> tuple[list[Level], list[Level]]:
        """Every level, bids highest first, asks lowest first (for checkpoints and tests)."""
        return ([(p, self.bids[p]) for p in reversed(self._bid_prices)],
                [(p, self.asks[p]) for p in self._ask_prices])
