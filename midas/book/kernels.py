"""Compiled (numba) per-level work of the rebuild: the book on integer arrays, grid rows into
preallocated arrays, and whole runs of in-sync diffs applied in one call.

The book: for each side, the keys of its levels in ascending order with the best level last, and
their sizes. Bids use the price as key, asks the negated price, so on both sides the best level
is the last one and the changes near the top of the book (the frequent ones) move few entries.
`keys` and `sizes` are int64[2, capacity], `counts` int64[2] (side 0 bids, side 1 asks). Prices
and sizes are exact integer units of 10^-8 (decimals.py); sizes are never 0 in the book.

Rows (SPEC §3 grid): `row_ts`, `row_uid`, `row_age` int64[capacity] and `row_levels`
int64[capacity, 4 * depth] (bid prices, bid sizes, ask prices, ask sizes, best first; -1 where a
side has fewer levels). The caller guarantees capacity (see `need_*` below) and converts units to
float64 once, when writing.

The machine state shared with midas.book.sync is an int64 vector (indices below); NONE stands for
Python's None. Only the in-sync path runs here; everything else stays in sync.py.
"""

from __future__ import annotations

import numpy as np
from numba import njit

NONE = np.iinfo(np.int64).min
# state vector indices
LAST_U, LAST_TS, NEXT_GRID, EMITTED_UNTIL, EMIT_FROM, INTERVAL, LAST_SEEN, N_ROWS, APPLIED, DUPLICATES = range(10)
STATE_SIZE = 10
# run_synced results: why the run stopped at the returned line
END, STOP, CROSSED, PYTHON, GROW_ROWS, GROW_BOOK = range(6)
# line kinds (lineparse.py)
EMPTY, DEPTH, TRADE, OTHER, TICKER = range(5)


@njit(cache=True)
def _set_level(keys, sizes, counts, side, key, size):
    """Give the level `key` of `side` the absolute size `size` (0 removes it; unknown: no-op)."""
    n = counts[side]
    k = keys[side]
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi) >> 1
        if k[mid] < key:
            lo = mid + 1
        else:
            hi = mid
    s = sizes[side]
    if lo < n and k[lo] == key:
        if size:
            s[lo] = size
        else:
            for j in range(lo, n - 1):
                k[j] = k[j + 1]
                s[j] = s[j + 1]
            counts[side] = n - 1
    elif size:
        for j in range(n, lo, -1):
            k[j] = k[j - 1]
            s[j] = s[j - 1]
        k[lo] = key
        s[lo] = size
        counts[side] = n + 1


@njit(cache=True)
def apply_levels(keys, sizes, counts, prices, qtys, bid_lo, bid_hi, ask_lo, ask_hi):
    """One diff: levels [bid_lo, bid_hi) of prices/qtys to the bids, then [ask_lo, ask_hi) to the asks."""
    for j in range(bid_lo, bid_hi):
        _set_level(keys, sizes, counts, 0, prices[j], qtys[j])
    for j in range(ask_lo, ask_hi):
        _set_level(keys, sizes, counts, 1, -prices[j], qtys[j])


@njit(cache=True)
def is_crossed(keys, counts):
    """Best bid >= best ask."""
    return counts[0] > 0 and counts[1] > 0 and keys[0, counts[0] - 1] >= -keys[1, counts[1] - 1]


@njit(cache=True)
def write_top(keys, sizes, counts, depth, out):
    """The best `depth` levels of each side into out[4 * depth] (-1 where a side has fewer)."""
    nb, na = counts[0], counts[1]
    for i in range(depth):
        if i < nb:
            out[i] = keys[0, nb - 1 - i]
            out[depth + i] = sizes[0, nb - 1 - i]
        else:
            out[i] = -1
            out[depth + i] = -1
        if i < na:
            out[2 * depth + i] = -keys[1, na - 1 - i]
            out[3 * depth + i] = sizes[1, na - 1 - i]
        else:
            out[2 * depth + i] = -1
            out[3 * depth + i] = -1


