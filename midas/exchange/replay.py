"""Replay of real recordings (`<local ts ns> <JSON>` lines, gzip or plain; see
shared/data/binance/README.md) as a live Binance.

Each connection gets the recording from its beginning, at the recorded pace divided by `speed`
(0 = as fast as the client reads), starting when it has its first subscription. The REST snapshot
of a symbol is the recording's first snapshot record of that symbol, returned as recorded (cut to
`limit` levels when fewer are asked for). A client that buffers diffs from its connection on and
follows Binance's procedure therefore always syncs: the recorded snapshot bridges into the
recorded diffs, which the connection receives from the start.

A message goes to a connection when the connection is subscribed to a stream of the same symbol
and kind (any depth speed matches the recorded depth stream); when the subscribed name equals the
recorded one, the recorded text is sent unchanged.
"""

from __future__ import annotations

import gzip
import heapq
from dataclasses import dataclass
from pathlib import Path

import orjson

from midas.errors import DataError
from midas.venues import FUTURES, SPOT


@dataclass(frozen=True, slots=True)
class ReplayMessage:
    local_ns: int
    stream: str          # the recorded stream name, e.g. btcusdt@depth@100ms
    symbol: str          # upper case
    kind: str            # "depth", "trade" or "bookTicker"
    envelope: str        # the recorded JSON text

    @property
    def data(self) -> str:
        """The payload text alone (for single-stream connections)."""
        return orjson.dumps(orjson.loads(self.envelope)["data"]).decode()


@dataclass
class Recording:
    venue: str
    messages: list[ReplayMessage]
    snapshots: dict[str, str]        # symbol -> the recorded snapshot JSON text
    snapshot_levels: dict[str, int]  # symbol -> levels a side in that snapshot

    @property
    def symbols(self) -> list[str]:
        return sorted({m.symbol for m in self.messages} | set(self.snapshots))


def _open_text(path: Path):
    with open(path, "rb") as f:
        magic = f.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rb")
    return open(path, "rb")


def _kind(stream: str, where: str) -> str:
    _, _, rest = stream.partition("@")
    kind = rest.split("@", 1)[0]
    if kind not in ("depth", "trade", "bookTicker"):
        raise DataError(f"{where}: stream {stream!r} is not a depth, trade or bookTicker stream")
    return kind


def _load_file(path: Path) -> tuple[list[ReplayMessage], list[tuple[int, str, int]], bool]:
    """Messages, snapshots as (index in messages, text, levels), and whether it is futures."""
    messages: list[ReplayMessage] = []
    snapshots: list[tuple[int, str, int]] = []
    futures = False
    if not path.is_file():
        raise DataError(f"recording {path} does not exist")
    with _open_text(path) as f:
        for n, raw in enumerate(f, 1):
            line = raw.strip()
            if not line:
                continue
            where = f"{path}:{n}"
            ts_text, sep, text = line.partition(b" ")
            if not sep or not ts_text.isdigit():
                raise DataError(f"{where}: expected '<local ts ns> <JSON>', got {line[:60]!r}")
            try:
                obj = orjson.loads(text)
            except orjson.JSONDecodeError as e:
                raise DataError(f"{where}: invalid JSON ({e})") from None
            if not isinstance(obj, dict):
                raise DataError(f"{where}: expected a JSON object")
            if "lastUpdateId" in obj:
                levels = max(len(obj.get("bids", [])), len(obj.get("asks", [])))
                snapshots.append((len(messages), text.decode(), levels))
                continue
            stream, data = obj.get("stream"), obj.get("data")
            if not isinstance(stream, str) or not isinstance(data, dict):
                raise DataError(f"{where}: expected a combined-stream envelope {{\"stream\",\"data\"}}")
            kind = _kind(stream, where)
            if kind == "depth" and "pu" in data:
                futures = True
            if kind == "trade" and "X" in data:
                futures = True
            messages.append(ReplayMessage(int(ts_text), stream, stream.split("@", 1)[0].upper(), kind,
                                          text.decode()))
    return messages, snapshots, futures


def load_recordings(paths: list[str | Path], venue: str | None = None) -> Recording:
    """Read recordings (all of one venue) and merge their messages by local receive time.

    `venue` None: taken from the data (futures depth diffs carry `pu`). A given venue that the
    data contradicts is a DataError.
    """
    if not paths:
        raise DataError("no recording given to replay")
    per_file = []
    snapshots: dict[str, str] = {}
    snapshot_levels: dict[str, int] = {}
    found_venues = set()
    for p in paths:
        path = Path(p)
        messages, snaps, futures = _load_file(path)
        if not messages:
            raise DataError(f"recording {path} has no stream messages")
        found_venues.add(FUTURES if futures else SPOT)
        for index, text, levels in snaps:
            # A snapshot belongs to the symbol of the depth messages around it.
            near = [m for m in messages[max(0, index - 50): index + 50] if m.kind == "depth"]
            symbol = (near or messages)[0].symbol
            if symbol not in snapshots:
                snapshots[symbol] = text
                snapshot_levels[symbol] = levels
        per_file.append(messages)
    if len(found_venues) > 1:
        raise DataError("the recordings mix spot and futures data: replay one venue at a time")
    data_venue = found_venues.pop()
    if venue is not None and venue != data_venue:
        raise DataError(f"the recordings are {data_venue} data, not {venue}: "
                        f"drop --venue or use --venue {data_venue}")
    merged = list(heapq.merge(*per_file, key=lambda m: m.local_ns)) if len(per_file) > 1 else per_file[0]
    return Recording(data_venue, merged, snapshots, snapshot_levels)


def snapshot_text(recording: Recording, symbol: str, limit: int) -> str:
    """The recorded snapshot of `symbol`, cut to `limit` levels a side when fewer are asked for."""
    text = recording.snapshots.get(symbol)
    if text is None:
        raise DataError(f"the recording has no depth snapshot for {symbol}")
    if limit >= recording.snapshot_levels[symbol]:
        return text
    obj = orjson.loads(text)
    obj["bids"] = obj["bids"][:limit]
    obj["asks"] = obj["asks"][:limit]
    return orjson.dumps(obj).decode()
