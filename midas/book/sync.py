"""Binance's procedure for keeping a local book in sync (SPEC §1), fed with records in receive order,
sampling the book on the grid (SPEC §3) and recording every interval without a valid book.

States: `unsynced` (no valid book: diffs go to a buffer), `pending` (a snapshot is loaded, waiting
for the diff that bridges it), `synced`. Per venue:

- spot: drop diffs with `u <= lastUpdateId`; the first applied has `U <= lastUpdateId + 1 <= u`;
  then each diff needs `U <= previous u + 1` (a larger `U` = missed diffs).
- futures: drop diffs with `u < lastUpdateId`; the first applied has `U <= lastUpdateId <= u` or
  `pu == lastUpdateId`; then each diff needs `pu == previous u`.
- both: a diff with `u <=` the last applied `u` is a duplicate, ignored (no gap).

A snapshot met while unsynced is tried against the buffer at once (the bridging diff usually sits
before the snapshot record); one met while synced is kept as a spare, tried first when a gap opens.

Grid rows: while synced, a diff with exchange time E first emits the rows of the grid times before
E (the book without it), then is applied. A stretch starts at the first grid time >= the first
applied diff's E and ends at the last grid time <= the last applied diff's E (sequence gap, or end
of data), or before the E of a diff that crosses the book (best bid >= best ask).

Gaps: `(start_ts, end_ts, reason, first_update_id, last_update_id)`: start = the last applied
diff's E (crossed book: the crossing diff's E; start of data: the first record's time), end = the E
of the first diff applied after resync; ids = the last `u` before and the first `u` after.
Pure: no I/O, no clock; the caller drains `rows` and `gaps`.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from midas.book import kernels
from midas.book.grid import GridRows, grid_at_or_after
from midas.book.orderbook import OrderBook
from midas.book.records import Diff, Snapshot

UNSYNCED, PENDING, SYNCED = "unsynced", "pending", "synced"
# Diffs kept while out of sync, waiting for a snapshot to bridge (oldest dropped first). A snapshot
# answers within seconds, so this is far more than a bridge needs, and it bounds memory.
BUFFER_LIMIT = 20_000
# Buffered diffs more than this much older (exchange time) than the newest buffered one are dropped:
# a snapshot bridges a diff received moments before it, never one from a minute ago.
BRIDGE_WINDOW_US = 60_000_000


class BookSync:
    """The sync state machine of one symbol, with grid sampling and gap intervals."""

    def __init__(self, venue: str, depth: int, interval_us: int, emit_from: int | None = None):
        self.futures = venue == "binance-futures"
        self.depth = depth
        self.interval = interval_us
        self.emit_from = emit_from          # rows before this time are not built (replay)
        self.book = OrderBook(depth)
        self.status = UNSYNCED
        self.last_u: int | None = None      # u of the last applied diff
        self.last_ts: int | None = None     # E of the last applied diff
        self.pending_id: int | None = None  # lastUpdateId of the loaded snapshot (pending)
        self.buffer: deque[Diff] = deque(maxlen=BUFFER_LIMIT)
        self.spare: Snapshot | None = None
        self.next_grid: int | None = None   # first grid time of the stretch not yet emitted
        self.emitted_until: int | None = None  # the last row's time: rows never repeat or go back
        self.gap: list | None = [None, None, "no_snapshot", None, None]
        self.saw_disconnect = False
        self.last_seen_ts: int | None = None
        self.rows = GridRows(depth)            # the rows produced, in exact units
        self.gaps: list[tuple] = []
        self.counts = {"applied": 0, "duplicates": 0, "stale": 0, "buffered": 0,
                       "snapshots_used": 0, "snapshots_unusable": 0, "sequence_gaps": 0,
                       "crossed": 0}

    # Input ------------------------------------------------------------------------------------------

    def on_diff(self, d: Diff) -> None:
        if self.last_seen_ts is None or d.ts > self.last_seen_ts:
            self.last_seen_ts = d.ts
        if self.gap is not None and self.gap[0] is None:
            self.gap[0] = d.ts
        status = self.status
        if status == SYNCED:
            if d.last_id <= self.last_u:
                self.counts["duplicates"] += 1
                return
            if (d.prev_id != self.last_u) if self.futures else (d.first_id > self.last_u + 1):
                self.counts["sequence_gaps"] += 1
                self._end_stretch("disconnected" if self.saw_disconnect else "sequence_gap",
                                  self.last_ts)
                self._buffer(d)
                self._try_spare()
                return
            if self.next_grid < d.ts:           # (else there is no grid time to emit before it)
                self._emit_before(d.ts)
            self._apply(d)
        elif status == PENDING:
            L = self.pending_id
            if (d.last_id < L) if self.futures else (d.last_id <= L):
                self.counts["stale"] += 1
                return
            bridges = ((d.first_id <= L <= d.last_id or d.prev_id == L) if self.futures
                       else (d.first_id <= L + 1 <= d.last_id))
            if not bridges:
                # The snapshot is older than the diffs: diffs between were missed. Wait for another.
                self.counts["snapshots_unusable"] += 1
                self.status = UNSYNCED
                self.pending_id = None
                self._buffer(d)
                return
            self.status = SYNCED
            self.pending_id = None
            self.counts["snapshots_used"] += 1
            self._apply(d)
            if self.status != SYNCED:       # the bridged book is crossed: still no valid book
                return
            self.next_grid = grid_at_or_after(d.ts, self.interval)
            if self.gap is not None:
                if self.gap[0] is None or self.gap[0] > d.ts:   # (a snapshot's E after its bridge)
                    self.gap[0] = d.ts
                self.gap[1] = d.ts
                self.gap[4] = d.last_id
                self.gaps.append(tuple(self.gap))
                self.gap = None
        else:
            self._buffer(d)

    def on_snapshot(self, s: Snapshot) -> None:
        if s.ts is not None and (self.last_seen_ts is None or s.ts > self.last_seen_ts):
            self.last_seen_ts = s.ts
        if self.gap is not None and self.gap[0] is None and s.ts is not None:
            self.gap[0] = s.ts
        if self.status == SYNCED:
            self.spare = s
            return
        self._load(s)

    def on_event(self, kind: str) -> None:
        if kind == "disconnected":
            self.saw_disconnect = True

    def finish(self) -> None:
        """End of the data: close the stretch (rows up to the last applied diff) and an open gap."""
        if self.status == SYNCED:
            self._emit_through(self.last_ts)
        elif self.gap is not None:
            start = self.gap[0] if self.gap[0] is not None else self.last_seen_ts
            if start is not None:
                end = max(start, self.last_seen_ts if self.last_seen_ts is not None else start)
                self.gaps.append((start, end, self.gap[2], self.gap[3], None))
            self.gap = None

    # Internals --------------------------------------------------------------------------------------

    def _apply(self, d: Diff) -> None:
        self.book.apply(d.bids, d.asks)
        self._after_apply(d)

    def _after_apply(self, d: Diff) -> None:
        """The rest of applying d, once its levels are in the book."""
        if self.book.is_crossed():
            self.counts["crossed"] += 1
            self.status = UNSYNCED
            if self.gap is None:            # (a gap still open since before the snapshot goes on)
                self.gap = [d.ts, None, "crossed_book", self.last_u, None]
            self.next_grid = None
            self.spare = None
            self.buffer.clear()
            self._buffer(d)
            return
        self.counts["applied"] += 1
        self.last_u = d.last_id
        self.last_ts = d.ts
        self.saw_disconnect = False
        if self.spare is not None and self.spare.last_update_id < d.last_id:
            self.spare = None
        if self.next_grid is not None and d.ts > self.next_grid:
            self.next_grid = grid_at_or_after(d.ts, self.interval)

    def _buffer(self, d: Diff) -> None:
        buf = self.buffer
        if buf and d.last_id <= buf[-1].last_id:
            self.counts["duplicates"] += 1
            return
        self.counts["buffered"] += 1
        buf.append(d)
        oldest = d.ts - BRIDGE_WINDOW_US
        while buf[0].ts < oldest:
            buf.popleft()

    def _load(self, s: Snapshot) -> None:
        """Load a snapshot and replay the buffered diffs through the procedure."""
        self.book.reset(s.bids, s.asks)
        self.status = PENDING
        self.pending_id = s.last_update_id
        pending = list(self.buffer)
        self.buffer.clear()
        for d in pending:
            self.on_diff(d)

    def _try_spare(self) -> None:
        # After a reconnect the collector often writes the new snapshot before the new
        # connection's first diff: that snapshot arrived while the old stretch was still in sync.
        spare, self.spare = self.spare, None
        if spare is not None:
            self._load(spare)

    def _end_stretch(self, reason: str, start: int) -> None:
        self._emit_through(self.last_ts)
        self.status = UNSYNCED
        self.next_grid = None
        self.gap = [start, None, reason, self.last_u, None]

    def _pack(self) -> np.ndarray:
        """The scalars the kernels use, as their int64 state vector (None -> kernels.NONE)."""
        none = kernels.NONE
        st = np.empty(kernels.STATE_SIZE, dtype=np.int64)
        for i, v in ((kernels.LAST_U, self.last_u), (kernels.LAST_TS, self.last_ts),
                     (kernels.NEXT_GRID, self.next_grid), (kernels.EMITTED_UNTIL, self.emitted_until),
                     (kernels.EMIT_FROM, self.emit_from), (kernels.LAST_SEEN, self.last_seen_ts)):
            st[i] = none if v is None else v
        st[kernels.INTERVAL] = self.interval
        st[kernels.N_ROWS] = self.rows.n
        st[kernels.APPLIED] = st[kernels.DUPLICATES] = 0
        return st

    def _unpack(self, st: np.ndarray) -> None:
        none = kernels.NONE
        values = st.tolist()
        self.last_u, self.last_ts, self.next_grid, self.emitted_until, self.last_seen_ts = (
            None if v == none else v for v in (values[kernels.LAST_U], values[kernels.LAST_TS],
                                                values[kernels.NEXT_GRID], values[kernels.EMITTED_UNTIL],
                                                values[kernels.LAST_SEEN]))
        self.rows.n = values[kernels.N_ROWS]
        self.counts["applied"] += values[kernels.APPLIED]
        self.counts["duplicates"] += values[kernels.DUPLICATES]

    def _emit_before(self, ts: int) -> None:
        """Rows for the grid times of the stretch before ts (the book as it is now): from
        next_grid on, never at or before emitted_until (rows never repeat or go back), none before
        emit_from (replayed hours); see kernels.emit_before."""
        st = self._pack()
        rows, book = self.rows, self.book
        rows.ensure_capacity(int(kernels.need_rows(st, ts)))
        kernels.emit_before(st, ts, book.keys, book.sizes, book.counts, self.depth,
                            rows.ts, rows.levels, rows.uid, rows.age)
        self._unpack(st)

    def fast_ready(self) -> bool:
        """In sync with no open gap: runs of diffs can go to run_synced."""
        return self.status == SYNCED and self.gap is None

    def run_synced(self, kinds, fields, prices, qtys, start: int, end: int,
                   stop_at: int | None) -> tuple[int, int]:
        """kernels.run_synced over parsed lines [start, end) (lineparse.py), growing the row and
        book arrays as it asks; returns (line, reason) as the kernel does. Only when fast_ready()."""
        st = self._pack()
        rows, book = self.rows, self.book
        stop = kernels.NONE if stop_at is None else stop_at
        applied = False
        while True:
            line, reason = kernels.run_synced(kinds, fields, prices, qtys, start, end, self.futures,
                                              stop, st, book.keys, book.sizes, book.counts,
                                              self.depth, rows.ts, rows.levels, rows.uid, rows.age)
            applied = applied or st[kernels.APPLIED] > 0
            if reason == kernels.GROW_ROWS:
                rows.n = int(st[kernels.N_ROWS])
                rows.ensure_capacity(int(kernels.need_rows(st, int(fields[line, 1]))) + 1)
            elif reason == kernels.GROW_BOOK:
                f = fields[line]
                book.ensure_capacity(int(max(f[7] - f[6], f[9] - f[8])))
            else:
                break
            start = line
        self._unpack(st)
        if applied:
            self.saw_disconnect = False
            if self.spare is not None and self.spare.last_update_id < self.last_u:
                self.spare = None
        return int(line), int(reason)

    def _emit_through(self, ts: int) -> None:
        self._emit_before(ts + 1)

    # Checkpoints ------------------------------------------------------------------------------------

    def state(self) -> dict:
        """Everything needed to go on exactly where this machine is (see checkpoint.py)."""
        bids, asks = self.book.levels()
        spare = self.spare
        return {
            "futures": self.futures, "depth": self.depth, "interval": self.interval,
            "status": self.status, "last_u": self.last_u, "last_ts": self.last_ts,
            "pending_id": self.pending_id, "next_grid": self.next_grid, "gap": self.gap,
            "emitted_until": self.emitted_until,
            "saw_disconnect": self.saw_disconnect, "last_seen_ts": self.last_seen_ts,
            "bids": bids, "asks": asks,
            "buffer": [[d.ts, d.first_id, d.last_id, d.prev_id, d.bids, d.asks] for d in self.buffer],
            "spare": None if spare is None else [spare.last_update_id, spare.ts, spare.bids, spare.asks],
        }

    @classmethod
    def from_state(cls, venue: str, state: dict, emit_from: int | None = None) -> "BookSync":
        m = cls(venue, state["depth"], state["interval"], emit_from)
        m.status = state["status"]
        m.last_u, m.last_ts = state["last_u"], state["last_ts"]
        m.pending_id, m.next_grid = state["pending_id"], state["next_grid"]
        m.gap = state["gap"]
        m.emitted_until = state["emitted_until"]
        m.saw_disconnect, m.last_seen_ts = state["saw_disconnect"], state["last_seen_ts"]
        m.book.reset([tuple(x) for x in state["bids"]], [tuple(x) for x in state["asks"]])
        for ts, first, last, prev, bids, asks in state["buffer"]:
            m.buffer.append(Diff(ts, first, last, prev, [tuple(x) for x in bids],
                                 [tuple(x) for x in asks]))
        if state["spare"] is not None:
            lid, ts, bids, asks = state["spare"]
            m.spare = Snapshot(lid, ts, [tuple(x) for x in bids], [tuple(x) for x in asks])
        return m
