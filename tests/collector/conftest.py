"""Helpers of the collector tests: run the collector in a thread next to a LocalExchange, read what it
wrote, and turn the exchange's record of sent frames into the records the files must hold."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest

from midas import wire
from midas.collector.service import Collector, CollectorOptions
from midas.errors import WireError
from midas.layout import list_raw_files
from midas.raw import RawFileReader


class RunningCollector:
    """A Collector on its own thread and event loop; `stop()` ends it and returns the summary."""

    def __init__(self, settings, options: CollectorOptions | None = None, on_health=None):
        self.collector = Collector(settings, options or CollectorOptions(), on_health)
        self.summary = None
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="collector-under-test", daemon=True)

    def _run(self) -> None:
        async def main():
            stop = asyncio.Event()

            async def watch():
                while not self._stop.is_set():
                    await asyncio.sleep(0.02)
                stop.set()

            watcher = asyncio.create_task(watch())
            try:
                return await self.collector.run(None, stop)
            finally:
                watcher.cancel()

        try:
            self.summary = asyncio.run(main())
        except BaseException as e:  # handed to the test thread
            self.error = e

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def wait_for(self, condition, timeout: float = 30.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.error is not None:
                raise self.error
            if condition():
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")

    def written(self, kind: str) -> int:
        return self.collector.router.accepted[kind]

    def all_disconnected(self) -> bool:
        return all(s.connection is None for s in self.collector.states.values())

    def stop(self, timeout: float = 20.0):
        self._stop.set()
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the collector did not stop"
        if self.error is not None:
            raise self.error
        return self.summary


def raw_files(data_dir: Path, venue: str, symbol: str) -> list[Path]:
    return list_raw_files(data_dir, venue, symbol)


def file_records(path: Path) -> list[dict]:
    reader = RawFileReader(path)
    recs = [rec for _, rec in reader.iter_records()]
    assert reader.problems == [], f"{path}: {reader.problems}"
    return recs


def collected(data_dir: Path, venue: str, symbol: str) -> list[dict]:
    """Every record of a symbol's final files, in file order."""
    return [r for p in raw_files(data_dir, venue, symbol) for r in file_records(p)]


def record_id(rec: dict):
    t = rec["type"]
    if t == "depth":
        return (t, rec["last_update_id"])
    if t == "trade":
        return (t, rec["trade_id"])
    if t == "book_ticker":
        return (t, rec["update_id"])
    return None


@dataclass
class SentStream:
    """What the exchange sent, parsed like the collector parses it."""

    per_connection: dict[int, list[dict]] = field(default_factory=dict)   # data records in send order
    malformed: dict[int, int] = field(default_factory=dict)
    duplicates: dict[int, int] = field(default_factory=dict)

    def unique(self, symbol: str) -> list[dict]:
        """Data records of `symbol` over connections in id order, first copy of each message only."""
        seen = set()
        out = []
        for cid in sorted(self.per_connection):
            for rec in self.per_connection[cid]:
                if rec["symbol"] != symbol:
                    continue
                key = record_id(rec)
                if key in seen:
                    continue
                seen.add(key)
                out.append(rec)
        return out


def sent_records(truth_dir: Path, venue: str) -> SentStream:
    from midas.exchange import read_sent_messages

    out = SentStream()
    for cid, texts in read_sent_messages(truth_dir).items():
        recs, seen = [], set()
        out.malformed[cid] = 0
        out.duplicates[cid] = 0
        for text in texts:
            try:
                rec = wire.parse_stream_message(text, venue, 0)
            except WireError:
                out.malformed[cid] += 1
                continue
            if rec is None:
                continue
            key = (rec["symbol"],) + record_id(rec)
            if key in seen:
                out.duplicates[cid] += 1
            seen.add(key)
            recs.append(rec)
        out.per_connection[cid] = recs
    return out


def per_stream(records: list[dict]) -> dict[str, list[dict]]:
    """Records split by type (depth, trade, book_ticker, ...), each list in order. On futures the
    kinds come on separate sockets (/public, /market), so order is guaranteed per kind only; on
    spot one socket carries all and the whole order can be compared."""
    out: dict[str, list[dict]] = {}
    for rec in records:
        out.setdefault(rec["type"], []).append(rec)
    return out


