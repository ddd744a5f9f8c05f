"""What each received message means for the raw files: parse, de-duplicate, track, write.

`MessageRouter` is the single place where messages become raw records in files. For each symbol
it holds a `SymbolState`: the files (`SymbolFiles`), the update-id `SequenceTracker`, the last
trade id and bookTicker id written (duplicates are dropped, so each message is written once), and
whether a snapshot is wanted and why (connect, gap, rotation).

Planned reconnects: while a new connection joins, its records are held; `join_ready` says when,
for every (symbol, stream) either connection has delivered since the join began, the old
connection has written up to where the new one's first message continues; `switch` then writes
the held records that are not duplicates, in the order the new connection received them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable

import orjson

from midas import wire
from midas.collector.connection import Connection, StormRule
from midas.collector.health import KINDS, HealthCounters
from midas.collector.sequence import DiffVerdict, SequenceTracker, SnapshotVerdict
from midas.collector.writer import SymbolFiles
from midas.errors import WireError
from midas.logs import log_kv

log = logging.getLogger("midas.collector")

MALFORMED_COPY_CHARS = 200
_ID_FIELD = {"depth": "last_update_id", "trade": "trade_id", "book_ticker": "update_id"}


@dataclass
class SymbolState:
    symbol: str
    files: SymbolFiles
    tracker: SequenceTracker
    group: int = 0
    connection: int | None = None        # id of the connection feeding it; None while down
    last_trade_id: int | None = None
    last_ticker_id: int | None = None
    snapshot_in_flight: bool = False
    sync_reason: str = "start"           # why the book is out of sync (event detail)
    rotation_reason: str | None = None   # 'time' or 'size' while a rotation waits for its snapshot
    startup_events: list[dict] = field(default_factory=list)
    opening_snapshot: dict | None = None  # first snapshot, kept until a diff shows it anchors
    opening_since: float = 0.0            # monotonic time it arrived
    duplicates: int = 0
    stale_snapshots: int = 0
    behind_in_a_row: int = 0              # rotation snapshots behind the stream since the last rotation

    def last_id(self, kind: str) -> int | None:
        if kind == "depth":
            return self.tracker.last_update_id
        if kind == "trade":
            return self.last_trade_id
        return self.last_ticker_id


@dataclass
class JoinState:
    """A planned reconnect in progress: what must overlap before the switch."""

    first: dict[tuple[str, str], dict] = field(default_factory=dict)   # new conn's first record per pair
    seen_old: set[tuple[str, str]] = field(default_factory=set)       # pairs the old one wrote since
    pending: set[tuple[str, str]] = field(default_factory=set)        # pairs not yet overlapping


class MessageRouter:
    """Routes messages of every connection into the symbols' files (see the module docstring)."""

    def __init__(self, venue: str, states: dict[str, SymbolState], counters: HealthCounters,
                 request_snapshot: Callable[[SymbolState], None], *, depth_enabled: bool,
                 storm: StormRule | None = None):
        self.venue = venue
        self.states = states
        self.counters = counters
        self.request_snapshot = request_snapshot
        self.depth_enabled = depth_enabled
        self.storm = storm or StormRule()
        self.futures = venue == "binance-futures"
        self.joins: dict[int, JoinState] = {}          # new connection id -> join state
        self.join_of_old: dict[int, JoinState] = {}    # old connection id -> join state
        self.malformed_total = 0
        self.unknown_symbol = 0
        self.accepted = dict.fromkeys(KINDS, 0)    # records written per stream kind, whole run
        self.gaps_total = 0
        self.snapshots_total = 0
        # Messages in Binance's exact layout skip the JSON objects (midas.wire.FastPath); their
        # symbol comes as the message's bytes.
        self.fast_parse = wire.FastPath(venue).parse
        self.states_by_wire_symbol = {symbol.encode(): state for symbol, state in states.items()}

    # Messages -------------------------------------------------------------------------------------

    def on_message(self, conn: Connection, message, local_ts: int) -> None:
        if conn.retired:
            return
        if not self.joins:      # while a planned reconnect joins, records are held as dicts (below)
            fast = self.fast_parse(message, local_ts)
            if fast is not None:
                state = self.states_by_wire_symbol.get(fast[1])
                if state is not None:
                    kind, _, first_id, last_id, prev_id, exchange_ts, line = fast
                    self._accept(state, kind, first_id, last_id, prev_id, exchange_ts, local_ts, line)
                    return
        try:
            rec = wire.parse_stream_message(message, self.venue, local_ts, conn.where)
        except WireError as e:
            self._malformed(conn, message, str(e))
            return
        if rec is None:
            return
        state = self.states.get(rec["symbol"])
        if state is None:
            self.unknown_symbol += 1
            self._malformed(conn, message, f"symbol {rec['symbol']} was not subscribed")
            return
        if conn.joining:
            join = self.joins[conn.id]
            conn.held.append(rec)
            pair = (rec["symbol"], rec["type"])
            if pair not in join.first:
                join.first[pair] = rec
                if not self._overlaps(state, rec):
                    join.pending.add(pair)
            return
        self.accept(state, rec)
        join = self.join_of_old.get(conn.id)
        if join is not None:
            pair = (rec["symbol"], rec["type"])
            join.seen_old.add(pair)
            if pair in join.pending and self._overlaps(state, join.first[pair]):
                join.pending.discard(pair)

    def accept(self, state: SymbolState, rec: dict) -> bool:
        """Write one record unless it is a duplicate; track the sequence. True when written."""
        kind = rec["type"]
        if kind == "depth":
            first_id, last_id, prev_id = rec["first_update_id"], rec["last_update_id"], rec["prev_update_id"]
        else:
            first_id, last_id, prev_id = None, rec["trade_id" if kind == "trade" else "update_id"], None
        return self._accept(state, kind, first_id, last_id, prev_id, rec["exchange_ts"], rec["local_ts"],
                            orjson.dumps(rec, option=orjson.OPT_APPEND_NEWLINE))

    def _accept(self, state: SymbolState, kind: str, first_id: int | None, last_id: int,
                prev_id: int | None, exchange_ts: int | None, local_ts: int, line: bytes) -> bool:
        """`accept` of a serialized record (`line`, with its newline) and the fields it needs:
        depth `first_id`/`last_id`/`prev_id` = U/u/pu; trade id or bookTicker id in `last_id`."""
        if kind == "depth":
            verdict = state.tracker.on_diff(first_id, last_id, prev_id)
            if verdict is not DiffVerdict.OK:
                if verdict is DiffVerdict.DUPLICATE:
                    state.duplicates += 1
                    return False
                if verdict is DiffVerdict.GAP:
                    self.counters.gaps += 1
                    self.gaps_total += 1
                    detail = f"sequence gap: {state.tracker.gap_detail}"
                    log_kv(log, "sequence gap, fetching a snapshot", logging.WARNING,
                           symbol=state.symbol, detail=state.tracker.gap_detail)
                    state.files.event("gap", detail, local_ts)
                    state.sync_reason = "gap"
                elif verdict is DiffVerdict.FIRST and state.opening_snapshot is not None:
                    self._open_with_held_snapshot(state)
            state.files.write_line(line, local_ts)
            if not state.tracker.in_sync:
                self.request_snapshot(state)
        elif kind == "trade":
            if state.last_trade_id is not None and last_id <= state.last_trade_id:
                state.duplicates += 1
                return False
            state.last_trade_id = last_id
            state.files.write_line(line, local_ts)
        else:
            if state.last_ticker_id is not None and last_id <= state.last_ticker_id:
                state.duplicates += 1
                return False
            state.last_ticker_id = last_id
            state.files.write_line(line, local_ts)
        self.accepted[kind] += 1
        self.counters.message(kind, state.symbol, local_ts, exchange_ts)
        return True

    def _malformed(self, conn: Connection, message, reason: str) -> None:
        self.malformed_total += 1
        self.counters.malformed += 1
        text = message if isinstance(message, str) else bytes(message).decode("utf-8", "replace")
        copy = text[:MALFORMED_COPY_CHARS] + ("..." if len(text) > MALFORMED_COPY_CHARS else "")
        log_kv(log, "malformed message skipped", logging.WARNING, connection=conn.id,
               stream=_stream_of(text), reason=reason, copy=copy)
        if conn.note_malformed(time.monotonic(), self.storm) and conn.end_reason is None:
            conn.end_reason = (f"malformed-message storm: {self.storm.count} malformed messages within "
                               f"{self.storm.window_secs:g}s")

    # Connections ----------------------------------------------------------------------------------

    def group_states(self, group: int) -> list[SymbolState]:
        return [s for s in self.states.values() if s.group == group]

    def connected(self, conn: Connection) -> None:
        now = time.time_ns() // 1000
        for state in self.group_states(conn.group):
            state.connection = conn.id
            state.opening_snapshot = None
            state.tracker.new_run()
            state.last_trade_id = None
            state.last_ticker_id = None
            state.sync_reason = "connect"
            state.files.event("connected", f"connection {conn.id} to {_short_url(conn.url)}", now)
            if self.depth_enabled:
                self.request_snapshot(state)
            elif not state.files.has_file:
                state.files.open_with_snapshot(None, "start", state.startup_events)
                state.startup_events.clear()

    def disconnected(self, conn: Connection, reason: str) -> None:
        now = time.time_ns() // 1000
        if conn.id in self.joins or conn.joining:
            return
        self.join_of_old.pop(conn.id, None)
        if reason != "shutdown":
            self.counters.reconnects += 1
        for state in self.group_states(conn.group):
            if state.connection != conn.id:
                continue
            state.connection = None
            state.tracker.new_run()
            state.sync_reason = "reconnect"
            state.files.event("disconnected", f"connection {conn.id}: {reason}", now)

    def begin_join(self, old: Connection, new: Connection) -> None:
        join = JoinState()
        self.joins[new.id] = join
        self.join_of_old[old.id] = join

    def join_ready(self, old: Connection, new: Connection) -> bool:
        join = self.joins[new.id]
        if not join.first:
            return False
        return not join.pending and join.seen_old <= set(join.first)

    def abort_join(self, old: Connection, new: Connection) -> None:
        """The joining connection failed: the old one goes on alone (it delivered everything)."""
        self.joins.pop(new.id, None)
        self.join_of_old.pop(old.id, None)
        new.held = []

    def switch(self, old: Connection, new: Connection, timed_out: bool) -> None:
        join = self.joins.pop(new.id)
        self.join_of_old.pop(old.id, None)
        now = time.time_ns() // 1000
        if timed_out:
            missing = sorted(join.pending | (join.seen_old - set(join.first)))
            log_kv(log, "planned reconnect switched before every stream overlapped", logging.WARNING,
                   old=old.id, new=new.id, not_overlapping=",".join(f"{s}@{k}" for s, k in missing))
        self.counters.reconnects += 1
        for state in self.group_states(new.group):
            state.connection = new.id
            state.files.event("connected", f"connection {new.id} to {_short_url(new.url)} replaces "
                              f"connection {old.id} (planned reconnect, overlapping: nothing missed)", now)
        held, new.held = new.held, []
        for rec in held:
            self.accept(self.states[rec["symbol"]], rec)

    def _overlaps(self, state: SymbolState, first: dict) -> bool:
        """Whether what was written for `first`'s stream reaches where `first` continues it."""
        kind = first["type"]
        last = state.last_id(kind)
        if last is None:
            return False
        if kind == "depth":
            return last >= state.tracker.floor_of(first["first_update_id"], first["prev_update_id"])
        if kind == "trade":
            return last >= first["trade_id"] - 1
        return last >= first["update_id"]

    # Snapshots ------------------------------------------------------------------------------------

    def needs_snapshot(self, state: SymbolState) -> bool:
        if not self.depth_enabled or state.connection is None:
            return False
        if not state.files.has_file:
            return state.opening_snapshot is None
        return not state.tracker.in_sync or state.rotation_reason is not None

    def _open_with_held_snapshot(self, state: SymbolState) -> None:
        """The first diff arrived: open the first file with the held snapshot if it anchors."""
        snap, state.opening_snapshot = state.opening_snapshot, None
        if state.tracker.in_sync:
            state.files.open_with_snapshot(snap, "start", state.startup_events)
            state.startup_events.clear()
        else:
            state.stale_snapshots += 1        # older than the stream: accept() fetches another

    def open_overdue(self, now: float, wait_secs: float) -> None:
        """A held opening snapshot of a symbol whose depth stays quiet opens the file anyway."""
        for state in self.states.values():
            if state.opening_snapshot is not None and now - state.opening_since >= wait_secs:
                snap, state.opening_snapshot = state.opening_snapshot, None
                state.files.open_with_snapshot(snap, "start", state.startup_events)
                state.startup_events.clear()

    def on_snapshot(self, state: SymbolState, snap: dict) -> None:
        """Place a fetched snapshot (see midas.collector.writer for where it goes)."""
        state.snapshot_in_flight = False
        if state.connection is None:
            return      # fetched for a connection that is gone; the next connect asks again
        self.counters.snapshots += 1
        self.snapshots_total += 1
        lid = snap["last_update_id"]
        tracker = state.tracker
        if not state.files.has_file:
            if tracker.on_snapshot(lid) is SnapshotVerdict.STALE:
                state.stale_snapshots += 1
                return
            if tracker.run_floor is None:
                # No diff yet: whether it anchors is known at the first diff (held until then).
                state.opening_snapshot = snap
                state.opening_since = time.monotonic()
                return
            state.files.open_with_snapshot(snap, "start", state.startup_events)
            state.startup_events.clear()
            return
        if state.rotation_reason is not None and tracker.snapshot_opens_file(lid):
            tracker.on_snapshot(lid)
            state.files.open_with_snapshot(snap, state.rotation_reason)
            state.rotation_reason = None
            state.behind_in_a_row = 0
            return
        if not tracker.in_sync:
            if tracker.on_snapshot(lid) is SnapshotVerdict.STALE:
                state.stale_snapshots += 1
                return
            state.files.event("resync", f"snapshot lastUpdateId={lid} after {state.sync_reason}",
                              snap["local_ts"])
            state.files.write(snap)
            return
        if state.rotation_reason is not None:
            state.stale_snapshots += 1    # behind the stream: cannot open a file, fetch again
            state.behind_in_a_row += 1

    def retry_delay(self, state: SymbolState) -> float:
        """Seconds before asking again after rotation snapshots behind the stream: 0.5 s doubling to
        30 s, so an exchange whose REST lags its stream cannot drain the weight budget."""
        if state.rotation_reason is None or state.behind_in_a_row == 0 or not state.tracker.in_sync:
            return 0.0
        return min(30.0, 0.5 * 2 ** (state.behind_in_a_row - 1))


def _short_url(url: str) -> str:
    """`ws://host/public/stream (2 streams) + ws://host/market/stream (1 streams)`: one per socket."""
    parts = []
    for one in url.split(" + "):
        base, _, query = one.partition("?")
        streams = query.removeprefix("streams=").split("/") if query else []
        parts.append(f"{base} ({len(streams)} streams)")
    return " + ".join(parts)


def _stream_of(text: str) -> str:
    start = text.find('"stream"')
    if start < 0:
        return "unknown"
    rest = text[start + 8:].lstrip(" :")
    if rest.startswith('"'):
        end = rest.find('"', 1)
        if end > 0:
            return rest[1:end]
    return "unknown"
