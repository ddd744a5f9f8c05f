"""The book state at the end of an hour, saved by that hour's rebuild so the next hour goes on from
exactly there: `<DATA_DIR>/state/book/<venue>/<SYMBOL>/<YYYY-MM-DD>T<HH>.json`.

A checkpoint holds the sync machine's full state (book, buffer, open gap, grid position), the raw
file position it was taken at (file name, size and line), and the rows and gaps already produced
for later hours while finding the end of this one. It is only used when every raw file it read
is still there with the same size; otherwise the next hour replays from a snapshot instead.
Deleting checkpoints loses nothing: they only save re-reading.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import orjson

from midas.book.reader import RawSpan
from midas.layout import _inside, check_symbol, check_venue, format_hour, parse_hour
from midas.logs import log_kv

log = logging.getLogger("midas.book")
FORMAT_VERSION = 3          # 3: carried rows in exact units (kernels row layout)


@dataclass
class Checkpoint:
    venue: str
    symbol: str
    hour: datetime              # the hour whose end this is
    state: dict                 # BookSync.state()
    files: list[list]           # [[file name, size], ...] read up to and including the position
    line: int                   # last line processed in the last of `files`
    carry_rows: list[list]      # rows of later hours found while finishing this one (GridRows.as_lists)
    carry_gaps: list[list]      # gaps (closed) reaching into later hours
    resume: list                # [file name, frame offset, lines before it]: where to start reading


def checkpoint_path(data_dir: Path, venue: str, symbol: str, hour: datetime) -> Path:
    data_dir = Path(data_dir)
    path = (data_dir / "state" / "book" / check_venue(venue) / check_symbol(symbol)
            / f"{format_hour(parse_hour(hour))}.json")
    return _inside(data_dir, path)


def save_checkpoint(data_dir: Path, cp: Checkpoint) -> Path:
    path = checkpoint_path(data_dir, cp.venue, cp.symbol, cp.hour)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"version": FORMAT_VERSION, "venue": cp.venue, "symbol": cp.symbol,
            "hour": format_hour(cp.hour), "state": cp.state, "files": cp.files, "line": cp.line,
            "carry_rows": cp.carry_rows, "carry_gaps": cp.carry_gaps, "resume": cp.resume}
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}-{threading.get_ident()}")
    tmp.write_bytes(orjson.dumps(body))
    os.replace(tmp, path)
    return path


def remove_checkpoint(data_dir: Path, venue: str, symbol: str, hour: datetime) -> None:
    checkpoint_path(data_dir, venue, symbol, hour).unlink(missing_ok=True)


def load_checkpoint(data_dir: Path, venue: str, symbol: str, hour: datetime, spans: list[RawSpan],
                    depth: int, interval_us: int) -> tuple[Checkpoint, int, tuple[int, int, int]] | None:
    """The checkpoint at the end of `hour`, the index in `spans` of its position's file and where
    to start reading (file index, frame offset, lines before it), or None when there is none or
    it no longer fits the raw files or the settings (then: replay)."""
    path = checkpoint_path(data_dir, venue, symbol, hour)
    if not path.is_file():
        return None
    try:
        body = orjson.loads(path.read_bytes())
        state = body["state"]
        ok = (body.get("version") == FORMAT_VERSION and body["venue"] == venue
              and body["symbol"] == symbol and state["depth"] == depth
              and state["interval"] == interval_us)
        names = {s.path.name: i for i, s in enumerate(spans)}
        index = None
        if ok:
            for name, size in body["files"]:
                i = names.get(name)
                if i is None or spans[i].path.stat().st_size != size:
                    ok = False
                    break
                index = i
        resume_name, resume_offset, resume_line = body["resume"]
        resume_index = names.get(resume_name)
        if resume_index is None or index is None or resume_index > index:
            ok = False
        if not ok or index is None:
            log_kv(log, "checkpoint does not fit the raw files or settings; replaying instead",
                   level=logging.WARNING, file=path)
            return None
        cp = Checkpoint(venue, symbol, parse_hour(body["hour"]), state, body["files"], body["line"],
                        body["carry_rows"], body["carry_gaps"], body["resume"])
        return cp, index, (resume_index, resume_offset, resume_line)
    except (OSError, ValueError, KeyError, TypeError) as e:
        log_kv(log, "checkpoint unreadable; replaying instead", level=logging.WARNING, file=path,
               error=e)
        return None