def assert_same_order(got: list[dict], expected: list[dict], venue: str) -> None:
    """`got` holds exactly `expected` (local_ts aside) in the order the collector guarantees: per
    kind on futures (each kind's socket keeps its order), the whole order on spot (one socket)."""
    got = [strip_local(r) for r in got]
    expected = [strip_local(r) for r in expected]
    assert per_stream(got) == per_stream(expected)
    if venue == "binance":
        assert got == expected


def first_connections(sent: "SentStream", symbol: str) -> dict[str, list[dict]]:
    """Per kind, the records of `symbol` sent on the first exchange connection carrying that kind."""
    out: dict[str, list[dict]] = {}
    for cid in sorted(sent.per_connection):
        mine = [r for r in sent.per_connection[cid] if r["symbol"] == symbol]
        for kind, recs in per_stream(mine).items():
            out.setdefault(kind, recs)
    return out


def strip_local(rec: dict) -> dict:
    return {k: v for k, v in rec.items() if k != "local_ts"}


def data_records(recs: list[dict]) -> list[dict]:
    return [r for r in recs if r["type"] in ("depth", "trade", "book_ticker")]


def check_files_start_with_snapshots(data_dir: Path, venue: str, symbol: str) -> list[list[dict]]:
    files = [file_records(p) for p in raw_files(data_dir, venue, symbol)]
    assert files, f"no raw files for {symbol}"
    for recs in files:
        assert recs[0]["type"] == "snapshot", recs[0]
    for recs in files[:-1]:
        assert recs[-1]["type"] == "event" and recs[-1]["event"] == "rotated"
    return files


@pytest.fixture
def coll():
    """The helpers above, for tests (pytest's importlib mode does not import sibling modules)."""
    return SimpleNamespace(
        RunningCollector=RunningCollector, raw_files=raw_files, file_records=file_records,
        collected=collected, record_id=record_id, sent_records=sent_records, strip_local=strip_local,
        data_records=data_records, check_files_start_with_snapshots=check_files_start_with_snapshots,
        per_stream=per_stream, assert_same_order=assert_same_order, first_connections=first_connections,
        match_connection_prefixes=lambda *a: match_connection_prefixes(*a),
        events_after=lambda *a: events_after(*a))


def match_connection_prefixes(got: list[dict], sent: SentStream, symbol: str) -> dict[int, int]:
    """Check that `got` (a symbol's data records from the files) is, connection after connection,
    every message sent on it (first copy only), except possibly the last few sent just before the
    connection broke (lost in the socket when the exchange aborted it). Returns {connection: lost}.

    Where a connection's sockets each carry one kind (futures: depth on /public, trades on /market),
    the kinds interleave in the files by arrival, so the check runs per kind; where one socket
    carries several kinds (spot), the files must follow its whole order."""
    routed = all(len({r["type"] for r in recs}) <= 1 for recs in sent.per_connection.values())
    if not routed:
        return _match_prefixes(got, sent.per_connection, symbol)
    lost: dict[int, int] = {}
    for kind in {r["type"] for r in got} | {r["type"] for recs in sent.per_connection.values() for r in recs}:
        of_kind = {cid: recs for cid, recs in sent.per_connection.items() if recs and recs[0]["type"] == kind}
        lost.update(_match_prefixes([r for r in got if r["type"] == kind], of_kind, symbol))
    return lost


def _match_prefixes(got: list[dict], per_connection: dict[int, list[dict]], symbol: str) -> dict[int, int]:
    i = 0
    lost = {}
    seen = set()
    for cid in sorted(per_connection):
        recs = []
        for r in per_connection[cid]:
            key = record_id(r)
            if r["symbol"] == symbol and key not in seen:
                seen.add(key)
                recs.append(r)
        n = 0
        while n < len(recs) and i < len(got) and strip_local(got[i]) == strip_local(recs[n]):
            i += 1
            n += 1
        lost[cid] = len(recs) - n
    assert i == len(got), f"{symbol}: record {i} of the files was never sent: {got[i] if i < len(got) else None}"
    return lost


def events_after(records: list[dict], kind: str) -> list[list[str]]:
    """For every `kind` event, the record types/events that follow it up to the next data record
    of depth type, e.g. ['connected', 'resync', 'snapshot']."""
    out = []
    for i, r in enumerate(records):
        if r["type"] == "event" and r["event"] == kind:
            tail = []
            for nxt in records[i + 1:]:
                if nxt["type"] == "event":
                    tail.append(nxt["event"])
                elif nxt["type"] == "snapshot":
                    tail.append("snapshot")
                    break
            out.append(tail)
    return out
