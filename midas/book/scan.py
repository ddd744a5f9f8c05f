"""One read over raw files in receive order: records -> the book machine (until it is done with an
hour) and trades of a time window, with every problem reported as `file:line: what`.

Used by rebuild.py for one hour and for the one-pass reference. Lines read only for their trades
(neighbouring files) are filtered by local time with a cheap regex before any JSON parsing.

Lines that feed the machine are read a chunk at a time by lineparse.parse_lines (compiled): plain
depth and trade records become integer fields at once and runs of depth records go to the book
in one kernels.run_synced call while it is in sync. Every other line (snapshots, events, damaged
or unusual lines, diffs while out of sync) takes the checked path one line at a time (`_line`),
in receive order, exactly as the compiled path would have had it been able to.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field

import numpy as np

from midas.book import kernels
from midas.book.grid import units_to_floats
from midas.book.lineparse import (F_ASK_HI, F_ASK_LO, F_BID_HI, F_BID_LO, F_FIRST, F_LAST,
                                  F_PREV, F_TS, T_ID, T_LOCAL, T_MAKER, T_PRICE, T_QTY, T_TS,
                                  T_TYPE_END, T_TYPE_START, parse_lines)
from midas.book.reader import LineBatches, RawSpan
from midas.book.records import Diff
from midas.book.scan_checked import MAX_CLOCK_SKEW_US, CheckedLines
from midas.book.scan_resume import ResumePoint
from midas.book.sync import SYNCED, BookSync
from midas.layout import US_PER_HOUR

__all__ = ["MAX_CLOCK_SKEW_US", "ScanResult", "scan_records"]
MAX_PROBLEMS_KEPT = 200
_EMPTY, _DEPTH, _TRADE, _OTHER, _TICKER = (kernels.EMPTY, kernels.DEPTH, kernels.TRADE, kernels.OTHER,
                                           kernels.TICKER)

TradeRow = tuple  # (T, trade id, price, qty, is_buyer_maker, trade_type): a clean/trades row


@dataclass
class ScanResult:
    """What one read over the raw files produced."""

    trades: dict[int, TradeRow] = field(default_factory=dict)    # trade id -> row (first seen)
    problems: list[str] = field(default_factory=list)
    problem_count: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    stop_index: int | None = None
    stop_line: int = 0
    resume: tuple[int, int, int] | None = None

    def problem(self, text: str) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_PROBLEMS_KEPT:
            self.problems.append(text)

    def count(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n


def _book_done(machine: BookSync, end_us: int) -> bool:
    """Can the machine still produce a row or gap start before end_us? (after a diff >= end_us)"""
    if machine.status == SYNCED:
        return machine.next_grid >= end_us
    return all(d.ts >= end_us for d in machine.buffer)


def scan_records(spans: list[RawSpan], venue: str, symbol: str, batch_size: int,
                 machine: BookSync, machine_first: int, machine_after: int, trade_first: int,
                 trade_last: int, trade_lo: int | None, trade_hi: int | None, stop_at: int | None,
                 start: tuple[int, int, int] | None = None) -> ScanResult:
    """One read in receive order, from `start` (file index, frame offset, lines before it) or the
    first file needed. Lines after (machine_first, machine_after) feed the book machine until it is
    done with stop_at; trades with T in [trade_lo, trade_hi) are collected from files up to
    trade_last (and from every line the machine reads). `out.resume` is where the next hour's run
    can start reading: the frame of the first line with local time >= stop_at - MAX_CLOCK_SKEW."""
    if start is None:
        start = (min(machine_first, trade_first), 0, 0)
    scan = _Scan(spans, venue, symbol, machine, machine_first, machine_after, trade_last, trade_lo,
                 trade_hi, stop_at)
    batches = LineBatches(spans, start[0], start[1], start[2], batch_size)
    for batch in batches:
        scan.batch(batch)
        if scan.done:
            break
    out = scan.out
    out.count("depth_records", scan.depth_records)
    out.count("trade_records", scan.trade_records)
    if scan.tickers:
        out.count("book_ticker_records", scan.tickers)
    for p in batches.problems:
        out.problem(str(p))
    return out


# Lines fed to the machine are parsed this many at a time at most (zstd frames are ~1 s of data,
# too small to pay the per-call costs; much larger would leave the CPU caches).
_GROUP_LINES = 4096


class _Scan(CheckedLines, ResumePoint):
    """The state of one scan_records read (the checked path and the resume point in their own
    modules)."""

    def __init__(self, spans, venue, symbol, machine, machine_first, machine_after, trade_last,
                 trade_lo, trade_hi, stop_at):
        self.out = ScanResult()
        self.spans, self.venue, self.symbol, self.machine = spans, venue, symbol, machine
        self.futures = venue == "binance-futures"
        self.machine_first, self.machine_after, self.trade_last = machine_first, machine_after, trade_last
        self.trade_lo, self.trade_hi, self.stop_at = trade_lo, trade_hi, stop_at
        self.resume_at = stop_at - MAX_CLOCK_SKEW_US if stop_at is not None else None
        self.resume = None
        # the next hour's run (see _settle_resume): its trade window, local-time window, resume time
        self._next = None if stop_at is None else (
            stop_at, stop_at + US_PER_HOUR, stop_at - MAX_CLOCK_SKEW_US,
            stop_at + US_PER_HOUR + MAX_CLOCK_SKEW_US, stop_at + US_PER_HOUR - MAX_CLOCK_SKEW_US)
        self.skip_to = None
        self._last_matter_frame = None
        self.machine_on = True
        self.done = False
        # Lines read only for their trades are skipped by local time before parsing (cheap regex),
        # keeping those within MAX_CLOCK_SKEW of the trade window.
        self.local_lo = trade_lo - MAX_CLOCK_SKEW_US if trade_lo is not None else None
        self.local_hi = trade_hi + MAX_CLOCK_SKEW_US if trade_hi is not None else None
        self.depth_records = self.trade_records = self.tickers = 0
        self.skew_reported = False
        self.trade_types: dict[bytes, str] = {}

    def batch(self, batch: list[tuple[int, int, list[bytes], int, int]]) -> None:
        """The chunks of one batch, gathered into groups of pieces (file index, lines before,
        lines, frame) that are either all fed to the machine (_feed) or all read for their trades
        only (_trades_only), in receive order."""
        group: list[tuple[int, int, list[bytes], int, int]] = []
        group_feeds = True
        in_group = 0
        for index, before, lines, f_off, f_line in batch:
            n = len(lines)
            if not self.machine_on or index < self.machine_first:
                feed_from = n
            elif index > self.machine_first:
                feed_from = 0
            else:
                feed_from = min(max(self.machine_after - before, 0), n)
            for feeds, lo, hi in ((False, 0, feed_from), (True, feed_from, n)):
                if lo == hi:
                    continue
                if group and (feeds != group_feeds or in_group >= _GROUP_LINES):
                    self._flush(group, group_feeds)
                    group, in_group = [], 0
                    if self.done:
                        return
                    if feeds and not self.machine_on:    # it stopped: the rest is read for trades
                        feeds = False
                group_feeds = feeds
                group.append((index, before + lo, lines[lo:hi] if lo or hi < n else lines, f_off, f_line))
                in_group += hi - lo
        if group:
            self._flush(group, group_feeds)

    def _flush(self, group, feeds: bool) -> None:
        if feeds:
            self._feed(group)
        else:
            self._trades_only(group)

    def _join(self, group, trades_only: bool = False):
        """The group's lines joined and parsed; sets the lookup tables of _where."""
        if len(group) == 1:
            lines = group[0][2]
            starts = [0]
        else:
            lines, starts = [], []
            for piece in group:
                starts.append(len(lines))
                lines.extend(piece[2])
        buf = b"\n".join(lines)
        kinds, fields, prices, qtys = parse_lines(buf, self.venue, self.symbol, self.futures, trades_only)
        self._group, self._starts, self._lines, self._kinds, self._fields = group, starts, lines, kinds, fields
        return buf, kinds, fields, prices, qtys

    def _trades_only(self, group) -> None:
        """Lines the machine does not read: only their trades count (the checked path's rules for
        such lines, _line with feed=False, applied to the plain trade lines without parsing them
        again; every other line goes through _line itself)."""
        buf, kinds, fields, _, _ = self._join(group, trades_only=True)
        self._matter_checked = 0
        follow = self.machine_on        # (lines before the machine's start: see _matter_upto)
        is_trade = kinds == _TRADE
        prices = units_to_floats(np.where(is_trade, fields[:, T_PRICE], 0)).tolist()
        qtys = units_to_floats(np.where(is_trade, fields[:, T_QTY], 0)).tolist()
        rows = fields[:, [T_TS, T_ID, T_LOCAL, T_MAKER, T_TYPE_START, T_TYPE_END]].tolist()
        kind_list = kinds.tolist()
        lines = self._lines
        out, trades, types = self.out, self.out.trades, self.trade_types
        none = kernels.NONE
        lo, hi, local_lo, local_hi = self.trade_lo, self.trade_hi, self.local_lo, self.local_hi
        resume_at = self.resume_at
        ends = self._starts[1:] + [len(kind_list)]
        for (index, before, _, f_off, f_line), start, end in zip(group, self._starts, ends):
            beyond = index > self.trade_last
            for j in range(start, end):
                kind = kind_list[j]
                if kind == _EMPTY:
                    continue
                if beyond:
                    if not self.machine_on:
                        self.done = True
                        return
                    continue
                if kind != _TRADE:
                    if b'"trade"' in lines[j] and self._line(index, before + j - start + 1, lines[j],
                                                             False, f_off, f_line):
                        return
                    continue
                ts, tid, local, maker, t0, t1 = rows[j]
                if local != none:
                    if local_lo is not None:
                        if local >= local_hi and not self.machine_on:
                            self.done = True
                            return
                        if self.resume is None and resume_at is not None and local >= resume_at:
                            self.resume = (index, f_off, f_line)
                        if not local_lo <= local < local_hi:
                            continue
                    elif self.resume is None and resume_at is not None and local >= resume_at:
                        self.resume = (index, f_off, f_line)
                if lo is not None and not lo <= ts < hi:
                    continue                    # a neighbour file's trade of another hour
                self.trade_records += 1
                if not self.skew_reported and local != none and abs(local - ts) > MAX_CLOCK_SKEW_US:
                    self._skew_problem(self.spans[index].path, before + j - start + 1, local, ts)
                if tid in trades:
                    out.count("duplicate_trades")
                else:
                    if t0 < 0:
                        trade_type = None
                    else:
                        raw = buf[t0:t1]
                        trade_type = types.get(raw)
                        if trade_type is None:
                            trade_type = types[raw] = raw.decode()
                    trades[tid] = (ts, tid, prices[j], qtys[j], maker == 1, trade_type)
        if follow:
            self._matter_upto(len(kind_list))

    def _feed(self, group):
        """Feed the lines of `group` in order; after a stop, the rest is read for trades only."""
        buf, kinds, fields, prices, qtys = self._join(group)
        self._resume_checked = self._matter_checked = 0
        machine = self.machine
        n = kinds.shape[0]
        i = 0
        while i < n:
            if machine.fast_ready():
                j, reason = machine.run_synced(kinds, fields, prices, qtys, i, n, self.stop_at)
                self._side_lines(kinds, fields, buf, i, j)
                if reason == kernels.END:
                    i = n
                    break
                self._resume_upto(j + 1)
                if reason == kernels.PYTHON and kinds[j] == _OTHER:
                    self._line(*self._where(j))
                else:
                    self.depth_records += 1
                    d = self._diff(fields, prices, qtys, j)
                    if reason == kernels.CROSSED:
                        machine._after_apply(d)
                    elif reason == kernels.PYTHON:
                        machine.on_diff(d)
                    self._stop_check(d.ts, j)
                if not self.machine_on:
                    self._settle_resume(j)
            else:
                j = i
                kind = kinds[j]
                if kind == _DEPTH:
                    self._resume_upto(j + 1)
                    self.depth_records += 1
                    d = self._diff(fields, prices, qtys, j)
                    machine.on_diff(d)
                    self._stop_check(d.ts, j)
                elif kind == _OTHER:
                    self._resume_upto(j + 1)
                    self._line(*self._where(j))
                if not self.machine_on:
                    self._settle_resume(j)
                else:
                    self._side_lines(kinds, fields, buf, j, j + 1)
            i = j + 1
            if not self.machine_on:
                break
        self._resume_upto(i)
        self._matter_upto(i)
        if i < n:                       # the machine stopped at line i - 1: trades only
            rest = []
            for c, (index, before, lines, f_off, f_line) in enumerate(group):
                start = self._starts[c]
                end = start + len(lines)
                if end > i:
                    cut = max(i - start, 0)
                    rest.append((index, before + cut, lines[cut:], f_off, f_line))
            self._trades_only(rest)

    def _where(self, j: int) -> tuple[int, int, bytes, bool, int, int]:
        """(file index, line number, line, True, frame offset, lines before it) of line j of the
        group being fed (the arguments of _line)."""
        starts = self._starts
        c = bisect_right(starts, j) - 1
        index, before, _, f_off, f_line = self._group[c]
        return index, before + j - starts[c] + 1, self._lines[j], True, f_off, f_line

    def _stop_check(self, ts: int, j: int) -> None:
        index, line_no, _, _, f_off, f_line = self._where(j)
        self._stop_at_line(ts, index, line_no, f_off, f_line)

    def _stop_at_line(self, ts: int, index: int, line_no: int, f_off: int, f_line: int) -> None:
        """After a diff fed at (index, line_no): stop when the machine is done with stop_at
        (out.resume is settled by _settle_resume)."""
        if self.stop_at is not None and ts >= self.stop_at and _book_done(self.machine, self.stop_at):
            self.machine_on = False
            out = self.out
            out.stop_index, out.stop_line = index, line_no
            out.resume = (index, f_off, f_line)

    def _diff(self, fields, prices, qtys, i) -> Diff:
        f = fields[i].tolist()
        bids = list(zip(prices[f[F_BID_LO]:f[F_BID_HI]].tolist(), qtys[f[F_BID_LO]:f[F_BID_HI]].tolist()))
        asks = list(zip(prices[f[F_ASK_LO]:f[F_ASK_HI]].tolist(), qtys[f[F_ASK_LO]:f[F_ASK_HI]].tolist()))
        return Diff(f[F_TS], f[F_FIRST], f[F_LAST], f[F_PREV] if self.futures else None, bids, asks)

    def _side_lines(self, kinds, fields, buf, i, j):
        """The fed lines [i, j) that are not for the machine: depth records are counted, tickers
        counted, trades kept."""
        part = kinds[i:j]
        counts = np.bincount(part, minlength=5)
        self.depth_records += int(counts[_DEPTH])
        self.tickers += int(counts[_TICKER])
        if not counts[_TRADE]:
            return
        at = np.flatnonzero(part == _TRADE)
        at += i
        f = fields[at]
        prices = units_to_floats(f[:, T_PRICE]).tolist()
        qtys = units_to_floats(f[:, T_QTY]).tolist()
        trades, out = self.out.trades, self.out
        lo, hi = self.trade_lo, self.trade_hi
        types = self.trade_types
        self.trade_records += len(at)
        if not self.skew_reported:
            local = f[:, T_LOCAL]
            off = np.flatnonzero((local != kernels.NONE) & (np.abs(local - f[:, T_TS]) > MAX_CLOCK_SKEW_US))
            if off.size:
                k = int(off[0])
                index, line_no = self._where(int(at[k]))[:2]
                self._skew_problem(self.spans[index].path, line_no, int(local[k]), int(f[k, T_TS]))
        if lo is not None or hi is not None:
            ts = f[:, T_TS]
            inside = np.ones(len(ts), dtype=bool)
            if lo is not None:
                inside &= ts >= lo
            if hi is not None:
                inside &= ts < hi
            if not inside.all():
                f = f[inside]
                prices = [p for p, keep in zip(prices, inside.tolist()) if keep]
                qtys = [q for q, keep in zip(qtys, inside.tolist()) if keep]
        if not len(f):
            return
        ids = f[:, T_ID].tolist()
        if self.futures:
            trade_types = [types.get(raw) or self._trade_type(raw) for raw in
                           map(buf.__getitem__, map(slice, f[:, T_TYPE_START].tolist(),
                                                    f[:, T_TYPE_END].tolist()))]
        else:
            trade_types = [None] * len(ids)
        rows = list(zip(f[:, T_TS].tolist(), ids, prices, qtys, (f[:, T_MAKER] == 1).tolist(),
                        trade_types))
        # the first record of each trade id is kept: reversed, the first one is inserted last
        new = dict(zip(reversed(ids), reversed(rows)))
        duplicates = len(ids) - len(new)
        for tid in new.keys() & trades.keys():
            del new[tid]
            duplicates += 1
        trades.update(new)
        if duplicates:
            out.count("duplicate_trades", duplicates)

    def _trade_type(self, raw: bytes) -> str:
        text = self.trade_types[raw] = raw.decode()
        return text