@njit(cache=True)
def grid_at_or_after(ts, interval):
    return -((-ts) // interval) * interval


@njit(cache=True)
def need_rows(st, ts):
    """At most how many rows emit_before(st, ts) writes."""
    g = st[NEXT_GRID]
    if ts <= g:
        return 0
    return (ts - g) // st[INTERVAL] + 1


@njit(cache=True)
def emit_before(st, ts, keys, sizes, counts, depth, row_ts, row_levels, row_uid, row_age):
    """Rows for the grid times of the stretch before ts (the book as it is now); see
    BookSync._emit_before for the rules (rows never repeat, none before emit_from)."""
    step = st[INTERVAL]
    g = st[NEXT_GRID]
    if st[EMITTED_UNTIL] != NONE and g <= st[EMITTED_UNTIL]:
        g = st[EMITTED_UNTIL] + step
    if g >= ts:
        return
    emit_from = st[EMIT_FROM]
    if emit_from != NONE and g < emit_from:
        g = max(g, grid_at_or_after(emit_from, step))
        if g >= ts:
            st[NEXT_GRID] = grid_at_or_after(ts, step)
            return
    r = st[N_ROWS]
    first = r
    u, last_ts = st[LAST_U], st[LAST_TS]
    while g < ts:
        row_ts[r] = g
        if r == first:
            write_top(keys, sizes, counts, depth, row_levels[r])
        else:
            row_levels[r, :] = row_levels[first, :]
        row_uid[r] = u
        row_age[r] = (g - last_ts) // 1000
        r += 1
        g += step
    st[N_ROWS] = r
    st[NEXT_GRID] = g
    st[EMITTED_UNTIL] = g - step


@njit(cache=True)
def run_synced(kinds, fields, prices, qtys, start, end, futures, stop_at, st, keys, sizes, counts,
               depth, row_ts, row_levels, row_uid, row_age):
    """Feed the depth lines of [start, end) to an in-sync book, in order, while they are plain
    in-sync diffs: duplicates are counted and skipped, each other diff first emits the rows of the
    grid times before its E and is then applied. Returns (line, reason): END (all done), STOP (the
    line's diff finished the hour: stop_at reached and no row left before it), CROSSED (the line's
    diff was applied and crossed the book), PYTHON (the line is not a plain in-sync diff and was
    left untouched: a sequence break, or a line that only Python handles), GROW_ROWS / GROW_BOOK
    (the line was left untouched: more capacity needed)."""
    step = st[INTERVAL]
    cap_rows = row_ts.shape[0]
    cap_book = keys.shape[1]
    for i in range(start, end):
        kind = kinds[i]
        if kind != DEPTH:
            if kind == OTHER:
                return i, PYTHON
            continue
        f = fields[i]
        ts, first_id, last_id = f[1], f[2], f[3]
        if last_id <= st[LAST_U]:
            if ts > st[LAST_SEEN]:
                st[LAST_SEEN] = ts
            st[DUPLICATES] += 1
        else:
            if futures:
                if f[4] != st[LAST_U]:
                    return i, PYTHON
            elif first_id > st[LAST_U] + 1:
                return i, PYTHON
            if st[N_ROWS] + need_rows(st, ts) > cap_rows:
                return i, GROW_ROWS
            bid_lo, bid_hi, ask_lo, ask_hi = f[6], f[7], f[8], f[9]
            if counts[0] + bid_hi - bid_lo > cap_book or counts[1] + ask_hi - ask_lo > cap_book:
                return i, GROW_BOOK
            if ts > st[LAST_SEEN]:
                st[LAST_SEEN] = ts
            if st[NEXT_GRID] < ts:
                emit_before(st, ts, keys, sizes, counts, depth, row_ts, row_levels, row_uid, row_age)
            apply_levels(keys, sizes, counts, prices, qtys, bid_lo, bid_hi, ask_lo, ask_hi)
            if is_crossed(keys, counts):
                return i, CROSSED
            st[APPLIED] += 1
            st[LAST_U] = last_id
            st[LAST_TS] = ts
            if ts > st[NEXT_GRID]:
                st[NEXT_GRID] = grid_at_or_after(ts, step)
        if stop_at != NONE and ts >= stop_at and st[NEXT_GRID] >= stop_at:
            return i, STOP
    return end, END
