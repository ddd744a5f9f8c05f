"""One read over raw files in receive order: records -> the book machine (until it is done with an
hour) and trades of a time window, with every problem reported as `file:line: what`.

Used by rebuild.py for one hour and for the one-pass reference. Lines read only for their trades
(neighbouring files) are filtered by local time with a cheap regex before any JSON parsing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import orjson

from midas.book.reader import LineBatches, RawSpan
from midas.book.records import (Trade, check_identity, parse_diff, parse_event, parse_snapshot,
                                parse_trade)
from midas.book.sync import SYNCED, BookSync

# How far a recorder's clock may be off the exchange's (real ones: 1.3-1.5 s behind).
MAX_CLOCK_SKEW_US = 10 * 60 * 1_000_000
MAX_PROBLEMS_KEPT = 200
_LOCAL_TS = re.compile(rb'"local_ts":(\d+)')


@dataclass
class ScanResult:
    """What one read over the raw files produced."""

    trades: dict[int, Trade] = field(default_factory=dict)
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
    out = ScanResult()
    futures = venue == "binance-futures"
    if start is None:
        start = (min(machine_first, trade_first), 0, 0)
    batches = LineBatches(spans, start[0], start[1], start[2], batch_size)
    resume_at = stop_at - MAX_CLOCK_SKEW_US if stop_at is not None else None
    resume = None
    machine_on = True
    done = False
    trades = out.trades
    # Lines read only for their trades are skipped by local time before parsing (cheap regex),
    # keeping those within MAX_CLOCK_SKEW of the trade window.
    local_lo = trade_lo - MAX_CLOCK_SKEW_US if trade_lo is not None else None
    local_hi = trade_hi + MAX_CLOCK_SKEW_US if trade_hi is not None else None
    local_ts_of = _LOCAL_TS.search
    loads = orjson.loads
    depth_records = trade_records = tickers = 0
    skew_reported = False
    for batch in batches:
        for index, line_no, lines, f_off, f_line in batch:
            where = spans[index].path
            later_file = index > machine_first
            for line in lines:
                line_no += 1
                if not line:
                    continue
                feed = machine_on and (later_file or (index == machine_first and line_no > machine_after))
                if not feed:
                    if index > trade_last:
                        if not machine_on:
                            done = True
                            break
                        continue
                    if b'"trade"' not in line:
                        continue
                    if local_lo is not None:
                        m = local_ts_of(line)
                        if m is not None:
                            local_ts = int(m.group(1))
                            if local_ts >= local_hi and not machine_on:
                                done = True
                                break
                            if resume is None and resume_at is not None and local_ts >= resume_at:
                                resume = (index, f_off, f_line)
                            if not local_lo <= local_ts < local_hi:
                                continue
                if line.startswith(b'{"type":"book_ticker"'):     # not used by the rebuild
                    tickers += 1
                    continue
                try:
                    rec = loads(line)
                except orjson.JSONDecodeError as e:
                    if feed:
                        out.problem(f"{where}:{line_no}: invalid JSON ({e})")
                    continue
                if type(rec) is not dict:
                    if feed:
                        out.problem(f"{where}:{line_no}: line is not a JSON object")
                    continue
                kind = rec.get("type")
                if resume is None and resume_at is not None:
                    local_ts = rec.get("local_ts")
                    if type(local_ts) is int and local_ts >= resume_at:
                        resume = (index, f_off, f_line)
                try:
                    if kind == "trade":
                        trade_ts = rec.get("trade_ts")
                        if (not feed and type(trade_ts) is int and trade_lo is not None
                                and not trade_lo <= trade_ts < trade_hi):
                            continue                    # a neighbour file's trade of another hour
                        if rec.get("symbol") != symbol or rec.get("venue") != venue:
                            check_identity(rec, venue, symbol)
                        t = parse_trade(rec, futures)
                        trade_records += 1
                        local_ts = rec.get("local_ts")
                        if (not skew_reported and type(local_ts) is int
                                and abs(local_ts - t.ts) > MAX_CLOCK_SKEW_US):
                            skew_reported = True
                            out.problem(f"{where}:{line_no}: the recorder's clock is off the exchange's by "
                                        f"{(local_ts - t.ts) / 1e6:+.0f} s (more than "
                                        f"{MAX_CLOCK_SKEW_US // 60_000_000} min): trades near the hour's "
                                        "edges may be missed; fix the recorder's clock (NTP)")
                        if (trade_lo is None or t.ts >= trade_lo) and (trade_hi is None or t.ts < trade_hi):
                            if t.trade_id in trades:
                                out.count("duplicate_trades")
                            else:
                                trades[t.trade_id] = t
                        continue
                    if not feed:
                        continue
                    if kind == "depth":
                        if rec.get("symbol") != symbol or rec.get("venue") != venue:
                            check_identity(rec, venue, symbol)
                        d = parse_diff(rec, futures)
                        depth_records += 1
                        machine.on_diff(d)
                        if stop_at is not None and d.ts >= stop_at and _book_done(machine, stop_at):
                            machine_on = False
                            out.stop_index, out.stop_line = index, line_no
                            out.resume = resume if resume is not None else (index, f_off, f_line)
                    elif kind == "snapshot":
                        check_identity(rec, venue, symbol)
                        machine.on_snapshot(parse_snapshot(rec))
                        out.count("snapshot_records")
                    elif kind == "book_ticker":
                        out.count("book_ticker_records")
                    elif kind == "event":
                        machine.on_event(parse_event(rec))
                        out.count("event_records")
                    else:
                        out.problem(f"{where}:{line_no}: unknown record type {kind!r:.40}")
                except ValueError as e:
                    out.problem(f"{where}:{line_no}: bad {kind!r:.20} record: {e}")
            if done:
                break
        if done:
            break
    out.count("depth_records", depth_records)
    out.count("trade_records", trade_records)
    if tickers:
        out.count("book_ticker_records", tickers)
    for p in batches.problems:
        out.problem(str(p))
    return out
