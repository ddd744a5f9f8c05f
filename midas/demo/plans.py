"""What the demo runs: one plan per venue (which exchange to start, how long to collect) and the
facts of the real recordings the `--real` plans replay."""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from midas.errors import DataError

SIMULATED_SYMBOLS = ("BTCUSDT", "ETHUSDT")
SIMULATED_VENUE = "binance-futures"
DEMO_ROTATION_HOURS = 0.01          # 36 s: a 2-minute demo rotates its files three times
DEMO_QUERIES = (("minute_bars", "per symbol and minute: midprice, spread and imbalance"),
                ("ofi_predicts_next_move", "does order-flow imbalance predict the next midprice move?"),
                ("trade_flow", "trades per symbol: volume, VWAP, taker buy share"))
RECORDINGS_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "binance"
REAL_RECORDINGS = (("binance-futures", "usdm-btcusdt-2024-07-18T2357.txt.gz"),
                   ("binance", "spot-btcusdt-2024-08-08T2354.txt.gz"))
REPLAY_SPEED = 30.0
REPLAY_MARGIN_SECS = 12.0           # connect, first snapshot and the last messages' flush
CAPTURE_DIR = "replay-capture"      # under the demo's data directory: the collector's copy of a replay


@dataclass
class DemoPlan:
    """One venue's run: which exchange to start and how long to collect from it."""

    label: str
    venue: str
    symbols: list[str]
    collect_seconds: float
    exchange: dict[str, Any]        # LocalExchange keyword arguments
    recording: Path | None = None   # the recording the exchange replays (real-data plans)


@dataclass
class DemoOptions:
    data_dir: Path
    real: bool = False
    seconds: float = 120.0
    fresh: bool = True
    speed: float = REPLAY_SPEED
    recordings_dir: Path = RECORDINGS_DIR
    verbose: bool = False
    charts: bool = True


# Plans ------------------------------------------------------------------------------------------

def simulated_faults(seconds: float):
    """One sequence gap, then one disconnect, whatever the demo's length.

    Diffs are dropped when the first connection is 45 % of the run old; every connection is dropped
    at 60 % of the run (timed from the exchange's start). The reconnected connection would drop
    diffs again only at 60 % + 45 % > 100 % of the run, so each fault happens exactly once.
    """
    from midas.exchange import Faults

    return Faults(drop_diffs=3, drop_every_secs=round(0.45 * seconds, 2),
                  disconnect_every_secs=round(0.6 * seconds, 2))


def simulated_plan(seconds: float, symbols: tuple[str, ...] = SIMULATED_SYMBOLS) -> DemoPlan:
    return DemoPlan(label=f"simulated {SIMULATED_VENUE} market", venue=SIMULATED_VENUE, symbols=list(symbols),
                    collect_seconds=seconds,
                    exchange={"venue": SIMULATED_VENUE, "symbols": list(symbols), "seed": 7,
                              "faults": simulated_faults(seconds)})


def recording_span_seconds(path: Path) -> float:
    """Seconds between the first and last local receive time of a `<ts ns> <json>` recording."""
    first = last = None
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            for line in fh:
                head = line[:20].split(b" ", 1)[0]
                if head.isdigit():
                    last = int(head)
                    if first is None:
                        first = last
    except OSError as e:
        raise DataError(f"recording {path}: cannot read it ({e})") from None
    if first is None:
        raise DataError(f"recording {path}: no `<local ts ns> <json>` line found")
    return (last - first) / 1e9


def real_plans(recordings_dir: Path, speed: float) -> list[DemoPlan]:
    plans = []
    for venue, name in REAL_RECORDINGS:
        path = Path(recordings_dir) / name
        if not path.is_file():
            raise DataError(f"recording {path} not found: `make demo-real` replays the recordings of "
                            "../shared/data/binance next to the repository")
        span = recording_span_seconds(path)
        plans.append(DemoPlan(
            label=f"replay of {name} ({span:.0f} s at x{speed:g})", venue=venue, symbols=["BTCUSDT"],
            collect_seconds=round(span / speed + REPLAY_MARGIN_SECS, 1),
            exchange={"venue": venue, "replay": [path], "speed": speed}, recording=path))
    return plans



def recorded_counts(path: Path) -> dict[str, int]:
    """Messages per stream kind (depth, trade, bookTicker) and snapshots in a recording: the oracle
    the replayed capture is checked against."""
    counts: dict[str, int] = {}
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        for line in fh:
            _, _, body = line.partition(b" ")
            if body.startswith(b'{"lastUpdateId"'):
                kind = "snapshot"
            else:
                stream = orjson.loads(body).get("stream", "")
                kind = stream.split("@")[1] if "@" in stream else "other"
            counts[kind] = counts.get(kind, 0) + 1
    return counts
