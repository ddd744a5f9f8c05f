"""An older, unrelated capture of the same symbol (an imported recording of another year, or a
session long stopped) must not leak into an hour: replaying it into the hour made every diff of the
hour look like a duplicate (its update ids were higher) and turned the hour into one gap."""

from __future__ import annotations

import importlib.util
from datetime import datetime, timezone
from pathlib import Path

import pyarrow.parquet as pq

from midas.book import rebuild_hour
from midas.config import load_settings

_spec = importlib.util.spec_from_file_location("rawgen", Path(__file__).with_name("rawgen.py"))
g = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(g)

VENUE = "binance"
OLD_HOUR = datetime(2024, 1, 1, 0, tzinfo=timezone.utc)     # g.BASE_MS
NEW_HOUR = datetime(2024, 1, 3, 5, tzinfo=timezone.utc)
NEW_MS = 1704258000000                                      # 2024-01-03T05:00:00Z


def _session(start_ms: int, first_id: int, diffs: int) -> list[dict]:
    """A snapshot, then `diffs` contiguous spot diffs 100 ms apart, bridging the snapshot."""
    recs = [g.snapshot(VENUE, first_id, [("100.00", "1.0")], [("101.00", "2.0")], local_ms=start_ms)]
    for k in range(diffs):
        u = first_id + 1 + k
        recs.append(g.depth(VENUE, start_ms + 100 * (k + 1), u, u,
                            bids=[("100.00", f"{1 + k}.0")], asks=[("101.00", "2.0")]))
    return recs


def _rows(data_dir: Path, dataset: str) -> list[dict]:
    path = next((data_dir / "clean" / dataset).rglob("*.parquet"))
    return pq.read_table(path).to_pylist()


def test_an_older_capture_with_higher_ids_does_not_empty_a_later_hour(tmp_path):
    alone, with_old = tmp_path / "alone", tmp_path / "with_old"
    for data_dir in (alone, with_old):
        g.write_raw(data_dir, VENUE, NEW_HOUR, _session(NEW_MS + 1_000, 500, 50))
    # two days earlier, update ids far above the later session's
    g.write_raw(with_old, VENUE, OLD_HOUR, _session(g.BASE_MS + 1_000, 9_000_000, 50))

    results = {}
    for data_dir in (alone, with_old):
        settings = load_settings(env_file=None, data_dir=data_dir, venue=VENUE, symbols=["BTCUSDT"])
        results[data_dir] = rebuild_hour(settings, VENUE, "BTCUSDT", NEW_HOUR)
    assert results[alone].rows["book"] == 50            # grid rows from the first diff to the last
    assert results[with_old].rows == results[alone].rows
    assert _rows(with_old, "book") == _rows(alone, "book")
    assert _rows(with_old, "gaps") == _rows(alone, "gaps")
    assert _rows(with_old, "book")[-1]["bid_sz_01"] == 50.0


def test_trades_lost_between_the_hours_first_and_last_are_counted(tmp_path):
    from midas.pipeline import process_hour

    recs = _session(NEW_MS + 1_000, 500, 20)
    recs += [g.trade(VENUE, NEW_MS + 1_500 + k, trade_id, "100.50", "0.1", False)
             for k, trade_id in enumerate((70, 71, 74, 75, 79))]        # 72, 73, 76, 77, 78 lost
    g.write_raw(tmp_path, VENUE, NEW_HOUR, recs)
    settings = load_settings(env_file=None, data_dir=tmp_path, venue=VENUE, symbols=["BTCUSDT"])
    result = rebuild_hour(settings, VENUE, "BTCUSDT", NEW_HOUR)
    assert (result.rows["trades"], result.counts["trade_ids_missing"]) == (5, 5)
    summary = process_hour(settings, VENUE, "BTCUSDT", NEW_HOUR)
    assert summary.trades_missing == 5
    assert " trades_missing=5 in " in summary.line()
