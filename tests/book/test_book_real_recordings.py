"""The book rebuild on both real Binance recordings (shared/data/binance), imported with
`midas import` and processed hour by hour across midnight, checked against two oracles: the
bookTicker `u` oracle and an independent Decimal book (tests/book/book_oracle.py)."""

from __future__ import annotations

import importlib.util
import shutil
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from midas.book import raw_hours, rebuild_hour
from midas.book.checkpoint import checkpoint_path
from midas.book.rebuild import rebuild_one_pass
from midas.config import load_settings
from midas.importer import import_recording
from midas.layout import hour_start_us

_spec = importlib.util.spec_from_file_location("book_oracle", Path(__file__).with_name("book_oracle.py"))
oracle = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(oracle)

H23 = {"binance": datetime(2024, 8, 8, 23, tzinfo=timezone.utc),
       "binance-futures": datetime(2024, 7, 18, 23, tzinfo=timezone.utc)}
H00 = {"binance": datetime(2024, 8, 9, 0, tzinfo=timezone.utc),
       "binance-futures": datetime(2024, 7, 19, 0, tzinfo=timezone.utc)}
VENUES = ["binance", "binance-futures"]


@pytest.fixture(scope="module")
def rebuilt(recordings, tmp_path_factory):
    """Per venue: settings, import result, rebuild results per hour, recording messages."""
    out = {}
    for venue in VENUES:
        data_dir = tmp_path_factory.mktemp(f"data-{venue}")
        settings = load_settings(env_file=None, data_dir=data_dir, venue=venue, symbols=["BTCUSDT"])
        imported = import_recording(recordings[venue], venue, data_dir)
        hours = raw_hours(settings, venue, "BTCUSDT")
        results = [rebuild_hour(settings, venue, "BTCUSDT", h) for h in hours]
        messages = oracle.read_recording(recordings[venue])
        out[venue] = {"settings": settings, "imported": imported, "hours": hours, "results": results,
                      "messages": messages,
                      "oracle": oracle.oracle_book(messages, futures=venue == "binance-futures")}
    return out


def _table(path):
    return pq.read_table(path).to_pylist()


def _levels_of(row, side):
    out = []
    for i in range(1, 11):
        px, sz = row[f"{side}_px_{i:02d}"], row[f"{side}_sz_{i:02d}"]
        if px is None:
            assert sz is None
            continue
        out.append((px, sz))
    return out


def test_import_writes_one_raw_file_per_local_hour(rebuilt):
    spot, fut = rebuilt["binance"]["imported"], rebuilt["binance-futures"]["imported"]
    assert spot.records == {"depth": 6495, "trade": 19904, "book_ticker": 73174, "snapshot": 1}
    assert fut.records == {"depth": 9022, "trade": 10701, "book_ticker": 52260, "snapshot": 1}
    assert [p.name for p in spot.files] == ["BTCUSDT_20240808T23_0.jsonl.zst", "BTCUSDT_20240809T00_0.jsonl.zst"]
    assert [p.name for p in fut.files] == ["BTCUSDT_20240718T23_0.jsonl.zst", "BTCUSDT_20240719T00_0.jsonl.zst"]
    assert spot.problem_count == fut.problem_count == 0
    for venue in VENUES:
        assert rebuilt[venue]["hours"] == [H23[venue], H00[venue]]


def test_results_report_rows_and_completeness(rebuilt):
    spot = rebuilt["binance"]["results"]
    fut = rebuilt["binance-futures"]["results"]
    assert [r.rows for r in spot] == [{"book": 3445, "trades": 9738, "gaps": 1},
                                      {"book": 3059, "trades": 10166, "gaps": 0}]
    assert [r.rows for r in fut] == [{"book": 1772, "trades": 974, "gaps": 1},
                                     {"book": 3023, "trades": 9727, "gaps": 0}]
    for results in (spot, fut):
        assert [r.started_from for r in results] == ["replay", "checkpoint"]
        assert [r.complete for r in results] == [True, False]   # the recordings end at 00:05
        assert all(r.problems == [] and r.problem_count == 0 for r in results)
        assert all(r.counts["sequence_gaps"] == 0 and r.counts["crossed"] == 0 for r in results)


@pytest.mark.parametrize("venue", VENUES)
def test_every_grid_row_equals_an_independent_decimal_book(rebuilt, venue):
    info = rebuilt[venue]
    rows_expected, _, _ = info["oracle"]
    got = {}
    for r in info["results"]:
        table = _table(r.paths["book"])
        lo = hour_start_us(r.hour)
        assert all(lo <= row["ts"] < lo + 3_600_000_000 for row in table)
        for row in table:
            assert row["ts"] not in got
            got[row["ts"]] = row
    assert sorted(got) == sorted(rows_expected)
    assert len(got) == {"binance": 6504, "binance-futures": 4795}[venue]
    for ts, (bids, asks, u, age) in rows_expected.items():
        row = got[ts]
        assert row["update_id"] == u and row["book_age_ms"] == age
        assert _levels_of(row, "bid") == [(float(p), float(q)) for p, q in bids]
        assert _levels_of(row, "ask") == [(float(p), float(q)) for p, q in asks]


