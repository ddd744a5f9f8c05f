"""Which exchange-time hours are ready to process, and a ledger of what was processed from what.

An exchange-time hour H of a symbol is *pending* when

1. some final raw file holds events of H (an event's hour is the hour of its `exchange_ts`, or
   `trade_ts` for trades); because the collector files events by the *local* clock, which differs
   from the exchange's by seconds, H's events can sit in the neighbouring local-hour files too,
2. H is closed: `now` is past the end of H by `CLOSE_MARGIN` (the next hour has started),
3. its raw files are final: no `.partial` file (a file the collector is still writing) holds or
   may still receive events of H. Records are appended in receive order, so the first records of
   a `.partial` tell the earliest exchange hour it can hold: with the local clock behind the
   exchange's, hour H is ready as soon as the next hour has started; with it ahead, the first
   seconds of the next local-hour file hold H's last events and H waits until that file is final,
   and
4. it was never processed, or the raw files holding its events changed since (a file added,
   removed, grown or rewritten: size or modification time differ from the ledger's record), or
   it is *stale*: its windowed features (SPEC §3: `ofi_cumulative` runs from 00:00 UTC, `ofi`
   and `ofi_10` of 00:00 read the previous day's last rows) read the book of an hour that is
   pending or was processed after it. Hours of one symbol must be processed in hour order.

State lives in `DATA_DIR/state/`, written atomically (temporary file, fsync, rename) under a file
lock so parallel tasks and workers can share it:

- `raw_index.json`: per raw file its size, mtime and the exchange hours of its events (a file is
  read once; a changed file is read again),
- `processed.json`: per venue/symbol/hour the raw files it was processed from, when, and its rows.

Deleting `state/` loses nothing but time: every hour becomes pending again (and is re-processed
idempotently, partitions are replaced whole).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, NamedTuple

import orjson

from midas.config import Settings
from midas.errors import (CatalogError, CatalogLockedError, ConfigError, DataError,
                          LayoutError)
from midas.layout import (US_PER_HOUR, check_symbol, format_hour, hour_of_us, hours_between,
                          list_raw_files, parse_hour, parse_raw_file_name)
from midas.logs import log_kv
from midas.raw import RawFileReader

if TYPE_CHECKING:
    from midas.pipeline import HourSummary

log = logging.getLogger("midas.scheduling")

CLOSE_MARGIN = timedelta(minutes=1)
STATE_DIR_NAME = "state"
LEDGER_NAME = "processed.json"
RAW_INDEX_NAME = "raw_index.json"
_LOCK_NAME = ".state.lock"
# Events of different streams can be received out of exchange-time order by this much.
REORDER_TOLERANCE_US = 500_000
_PARTIAL_HEAD_RECORDS = 2000
_STATE_VERSION = 1


class HourKey(NamedTuple):
    """One unit of hourly work: (venue, symbol, exchange-time hour)."""

    venue: str
    symbol: str
    hour: datetime


@dataclass(frozen=True)
class HourStatus:
    """Where one hour stands: `waiting` (open, or raw files still being written), `pending` (never
    processed), `changed` or `stale` (processed, but to be processed again), `processed`."""

    venue: str
    symbol: str
    hour: datetime
    state: str
    reason: str
    raw_files: tuple[str, ...]

    @property
    def key(self) -> HourKey:
        return HourKey(self.venue, self.symbol, self.hour)


# State files -------------------------------------------------------------------------------------

def state_dir(settings: Settings) -> Path:
    return Path(settings.data_dir) / STATE_DIR_NAME


@contextmanager
def _state_lock(settings: Settings) -> Iterator[None]:
    directory = state_dir(settings)
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / _LOCK_NAME, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _read_json(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {"version": _STATE_VERSION}
    try:
        data = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as e:
        # Written atomically, so this is damage from outside MIDAS; starting over is safe.
        log_kv(log, "state file unreadable, starting it over", logging.WARNING, file=path, error=e)
        return {"version": _STATE_VERSION}
    if not isinstance(data, dict) or data.get("version") != _STATE_VERSION:
        log_kv(log, "state file of another version, starting it over", logging.WARNING, file=path)
        return {"version": _STATE_VERSION}
    return data


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _hour_id(venue: str, symbol: str, hour: datetime) -> str:
    return f"{venue}/{symbol}/{format_hour(hour)}"


# Raw file index ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class RawFileFacts:
    path: str            # relative to DATA_DIR
    size: int
    mtime_ns: int
    hours: tuple[str, ...]   # exchange hours (YYYY-MM-DDTHH) of the file's events

    @property
    def fingerprint(self) -> list[int]:
        return [self.size, self.mtime_ns]


def event_hours_of_file(path: Path) -> tuple[str, ...]:
    """The exchange hours of a raw file's events (by `exchange_ts`, and `trade_ts` for trades)."""
    hours: set[int] = set()
    reader = RawFileReader(Path(path))
    for _, record in reader.iter_records():
        for field in ("exchange_ts", "trade_ts"):
            ts = record.get(field)
            if isinstance(ts, int):
                hours.add(ts // US_PER_HOUR)
    for problem in reader.problems:
        log_kv(log, "raw file damage ignored for scheduling", logging.WARNING, problem=problem)
    return tuple(format_hour(datetime.fromtimestamp(h * 3600, tz=timezone.utc)) for h in sorted(hours))


def index_raw_files(settings: Settings, venue: str, symbol: str) -> list[RawFileFacts]:
    """Facts of every final raw file of a symbol; files unchanged since the last call are not re-read."""
    data_dir = Path(settings.data_dir)
    files = list_raw_files(data_dir, venue, symbol)
    with _state_lock(settings):
        index_path = state_dir(settings) / RAW_INDEX_NAME
        index = _read_json(index_path)
        entries: dict[str, Any] = index.setdefault("files", {})
        facts: list[RawFileFacts] = []
        changed = False
        for path in files:
            rel = path.relative_to(data_dir).as_posix()
            st = path.stat()
            known = entries.get(rel)
            if not known or known.get("size") != st.st_size or known.get("mtime_ns") != st.st_mtime_ns:
                started = time.monotonic()
                hours = event_hours_of_file(path)
                known = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "hours": list(hours)}
                entries[rel] = known
                changed = True
                log_kv(log, "raw file indexed", file=rel, hours=",".join(hours) or "none",
                       seconds=f"{time.monotonic() - started:.2f}")
            facts.append(RawFileFacts(rel, st.st_size, st.st_mtime_ns, tuple(known["hours"])))
        prefix = f"raw/{venue}/{check_symbol(symbol)}/"
        present = {f.path for f in facts}
        for rel in [r for r in entries if r.startswith(prefix) and r not in present]:
            del entries[rel]
            changed = True
        if changed:
            _write_json_atomic(index_path, index)
    return facts


