"""An independent book for the tests: plain dicts and Decimal, read straight from the recordings'
`<ns> <json>` lines (not from MIDAS raw files), with its own tiny version of Binance's sync
procedure and the grid definition of SPEC §3. It shares no code with midas.book."""

from __future__ import annotations

import gzip
import heapq
from decimal import Decimal
from functools import lru_cache

import orjson

GRID_US = 100_000
DEPTH = 10


def read_recording(path):
    """[(local_ns, payload dict)] in file order; combined-stream envelopes unwrapped."""
    out = []
    with gzip.open(path, "rt") as fh:
        for line in fh:
            ns, body = line.rstrip("\n").split(" ", 1)
            obj = orjson.loads(body)
            out.append((int(ns), obj.get("data", obj)))
    return out


def top_levels(side: dict, best_first_desc: bool):
    pick = heapq.nlargest if best_first_desc else heapq.nsmallest
    return [(p, side[p]) for p in pick(DEPTH, side)]


def oracle_book(messages, futures: bool):
    """Grid rows {ts_us: (bids, asks, u, age_ms)} as Decimal levels, the u -> (best bid, best ask)
    after each applied diff, and the first applied diff's E (µs)."""
    bids: dict = {}
    asks: dict = {}
    buffer = []
    synced = False
    last_u = None
    last_e = None
    rows = {}
    best_after_u = {}
    next_grid = None
    first_e = None
    ticker_ids = {m["u"] for _, m in messages if "A" in m and "B" in m}

    dec = lru_cache(maxsize=None)(Decimal)

    def apply(d):
        for px, qty in d["b"]:
            p, q = dec(px), dec(qty)
            if q == 0:
                bids.pop(p, None)
            else:
                bids[p] = q
        for px, qty in d["a"]:
            p, q = dec(px), dec(qty)
            if q == 0:
                asks.pop(p, None)
            else:
                asks[p] = q

    def take(d):
        nonlocal last_u, last_e, next_grid
        e = d["E"] * 1000
        if next_grid is not None and next_grid < e:
            top = (top_levels(bids, True), top_levels(asks, False))
            assert top[0][0][0] < top[1][0][0], "the recording's book is never crossed"
            while next_grid < e:
                rows[next_grid] = top + (last_u, (next_grid - last_e) // 1000)
                next_grid += GRID_US
        apply(d)
        last_u, last_e = d["u"], e
        if d["u"] in ticker_ids:
            best_after_u[d["u"]] = (max(bids), bids[max(bids)], min(asks), asks[min(asks)])
        if next_grid is None:
            next_grid = -(-e // GRID_US) * GRID_US

    for _, m in messages:
        if "lastUpdateId" in m:
            L = m["lastUpdateId"]
            bids = {Decimal(p): Decimal(q) for p, q in m["bids"] if Decimal(q)}
            asks = {Decimal(p): Decimal(q) for p, q in m["asks"] if Decimal(q)}
            pending = [d for d in buffer if (d["u"] >= L if futures else d["u"] > L)]
            first = pending[0]
            if futures:
                assert first["U"] <= L <= first["u"] or first["pu"] == L
            else:
                assert first["U"] <= L + 1 <= first["u"]
            first_e = first["E"] * 1000
            synced = True
            last_u = None
            for d in pending:
                take(d)
            continue
        if m.get("e") != "depthUpdate":
            continue
        if not synced:
            buffer.append(m)
            continue
        if futures:
            assert m["pu"] == last_u, "the recording has no sequence gaps"
        else:
            assert m["U"] == last_u + 1, "the recording has no sequence gaps"
        take(m)
    # end of data: the stretch ends at the last grid time <= the last applied diff
    if next_grid is not None and next_grid <= last_e:
        rows[next_grid] = (top_levels(bids, True), top_levels(asks, False), last_u,
                           (next_grid - last_e) // 1000)
    return rows, best_after_u, first_e
