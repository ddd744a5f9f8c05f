"""Helpers for the book tests: SPEC §2 raw records and raw files, written with midas.raw."""

from __future__ import annotations

from pathlib import Path

import zstandard

from midas.layout import raw_file_path
from midas.raw import RawFileWriter

BASE_MS = 1704067200000          # 2024-01-01T00:00:00Z
SYMBOL = "BTCUSDT"


def depth(venue, e_ms, first, last, prev=None, bids=(), asks=(), local_ms=None):
    futures = venue == "binance-futures"
    return {"type": "depth", "venue": venue, "symbol": SYMBOL, "exchange_ts": e_ms * 1000,
            "local_ts": (local_ms if local_ms is not None else e_ms) * 1000,
            "transaction_ts": e_ms * 1000 if futures else None, "first_update_id": first,
            "last_update_id": last, "prev_update_id": prev if futures else None,
            "bids": [list(x) for x in bids], "asks": [list(x) for x in asks]}


def snapshot(venue, last_id, bids, asks, e_ms=None, local_ms=0):
    futures = venue == "binance-futures"
    return {"type": "snapshot", "venue": venue, "symbol": SYMBOL,
            "exchange_ts": e_ms * 1000 if (futures and e_ms is not None) else None,
            "local_ts": local_ms * 1000, "last_update_id": last_id,
            "bids": [list(x) for x in bids], "asks": [list(x) for x in asks],
            "transaction_ts": e_ms * 1000 if (futures and e_ms is not None) else None,
            "depth_limit": 1000}


def trade(venue, t_ms, trade_id, price, qty, maker, local_ms=None):
    return {"type": "trade", "venue": venue, "symbol": SYMBOL, "exchange_ts": t_ms * 1000,
            "local_ts": (local_ms if local_ms is not None else t_ms) * 1000, "trade_id": trade_id,
            "price": price, "qty": qty, "is_buyer_maker": maker, "trade_ts": t_ms * 1000,
            "trade_type": "MARKET" if venue == "binance-futures" else None}


def event(venue, kind, local_ms, detail=""):
    return {"type": "event", "venue": venue, "symbol": SYMBOL, "exchange_ts": None,
            "local_ts": local_ms * 1000, "event": kind, "detail": detail}


def write_raw(data_dir: Path, venue: str, hour, items, part: int = 0, frame_every: int = 50) -> Path:
    """Write a raw file; items are record dicts or raw bytes lines (for damaged lines)."""
    w = RawFileWriter(raw_file_path(data_dir, venue, SYMBOL, hour, part), fsync=False)
    for i, item in enumerate(items, 1):
        if isinstance(item, bytes):
            w.write_line(item, None)
        else:
            w.write(item)
        if i % frame_every == 0:
            w.flush()
    return w.close()


def append_torn_frame(path: Path, text: bytes) -> None:
    """Append a zstd frame cut in the middle, as a crash mid-write leaves it."""
    frame = zstandard.ZstdCompressor().compress(text)
    with open(path, "ab") as fh:
        fh.write(frame[: len(frame) // 2])
