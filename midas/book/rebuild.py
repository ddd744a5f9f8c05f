"""`rebuild_hour`: the raw files of one symbol -> clean/book, clean/trades and clean/gaps of one
exchange-time hour H (SPEC §3).

Which records belong to H:
- book rows: the grid times in [H, H+1h); each row is the book after every diff with E <= its time.
  The book starts from the state at the end of H-1: the checkpoint the rebuild of H-1 saved, or a
  replay from the raw file the local clock opened before H - MAX_CLOCK_SKEW (its first record is a
  snapshot). Records are then read in receive order, across local-hour files, until the book can
  produce nothing more for H: a diff with E >= H+1h was read and no diff with E < H+1h waits in
  the out-of-sync buffer. The state there is saved as the checkpoint of H, with the rows and gaps
  of H+1 already produced, so that hour by hour gives the same rows as one pass.
- trades: trade time T in [H, H+1h), from every file whose local span is within MAX_CLOCK_SKEW of
  H; duplicates (same trade id) removed; ordered by (T, trade id).
- gaps: every interval without a valid book that overlaps H, clipped to H.
Problems (bad lines, unknown types, torn tails) never stop the job: they are reported with file
and line; a lost diff shows up as a gap through the sequence check.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import orjson

from midas.book.checkpoint import Checkpoint, load_checkpoint, remove_checkpoint, save_checkpoint
from midas.book.grid import GridRows
from midas.book.partitions import (GAPS_SCHEMA, TRADES_SCHEMA, book_schema, write_book_partition,
                                   write_partition)
from midas.book.reader import RawSpan, raw_spans
from midas.book.scan import MAX_CLOCK_SKEW_US, scan_records
from midas.book.sync import BookSync
from midas.config import Settings
from midas.errors import DataError
from midas.layout import (US_PER_HOUR, check_symbol, check_venue, format_hour, hour_of_us,
                          hour_start_us, parse_hour, partition_file)
from midas.logs import log_kv

log = logging.getLogger("midas.book")



@dataclass
class RebuildResult:
    venue: str
    symbol: str
    hour: datetime
    rows: dict[str, int]                       # "book", "trades", "gaps" -> rows written
    gaps: list[dict]                           # the gap rows of the hour
    problems: list[str]                        # "file:line: what was wrong" (first MAX_PROBLEMS_KEPT)
    paths: dict[str, Path]
    seconds: float
    problem_count: int = 0
    complete: bool = True                      # False: the data ends inside the hour
    started_from: str = "replay"               # "checkpoint" or "replay"
    counts: dict[str, int] = field(default_factory=dict)


def _clip_gaps(gaps: list, lo: int, hi: int) -> list[tuple]:
    out = []
    for start, end, reason, first_id, last_id in gaps:
        if start < hi and end > lo:
            out.append((max(start, lo), min(end, hi), reason, first_id, last_id))
    return sorted(out)


def _trade_rows(trades: dict[int, tuple]) -> list[tuple]:
    """Rows ordered by (T, trade id): plain tuple order, as trade ids are unique (the dict's keys)."""
    rows = list(trades.values())
    rows.sort()
    return rows


def missing_trade_ids(rows: list[tuple]) -> int:
    """Trade ids skipped between the hour's first and last trade. Binance numbers each symbol's
    trades without holes (both real recordings: 0 jumps in 30,605 trades), so a jump means trades
    were lost, e.g. while the trade stream was disconnected: the book has a declared gap there,
    the trades have this count."""
    if not rows:
        return 0
    ids = [row[1] for row in rows]          # unique: the rows are keyed by trade id
    return max(ids) - min(ids) + 1 - len(ids)


def _trade_span(spans: list[RawSpan], lo: int, hi: int) -> tuple[int, int] | None:
    """First and last index of the files whose local span comes within MAX_CLOCK_SKEW of [lo, hi)."""
    idx = [i for i, s in enumerate(spans)
           if s.start_us < hi + MAX_CLOCK_SKEW_US and s.end_us > lo - MAX_CLOCK_SKEW_US]
    return (idx[0], idx[-1]) if idx else None


# FILE_ROTATION_HOURS is at most 24: a file opened longer ago than this cannot hold the events
# leading into an hour. Without this bound an unrelated older capture (another session, an
# imported recording of another year, possibly with higher update ids) would be replayed into the
# hour and its diffs taken for duplicates: an hour of data silently turned into one gap.
MAX_FILE_REACH_US = 25 * US_PER_HOUR


def _replay_start(spans: list[RawSpan], lo: int) -> int:
    """The file to replay from: the last one opened at or before lo - MAX_CLOCK_SKEW and at most
    MAX_FILE_REACH before the hour; without one, the first file opened after that."""
    recent = [i for i, s in enumerate(spans) if s.start_us > lo - MAX_FILE_REACH_US]
    if not recent:
        return len(spans) - 1
    before = [i for i in recent if spans[i].start_us <= lo - MAX_CLOCK_SKEW_US]
    return before[-1] if before else recent[0]


_gc_lock = threading.Lock()
_gc_paused = 0          # rebuilds running with the cyclic garbage collector paused
_gc_was_enabled = False


@contextmanager
def _cyclic_gc_paused():
    """Pause Python's cyclic garbage collector while a rebuild runs. A rebuild allocates millions
    of small containers (parsed records, levels, rows) that are freed by reference counting; the
    collector's repeated passes over them cost ~7% of the time and find nothing. Nested and
    concurrent rebuilds (threads) share one pause; the first one in remembers whether it was on."""
    global _gc_paused, _gc_was_enabled
    with _gc_lock:
        if _gc_paused == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_paused += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_paused -= 1
            if _gc_paused == 0 and _gc_was_enabled:
                gc.enable()


def rebuild_hour(settings: Settings, venue: str, symbol: str, hour: datetime | str) -> RebuildResult:
    """Rebuild one exchange-time hour of one symbol and write its clean/book, clean/trades and
    clean/gaps partitions (each replaced whole). Raises DataError when no raw file is near the hour."""
    with _cyclic_gc_paused():
        return _rebuild_hour(settings, venue, symbol, hour)


def _rebuild_hour(settings: Settings, venue: str, symbol: str, hour: datetime | str) -> RebuildResult:
    started = time.perf_counter()
    venue, symbol, hour = check_venue(venue), check_symbol(symbol), parse_hour(hour)
    lo = hour_start_us(hour)
    hi = lo + US_PER_HOUR
    data_dir = Path(settings.data_dir)
    depth, interval = settings.order_book_depth, settings.snapshot_interval_us
    spans = raw_spans(data_dir, venue, symbol)
    trade_span = _trade_span(spans, lo, hi)
    if trade_span is None:
        raise DataError(f"no raw files of {venue}/{symbol} near hour {format_hour(hour)} under "
                        f"{data_dir / 'raw'}; collect or import data first")
    previous = load_checkpoint(data_dir, venue, symbol, hour - timedelta(hours=1), spans, depth, interval)
    carry_rows = GridRows(depth, 1)
    carry_gaps: list = []
    read_from = None
    if previous is not None:
        cp, index, read_from = previous
        machine = BookSync.from_state(venue, cp.state, emit_from=lo)
        machine_first, machine_after = index, cp.line
        carry_rows.extend_lists(cp.carry_rows)
        carry_gaps = [tuple(g) for g in cp.carry_gaps]
        started_from = "checkpoint"
    else:
        machine = BookSync(venue, depth, interval, emit_from=lo)
        machine_first, machine_after = _replay_start(spans, lo), 0
        started_from = "replay"
    scan = scan_records(spans, venue, symbol, settings.process_batch_size, machine, machine_first,
                        machine_after, trade_span[0], trade_span[1], lo, hi, hi, read_from)
    complete = scan.stop_index is not None
    open_gap = None
    if complete:
        state = machine.state()
        if machine.gap is not None and machine.gap[0] is not None:
            open_gap = (machine.gap[0], hi, machine.gap[2], machine.gap[3], None)
    else:
        machine.finish()
    rows = carry_rows.concat(machine.rows)
    book_rows = rows.between(lo, hi)
    all_gaps = carry_gaps + machine.gaps + ([open_gap] if open_gap else [])
    gap_rows = _clip_gaps(all_gaps, lo, hi)
    trade_rows = _trade_rows(scan.trades)

    paths = {name: partition_file(data_dir, name, venue, symbol, hour)
             for name in ("book", "trades", "gaps")}
    group = settings.parquet_row_group_size
    write_book_partition(paths["book"], book_schema(depth), book_rows, group)
    write_partition(paths["trades"], TRADES_SCHEMA, trade_rows, group)
    write_partition(paths["gaps"], GAPS_SCHEMA, gap_rows, group)

    if complete:
        files = [[spans[i].path.name, spans[i].path.stat().st_size]
                 for i in range(min(machine_first, scan.resume[0]), scan.stop_index + 1)]
        resume = [spans[scan.resume[0]].path.name, scan.resume[1], scan.resume[2]]
        save_checkpoint(data_dir, Checkpoint(
            venue, symbol, hour, state, files, scan.stop_line,
            rows.between(hi, None).as_lists(),
            [list(g) for g in carry_gaps + machine.gaps if g[1] > hi], resume))
    else:
        remove_checkpoint(data_dir, venue, symbol, hour)

    counts = dict(scan.counts)
    counts.update(machine.counts)
    counts["trade_ids_missing"] = missing_trade_ids(trade_rows)
    gap_dicts = [dict(zip(GAPS_SCHEMA.names, g)) for g in gap_rows]
    result = RebuildResult(
        venue=venue, symbol=symbol, hour=hour,
        rows={"book": book_rows.n, "trades": len(trade_rows), "gaps": len(gap_rows)},
        gaps=gap_dicts, problems=scan.problems, paths=paths,
        seconds=time.perf_counter() - started, problem_count=scan.problem_count,
        complete=complete, started_from=started_from, counts=counts)
    log_kv(log, "rebuilt hour", venue=venue, symbol=symbol, hour=format_hour(hour),
           book=book_rows.n, trades=len(trade_rows), trade_ids_missing=counts["trade_ids_missing"],
           gaps=len(gap_rows), problems=scan.problem_count, start=started_from, complete=complete,
           seconds=round(result.seconds, 3))
    for p in scan.problems[:20]:
        log_kv(log, "data problem", level=logging.WARNING, venue=venue, symbol=symbol,
               hour=format_hour(hour), problem=p)
    return result


def raw_hours(settings: Settings, venue: str, symbol: str) -> list[datetime]:
    """The exchange-time UTC hours the raw files of a symbol cover (from each file's first and last
    records with an exchange time)."""
    from midas.raw import RawFileReader

    hours: set[datetime] = set()
    for span in raw_spans(Path(settings.data_dir), check_venue(venue), check_symbol(symbol)):
        first = last = None
        tail: list[bytes] = []
        for _, line in RawFileReader(span.path).iter_lines():
            if first is None:
                first = _record_time(line)
            tail.append(line)
            if len(tail) > 64:
                del tail[:32]
        for line in reversed(tail):
            last = _record_time(line)
            if last is not None:
                break
        if first is None or last is None:
            continue
        lo, hi = min(first, last), max(first, last)
        h = hour_of_us(lo)
        while hour_start_us(h) <= hi:
            hours.add(h)
            h += timedelta(hours=1)
    return sorted(hours)


def _record_time(line: bytes) -> int | None:
    try:
        rec = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if type(rec) is not dict:
        return None
    ts = rec.get("trade_ts") if rec.get("type") == "trade" else rec.get("exchange_ts")
    return ts if type(ts) is int else None


@dataclass
class HourRows:
    book: list[tuple] = field(default_factory=list)
    trades: list[tuple] = field(default_factory=list)
    gaps: list[tuple] = field(default_factory=list)


def rebuild_one_pass(settings: Settings, venue: str, symbol: str) -> tuple[dict[datetime, HourRows], list[str]]:
    """Every hour of a symbol in one pass over all raw files, in memory, nothing written.

    The reference the hour-by-hour rebuild must equal (rows, trades and gaps per hour); meant for
    verification on modest amounts of data (it holds everything in memory). Returns the rows per
    exchange-time hour and the problems found.
    """
    venue, symbol = check_venue(venue), check_symbol(symbol)
    spans = raw_spans(Path(settings.data_dir), venue, symbol)
    machine = BookSync(venue, settings.order_book_depth, settings.snapshot_interval_us)
    out: dict[datetime, HourRows] = {}
    if not spans:
        return out, []
    scan = scan_records(spans, venue, symbol, settings.process_batch_size, machine, 0, 0, 0,
                        len(spans) - 1, None, None, None)
    machine.finish()

    def bucket(ts: int) -> HourRows:
        return out.setdefault(hour_of_us(ts), HourRows())

    for row in machine.rows.as_tuples():
        bucket(row[0]).book.append(row)
    for t in _trade_rows(scan.trades):
        bucket(t[0]).trades.append(t)
    for gap in machine.gaps:
        h = hour_of_us(gap[0])
        while hour_start_us(h) < gap[1] or hour_start_us(h) == gap[0]:
            lo = hour_start_us(h)
            bucket(lo).gaps.extend(_clip_gaps([gap], lo, lo + US_PER_HOUR))
            h += timedelta(hours=1)
    for rows in out.values():
        rows.gaps.sort()
    return out, scan.problems
