"""Compile the rebuild's numba code ahead of time: `python -m midas.book.warmup`.

The first rebuild in a process with an empty numba cache compiles midas.book.kernels and
midas.book.lineparse (8-14 s of CPU on a small machine); `cache=True` keeps the result for later
processes, in NUMBA_CACHE_DIR when set. The Docker image runs this at build time, so a new
container's first rebuild starts at once.

It rebuilds one tiny generated hour per venue (spot and USD-M futures) in a temporary directory,
through the same code as `midas rebuild`: raw records made by midas.wire from Binance messages
(the collector's exact layout), written by RawFileWriter, with a snapshot, diffs, trades,
bookTickers, a sequence gap and its resync. So exactly the signatures a real rebuild uses are
compiled, whatever they are.
"""

from __future__ import annotations

import importlib
import os
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from midas.config import load_settings
from midas.layout import raw_file_path
from midas.raw import RawFileWriter
from midas.venues import VENUE_NAMES
from midas.wire import event_record, parse_depth_snapshot, parse_stream_message

HOUR = datetime(2024, 1, 1, 0, tzinfo=timezone.utc)
SYMBOL = "BTCUSDT"
COMPILED_MODULES = ("midas.book.kernels", "midas.book.lineparse")


def _messages(venue: str, start_ms: int) -> list[dict]:
    """Raw records of one short session: snapshot, 30 diffs with a trade each (every 5th with a
    bookTicker), a sequence gap after the 15th diff, the resync snapshot, the rest."""
    futures = venue == "binance-futures"
    out = [event_record(venue, SYMBOL, "connected", "warm-up", start_ms * 1000)]

    def snapshot(last_id: int, ms: int) -> dict:
        body = {"lastUpdateId": last_id, "bids": [["99.00", "3.0"], ["98.00", "4.0"]],
                "asks": [["101.00", "2.0"], ["102.00", "5.0"]]}
        if futures:
            body |= {"E": ms, "T": ms}
        return parse_depth_snapshot(body, venue, SYMBOL, ms * 1000, 1000)

    def stream(data: dict, ms: int) -> dict:
        return parse_stream_message({"stream": "btcusdt@x", "data": data}, venue, ms * 1000)

    out.append(snapshot(1000, start_ms))
    prev_u = 1000
    for k in range(30):
        ms = start_ms + 100 * (k + 1)
        if k == 15:                                   # a sequence gap, then the resync
            out.append(event_record(venue, SYMBOL, "gap", "warm-up: expected 1016, got 1100", ms * 1000))
            out.append(event_record(venue, SYMBOL, "resync", "warm-up", ms * 1000))
            out.append(snapshot(1100, ms))
            prev_u = 1100
        u = prev_u + 1
        diff = {"e": "depthUpdate", "E": ms, "s": SYMBOL, "U": u, "u": u,
                "b": [[f"{99 - k % 3}.00", f"{1 + k}.0"]], "a": [[f"{101 + k % 2}.00", "0" if k % 4 == 3 else "2.5"]]}
        if futures:
            diff = {"e": "depthUpdate", "E": ms, "T": ms, "s": SYMBOL, "U": u, "u": u, "pu": prev_u,
                    "b": diff["b"], "a": diff["a"]}
        out.append(stream(diff, ms))
        prev_u = u
        trade = ({"e": "trade", "E": ms + 1, "T": ms, "s": SYMBOL, "t": 5000 + k, "p": "100.00", "q": "0.1",
                  "X": "MARKET", "m": k % 2 == 0} if futures else
                 {"e": "trade", "E": ms + 1, "s": SYMBOL, "t": 5000 + k, "p": "100.00", "q": "0.1", "T": ms,
                  "m": k % 2 == 0, "M": True})
        out.append(stream(trade, ms + 1))
        if k % 5 == 0:
            ticker = {"u": u, "s": SYMBOL, "b": "99.00", "B": "3.0", "a": "101.00", "A": "2.0"}
            if futures:
                ticker = {"e": "bookTicker", **ticker, "T": ms, "E": ms}
            out.append(stream(ticker, ms + 2))
    out.append(event_record(venue, SYMBOL, "shutdown", "warm-up", (start_ms + 4000) * 1000))
    return out


def numba_functions() -> dict[str, tuple[int, int]]:
    """`module.function` -> (signatures compiled, signatures loaded from the cache) in this process,
    for every numba function of the rebuild. A function called only from other compiled code counts
    when compiled, not when loaded: it is inside its caller's cached code."""
    from numba.core.registry import CPUDispatcher

    out = {}
    for name in COMPILED_MODULES:
        module = importlib.import_module(name)
        for attr, value in vars(module).items():
            if isinstance(value, CPUDispatcher):
                stats = value.stats
                out[f"{name}.{attr}"] = (sum(stats.cache_misses.values()), sum(stats.cache_hits.values()))
    return out


def warm_up() -> dict[str, tuple[int, int]]:
    """Rebuild the tiny hour of every venue; returns numba_functions()."""
    from midas.book import rebuild_hour

    start_ms = int(HOUR.timestamp() * 1000) + 1000
    with tempfile.TemporaryDirectory(prefix="midas-warmup-") as tmp:
        for venue in VENUE_NAMES:
            writer = RawFileWriter(raw_file_path(Path(tmp), venue, SYMBOL, HOUR, 0), fsync=False)
            for record in _messages(venue, start_ms):
                writer.write(record)
            writer.close()
            settings = load_settings(env_file=None, data_dir=tmp, venue=venue, symbols=[SYMBOL])
            result = rebuild_hour(settings, venue, SYMBOL, HOUR)
            if not result.rows.get("book") or not result.rows.get("trades"):
                raise RuntimeError(f"warm-up rebuild of {venue} gave no rows: {result.rows}")
    return numba_functions()


def main() -> int:
    started = time.process_time()
    functions = warm_up()
    compiled = sum(c for c, _ in functions.values())
    loaded = sum(h for _, h in functions.values())
    where = os.environ.get("NUMBA_CACHE_DIR") or "the __pycache__ folders next to the code"
    print(f"numba warm-up: {compiled} signatures compiled, {loaded} loaded from the cache; cache: {where} "
          f"({time.process_time() - started:.1f} CPU s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
