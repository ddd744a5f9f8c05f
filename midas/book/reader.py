"""Reading the raw files of one symbol in receive order, in batches of PROCESS_BATCH_SIZE lines.

Files are cut by the local clock, rows are partitioned by exchange time, so the rebuild of one
exchange-time hour reads a run of consecutive files. `RawSpan` says which local-time interval each
file covers (from its name to the next file's). `LineBatches` yields batches of chunks
`(file index, lines before the chunk, lines, frame offset, lines before the frame)` from a starting
point on (the lines of one decompressed piece, empty ones included so that numbering stays right;
whole chunks rather than one tuple per line keep the per-line cost low): the last two name the
zstd frame the lines are in, so a later run can start reading right there (`start_offset`,
`start_line`) instead of decompressing the file from its beginning. Damage is handled like
midas.raw.RawFileReader: corrupt data ends the file (what came before is kept), a torn last frame
keeps its complete lines, a torn last line is dropped; each becomes a ReadProblem with file and line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import zstandard

from midas.errors import RawFileError
from midas.layout import hour_start_us, list_raw_files, parse_raw_file_name
from midas.raw import ReadProblem

INFINITY = float("inf")
_READ_CHUNK = 1 << 20


@dataclass(frozen=True)
class RawSpan:
    path: Path
    start_us: int          # local time the file was opened in (from its name)
    end_us: float          # the next file's start (inf for the last one)


def raw_spans(data_dir: Path, venue: str, symbol: str) -> list[RawSpan]:
    """The final raw files of a symbol in receive order, with the local time each covers."""
    files = list_raw_files(data_dir, venue, symbol)
    starts = [hour_start_us(parse_raw_file_name(p.name).hour) for p in files]
    spans = []
    for i, (path, start) in enumerate(zip(files, starts)):
        later = [s for s in starts[i + 1:] if s > start]
        spans.append(RawSpan(path, start, later[0] if later else INFINITY))
    return spans


def iter_file_chunks(path: Path, problems: list[ReadProblem], start_offset: int = 0,
                     start_line: int = 0) -> Iterator[tuple[int, list[bytes], int, int]]:
    """(lines before the chunk, complete lines of the chunk, frame offset, lines before that frame)
    from the frame at compressed byte `start_offset` (which is preceded by `start_line` lines) on;
    line n of a chunk has number `lines before + n + 1`; empty lines are included (callers skip
    them). The frame given for a chunk is the last one that began on a line boundary at or before
    its lines."""
    try:
        fh = open(path, "rb")
    except OSError as e:
        raise RawFileError(f"{path}: cannot open raw file ({e.strerror})") from None
    with fh:
        fh.seek(start_offset)
        new_dobj = zstandard.ZstdDecompressor().decompressobj
        dobj = new_dobj()
        in_frame = False
        tail = b""
        line_no = start_line
        frame = (start_offset, start_line)    # resume point of the lines being produced
        data_offset = start_offset
        while True:
            data = fh.read(_READ_CHUNK)
            if not data:
                break
            while data:
                try:
                    out = dobj.decompress(data)
                except zstandard.ZstdError as e:
                    problems.append(ReadProblem(path, line_no + 1,
                                                f"corrupt zstd data, rest of file dropped ({e})"))
                    return
                in_frame = True
                if out:
                    lines = (tail + out).split(b"\n")
                    tail = lines.pop()
                    if lines:
                        yield line_no, lines, frame[0], frame[1]
                        line_no += len(lines)
                if dobj.eof:
                    unused = dobj.unused_data
                    data_offset += len(data) - len(unused)
                    data = unused
                    dobj = new_dobj()
                    in_frame = False
                    if not tail:
                        frame = (data_offset, line_no)
                else:
                    data_offset += len(data)
                    data = b""
        if in_frame:
            problems.append(ReadProblem(path, line_no + 1, "torn last zstd frame (file cut mid-frame)"))
        if tail:
            problems.append(ReadProblem(path, line_no + 1, "torn last line dropped (no newline)",
                                        tail[:80].decode("utf-8", "replace")))


@dataclass
class LineBatches:
    """Line batches from `spans[first]` (at `start_offset`, after `start_line` lines) on."""

    spans: list[RawSpan]
    first: int
    start_offset: int = 0
    start_line: int = 0
    batch_size: int = 100_000
    problems: list[ReadProblem] = field(default_factory=list)

    def __iter__(self) -> Iterator[list[tuple[int, int, list[bytes], int, int]]]:
        # A batch holds `batch_size` non-empty lines (chunks are cut to fit), so reading stops at the
        # same point as a line-by-line reader would.
        batch: list[tuple[int, int, list[bytes], int, int]] = []
        size = self.batch_size
        in_batch = 0
        for index in range(self.first, len(self.spans)):
            first = index == self.first
            chunks = iter_file_chunks(self.spans[index].path, self.problems,
                                      self.start_offset if first else 0, self.start_line if first else 0)
            for before, lines, f_off, f_line in chunks:
                start, n = 0, len(lines)
                while start < n:
                    end, count = _cut(lines, start, size - in_batch)
                    batch.append((index, before + start,
                                  lines if start == 0 and end == n else lines[start:end], f_off, f_line))
                    in_batch += count
                    start = end
                    if in_batch >= size:
                        yield batch
                        batch = []
                        in_batch = 0
        if batch:
            yield batch


def _cut(lines: list[bytes], start: int, need: int) -> tuple[int, int]:
    """The end of the run of lines from `start` holding `need` non-empty lines (or the end of the
    list), and how many non-empty lines the run holds."""
    end = min(start + need, len(lines))
    empty = lines[start:end].count(b"") if b"" in lines else 0
    if not empty:
        return end, end - start
    count = 0
    for i in range(start, len(lines)):
        if lines[i]:
            count += 1
            if count == need:
                return i + 1, count
    return len(lines), count
