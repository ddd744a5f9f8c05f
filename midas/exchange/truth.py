"""Ground truth written by the local exchange (`--truth-dir DIR`), and the functions that read it.

Files under the truth directory (all text, one JSON object per line, appended while the exchange
runs and flushed at every market step; complete once the exchange has stopped):

    book-<SYMBOL>.jsonl     the true book at every grid time, in order:
                            {"ts": <µs, exchange time, a multiple of the grid interval>,
                             "bids": [[price, qty], ...best first], "asks": [[price, qty], ...]}
                            the book after every published diff with E*1000 <= ts, top `depth`
                            levels (ORDER_BOOK_DEPTH, default 10), the exchange's own strings.
                            Rows run from the first grid time at or after the first diff's E to
                            the last grid time at or before the last diff's E. Simulation only.
    trades-<SYMBOL>.jsonl   every trade, in order: {"trade_id", "price", "qty", "is_buyer_maker",
                            "trade_ts" (T, µs), "exchange_ts" (E, µs), "trade_type" (futures
                            "MARKET", spot null)}. Simulation only.
    connections.jsonl       one line per WebSocket connection when it opens and when it closes:
                            {"connection": id, "event": "open"|"close", "path": request path,
                             "local_ns": wall clock ns}
    sent/<id>.jsonl         every text frame sent on connection <id>, in order:
                            {"local_ns": wall clock ns after the send, "text": the exact frame}
                            (data messages, answers to SUBSCRIBE..., malformed frames of the fault
                            injection, duplicates: exactly what went over the wire)

Readers: `read_truth_book`, `read_truth_trades`, `read_sent_messages`, `read_connections`.
Grid times and exchange times are integers in microseconds, as in SPEC §2.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import IO, Iterator

import orjson

from midas.errors import DataError
from midas.layout import check_symbol


def _lines(path: Path) -> Iterator[tuple[int, dict]]:
    if not path.is_file():
        raise DataError(f"truth file {path} does not exist (was the exchange started with this truth dir?)")
    with open(path, "rb") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield n, orjson.loads(line)
            except orjson.JSONDecodeError as e:
                if not line.endswith(b"\n"):
                    return  # the last line of a file still being written
                raise DataError(f"{path}:{n}: invalid JSON in truth file ({e})") from None


def read_truth_book(truth_dir: str | Path, symbol: str) -> Iterator[tuple[int, list, list]]:
    """(ts_us, bids, asks) at every grid time, in order; bids/asks = [[price, qty], ...] best first."""
    path = Path(truth_dir) / f"book-{check_symbol(symbol)}.jsonl"
    for _, row in _lines(path):
        yield row["ts"], row["bids"], row["asks"]


def read_truth_trades(truth_dir: str | Path, symbol: str) -> Iterator[dict]:
    """Every trade of `symbol` in order, as dicts with the SPEC §2 trade field names."""
    path = Path(truth_dir) / f"trades-{check_symbol(symbol)}.jsonl"
    for _, row in _lines(path):
        yield row


def read_sent_messages(truth_dir: str | Path) -> dict[int, list[str]]:
    """Per connection id (in order of opening) the exact text frames sent to it, in order."""
    sent = Path(truth_dir) / "sent"
    out: dict[int, list[str]] = {}
    if not sent.is_dir():
        return out
    for path in sorted(sent.glob("*.jsonl"), key=lambda p: int(p.stem)):
        out[int(path.stem)] = [row["text"] for _, row in _lines(path)]
    return out


def read_connections(truth_dir: str | Path) -> list[dict]:
    """The open/close events of every connection, in order."""
    path = Path(truth_dir) / "connections.jsonl"
    if not path.is_file():
        return []
    return [row for _, row in _lines(path)]


class TruthWriter:
    """Appends the truth files. Used from the exchange's event loop; `close()` from any thread."""

    def __init__(self, truth_dir: str | Path, grid_us: int, depth: int):
        self.dir = Path(truth_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "sent").mkdir(exist_ok=True)
        self.grid_us = grid_us
        self.depth = depth
        self._files: dict[str, IO[bytes]] = {}
        self._next_grid: dict[str, int] = {}
        self._lock = threading.Lock()
        self._closed = False

    def _file(self, name: str) -> IO[bytes]:
        f = self._files.get(name)
        if f is None:
            f = open(self.dir / name, "ab", buffering=1 << 16)
            self._files[name] = f
        return f

    def _write(self, name: str, obj: dict) -> None:
        with self._lock:
            if not self._closed:
                self._file(name).write(orjson.dumps(obj) + b"\n")

    # --- book grid ----------------------------------------------------------------------------

    def needs_rows(self, symbol: str, event_ms: int) -> bool:
        """True if a diff at `event_ms` closes grid times (so `before_diff` needs the current top)."""
        nxt = self._next_grid.get(symbol)
        return nxt is not None and nxt < event_ms * 1000

    def before_diff(self, symbol: str, event_ms: int, bids: list, asks: list) -> None:
        """Call before applying a diff published at `event_ms`: writes the grid rows strictly
        before it with the current book (`bids`/`asks`: the top levels after the previous diff)."""
        event_us = event_ms * 1000
        nxt = self._next_grid.get(symbol)
        if nxt is None:
            return
        while nxt < event_us:
            self._write(f"book-{symbol}.jsonl", {"ts": nxt, "bids": bids, "asks": asks})
            nxt += self.grid_us
        self._next_grid[symbol] = nxt

    def after_diff(self, symbol: str, event_ms: int) -> None:
        """Call after applying the diff: the first diff sets the first grid time (>= its E)."""
        if symbol not in self._next_grid:
            event_us = event_ms * 1000
            self._next_grid[symbol] = -(-event_us // self.grid_us) * self.grid_us

    def finish_book(self, symbol: str, last_event_ms: int, bids: list, asks: list) -> None:
        """Write the grid rows up to the last diff's E (inclusive), at stop."""
        self.before_diff(symbol, last_event_ms + 1, bids, asks)  # +1 ms covers ts == E*1000

    # --- trades, connections, sent frames ----------------------------------------------------

    def trade(self, symbol: str, row: dict) -> None:
        self._write(f"trades-{symbol}.jsonl", row)

    def connection(self, conn_id: int, event: str, path: str, local_ns: int) -> None:
        self._write("connections.jsonl",
                    {"connection": conn_id, "event": event, "path": path, "local_ns": local_ns})

    def sent(self, conn_id: int, text: str, local_ns: int) -> None:
        self._write(f"sent/{conn_id}.jsonl", {"local_ns": local_ns, "text": text})

    def flush(self) -> None:
        with self._lock:
            for f in self._files.values():
                f.flush()

    def close_file(self, name: str) -> None:
        with self._lock:
            f = self._files.pop(name, None)
            if f is not None:
                f.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for f in self._files.values():
                f.close()
            self._files.clear()
