"""The book grid of SPEC §3: grid times, the columns of a row, and the rows of a rebuild.

Grid times are k × SNAPSHOT_INTERVAL_MS in exchange time (µs). A row is
`(ts, bid_px_01..NN, bid_sz_01..NN, ask_px_01..NN, ask_sz_01..NN, update_id, book_age_ms)`,
prices and sizes as float64 (None where the side has fewer than NN levels). While rebuilding, rows
are kept as exact integer units in `GridRows` (written by kernels.emit_before) and become float64
once, when a partition is written (`float_columns`).
"""

from __future__ import annotations

import numpy as np

from midas.book.decimals import SCALE

_EXACT_FLOAT_LIMIT = 2 ** 53


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


def units_to_floats(units: np.ndarray) -> np.ndarray:
    """float64 of units / 10^8, correctly rounded (like float(Decimal(text))): units below 2^53
    convert to float64 exactly, so one IEEE division rounds correctly; larger ones (rare) are
    divided exactly by Python's int / int."""
    out = units / 1e8
    big = np.flatnonzero(units >= _EXACT_FLOAT_LIMIT)
    for i in big.tolist():
        out.flat[i] = int(units.flat[i]) / SCALE
    return out


class GridRows:
    """Grid rows in exact units: ts, levels (int64[rows, 4 * depth], -1 = no level), update_id,
    book_age_ms. Grows by doubling; `n` rows are valid."""

    def __init__(self, depth: int, capacity: int = 4096):
        self.depth = depth
        self.n = 0
        self.ts = np.empty(capacity, dtype=np.int64)
        self.levels = np.empty((capacity, 4 * depth), dtype=np.int64)
        self.uid = np.empty(capacity, dtype=np.int64)
        self.age = np.empty(capacity, dtype=np.int64)

    def ensure_capacity(self, extra: int) -> None:
        need = self.n + extra
        cap = self.ts.shape[0]
        if need <= cap:
            return
        cap = max(need, 2 * cap)
        n = self.n
        for name in ("ts", "uid", "age"):
            old = getattr(self, name)
            new = np.empty(cap, dtype=np.int64)
            new[:n] = old[:n]
            setattr(self, name, new)
        levels = np.empty((cap, 4 * self.depth), dtype=np.int64)
        levels[:n] = self.levels[:n]
        self.levels = levels

    def extend_lists(self, rows: list[list[int]]) -> None:
        """Append rows given as [ts, *levels, update_id, book_age_ms] (checkpoints)."""
        if not rows:
            return
        self.ensure_capacity(len(rows))
        block = np.array(rows, dtype=np.int64).reshape(len(rows), 4 * self.depth + 3)
        n, m = self.n, len(rows)
        self.ts[n:n + m] = block[:, 0]
        self.levels[n:n + m] = block[:, 1:-2]
        self.uid[n:n + m] = block[:, -2]
        self.age[n:n + m] = block[:, -1]
        self.n = n + m

    def concat(self, other: "GridRows") -> "GridRows":
        """These rows followed by other's."""
        out = GridRows(self.depth, max(1, self.n + other.n))
        for rows in (self, other):
            n, m = out.n, rows.n
            out.ts[n:n + m] = rows.ts[:m]
            out.levels[n:n + m] = rows.levels[:m]
            out.uid[n:n + m] = rows.uid[:m]
            out.age[n:n + m] = rows.age[:m]
            out.n = n + m
        return out

    def select(self, mask: np.ndarray) -> "GridRows":
        out = GridRows(self.depth, max(1, int(mask.sum())))
        out.n = int(mask.sum())
        n = self.n
        out.ts[:out.n] = self.ts[:n][mask]
        out.levels[:out.n] = self.levels[:n][mask]
        out.uid[:out.n] = self.uid[:n][mask]
        out.age[:out.n] = self.age[:n][mask]
        return out

    def between(self, lo: int | None = None, hi: int | None = None) -> "GridRows":
        """The rows with lo <= ts < hi. Rows are produced in strictly increasing time (they never
        repeat or go back), so this is a slice (views, no copy); a mask otherwise."""
        ts = self.ts[:self.n]
        if not np.all(ts[1:] > ts[:-1]):
            return self.select(self.where_ts(lo, hi))
        start = 0 if lo is None else int(np.searchsorted(ts, lo, side="left"))
        end = self.n if hi is None else int(np.searchsorted(ts, hi, side="left"))
        end = max(start, end)
        out = GridRows.__new__(GridRows)
        out.depth, out.n = self.depth, end - start
        out.ts, out.levels = self.ts[start:end], self.levels[start:end]
        out.uid, out.age = self.uid[start:end], self.age[start:end]
        return out

    def where_ts(self, lo: int | None = None, hi: int | None = None) -> np.ndarray:
        """Mask of the rows with lo <= ts < hi."""
        ts = self.ts[:self.n]
        mask = np.ones(self.n, dtype=bool)
        if lo is not None:
            mask &= ts >= lo
        if hi is not None:
            mask &= ts < hi
        return mask

    def as_lists(self) -> list[list[int]]:
        """[ts, *levels, update_id, book_age_ms] per row (checkpoints)."""
        n = self.n
        block = np.concatenate([self.ts[:n, None], self.levels[:n], self.uid[:n, None],
                                self.age[:n, None]], axis=1)
        return block.tolist()

    def float_columns(self) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]], np.ndarray, np.ndarray]:
        """ts, [(float64 values, missing mask) per level column], update_id, book_age_ms."""
        n = self.n
        levels = self.levels[:n]
        missing = levels < 0
        values = units_to_floats(np.where(missing, 0, levels))
        cols = [(np.ascontiguousarray(values[:, j]), np.ascontiguousarray(missing[:, j]))
                for j in range(4 * self.depth)]
        return self.ts[:n], cols, self.uid[:n], self.age[:n]

    def as_tuples(self) -> list[tuple]:
        """The rows as SPEC §3 tuples (floats, None where no level): for tests and the one pass."""
        ts, cols, uid, age = self.float_columns()
        columns = [ts.tolist()]
        for values, missing in cols:
            columns.append([None if m else v for v, m in zip(values.tolist(), missing.tolist())])
        columns += [uid.tolist(), age.tolist()]
        return list(zip(*columns))
