"""The order book of one symbol: exact integer prices and sizes (see decimals.py) on the compiled
arrays of kernels.py, with a small verb API for the parts of the rebuild that run in Python
(snapshots, resync, checkpoints); runs of in-sync diffs are applied by kernels.run_synced on the
same arrays. Pure: no I/O, no clock, no logging.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from midas.book import kernels

Level = tuple[int, int]  # (price units, size units)
_INITIAL_CAPACITY = 4096


class OrderBook:
    """Bids and asks as exact integers. A size of 0 removes the level (unknown levels: no-op)."""

    __slots__ = ("keys", "sizes", "counts", "depth")

    def __init__(self, depth: int = 10):
        self.depth = depth
        self.keys = np.zeros((2, _INITIAL_CAPACITY), dtype=np.int64)    # bids: price, asks: -price
        self.sizes = np.zeros((2, _INITIAL_CAPACITY), dtype=np.int64)
        self.counts = np.zeros(2, dtype=np.int64)

    def ensure_capacity(self, extra: int) -> None:
        """Room for `extra` more levels on each side."""
        need = int(self.counts.max()) + extra
        cap = self.keys.shape[1]
        if need > cap:
            cap = max(need, 2 * cap)
            keys = np.zeros((2, cap), dtype=np.int64)
            sizes = np.zeros((2, cap), dtype=np.int64)
            keys[:, :self.keys.shape[1]] = self.keys
            sizes[:, :self.sizes.shape[1]] = self.sizes
            self.keys, self.sizes = keys, sizes

    # Verbs ----------------------------------------------------------------------------------------

    def reset(self, bids: Iterable[Level], asks: Iterable[Level]) -> None:
        """Replace the whole book (a snapshot). Zero sizes are skipped."""
        bid_map = {p: q for p, q in bids if q}
        ask_map = {p: q for p, q in asks if q}
        self.counts[:] = 0
        self.ensure_capacity(max(len(bid_map), len(ask_map)))
        for side, levels, sign in ((0, bid_map, 1), (1, ask_map, -1)):
            keys = sorted(sign * p for p in levels)
            n = len(keys)
            self.keys[side, :n] = keys
            self.sizes[side, :n] = [levels[sign * k] for k in keys]
            self.counts[side] = n

    def apply(self, bids: Sequence[Level], asks: Sequence[Level]) -> None:
        """Apply one diff: every level gets its new absolute size."""
        levels = list(bids) + list(asks)
        if not levels:
            return
        self.ensure_capacity(len(levels))
        prices = np.array([p for p, _ in levels], dtype=np.int64)
        qtys = np.array([q for _, q in levels], dtype=np.int64)
        nb = len(bids)
        kernels.apply_levels(self.keys, self.sizes, self.counts, prices, qtys, 0, nb, nb, len(levels))

    # Questions ------------------------------------------------------------------------------------

    def best_bid(self) -> Level | None:
        n = int(self.counts[0])
        return (int(self.keys[0, n - 1]), int(self.sizes[0, n - 1])) if n else None

    def best_ask(self) -> Level | None:
        n = int(self.counts[1])
        return (-int(self.keys[1, n - 1]), int(self.sizes[1, n - 1])) if n else None

    def is_crossed(self) -> bool:
        """Best bid >= best ask: impossible on a real exchange, so the book is wrong."""
        return bool(kernels.is_crossed(self.keys, self.counts))

    def top(self, n: int | None = None) -> tuple[list[Level], list[Level]]:
        """The best n (default: depth) bid levels (highest first) and ask levels (lowest first)."""
        n = self.depth if n is None else n
        bids, asks = self.levels()
        return bids[:n], asks[:n]

    def top_units(self) -> np.ndarray:
        """The best `depth` levels in grid-row layout (kernels.write_top): int64[4 * depth]."""
        out = np.empty(4 * self.depth, dtype=np.int64)
        kernels.write_top(self.keys, self.sizes, self.counts, self.depth, out)
        return out

    def __len__(self) -> int:
        return int(self.counts.sum())

    def levels(self) -> tuple[list[Level], list[Level]]:
        """Every level, bids highest first, asks lowest first (for checkpoints and tests)."""
        nb, na = int(self.counts[0]), int(self.counts[1])
        bids = list(zip(self.keys[0, :nb][::-1].tolist(), self.sizes[0, :nb][::-1].tolist()))
        asks = list(zip((-self.keys[1, :na][::-1]).tolist(), self.sizes[1, :na][::-1].tolist()))
        return bids, asks
