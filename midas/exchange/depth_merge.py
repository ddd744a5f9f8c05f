"""Slower depth streams (`@depth@250ms`, `@500ms`, `@1000ms`, `@depth`) as merges of the 100 ms diffs.

A merged diff covers every diff of its time bucket: `U` of the first, `u` and `E`/`T` of the last,
`pu` of the first (the `u` of the last diff before the bucket), and for each price the quantity of
its last change, so applying it gives the same book as applying the diffs one by one.
"""

from __future__ import annotations

from decimal import Decimal


class DepthMerger:
    def __init__(self, speed_ms: int, tick_ms: int = 100):
        self.speed_ms = speed_ms
        self.tick_ms = tick_ms
        self._reset()

    def _reset(self) -> None:
        self.first: int | None = None
        self.prev: int | None = None
        self.bids: dict[str, str] = {}
        self.asks: dict[str, str] = {}

    def add(self, d) -> tuple | None:
        """Add one SimDepth; returns the merged (E, T, U, u, pu, bids, asks) at the bucket's last diff."""
        if self.first is None:
            self.first, self.prev = d.first_update_id, d.prev_update_id
        for price, qty in d.bids:
            self.bids[price] = qty
        for price, qty in d.asks:
            self.asks[price] = qty
        if (d.event_ms + self.tick_ms) // self.speed_ms == d.event_ms // self.speed_ms:
            return None
        bids = [[p, self.bids[p]] for p in sorted(self.bids, key=Decimal, reverse=True)]
        asks = [[p, self.asks[p]] for p in sorted(self.asks, key=Decimal)]
        merged = (d.event_ms, d.transaction_ms, self.first, d.last_update_id, self.prev, bids, asks)
        self._reset()
        return merged
