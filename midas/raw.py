"""Raw files (SPEC §2): zstd-compressed JSON lines, one independent zstd frame per flush.

`RawFileWriter` writes one file under its `.partial` name and renames it to the final name when
closed. `RawFileReader` reads a file frame after frame and never raises on damage at the tail: a
torn last frame or a last line without newline is dropped and reported in `problems`.
`salvage_partial` turns a `.partial` left by a crash into a final file holding every complete record.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import orjson
import zstandard

from midas.errors import RawFileError

PARTIAL_SUFFIX = ".partial"
_READ_CHUNK = 1 << 20


def _dumps_line(record: dict) -> bytes:
    return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)


@dataclass
class RawFileStats:
    path: Path
    records: int = 0
    bytes: int = 0
    first_local_ts: int | None = None
    last_local_ts: int | None = None


class RawFileWriter:
    """Writes one raw file: `<final>.partial` while open, renamed to `<final>` by `close()`.

    Each `flush()` compresses what was written since the previous flush as one complete zstd frame
    and appends it, so a crash loses at most the unflushed records.
    """

    def __init__(self, final_path: Path, *, level: int = 3, fsync: bool = True,
                 compressor: zstandard.ZstdCompressor | None = None):
        # `compressor`: one ZstdCompressor shared by many writers of one thread (each context keeps
        # about a megabyte of tables: 200 open files would otherwise hold hundreds of MB).
        self.final_path = Path(final_path)
        self.partial_path = self.final_path.with_name(self.final_path.name + PARTIAL_SUFFIX)
        if self.final_path.exists() or self.partial_path.exists():
            raise RawFileError(f"{self.final_path}: refusing to overwrite an existing raw file")
        self.final_path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.partial_path, "xb")
        self._compressor = compressor or zstandard.ZstdCompressor(level=level)
        self._buffer: list[bytes] = []
        self._fsync = fsync
        self.stats = RawFileStats(self.partial_path)
        self.closed = False

    def write(self, record: dict) -> None:
        self.append_line(_dumps_line(record), record.get("local_ts"))

    def append_line(self, line: bytes, local_ts: int | None) -> None:
        """Append one serialized record that ends with its newline (the collector's hot path)."""
        self._buffer.append(line)
        stats = self.stats
        stats.records += 1
        if local_ts is not None:
            if stats.first_local_ts is None:
                stats.first_local_ts = local_ts
            stats.last_local_ts = local_ts

    def write_line(self, line: bytes, local_ts: int | None) -> None:
        """Append an already serialized record (no newline)."""
        self._buffer.append(line)
        self._buffer.append(b"\n")
        self.stats.records += 1
        if local_ts is not None:
            if self.stats.first_local_ts is None:
                self.stats.first_local_ts = local_ts
            self.stats.last_local_ts = local_ts

    @property
    def pending(self) -> bool:
        return bool(self._buffer)

    def write_frame(self, frame: bytes, records: int, first_local_ts: int | None,
                    last_local_ts: int | None) -> int:
        """Append an already compressed, complete zstd frame of `records` lines (after flushing
        what is buffered, so the file keeps its order). Returns the bytes appended."""
        written = self.flush()
        self._fh.write(frame)
        self._fh.flush()
        self.stats.bytes += len(frame)
        self.stats.records += records
        if first_local_ts is not None and self.stats.first_local_ts is None:
            self.stats.first_local_ts = first_local_ts
        if last_local_ts is not None:
            self.stats.last_local_ts = last_local_ts
        return written + len(frame)

    def flush(self) -> int:
        """Close a zstd frame with everything written so far; returns compressed bytes appended."""
        if not self._buffer:
            return 0
        frame = self._compressor.compress(b"".join(self._buffer))
        self._buffer.clear()
        self._fh.write(frame)
        self._fh.flush()
        self.stats.bytes += len(frame)
        return len(frame)

    def close(self) -> Path:
        """Flush, fsync and rename to the final name. Returns the final path."""
        if self.closed:
            return self.final_path
        self.flush()
        if self._fsync:
            os.fsync(self._fh.fileno())
        self._fh.close()
        os.replace(self.partial_path, self.final_path)
        self.closed = True
        self.stats.path = self.final_path
        return self.final_path

    def abort(self) -> None:
        """Close the file handle without renaming (what a crash leaves, minus the unflushed part)."""
        if not self.closed:
            try:
                self._fh.close()
            finally:
                self.closed = True


@dataclass
class ReadProblem:
    path: Path
    line: int          # 1-based line number (0 = the file as a whole)
    reason: str
    snippet: str = ""

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else str(self.path)
        return f"{where}: {self.reason}" + (f" ({self.snippet})" if self.snippet else "")


@dataclass
class RawFileReader:
    """Iterates the lines (or parsed records) of one raw file, collecting problems instead of raising.

    Problems: corrupt zstd data (everything before it is kept), a torn last line (no newline:
    dropped), a line that is not a JSON object (skipped).
    """

    path: Path
    problems: list[ReadProblem] = field(default_factory=list)
    torn_tail: bool = False
    lines_read: int = 0

    def iter_lines(self) -> Iterator[tuple[int, bytes]]:
        """(line number, line bytes without newline) for every complete line."""
        path = Path(self.path)
        try:
            fh = open(path, "rb")
        except OSError as e:
            raise RawFileError(f"{path}: cannot open raw file ({e.strerror})") from None
        with fh:
            tail = b""
            line_no = 0
            for chunk in self._iter_frames_data(fh, path, lambda: line_no):
                data = tail + chunk
                lines = data.split(b"\n")
                tail = lines.pop()
                for line in lines:
                    line_no += 1
                    self.lines_read = line_no
                    if line:
                        yield line_no, line
            if tail:
                self.torn_tail = True
                self.problems.append(ReadProblem(path, line_no + 1, "torn last line dropped (no newline)",
                                                 tail[:80].decode("utf-8", "replace")))

    def _iter_frames_data(self, fh, path: Path, line_no) -> Iterator[bytes]:
        """Decompressed bytes, frame after frame. Damage ends the file: what came before is kept.

        A decompression object per frame, so corrupt data in one frame never costs the frames
        before it (a stream reader raises for the whole chunk it was reading).
        """
        dobj = zstandard.ZstdDecompressor().decompressobj()
        in_frame = False
        while True:
            data = fh.read(_READ_CHUNK)
            if not data:
                break
            while data:
                try:
                    out = dobj.decompress(data)
                except zstandard.ZstdError as e:
                    self.problems.append(ReadProblem(path, line_no() + 1,
                                                     f"corrupt zstd data, rest of file dropped ({e})"))
                    self.torn_tail = True
                    return
                in_frame = True
                if out:
                    yield out
                if dobj.eof:
                    data = dobj.unused_data
                    dobj = zstandard.ZstdDecompressor().decompressobj()
                    in_frame = False
                else:
                    data = b""
        if in_frame:
            self.torn_tail = True
            self.problems.append(ReadProblem(path, line_no() + 1, "torn last zstd frame (file cut mid-frame)"))

    def iter_records(self) -> Iterator[tuple[int, dict]]:
        """(line number, record) for every line that is a JSON object; others become problems."""
        for line_no, line in self.iter_lines():
            try:
                rec = orjson.loads(line)
            except orjson.JSONDecodeError as e:
                self.problems.append(ReadProblem(self.path, line_no, f"invalid JSON ({e})",
                                                 line[:80].decode("utf-8", "replace")))
                continue
            if not isinstance(rec, dict):
                self.problems.append(ReadProblem(self.path, line_no, "line is not a JSON object",
                                                 line[:80].decode("utf-8", "replace")))
                continue
            yield line_no, rec


def read_raw_records(path: Path) -> list[dict]:
    """Every record of a (small) raw file; for tests and inspection. Large files: use RawFileReader."""
    return [rec for _, rec in RawFileReader(Path(path)).iter_records()]


def scan_raw_file(path: Path) -> RawFileStats:
    """Records, bytes and first/last local_ts of a raw file (reads it once)."""
    path = Path(path)
    stats = RawFileStats(path, bytes=path.stat().st_size)
    for _, rec in RawFileReader(path).iter_records():
        stats.records += 1
        ts = rec.get("local_ts")
        if isinstance(ts, int):
            if stats.first_local_ts is None:
                stats.first_local_ts = ts
            stats.last_local_ts = ts
    return stats


@dataclass
class SalvageReport:
    partial_path: Path
    final_path: Path
    records_kept: int
    problems: list[ReadProblem]

    def __str__(self) -> str:
        dropped = "; ".join(str(p) for p in self.problems) or "nothing dropped"
        return f"salvaged {self.records_kept} records from {self.partial_path.name}: {dropped}"


def salvage_partial(partial_path: Path) -> SalvageReport:
    """Finalize a `.partial` raw file left by a crash, keeping every complete record.

    The complete lines are re-compressed into `<final>.salvage.tmp`, fsynced and renamed to the final
    name; only then is the `.partial` removed. An existing final file is never overwritten.
    """
    partial_path = Path(partial_path)
    if not partial_path.name.endswith(PARTIAL_SUFFIX):
        raise RawFileError(f"{partial_path}: not a .partial raw file")
    final_path = partial_path.with_name(partial_path.name[: -len(PARTIAL_SUFFIX)])
    if final_path.exists():
        raise RawFileError(f"{partial_path}: its final name {final_path.name} exists already; "
                           "move one of them aside by hand")
    tmp_path = final_path.with_name(final_path.name + ".salvage.tmp")
    reader = RawFileReader(partial_path)
    kept = 0
    cctx = zstandard.ZstdCompressor(level=3)
    with open(tmp_path, "wb") as out:
        batch: list[bytes] = []
        for _, line in reader.iter_lines():
            try:
                if not isinstance(orjson.loads(line), dict):
                    raise ValueError("not an object")
            except (orjson.JSONDecodeError, ValueError):
                reader.problems.append(ReadProblem(partial_path, 0, "unparseable line dropped",
                                                   line[:80].decode("utf-8", "replace")))
                continue
            batch.append(line)
            batch.append(b"\n")
            kept += 1
            if len(batch) >= 20_000:
                out.write(cctx.compress(b"".join(batch)))
                batch.clear()
        if batch:
            out.write(cctx.compress(b"".join(batch)))
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp_path, final_path)
    partial_path.unlink()
    return SalvageReport(partial_path, final_path, kept, reader.problems)
