"""Fuzzing the rebuild with corrupted real raw files: it never crashes, every row it still emits
equals the clean rebuild's row at that time (a lost diff makes a gap, never a wrong row), every
trade it emits is a real trade, and every line it could not use is reported by file and line.

The base is the first lines of the real recordings imported as raw files. Corruptions: bytes
flipped (the high bit of a byte of the stored JSON text: always an encoding error; a flip that
turns one digit into another is undetectable by any reader without checksums), lines cut, fields
the rebuild needs removed or retyped, records moved or repeated, the compressed file truncated.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from midas.book import rebuild_hour
from midas.config import load_settings
from midas.importer import import_recording
from midas.layout import raw_file_path
from midas.raw import RawFileReader, RawFileWriter

BASE_LINES = 1500
NEEDED = {
    "depth": ["venue", "symbol", "exchange_ts", "first_update_id", "last_update_id", "bids", "asks"],
    "trade": ["venue", "symbol", "trade_id", "price", "qty", "is_buyer_maker", "trade_ts"],
    "snapshot": ["venue", "symbol", "last_update_id", "bids", "asks"],
}
FUTURES_EXTRA = {"depth": ["prev_update_id"], "trade": ["trade_type"]}


_BASE: dict = {}


@pytest.fixture(scope="module")
def base(recordings, tmp_path_factory):
    """Fills _BASE per venue: the clean lines, the local hour, the clean rebuild's rows and trades.
    (Returns nothing, so hypothesis does not print the whole data set with each example.)"""
    out = _BASE
    for venue in ("binance", "binance-futures"):
        src = tmp_path_factory.mktemp(f"src-{venue}")
        first = import_recording(recordings[venue], venue, src).files[0]
        lines = [line for _, line in RawFileReader(first).iter_lines()][:BASE_LINES]
        hour = _hour_of(first)
        clean = tmp_path_factory.mktemp(f"clean-{venue}")
        result, book, trades = _rebuild(clean, venue, hour, lines)
        assert result.problem_count == 0
        out[venue] = {"lines": lines, "hour": hour, "book": {r[0]: r for r in book},
                      "trades": {t[1]: t for t in trades}}
    assert len(out["binance"]["book"]) == 130 and len(out["binance-futures"]["book"]) == 298


def _hour_of(path):
    from midas.layout import parse_raw_file_name
    return parse_raw_file_name(path.name).hour


def _rebuild(data_dir, venue, hour, lines, truncate_at=None):
    path = raw_file_path(data_dir, venue, "BTCUSDT", hour, 0)
    w = RawFileWriter(path, fsync=False)
    for i, line in enumerate(lines, 1):
        w.write_line(line, None)
        if i % 100 == 0:
            w.flush()
    w.close()
    if truncate_at is not None:
        size = path.stat().st_size
        with open(path, "r+b") as fh:
            fh.truncate(int(size * truncate_at))
    s = load_settings(env_file=None, data_dir=data_dir, venue=venue)
    r = rebuild_hour(s, venue, "BTCUSDT", hour)
    book = [tuple(x.values()) for x in pq.read_table(r.paths["book"]).to_pylist()]
    trades = [tuple(x.values()) for x in pq.read_table(r.paths["trades"]).to_pylist()]
    return r, book, trades


def _retyped(value):
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return orjson.dumps(value).decode()
    return 0


op = st.tuples(st.sampled_from(["flip", "cut", "remove", "retype", "move", "repeat"]),
               st.floats(0, 1), st.integers(0, 10_000), st.booleans())


def _check_corrupted(venue, ops, truncate):
    info = _BASE[venue]
    # entries: [line bytes, kind of the original record, damaged?]
    entries = [[line, orjson.loads(line)["type"], False] for line in info["lines"]]
    important = [i for i, e in enumerate(entries) if e[1] in NEEDED]
    for name, where, seed, prefer_important in ops:
        pool = important if prefer_important else range(len(entries))
        i = pool[int(where * (len(pool) - 1))]
        line, kind, damaged = entries[i]
        if damaged and name in ("flip", "cut", "remove", "retype"):
            continue    # one damage per line keeps "which line must be reported" unambiguous
        if name == "flip":
            pos = seed % len(line)
            entries[i] = [line[:pos] + bytes([line[pos] ^ 0x80]) + line[pos + 1:], kind, True]
        elif name == "cut":
            entries[i] = [line[: 1 + seed % (len(line) - 1)], kind, True]
        elif name in ("remove", "retype"):
            rec = orjson.loads(line)
            if rec.get("type") not in NEEDED:
                continue
            fields = NEEDED[rec["type"]] + (FUTURES_EXTRA.get(rec["type"], []) if venue == "binance-futures" else [])
            field = fields[seed % len(fields)]
            if field not in rec:        # removed by an earlier corruption of the same line
                continue
            if name == "remove":
                del rec[field]
            else:
                rec[field] = _retyped(rec[field])
            entries[i] = [orjson.dumps(rec), kind, True]
        elif name == "move":
            j = min(len(entries) - 1, max(0, i + (seed % 11) - 5))
            entries.insert(j, entries.pop(i))
        else:
            entries.insert(min(len(entries), i + 1 + seed % 50), list(entries[i]))
    with tempfile.TemporaryDirectory() as d:
        result, book, trades = _rebuild(Path(d), venue, info["hour"], [e[0] for e in entries], truncate)
    for row in book:
        assert row == info["book"][row[0]]
    for t in trades:
        assert t == info["trades"][t[1]]
    if truncate is None:       # (a truncated file loses an unknown number of the last lines)
        for line_no, (line, kind, damaged) in enumerate(entries, 1):
            if damaged and kind in NEEDED:
                assert any(f":{line_no}: " in p for p in result.problems), (line_no, result.problems)


_STRATEGIES = dict(venue=st.sampled_from(["binance", "binance-futures"]),
                   ops=st.lists(op, min_size=1, max_size=4),
                   truncate=st.one_of(st.none(), st.floats(0.05, 0.999)))
_COMMON = dict(deadline=None, database=None,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


# BOOK_FUZZ_EXAMPLES=1500 runs a deeper, randomized search by hand (about 2 minutes); the default
# suite runs a fixed set of 45 examples.
_EXAMPLES = int(os.environ.get("BOOK_FUZZ_EXAMPLES", "45"))


@settings(max_examples=_EXAMPLES, derandomize=_EXAMPLES == 45, **_COMMON)
@given(**_STRATEGIES)
def test_corrupted_raw_files_never_give_a_wrong_row(base, venue, ops, truncate):
    _check_corrupted(venue, ops, truncate)
