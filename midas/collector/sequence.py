"""Live tracking of one symbol's diff-depth update-id sequence (SPEC §1). Pure: no I/O, no clock.

The collector does not build books; it only has to notice, message by message, when the stream it
receives can no longer be turned into a book, and which REST snapshots can re-anchor it:

* continuity between consecutive diffs: spot `U == previous u + 1`, futures `pu == previous u`;
* a diff whose `u` is not above the last accepted `u` is a duplicate: dropped, never a gap;
* a *run* is a stretch of diffs without a break. A snapshot can anchor a run when its
  `lastUpdateId` is at or after the run's floor (spot: first diff's `U - 1`; futures: first diff's
  `pu`): every update after the snapshot is then in the run or still to come. An older snapshot is
  stale (Binance: "if lastUpdateId < the first buffered U, fetch again");
* a snapshot that opens a new raw file must also be at or after the last accepted `u`, so that the
  diffs written after it in the new file continue it (`snapshot_opens_file`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class DiffVerdict(Enum):
    FIRST = "first"          # first diff of a run (after a connect): nothing to compare with
    OK = "ok"                # continues the previous diff
    DUPLICATE = "duplicate"  # u <= last accepted u: already received, drop it
    GAP = "gap"              # updates are missing before this diff


class SnapshotVerdict(Enum):
    ANCHORS = "anchors"      # the snapshot re-anchors the current run (or comes before any diff)
    STALE = "stale"          # older than the current run's floor: fetch again


@dataclass
class SequenceTracker:
    """Sequence state of one symbol on one venue. `futures` selects the `pu` rule."""

    futures: bool
    last_update_id: int | None = None    # u of the last accepted diff
    run_floor: int | None = None         # lowest lastUpdateId that can anchor the current run
    in_sync: bool = False                # a snapshot anchored the current run
    pending_snapshot_id: int | None = None  # snapshot taken before the run's first diff arrived
    gap_detail: str = ""                 # what the last GAP verdict saw

    def new_run(self) -> None:
        """Forget the sequence (after a disconnect): the next diff starts a new run, out of sync."""
        self.last_update_id = None
        self.run_floor = None
        self.in_sync = False
        self.pending_snapshot_id = None

    def floor_of(self, first_id: int, prev_id: int | None) -> int:
        if self.futures and prev_id is not None:
            return prev_id
        return first_id - 1

    def on_diff(self, first_id: int, last_id: int, prev_id: int | None) -> DiffVerdict:
        """Classify a diff (`U`, `u`, `pu`) and advance the state. DUPLICATE leaves it unchanged."""
        last = self.last_update_id
        if last is None:
            self.last_update_id = last_id
            self.run_floor = self.floor_of(first_id, prev_id)
            if self.pending_snapshot_id is not None:
                # A snapshot arrived before this run's first diff: it anchors it only if not older.
                self.in_sync = self.pending_snapshot_id >= self.run_floor
                self.pending_snapshot_id = None
            return DiffVerdict.FIRST
        if last_id <= last:
            return DiffVerdict.DUPLICATE
        if self.futures and prev_id is not None:
            continues = prev_id == last
            expected = f"pu={last}"
            got = f"pu={prev_id}"
        else:
            continues = first_id == last + 1
            expected = f"U={last + 1}"
            got = f"U={first_id}"
        self.last_update_id = last_id
        if continues:
            return DiffVerdict.OK
        self.gap_detail = f"expected {expected}, got {got} (u={last_id})"
        self.run_floor = self.floor_of(first_id, prev_id)
        self.in_sync = False
        return DiffVerdict.GAP

    def on_snapshot(self, last_update_id: int) -> SnapshotVerdict:
        """Classify a REST snapshot for the current run; ANCHORS puts the run in sync."""
        if self.run_floor is None:
            self.pending_snapshot_id = last_update_id
            self.in_sync = True
            return SnapshotVerdict.ANCHORS
        if last_update_id < self.run_floor:
            return SnapshotVerdict.STALE
        self.in_sync = True
        return SnapshotVerdict.ANCHORS

    def snapshot_opens_file(self, last_update_id: int) -> bool:
        """Whether a snapshot may be the first record of a new file: not older than anything written."""
        if self.last_update_id is None:
            return True
        return last_update_id >= self.last_update_id and last_update_id >= (self.run_floor or 0)
