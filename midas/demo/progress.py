"""What the collector has written so far, read from DATA_DIR/raw while it runs (for the demo's live status).

`RawWatcher.poll()` counts records of every raw file of the demo's symbols: a final file is read
once (cached by size and modification time), a `.partial` file is re-read on each poll up to its
last complete frame. Only lines are counted, nothing is parsed, so a poll stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from midas.errors import RawFileError
from midas.layout import list_raw_files
from midas.raw import RawFileReader


@dataclass(frozen=True)
class RawProgress:
    records: int          # raw records written (complete frames only)
    final_files: int      # files closed by a rotation (or at the end)
    partial_files: int    # files being written
    bytes: int

    def since(self, earlier: "RawProgress") -> "RawProgress":
        """What was written after `earlier` (files being written are counted as they are now)."""
        return RawProgress(self.records - earlier.records, self.final_files - earlier.final_files,
                           self.partial_files, self.bytes - earlier.bytes)

    def line(self) -> str:
        from midas.doctor import format_bytes

        return (f"{self.records:,} messages written, {self.final_files} file(s) closed, "
                f"{self.partial_files} open, {format_bytes(self.bytes)}")


def count_lines(path: Path) -> int:
    """Complete records of a raw file (a torn tail is not counted)."""
    return sum(1 for _ in RawFileReader(Path(path)).iter_lines())


class RawWatcher:
    def __init__(self, data_dir: Path, venue: str, symbols: list[str]):
        self.data_dir = Path(data_dir)
        self.venue = venue
        self.symbols = list(symbols)
        self._final_counts: dict[Path, tuple[tuple[int, int], int]] = {}

    def poll(self) -> RawProgress:
        records = final = partial = size = 0
        for symbol in self.symbols:
            for path in list_raw_files(self.data_dir, self.venue, symbol):
                try:
                    st = path.stat()
                    key = (st.st_size, st.st_mtime_ns)
                    cached = self._final_counts.get(path)
                    if cached is None or cached[0] != key:
                        cached = (key, count_lines(path))
                except (OSError, RawFileError):
                    continue
                self._final_counts[path] = cached
                records += cached[1]
                final += 1
                size += st.st_size
            for path in list_raw_files(self.data_dir, self.venue, symbol, partial=True):
                try:
                    partial_size = path.stat().st_size
                    partial_records = count_lines(path)
                except (OSError, RawFileError):
                    continue   # renamed to its final name between the listing and the read
                size += partial_size
                records += partial_records
                partial += 1
        return RawProgress(records, final, partial, size)