@pytest.mark.parametrize("venue,tickers_on_diffs,rows_checked",
                         [("binance", 1072, 1072), ("binance-futures", 625, 341)])
def test_rows_match_the_bookticker_oracle(rebuilt, venue, tickers_on_diffs, rows_checked):
    info = rebuilt[venue]
    _, best_after_u, _ = info["oracle"]
    tickers = {}
    for _, m in info["messages"]:
        if "A" in m and "B" in m and m.get("e") in (None, "bookTicker"):
            tickers.setdefault(m["u"], []).append(m)
    # the oracle book itself agrees with every ticker that names a diff's u
    on_diffs = [t for u, ts in tickers.items() if u in best_after_u for t in ts]
    assert len(on_diffs) == tickers_on_diffs
    for t in on_diffs:
        assert best_after_u[t["u"]] == (Decimal(t["b"]), Decimal(t["B"]), Decimal(t["a"]), Decimal(t["A"]))
    checked = 0
    for r in info["results"]:
        for row in _table(r.paths["book"]):
            for t in tickers.get(row["update_id"], []):
                assert (row["bid_px_01"], row["bid_sz_01"], row["ask_px_01"], row["ask_sz_01"]) == (
                    float(t["b"]), float(t["B"]), float(t["a"]), float(t["A"]))
                checked += 1
    assert checked == rows_checked


@pytest.mark.parametrize("venue", VENUES)
def test_trades_are_every_recorded_trade_of_the_hour_once(rebuilt, venue):
    info = rebuilt[venue]
    trades = {}
    for _, m in info["messages"]:
        if m.get("e") == "trade":
            trades.setdefault(m["t"], m)
    for r in info["results"]:
        lo = hour_start_us(r.hour)
        expected = sorted(
            (m["T"] * 1000, m["t"], float(m["p"]), float(m["q"]), m["m"],
             m.get("X", "MARKET") if venue == "binance-futures" else None)
            for m in trades.values() if lo <= m["T"] * 1000 < lo + 3_600_000_000)
        got = [tuple(row.values()) for row in _table(r.paths["trades"])]
        assert got == expected
        assert list(_table(r.paths["trades"])[0]) == ["ts", "trade_id", "price", "qty",
                                                       "is_buyer_maker", "trade_type"]


@pytest.mark.parametrize("venue", VENUES)
def test_the_only_gap_is_before_the_snapshot(rebuilt, venue):
    info = rebuilt[venue]
    depth = [m for _, m in info["messages"] if m.get("e") == "depthUpdate"]
    _, _, first_applied = info["oracle"]
    gaps23 = _table(info["results"][0].paths["gaps"])
    first_applied_u = next(d["u"] for d in depth if d["E"] * 1000 == first_applied)
    assert gaps23 == [{"start_ts": depth[0]["E"] * 1000, "end_ts": first_applied,
                       "reason": "no_snapshot", "first_update_id": None,
                       "last_update_id": first_applied_u}]
    assert _table(info["results"][1].paths["gaps"]) == []


@pytest.mark.parametrize("venue", VENUES)
def test_hour_by_hour_equals_one_pass(rebuilt, venue):
    info = rebuilt[venue]
    hours, problems = rebuild_one_pass(info["settings"], venue, "BTCUSDT")
    assert problems == []
    assert sorted(hours) == info["hours"]
    for r in info["results"]:
        one = hours[r.hour]
        assert [tuple(x.values()) for x in _table(r.paths["book"])] == one.book
        assert [tuple(x.values()) for x in _table(r.paths["trades"])] == one.trades
        assert [tuple(x.values()) for x in _table(r.paths["gaps"])] == one.gaps


def test_rerun_and_replay_replace_partitions_with_identical_rows(rebuilt, tmp_path):
    venue = "binance-futures"      # (spot: replay and checkpoints in test_book_hour_boundaries.py)
    info = rebuilt[venue]
    settings = info["settings"]
    before = {(r.hour, name): _table(p) for r in info["results"] for name, p in r.paths.items()}
    # rerun the second hour from the checkpoint, then without it (replay from the snapshot)
    again = rebuild_hour(settings, venue, "BTCUSDT", H00[venue])
    assert again.started_from == "checkpoint"
    cp = checkpoint_path(settings.data_dir, venue, "BTCUSDT", H23[venue])
    saved = tmp_path / "cp.json"
    shutil.copy(cp, saved)
    cp.unlink()
    replayed = rebuild_hour(settings, venue, "BTCUSDT", H00[venue])
    assert replayed.started_from == "replay"
    shutil.copy(saved, cp)
    first = rebuild_hour(settings, venue, "BTCUSDT", H23[venue])
    # reading in small batches (PROCESS_BATCH_SIZE) changes nothing
    small = rebuild_hour(settings.model_copy(update={"process_batch_size": 997}), venue, "BTCUSDT",
                         H00[venue])
    assert small.started_from == "checkpoint"
    for r in (again, replayed, first, small):
        for name, p in r.paths.items():
            assert _table(p) == before[(r.hour, name)]
        assert not list(p.parent.glob(".*tmp*"))
    assert again.rows == replayed.rows == info["results"][1].rows
