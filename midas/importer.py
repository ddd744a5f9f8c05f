"""`midas import`: recordings of `<local receive time, ns> <JSON as received>` lines -> SPEC §2 raw files.

This is the format of the recordings in shared/data/binance (written by hftbacktest's collector and
similar open-source recorders): plain or gzip text (several gzip members back to back are fine),
one WebSocket message per line, plus the bare REST depth snapshot `{"lastUpdateId", "bids", "asks"}`.

Each message becomes the raw record the collector would have written (via midas.wire), with
`local_ts` = the recording's time // 1000. Files rotate on the recording's local hour (part 0), so
a recording crossing midnight gives one file per local hour, exactly like a live capture. Unlike the
collector's files, the first file need not start with a snapshot: the rebuild buffers the diffs
before it (SPEC §1). Lines that are not valid Binance messages are reported with their line number
and skipped.
"""

from __future__ import annotations

import gzip
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from midas.errors import DataError, WireError
from midas.layout import check_symbol, check_venue, hour_of_us, raw_file_path
from midas.logs import log_kv
from midas.raw import RawFileWriter
from midas.wire import parse_depth_snapshot, parse_stream_message

log = logging.getLogger("midas.importer")

DEFAULT_DEPTH_LIMIT = 1000
FLUSH_EVERY_RECORDS = 5000   # one zstd frame per this many records, like the collector's flushes
MAX_PROBLEMS_KEPT = 1000


@dataclass
class ImportResult:
    recording: Path
    venue: str
    symbol: str
    files: list[Path] = field(default_factory=list)
    records: dict[str, int] = field(default_factory=dict)   # per record type
    skipped_other_symbols: int = 0
    problems: list[str] = field(default_factory=list)
    problem_count: int = 0
    seconds: float = 0.0


def _open_text(path: Path):
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rb")
    return open(path, "rb")


def _split(line: bytes, where: str) -> tuple[int, bytes]:
    head, sep, body = line.partition(b" ")
    if not sep or not head.isdigit():
        raise WireError(f"{where}: expected '<local time ns> <json>'")
    return int(head), body


HEAD_LINES = 10_000       # lines read up front for the symbols and the venue of a recording


def _first_messages(path: Path) -> tuple[list[str], dict | None]:
    """The symbols of the stream messages in the recording's first lines, in order of appearance,
    and its first diff payload."""
    symbols: dict[str, None] = {}
    diff = None
    with _open_text(path) as fh:
        for line_no, line in enumerate(fh, 1):
            if line_no > HEAD_LINES:
                break
            try:
                _, body = _split(line.rstrip(b"\r\n"), f"{path}:{line_no}")
                obj = orjson.loads(body)
            except (WireError, orjson.JSONDecodeError):
                continue
            data = obj.get("data") if isinstance(obj, dict) else None
            if isinstance(data, dict):
                if isinstance(data.get("s"), str):
                    symbols.setdefault(data["s"].upper())
                if diff is None and data.get("e") == "depthUpdate":
                    diff = data
    return list(symbols), diff


def _check_venue(path: Path, venue: str, diff: dict | None) -> None:
    """Futures diffs carry `pu`, spot diffs do not: refuse a recording of the other venue."""
    if diff is None:
        return
    if venue == "binance-futures" and "pu" not in diff:
        raise DataError(f"{path}: its diffs have no 'pu' field, so it is a spot recording: "
                        "use --venue binance")
    if venue == "binance" and "pu" in diff:
        raise DataError(f"{path}: its diffs have a 'pu' field, so it is a USD-M futures recording: "
                        "use --venue binance-futures")


def import_recording(path: Path, venue: str, data_dir: Path, symbol: str | None = None) -> ImportResult:
    """Turn one recording into raw files under data_dir/raw/<venue>/<SYMBOL>/.

    symbol: the symbol to import (messages of other symbols are skipped and counted); default: the
    symbol of the first stream message. Raises DataError when nothing could be imported, and
    RawFileError when a raw file of the same local hour exists already (imported before).
    """
    started = time.perf_counter()
    path = Path(path)
    venue = check_venue(venue)
    if not path.is_file():
        raise DataError(f"{path}: no such recording")
    seen, first_diff = _first_messages(path)
    _check_venue(path, venue, first_diff)
    if not symbol and not seen:
        raise DataError(f"{path}: no stream message with a symbol in the first lines; pass --symbol")
    symbol = check_symbol(symbol or seen[0])
    if seen and symbol not in seen:
        # A bare REST snapshot line names no symbol: imported under the wrong one, another
        # symbol's book would be filed as this one's.
        raise DataError(f"{path}: no {symbol} messages in its first {HEAD_LINES:,} lines (it holds "
                        f"{', '.join(seen)}); check --symbol")
    result = ImportResult(path, venue, symbol)
    writer: RawFileWriter | None = None
    writer_hour = None
    since_flush = 0

    def problem(msg: str) -> None:
        result.problem_count += 1
        if len(result.problems) < MAX_PROBLEMS_KEPT:
            result.problems.append(msg)

    try:
        with _open_text(path) as fh:
            for line_no, line in enumerate(fh, 1):
                line = line.rstrip(b"\r\n")
                if not line.strip():
                    continue
                where = f"{path}:{line_no}"
                try:
                    ns, body = _split(line, where)
                    local_ts = ns // 1000
                    obj = orjson.loads(body)
                    if isinstance(obj, dict) and "lastUpdateId" in obj:
                        levels = max(len(obj.get("bids") or []), len(obj.get("asks") or []))
                        rec = parse_depth_snapshot(obj, venue, symbol, local_ts,
                                                   levels or DEFAULT_DEPTH_LIMIT, where)
                    else:
                        rec = parse_stream_message(obj, venue, local_ts, where)
                except orjson.JSONDecodeError as e:
                    problem(f"{where}: invalid JSON ({e})")
                    continue
                except WireError as e:
                    problem(str(e))
                    continue
                if rec is None:
                    continue
                if rec["symbol"] != symbol:
                    result.skipped_other_symbols += 1
                    continue
                hour = hour_of_us(local_ts)
                if writer is None or hour != writer_hour:
                    if writer is not None:
                        result.files.append(writer.close())
                    writer = RawFileWriter(raw_file_path(data_dir, venue, symbol, hour, 0), fsync=False)
                    writer_hour = hour
                    since_flush = 0
                writer.write(rec)
                result.records[rec["type"]] = result.records.get(rec["type"], 0) + 1
                since_flush += 1
                if since_flush >= FLUSH_EVERY_RECORDS:
                    writer.flush()
                    since_flush = 0
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        problem(f"{path}: the recording is damaged after line {line_no}: {e}")
    finally:
        if writer is not None and not writer.closed:
            result.files.append(writer.close())
    result.seconds = time.perf_counter() - started
    if not result.records:
        raise DataError(
            f"{path}: nothing imported for {venue}/{symbol} ({result.problem_count} bad lines"
            + (f", first: {result.problems[0]}" if result.problems else "")
            + "); is --venue right?")
    log_kv(log, "imported recording", file=path, venue=venue, symbol=symbol,
           files=len(result.files), records=sum(result.records.values()),
           problems=result.problem_count, seconds=round(result.seconds, 2))
    return result
