"""Reading the raw files of one symbol in receive order, in batches of PROCESS_BATCH_SIZE lines.

Files are cut by the local clock, rows are partitioned by exchange time, so the rebuild of one
exchange-time hour reads a run of consecutive files. `RawSpan` says which local-time interval each
file covers (from its name to the next file's), `iter_line_batches` yields `(file index, line
number, line bytes)` from a starting position on, and collects every read problem (torn tail,
corrupt zstd data) with its file and line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from midas.layout import hour_start_us, list_raw_files, parse_raw_file_name
from midas.raw import ReadProblem, RawFileReader

INFINITY = float("inf")


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


@dataclass
class LineBatches:
    """Line batches from `spans[first]` on, skipping lines up to `after_line` of that first file."""

    spans: list[RawSpan]
    first: int
    after_line: int = 0
    batch_size: int = 100_000
    problems: list[ReadProblem] = field(default_factory=list)
    files_read: list[int] = field(default_factory=list)

    def __iter__(self) -> Iterator[list[tuple[int, int, bytes]]]:
        batch: list[tuple[int, int, bytes]] = []
        size = self.batch_size
        for index in range(self.first, len(self.spans)):
            skip = self.after_line if index == self.first else 0
            reader = RawFileReader(self.spans[index].path)
            self.files_read.append(index)
            try:
                for line_no, line in reader.iter_lines():
                    if line_no <= skip:
                        continue
                    batch.append((index, line_no, line))
                    if len(batch) >= size:
                        yield batch
                        batch = []
            finally:
                self.problems.extend(reader.problems)
        if batch:
            yield batch
