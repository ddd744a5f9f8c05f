"""One symbol's raw files: rotation by time and size over `midas.raw.RawFileWriter` (SPEC §2).

Files are named by the local (wall-clock, UTC) hour they are opened in; part `n` counts up within
that hour (0, 1, ...), whether the file was split by size or by a sub-hour `FILE_ROTATION_HOURS`.
Time rotation happens at multiples of the rotation period since the epoch (with 1 h: at the top
of every hour).

Every file starts with a `snapshot` record, so each can be rebuilt on its own:

* A new file is opened only by `open_with_snapshot`. Until the service has a snapshot suitable to
  open it (see `SequenceTracker.snapshot_opens_file`), records keep going to the current file, in
  receive order. The rotation snapshot is thus the last thing that happened before the new file:
  nothing is duplicated across files and nothing is reordered.
* At start (no file open yet) records received before the first snapshot are held in memory
  (compressed into zstd frames at every flush) and written right after it, in receive order (their `local_ts` shows they came first). This is the
  only place where a record is not in receive order, and the only time records are not on disk
  within `FLUSH_INTERVAL_SECS` (normally well under a second).
* A run that ends before any snapshot arrived (REST unreachable) still writes what it received,
  to a file that then has no snapshot at its head and ends with a `shutdown` event.
"""

from __future__ import annotations

import errno
import math
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import orjson
import zstandard

from midas import wire
from midas.errors import CollectorError
from midas.layout import parse_raw_file_name, raw_file_path, raw_symbol_dir
from midas.raw import RawFileWriter

GB = 1 << 30
RAW_ZSTD_LEVEL = 1
_COMPRESSORS = threading.local()


def shared_compressor() -> zstandard.ZstdCompressor:
    """One zstd context per thread for every raw file: its tables are reused across files.

    Level 1: on the real recordings' records it takes ~30% less CPU than level 3 and its frames
    are ~5% smaller, from 20-line frames (many quiet symbols) to 35,000-line ones (bench part A).
    """
    cctx = getattr(_COMPRESSORS, "cctx", None)
    if cctx is None:
        cctx = _COMPRESSORS.cctx = zstandard.ZstdCompressor(level=RAW_ZSTD_LEVEL)
    return cctx


