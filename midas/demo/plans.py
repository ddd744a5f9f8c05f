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
FIRST_SEED = 7
DEMO_ROTATION_HOURS = 0.01          # 36 s: a 2-minute demo rotates its files three times
DEMO_QUERIES = (("minute_bars", "per venue, symbol and minute: midprice, spread and imbalance"),
                ("ofi_predicts_next_move", "does order-flow imbalance predict the next midprice move?"),
                ("trade_flow", "trades per venue and symbol: volume, VWAP, taker buy share"))
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
    truth_dir: Path | None = None    # the simulated exchange's ground truth goes there (tests)


# Plans ------------------------------------------------------------------------------------------

def simulated_faults(seconds: float):
    """One sequence gap, then one disconnect, whatever the demo's length and however long the
    collector takes to start.

    Both faults are timed from each connection's opening: diffs are dropped when a connection is
    half the run old, and the exchange closes each connection when it is 80 % of the run old (close
    frame 1001, as Binance does at 24 h). The collector's first connection therefore meets both; the
    connection it reopens would meet them only after the collection has ended.
    """
    from midas.exchange import Faults

    return Faults(drop_diffs=3, drop_every_secs=round(0.5 * seconds, 2),
                  max_connection_age_secs=round(0.8 * seconds, 2))


def simulated_plan(seconds: float, symbols: tuple[str, ...] = SIMULATED_SYMBOLS, seed: int = FIRST_SEED,
                   truth_dir: Path | None = None) -> DemoPlan:
    """The simulated run; with `truth_dir` the exchange also writes its ground truth there (for tests)."""
    exchange: dict[str, Any] = {"venue": SIMULATED_VENUE, "symbols": list(symbols), "seed": seed,
                                "faults": simulated_faults(seconds)}
    if truth_dir is not None:
        exchange["truth_dir"] = Path(truth_dir)
    return DemoPlan(label=f"simulated {SIMULATED_VENUE} market", venue=SIMULATED_VENUE, symbols=list(symbols),
                    collect_seconds=seconds, exchange=exchange)


def highest_ids(data_dir: Path, venue: str, symbol: str) -> tuple[int, int]:
    """The highest book update id and trade id in a symbol's raw files (0 when there are none)."""
    from midas.layout import list_raw_files
    from midas.raw import RawFileReader

    update_id = trade_id = 0
    for path in list_raw_files(data_dir, venue, symbol):
        for _, rec in RawFileReader(path).iter_records():
            kind = rec.get("type")
            if kind in ("depth", "snapshot") and isinstance(rec.get("last_update_id"), int):
                update_id = max(update_id, rec["last_update_id"])
            elif kind == "trade" and isinstance(rec.get("trade_id"), int):
                trade_id = max(trade_id, rec["trade_id"])
    return update_id, trade_id


def continuing_seed(data_dir: Path, venue: str, symbols: list[str], first: int = FIRST_SEED,
                    tries: int = 10_000) -> int:
    """A market seed whose update and trade ids start above every id already recorded.

    Binance's ids only grow; the simulated market draws its first ids from its seed. A `--continue`
    run with the first run's seed would replay the same ids, and the rebuild would rightly take the
    new diffs for duplicates of old ones (and drop the trades as duplicates). So the next seed whose
    markets start above the recorded ids is used.
    """
    from midas.exchange import SymbolMarket

    highs = {s: highest_ids(data_dir, venue, s) for s in symbols}
    for seed in range(first, first + tries):
        markets = [SymbolMarket(s, venue, seed, levels_per_side=1) for s in symbols]
        if all(m.last_update_id > highs[m.symbol][0] and m.next_trade_id > highs[m.symbol][1] for m in markets):
            return seed
    raise DataError(f"no simulated market seed from {first} to {first + tries - 1} starts above the ids "
                    f"already recorded in {data_dir}: start the demo with --fresh")


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