def _partial_earliest_hour(path: Path) -> datetime:
    """The earliest exchange hour a `.partial` raw file holds or may still receive events of.

    Records arrive in receive order, so the events appended later are later in exchange time too
    (up to `REORDER_TOLERANCE_US` of reordering between streams): the first records decide. An empty
    `.partial` opened in local hour L may receive events of hour L - 1 h (local clock ahead).
    """
    earliest: int | None = None
    reader = RawFileReader(Path(path))
    for count, (_, record) in enumerate(reader.iter_records()):
        for field in ("exchange_ts", "trade_ts"):
            ts = record.get(field)
            if isinstance(ts, int) and (earliest is None or ts < earliest):
                earliest = ts
        if count >= _PARTIAL_HEAD_RECORDS:
            break
    if earliest is None:
        info = parse_raw_file_name(Path(path).name)
        return info.hour - timedelta(hours=1)
    return hour_of_us(earliest - REORDER_TOLERANCE_US)


def _partials_block_from(data_dir: Path, venue: str, symbol: str) -> tuple[datetime | None, str | None]:
    """The first hour that `.partial` raw files may still add events to (None if there is none)."""
    first: datetime | None = None
    name: str | None = None
    for path in list_raw_files(data_dir, venue, symbol, partial=True):
        if parse_raw_file_name(path.name) is None:
            continue
        earliest = _partial_earliest_hour(path)
        if first is None or earliest < first:
            first, name = earliest, path.name
    return first, name


# Hour states -------------------------------------------------------------------------------------

def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(timezone.utc)
    return now if now.tzinfo else now.replace(tzinfo=timezone.utc)


def _hour_files(facts: list[RawFileFacts]) -> dict[str, list[RawFileFacts]]:
    by_hour: dict[str, list[RawFileFacts]] = {}
    for f in facts:
        for h in f.hours:
            by_hour.setdefault(h, []).append(f)
    return by_hour


