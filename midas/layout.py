"""Where data lives under DATA_DIR (SPEC §2, §3), and the validation of everything used in a path.

Every path MIDAS builds from a venue, symbol, date or hour goes through this module, so a symbol
such as `../etc` or a date such as `2024-01-01'; DROP` can never escape DATA_DIR or reach SQL.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from midas.config import SYMBOL_PATTERN
from midas.errors import LayoutError
from midas.venues import VENUE_NAMES

DATASETS = ("book", "trades", "gaps", "features")
_DATASET_DIRS = {"book": "clean/book", "trades": "clean/trades", "gaps": "clean/gaps",
                 "features": "features"}
_HOUR_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2})(?::00(?::00)?)?Z?$")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_RAW_NAME_RE = re.compile(r"^([A-Z0-9]{2,20})_(\d{8})T(\d{2})_(\d+)\.jsonl\.zst(\.partial)?$")
US_PER_HOUR = 3_600_000_000


def check_symbol(symbol: str) -> str:
    """The upper-case symbol, or LayoutError if it could not be used in a path or in SQL."""
    if not isinstance(symbol, str) or not SYMBOL_PATTERN.match(symbol):
        raise LayoutError(
            f"symbol {symbol!r} is not allowed: 2 to 20 letters or digits (^[A-Za-z0-9]{{2,20}}$)")
    return symbol.upper()


def check_venue(venue: str) -> str:
    if venue not in VENUE_NAMES:
        raise LayoutError(f"venue {venue!r} is unknown: allowed are {', '.join(VENUE_NAMES)}")
    return venue


def check_dataset(dataset: str) -> str:
    if dataset not in DATASETS:
        raise LayoutError(f"dataset {dataset!r} is unknown: allowed are {', '.join(DATASETS)}")
    return dataset


def check_date(value: str | date) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not _DATE_RE.match(value):
        raise LayoutError(f"date {value!r} is not allowed: use YYYY-MM-DD, e.g. 2024-07-18")
    try:
        return date.fromisoformat(value)
    except ValueError as e:
        raise LayoutError(f"date {value!r} is not a calendar date: {e}") from None


def parse_hour(value: str | datetime) -> datetime:
    """`YYYY-MM-DDTHH` (UTC) -> an aware datetime at the start of that hour."""
    if isinstance(value, datetime):
        dt = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return dt.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)
    m = _HOUR_RE.match(value.strip()) if isinstance(value, str) else None
    if not m:
        raise LayoutError(f"hour {value!r} is not allowed: use YYYY-MM-DDTHH (UTC), e.g. 2024-07-18T23")
    try:
        return datetime(*(int(g) for g in m.groups()), tzinfo=timezone.utc)
    except ValueError as e:
        raise LayoutError(f"hour {value!r} is not a calendar hour: {e}") from None


def format_hour(hour: datetime) -> str:
    return hour.astimezone(timezone.utc).strftime("%Y-%m-%dT%H")


def hour_start_us(hour: datetime) -> int:
    return int(hour.timestamp()) * 1_000_000


def hour_of_us(ts_us: int) -> datetime:
    """The UTC hour containing a microsecond timestamp."""
    return datetime.fromtimestamp(ts_us // US_PER_HOUR * 3600, tz=timezone.utc)


def hours_between(start: datetime, end: datetime) -> list[datetime]:
    """Every hour from start to end, both included."""
    out, h = [], parse_hour(start)
    end = parse_hour(end)
    while h <= end:
        out.append(h)
        h += timedelta(hours=1)
    return out


def _inside(root: Path, path: Path) -> Path:
    """`path`, checked to lie under `root` by its components (`..` collapsed), not by resolving
    symlinks: a data directory whose clean/ or raw/ is a symlink to another disk is a normal
    setup, and the check runs for every partition path (resolving cost ~0.3 ms a path). The
    names that go into paths are validated before (symbols, venues, datasets, hours)."""
    root_n = os.path.normpath(os.path.abspath(root))
    path_n = os.path.normpath(os.path.abspath(path))
    if path_n != root_n and not path_n.startswith(root_n.rstrip(os.sep) + os.sep):
        raise LayoutError(f"path {path} escapes the data directory {root}")
    return path


# Raw files ---------------------------------------------------------------------------------------

@dataclass(frozen=True, order=True)
class RawFileName:
    """The parts of a raw file's name: `<SYMBOL>_<YYYYMMDD>T<HH>_<n>.jsonl.zst[.partial]`."""

    hour: datetime          # the local-clock hour the file was opened in (UTC)
    part: int
    symbol: str
    partial: bool = False

    @property
    def name(self) -> str:
        base = f"{self.symbol}_{self.hour:%Y%m%d}T{self.hour:%H}_{self.part}.jsonl.zst"
        return base + (".partial" if self.partial else "")