def local_hour(wall_secs: float) -> datetime:
    return datetime.fromtimestamp(int(wall_secs) // 3600 * 3600, tz=timezone.utc)


def next_rotation_time(wall_secs: float, period_secs: float) -> float:
    """The first multiple of `period_secs` (since the epoch) strictly after `wall_secs`."""
    return (math.floor(wall_secs / period_secs) + 1) * period_secs


def next_part(data_dir: Path, venue: str, symbol: str, hour: datetime) -> int:
    """The first unused part number of (symbol, local hour), counting final and `.partial` files."""
    day_dir = raw_symbol_dir(data_dir, venue, symbol) / f"{hour:%Y-%m-%d}"
    parts = [-1]
    if day_dir.is_dir():
        for path in day_dir.iterdir():
            info = parse_raw_file_name(path.name)
            if info is not None and info.symbol == symbol and info.hour == hour:
                parts.append(info.part)
    return max(parts) + 1


def describe_write_error(path: Path, err: OSError) -> str:
    if err.errno == errno.ENOSPC:
        what = "the disk is full (ENOSPC)"
    else:
        what = f"{err.strerror or err} (errno {err.errno})"
    return (f"cannot write raw file {path}: {what}. Collection stopped; every file closed before "
            f"is complete; free space or fix the disk, then start again (the .partial file is salvaged "
            f"at the next start)")


class SymbolFiles:
    """The raw files of one symbol: the open file, its rotation schedule, the startup buffer."""

    def __init__(self, data_dir: Path, venue: str, symbol: str, *, rotation_hours: float,
                 rotation_gb: float, wall_clock=time.time, fsync: bool = True):
        self.data_dir = Path(data_dir)
        self.venue = venue
        self.symbol = symbol
        self.period_secs = rotation_hours * 3600.0
        self.max_bytes = int(rotation_gb * GB)
        self.wall_clock = wall_clock
        self.fsync = fsync
        self.current: RawFileWriter | None = None
        self.rotate_at: float | None = None
        # Records received before the first snapshot: serialized lines (with their newline), compressed into zstd
        # frames at every flush (held in memory: ~10x smaller than the lines).
        self.startup_lines: list[bytes] = []
        self.startup_span: list[int | None] = [None, None]      # first/last local_ts of the lines
        self.startup_frames: list[tuple[bytes, int, int | None, int | None]] = []
        self.closed_files: list[Path] = []
        self.records_written = 0
        self.bytes_written = 0
        self.failed = False          # a write error: the open file must not be finalized

    # Writing -------------------------------------------------------------------------------------

    def write(self, record: dict) -> None:
        self.write_line(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE), record.get("local_ts"))

    def write_line(self, line: bytes, local_ts: int | None) -> None:
        """Write one serialized record ending with its newline (`local_ts`: the record's)."""
        current = self.current
        if current is not None:
            current.append_line(line, local_ts)
        else:
            self.startup_lines.append(line)
            if local_ts is not None:
                if self.startup_span[0] is None:
                    self.startup_span[0] = local_ts
                self.startup_span[1] = local_ts
        self.records_written += 1

    def event(self, event: str, detail: str, local_ts: int | None = None) -> None:
        ts = local_ts if local_ts is not None else time.time_ns() // 1000
        self.write(wire.event_record(self.venue, self.symbol, event, detail, ts))

    def flush(self) -> None:
        """Close a zstd frame with everything received since the last flush. Write errors stop."""
        writer = self.current
        if writer is None:
            self._pack_startup()
            return
        if not writer.pending:
            return
        try:
            self.bytes_written += writer.flush()
        except OSError as e:
            self.failed = True
            raise CollectorError(describe_write_error(writer.partial_path, e)) from e

    # Rotation ------------------------------------------------------------------------------------

    @property
    def has_file(self) -> bool:
        return self.current is not None

    def rotation_due(self, now_wall: float | None = None) -> str | None:
        """Why the current file should be rotated now ('time', 'size'), or None."""
        if self.current is None:
            return None
        now_wall = self.wall_clock() if now_wall is None else now_wall
        if self.rotate_at is not None and now_wall >= self.rotate_at:
            return "time"
        if self.current.stats.bytes >= self.max_bytes:
            return "size"
        return None

    def open_with_snapshot(self, snapshot: dict | None, reason: str,
                           after_snapshot: list[dict] | None = None) -> Path:
        """Close the current file (if any) and open the next one, `snapshot` as its first record.

        `after_snapshot` records (e.g. `salvaged` events) follow the snapshot; then the records
        held since start. `snapshot=None` only when depth is not collected (no book to anchor).
        """
        now_wall = self.wall_clock()
        hour = local_hour(now_wall)
        part = next_part(self.data_dir, self.venue, self.symbol, hour)
        final = raw_file_path(self.data_dir, self.venue, self.symbol, hour, part)
        if self.current is not None:
            self.event("rotated", f"{reason}: continues in {final.name}")
            self._close_current()
        try:
            writer = RawFileWriter(final, fsync=self.fsync, compressor=shared_compressor())
        except OSError as e:
            raise CollectorError(describe_write_error(final, e)) from e
        self.current = writer
        if snapshot is not None:
            writer.write(snapshot)
            self.records_written += 1
        for rec in after_snapshot or ():
            writer.write(rec)
            self.records_written += 1
        self._pack_startup()
        try:
            for frame, records, first_ts, last_ts in self.startup_frames:
                self.bytes_written += writer.write_frame(frame, records, first_ts, last_ts)
        except OSError as e:
            self.failed = True
            raise CollectorError(describe_write_error(writer.partial_path, e)) from e
        self.startup_frames.clear()
        self.rotate_at = next_rotation_time(now_wall, self.period_secs)
        return final

    def _pack_startup(self) -> None:
        """Compress the startup lines held since the last flush into one frame."""
        if not self.startup_lines:
            return
        frame = shared_compressor().compress(b"".join(self.startup_lines))
        self.startup_frames.append((frame, len(self.startup_lines), *self.startup_span))
        self.startup_lines.clear()
        self.startup_span = [None, None]

    def _close_current(self) -> Path:
        writer = self.current
        assert writer is not None
        try:
            before = writer.stats.bytes
            path = writer.close()
            self.bytes_written += writer.stats.bytes - before
        except OSError as e:
            self.failed = True
            writer.abort()
            self.current = None
            raise CollectorError(describe_write_error(writer.partial_path, e)) from e
        self.current = None
        self.closed_files.append(path)
        return path

    def close(self, detail: str) -> Path | None:
        """Write a `shutdown` event and finalize the file (also one holding only startup records)."""
        if self.failed:
            self.abort()
            return None
        if self.current is None and not self.startup_lines and not self.startup_frames:
            return None
        if self.current is None:
            self.event("shutdown", detail + "; no snapshot arrived before the end, this file has none")
            self.open_with_snapshot(None, "shutdown")
        else:
            self.event("shutdown", detail)
        return self._close_current()

    def abort(self) -> None:
        """After a write error: leave the open file as `.partial` (salvaged at the next start)."""
        if self.current is not None:
            self.current.abort()
            self.current = None