def hour_statuses(settings: Settings, now: datetime | None = None,
                  symbols: list[str] | None = None) -> list[HourStatus]:
    """The state of every exchange hour that the final raw files of the configured symbols cover:
    `waiting`, `pending` (never processed), `changed` (raw files changed), `stale` (an hour its
    features read was or will be reprocessed after it) or `processed`."""
    now = _now(now)
    data_dir = Path(settings.data_dir)
    venue = settings.venue
    with _state_lock(settings):
        ledger = _read_json(state_dir(settings) / LEDGER_NAME).get("hours", {})
    out: list[HourStatus] = []
    for symbol in (symbols or settings.symbols):
        symbol = check_symbol(symbol)
        by_hour = _hour_files(index_raw_files(settings, venue, symbol))
        blocked_from, partial_name = _partials_block_from(data_dir, venue, symbol)
        mine = {parse_hour(k.rsplit("/", 1)[1]): v for k, v in ledger.items()
                if k.startswith(f"{venue}/{symbol}/")}
        seqs = {h: int(v.get("seq", 0)) for h, v in mine.items()}
        book_seqs = {h: int(v.get("book_seq", v.get("seq", 0))) for h, v in mine.items()}
        roots: list[datetime] = []          # hours whose book will change in this round
        for hour_text in sorted(by_hour):
            hour = parse_hour(hour_text)
            files = by_hour[hour_text]
            names = tuple(f.path for f in files)
            fingerprint = {f.path: f.fingerprint for f in files}
            done = ledger.get(_hour_id(venue, symbol, hour))
            if now < hour + timedelta(hours=1) + CLOSE_MARGIN:
                state, reason = "waiting", "the hour has not closed yet"
            elif blocked_from is not None and hour >= blocked_from:
                state, reason = "waiting", (f"raw file {partial_name} is still being written (left by a "
                                            "crash? the next collector start finalizes it)")
            elif done is None:
                state, reason = "pending", "never processed"
            elif done.get("raw_files") != fingerprint:
                state, reason = "changed", "raw files changed since it was processed"
            else:
                state, reason = _staleness(hour, seqs, book_seqs, roots) or (
                    "processed", f"processed at {done.get('processed_at')}")
            if state in ("pending", "changed"):
                roots.append(hour)
            out.append(HourStatus(venue, symbol, hour, state, reason, names))
    out.sort(key=lambda s: (s.hour, s.symbol))
    return out


def _feature_inputs(hour: datetime) -> tuple[datetime, datetime]:
    """The hours whose books the features of `hour` read: [first, hour), i.e. the earlier hours of
    its UTC day (ofi_cumulative) and the last hour of the previous day (ofi, ofi_10 at 00:00)."""
    day_start = hour.replace(hour=0)
    return day_start - timedelta(hours=1), hour


def _staleness(hour: datetime, seqs: dict[datetime, int], book_seqs: dict[datetime, int],
               roots: list[datetime]) -> tuple[str, str] | None:
    """("stale", why) when the book of an hour the features of `hour` read changed after `hour` was
    processed, or will change in this round (a pending or changed hour)."""
    first, end = _feature_inputs(hour)
    for root in reversed(roots):             # roots are in hour order: the latest ones matter
        if root < first:
            break
        if root < end:
            return "stale", f"its features read hour {format_hour(root)}, which is pending"
    own = seqs.get(hour, 0)
    other = first
    while other < end:                       # at most 24 hours: the day so far and 23:00 before it
        if book_seqs.get(other, 0) > own:
            return "stale", f"its features read hour {format_hour(other)}, rebuilt after it"
        other += timedelta(hours=1)
    return None


PENDING_STATES = ("pending", "changed", "stale")


def pending_hours(settings: Settings, now: datetime | None = None) -> list[HourKey]:
    """Every closed hour with final raw files, never processed or whose raw files changed, for every
    configured symbol, oldest first (after an outage this is the whole backlog, not only the last hour).

    Also the hours whose windowed features read a (re)processed hour (`stale`): the later hours of
    the same UTC day (ofi_cumulative runs from 00:00) and, after the last hour of a day, the next day.
    """
    return [s.key for s in hour_statuses(settings, now) if s.state in PENDING_STATES]


def ready_hours(settings: Settings, start: datetime | str, end: datetime | str,
                symbols: list[str] | None = None, now: datetime | None = None
                ) -> tuple[list[HourKey], list[HourStatus]]:
    """For a backfill: the hours from start to end (both included) that have final raw files and
    are closed, whatever the ledger says; and, separately, those of the range still waiting."""
    wanted = {format_hour(h) for h in hours_between(parse_hour(start), parse_hour(end))}
    ready: list[HourKey] = []
    waiting: list[HourStatus] = []
    for status in hour_statuses(settings, now, symbols):
        if format_hour(status.hour) not in wanted:
            continue
        (waiting.append(status) if status.state == "waiting" else ready.append(status.key))
    return ready, waiting


# Ledger ------------------------------------------------------------------------------------------