def parse_raw_file_name(name: str) -> RawFileName | None:
    m = _RAW_NAME_RE.match(name)
    if not m:
        return None
    sym, ymd, hh, part, partial = m.groups()
    hour = datetime.strptime(ymd + hh, "%Y%m%d%H").replace(tzinfo=timezone.utc)
    return RawFileName(hour=hour, part=int(part), symbol=sym, partial=bool(partial))


def raw_symbol_dir(data_dir: Path, venue: str, symbol: str) -> Path:
    data_dir = Path(data_dir)
    return _inside(data_dir, data_dir / "raw" / check_venue(venue) / check_symbol(symbol))


def raw_file_path(data_dir: Path, venue: str, symbol: str, hour: datetime, part: int,
                  partial: bool = False) -> Path:
    symbol = check_symbol(symbol)
    hour = parse_hour(hour)
    name = RawFileName(hour=hour, part=part, symbol=symbol, partial=partial).name
    return raw_symbol_dir(data_dir, venue, symbol) / f"{hour:%Y-%m-%d}" / name


def list_raw_files(data_dir: Path, venue: str, symbol: str, *, partial: bool = False) -> list[Path]:
    """Final raw files of one symbol in (hour, part) order; `.partial` ones instead if partial=True."""
    root = raw_symbol_dir(data_dir, venue, symbol)
    if not root.is_dir():
        return []
    found: list[tuple[RawFileName, Path]] = []
    for path in root.glob("*/*.jsonl.zst*"):
        info = parse_raw_file_name(path.name)
        if info is not None and info.partial == partial and info.symbol == check_symbol(symbol):
            found.append((info, path))
    found.sort(key=lambda item: (item[0].hour, item[0].part))
    return [p for _, p in found]


def list_symbols(data_dir: Path, venue: str) -> list[str]:
    root = Path(data_dir) / "raw" / check_venue(venue)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and SYMBOL_PATTERN.match(p.name))


# Partitions --------------------------------------------------------------------------------------

def dataset_dir(data_dir: Path, dataset: str) -> Path:
    data_dir = Path(data_dir)
    return _inside(data_dir, data_dir / _DATASET_DIRS[check_dataset(dataset)])


def partition_dir(data_dir: Path, dataset: str, venue: str, symbol: str, hour: datetime) -> Path:
    """`<dataset>/venue=<v>/symbol=<S>/date=<YYYY-MM-DD>/hour=<HH>/` (SPEC §3)."""
    hour = parse_hour(hour)
    path = (dataset_dir(data_dir, dataset) / f"venue={check_venue(venue)}"
            / f"symbol={check_symbol(symbol)}" / f"date={hour:%Y-%m-%d}" / f"hour={hour:%H}")
    return _inside(Path(data_dir), path)


def partition_file(data_dir: Path, dataset: str, venue: str, symbol: str, hour: datetime) -> Path:
    return partition_dir(data_dir, dataset, venue, symbol, hour) / "part-0.parquet"
