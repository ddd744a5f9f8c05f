"""Where the next hour's run starts reading (scan.py): the resume point saved in the checkpoint.

The next hour H reads the lines from our resume point (the frame of the first line with local
time >= H - MAX_CLOCK_SKEW) up to our stop for their trades only. Of those, only the ones that can
change something for it under its own rules matter; the checkpoint names the frame of the first
such line, or our stop's frame when there is none, so H skips lines that provably have no effect.
`ResumePoint` is a part of scan._Scan (it uses its state).
"""

from __future__ import annotations

from bisect import bisect_right

import numpy as np

from midas.book import kernels
from midas.book.lineparse import F_LOCAL, T_LOCAL, T_TS

_EMPTY, _DEPTH, _TRADE = kernels.EMPTY, kernels.DEPTH, kernels.TRADE


class ResumePoint:
    """_Scan's resume-point tracking (see scan.py for the state it uses)."""

    def _resume_upto(self, end: int) -> None:
        """The resume point from the fed depth and trade lines before `end` not yet looked at (the
        checked path sets it itself for the lines it reads): the frame of the first one with
        local time >= resume_at."""
        begin, self._resume_checked = self._resume_checked, max(end, self._resume_checked)
        if self.resume is not None or self.resume_at is None or end <= begin:
            return
        kinds = self._kinds[begin:end]
        hit = np.flatnonzero(((kinds == _DEPTH) | (kinds == _TRADE))
                             & (self._fields[begin:end, F_LOCAL] >= self.resume_at))
        if hit.size:
            index, _, _, _, f_off, f_line = self._where(begin + int(hit[0]))
            self.resume = (index, f_off, f_line)

    def _settle_resume(self, j: int) -> None:
        """The machine stopped at line j of the group: where the next hour's run starts reading.
        That run reads the lines from our resume point (the frame of the first line with local
        time >= stop_at - MAX_CLOCK_SKEW) up to this stop for their trades only; it starts at
        the frame of the first of those lines that can change anything for it (_matter_upto),
        or at this stop's frame when none can: the lines before it are provably without effect."""
        self._resume_upto(j + 1)
        self._matter_upto(j + 1)
        if self.skip_to is not None:
            self.out.resume = self.skip_to

    def _frame(self, j: int) -> tuple[int, int, int]:
        index, _, _, f_off, f_line = self._group[bisect_right(self._starts, j) - 1]
        return index, f_off, f_line

    def _matter_upto(self, end: int) -> None:
        """Follow, for the lines of the group before `end` not yet looked at, which ones the next
        hour's run would be affected by when reading them for trades only (_line with feed=False
        and its parameters): a plain trade line with a local time at or after its resume time, or
        inside its local-time window (or without one) with a trade time in its hour; any other line
        holding a "trade" token (conservatively). Sets skip_to: the frame of the first such line at
        or after our resume frame."""
        begin, self._matter_checked = self._matter_checked, max(end, self._matter_checked)
        if self._next is None or self.skip_to is not None or end <= begin or self.resume_at is None:
            return
        if self.resume is None:
            # our resume frame, once found, is this frame or a later one: only the lines of the
            # group's last frame so far can be in it
            last = self._frame(end - 1)
            while begin < end - 1 and self._frame(begin) != last:
                begin += 1
        hits = self._mattering(begin, end)
        if self.resume is None:
            if hits:
                self._last_matter_frame = self._frame(hits[-1])
            return
        first = self.resume
        if self._last_matter_frame == first:
            self.skip_to = first
            return
        for j in hits:
            frame = self._frame(j)
            if frame[:2] >= first[:2]:
                self.skip_to = frame
                return

    def _mattering(self, begin: int, end: int) -> list[int]:
        n_lo, n_hi, n_local_lo, n_local_hi, n_resume_at = self._next
        kinds = self._kinds[begin:end]
        f = self._fields[begin:end]
        local, ts = f[:, T_LOCAL], f[:, T_TS]
        has_local = local != kernels.NONE
        in_local = ~has_local | ((local >= n_local_lo) & (local < n_local_hi))
        trade_hit = (kinds == _TRADE) & ((has_local & (local >= n_resume_at))
                                         | (in_local & (ts >= n_lo) & (ts < n_hi)))
        hits = (np.flatnonzero(trade_hit) + begin).tolist()
        lines = self._lines
        others = [j for j in (np.flatnonzero((kinds != _TRADE) & (kinds != _EMPTY)) + begin).tolist()
                  if b'"trade"' in lines[j]]
        return sorted(hits + others) if others else hits