def hour_fingerprint(settings: Settings, venue: str, symbol: str, hour: datetime) -> dict[str, list[int]]:
    """The raw files holding events of an hour, as {path: [size, mtime_ns]}."""
    hour_text = format_hour(parse_hour(hour))
    return {f.path: f.fingerprint for f in index_raw_files(settings, venue, symbol) if hour_text in f.hours}


def record_processed(settings: Settings, venue: str, symbol: str, hour: datetime,
                     fingerprint: dict[str, list[int]], details: dict[str, Any] | None = None) -> None:
    """Remember that an hour was processed from these raw files (atomically, under the state lock)."""
    hour = parse_hour(hour)
    symbol = check_symbol(symbol)
    with _state_lock(settings):
        path = state_dir(settings) / LEDGER_NAME
        ledger = _read_json(path)
        ledger["seq"] = int(ledger.get("seq", 0)) + 1
        hours = ledger.setdefault("hours", {})
        before = hours.get(_hour_id(venue, symbol, hour))
        # The hour's book changed unless it was rebuilt from the very same raw files.
        same_book = before is not None and before.get("raw_files") == fingerprint
        book_seq = int(before.get("book_seq", before.get("seq", 0))) if same_book else ledger["seq"]
        entry = {"raw_files": fingerprint, "seq": ledger["seq"], "book_seq": book_seq,
                 "processed_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        entry.update(details or {})
        hours[_hour_id(venue, symbol, hour)] = entry
        _write_json_atomic(path, ledger)


def processed_hours(settings: Settings) -> dict[str, dict[str, Any]]:
    """The ledger: `venue/SYMBOL/YYYY-MM-DDTHH` -> raw files, processed_at, rows, gaps, seconds."""
    with _state_lock(settings):
        return _read_json(state_dir(settings) / LEDGER_NAME).get("hours", {})


def process_and_record(settings: Settings, venue: str, symbol: str, hour: datetime | str) -> HourSummary:
    """Run the hour job (rebuild -> features -> catalog) and record it in the ledger.

    The raw files are fingerprinted *before* processing: a file that changes while the hour runs
    makes the hour pending again instead of being silently marked done.
    """
    from midas.pipeline import process_hour

    hour = parse_hour(hour)
    symbol = check_symbol(symbol)
    fingerprint = hour_fingerprint(settings, venue, symbol, hour)
    summary = process_hour(settings, venue, symbol, hour)
    record_processed(settings, venue, symbol, hour, fingerprint, {
        "rows": dict(summary.rows), "gaps": summary.gaps, "trades_missing": summary.trades_missing,
        "seconds": round(summary.seconds, 3)})
    log_kv(log, "hour processed", venue=venue, symbol=symbol, hour=format_hour(hour),
           rows=json.dumps(dict(summary.rows), separators=(",", ":")), gaps=summary.gaps,
           seconds=f"{summary.seconds:.2f}")
    return summary


def _row(venue: str, symbol: str, hour: datetime, rows: dict[str, int], gaps: int, seconds: float
         ) -> dict[str, Any]:
    return {"venue": venue, "symbol": symbol, "hour": format_hour(hour),
            "rows": ", ".join(f"{k}={v}" for k, v in sorted(rows.items())),
            "gaps": gaps, "seconds": round(float(seconds), 2)}


def summary_row(summary: Any) -> dict[str, Any]:
    """One row of the hourly summary table: symbol, hour, rows, gaps, seconds."""
    return _row(summary.venue, summary.symbol, summary.hour, dict(summary.rows), summary.gaps,
                summary.seconds)


def processed_rows(settings: Settings, keys: list[HourKey]) -> list[dict[str, Any]]:
    """Summary rows (as `summary_row`) of these hours from the ledger, oldest first; hours the
    ledger does not know are left out."""
    ledger = processed_hours(settings)
    out = []
    for key in sorted(keys, key=lambda k: (k.hour, k.symbol)):
        entry = ledger.get(_hour_id(key.venue, key.symbol, key.hour))
        if entry is not None:
            out.append(_row(key.venue, key.symbol, key.hour, entry.get("rows", {}), entry.get("gaps", 0),
                            entry.get("seconds", 0.0)))
    return out


def worth_retrying(error: BaseException) -> bool:
    """Whether a failed hour job may succeed if simply run again: yes for a locked catalog, I/O
    errors and anything unexpected; no for bad input or configuration (DataError, LayoutError,
    ConfigError) and a catalog that cannot be opened at all (CatalogError other than
    CatalogLockedError): those need a person, and retrying only delays the alert."""
    if isinstance(error, CatalogLockedError):
        return True
    return not isinstance(error, (DataError, LayoutError, ConfigError, CatalogError))
