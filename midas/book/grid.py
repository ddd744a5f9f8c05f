"""The book grid of SPEC §3, as pure functions: grid times and the columns of one grid row.

Grid times are k × SNAPSHOT_INTERVAL_MS in exchange time (µs). A row is
`(ts, bid_px_01..NN, bid_sz_01..NN, ask_px_01..NN, ask_sz_01..NN, update_id, book_age_ms)`,
prices and sizes as float64 (None where the side has fewer than NN levels).
"""

from __future__ import annotations

from typing import Sequence

from midas.book.decimals import units_to_float

Level = tuple[int, int]


def grid_at_or_after(ts: int, interval_us: int) -> int:
    """The first grid time >= ts."""
    return -(-ts // interval_us) * interval_us


def grid_at_or_before(ts: int, interval_us: int) -> int:
    """The last grid time <= ts."""
    return ts // interval_us * interval_us


def book_columns(depth: int) -> list[str]:
    """Column names of clean/book in order."""
    cols = ["ts"]
    for side in ("bid", "ask"):
        cols += [f"{side}_px_{i:02d}" for i in range(1, depth + 1)]
        cols += [f"{side}_sz_{i:02d}" for i in range(1, depth + 1)]
    return cols + ["update_id", "book_age_ms"]


class _FloatCache(dict):
    """units -> float64, remembered (the best levels change little between rows); bounded."""

    def __missing__(self, units: int) -> float:
        value = units_to_float(units)
        if len(self) >= 200_000:
            self.clear()
        self[units] = value
        return value


FLOATS = _FloatCache()     # shared: units -> float64


def level_values(bids: Sequence[Level], asks: Sequence[Level], depth: int) -> tuple:
    """The 4 × depth price/size columns of a row, from the best levels (best first, at most depth)."""
    fl = FLOATS
    out: list = []
    for levels in (bids, asks):
        pad = [None] * (depth - len(levels))
        out += [fl[p] for p, _ in levels]
        out += pad
        out += [fl[q] for _, q in levels]
        out += pad
    return tuple(out)
