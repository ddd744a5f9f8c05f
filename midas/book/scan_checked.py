"""The checked path of scan.py: one raw line through orjson and midas.book.records, with every
problem reported as `file:line: what`. It reads every line the compiled reader (lineparse.py) does
not take: snapshots, events, damaged or unusual lines; and lines read only for their trades that
are not plain trade lines. `CheckedLines` is a part of scan._Scan (it uses its state).
"""

from __future__ import annotations

import re

import orjson

from midas.book.records import check_identity, parse_diff, parse_event, parse_snapshot, parse_trade

# How far a recorder's clock may be off the exchange's (real ones: 1.3-1.5 s behind).
MAX_CLOCK_SKEW_US = 10 * 60 * 1_000_000
_LOCAL_TS = re.compile(rb'"local_ts":(\d+)')


class CheckedLines:
    """_Scan's checked path (see scan.py for the state it uses)."""

    def _skew_problem(self, where, line_no, local_ts, ts):
        self.skew_reported = True
        self.out.problem(f"{where}:{line_no}: the recorder's clock is off the exchange's by "
                         f"{(local_ts - ts) / 1e6:+.0f} s (more than "
                         f"{MAX_CLOCK_SKEW_US // 60_000_000} min): trades near the hour's "
                         "edges may be missed; fix the recorder's clock (NTP)")

    def _line(self, index: int, line_no: int, line: bytes, feed: bool, f_off: int, f_line: int) -> bool:
        """One line through the checked path (orjson + records.py); True when the read is done."""
        if not line:
            return False
        out = self.out
        where = self.spans[index].path
        if not feed:
            if index > self.trade_last:
                if not self.machine_on:
                    self.done = True
                    return True
                return False
            if b'"trade"' not in line:
                return False
            if self.local_lo is not None:
                m = _LOCAL_TS.search(line)
                if m is not None:
                    local_ts = int(m.group(1))
                    if local_ts >= self.local_hi and not self.machine_on:
                        self.done = True
                        return True
                    if self.resume is None and self.resume_at is not None and local_ts >= self.resume_at:
                        self.resume = (index, f_off, f_line)
                    if not self.local_lo <= local_ts < self.local_hi:
                        return False
        if line.startswith(b'{"type":"book_ticker"'):     # not used by the rebuild
            self.tickers += 1
            return False
        try:
            rec = orjson.loads(line)
        except orjson.JSONDecodeError as e:
            if feed:
                out.problem(f"{where}:{line_no}: invalid JSON ({e})")
            return False
        if type(rec) is not dict:
            if feed:
                out.problem(f"{where}:{line_no}: line is not a JSON object")
            return False
        kind = rec.get("type")
        if self.resume is None and self.resume_at is not None:
            local_ts = rec.get("local_ts")
            if type(local_ts) is int and local_ts >= self.resume_at:
                self.resume = (index, f_off, f_line)
        venue, symbol, machine = self.venue, self.symbol, self.machine
        trade_lo, trade_hi = self.trade_lo, self.trade_hi
        try:
            if kind == "trade":
                trade_ts = rec.get("trade_ts")
                if (not feed and type(trade_ts) is int and trade_lo is not None
                        and not trade_lo <= trade_ts < trade_hi):
                    return False                # a neighbour file's trade of another hour
                if rec.get("symbol") != symbol or rec.get("venue") != venue:
                    check_identity(rec, venue, symbol)
                t = parse_trade(rec, self.futures)
                self.trade_records += 1
                local_ts = rec.get("local_ts")
                if (not self.skew_reported and type(local_ts) is int
                        and abs(local_ts - t.ts) > MAX_CLOCK_SKEW_US):
                    self._skew_problem(where, line_no, local_ts, t.ts)
                if (trade_lo is None or t.ts >= trade_lo) and (trade_hi is None or t.ts < trade_hi):
                    if t.trade_id in out.trades:
                        out.count("duplicate_trades")
                    else:
                        out.trades[t.trade_id] = (t.ts, t.trade_id, t.price, t.qty, t.is_buyer_maker,
                                                  t.trade_type)
                return False
            if not feed:
                return False
            if kind == "depth":
                if rec.get("symbol") != symbol or rec.get("venue") != venue:
                    check_identity(rec, venue, symbol)
                d = parse_diff(rec, self.futures)
                self.depth_records += 1
                machine.on_diff(d)
                self._stop_at_line(d.ts, index, line_no, f_off, f_line)
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
        return False
