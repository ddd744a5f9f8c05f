"""End to end against the local exchange: the collector records a market (each venue) with gaps
(dropped diffs), duplicates, disconnects and malformed frames injected; the rebuild's rows are
compared with the exchange's ground truth book at every grid time."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from midas.book import raw_hours, rebuild_hour
from midas.collector import run_collector
from midas.config import load_settings
from midas.exchange import Faults, LocalExchange, read_truth_book, read_truth_trades



def _levels(row, side):
    out = []
    for i in range(1, 11):
        px = row[f"{side}_px_{i:02d}"]
        if px is None:
            break
        out.append((px, row[f"{side}_sz_{i:02d}"]))
    return out


@pytest.mark.parametrize("venue", ["binance-futures", "binance"])
def test_rows_equal_the_exchange_truth_and_missing_rows_lie_in_gaps(tmp_path, venue):
    truth_dir, data = tmp_path / "truth", tmp_path / "data"
    faults = Faults(drop_diffs=3, drop_every_secs=2.0, duplicate_every=7, malformed_every=13,
                    disconnect_every_secs=3.5)
    with LocalExchange(venue=venue, symbols=["BTCUSDT"], seed=7, faults=faults,
                       truth_dir=truth_dir) as ex:
        settings = load_settings(env_file=None, data_dir=data, ws_url=ex.ws_url, rest_url=ex.rest_url,
                                 venue=venue, symbols=["BTCUSDT"], reconnect_delay_secs=0.2,
                                 stall_timeout_secs=5)
        run_collector(settings, duration=8)
    results = [rebuild_hour(settings, venue, "BTCUSDT", h) for h in raw_hours(settings, venue, "BTCUSDT")]
    rows = [r for res in results for r in pq.read_table(res.paths["book"]).to_pylist()]
    gaps = [g for res in results for g in pq.read_table(res.paths["gaps"]).to_pylist()]
    trades = [t for res in results for t in pq.read_table(res.paths["trades"]).to_pylist()]
    truth = {ts: (bids, asks) for ts, bids, asks in read_truth_book(truth_dir, "BTCUSDT")}

    assert len(rows) >= 30
    for row in rows:
        bids, asks = truth[row["ts"]]
        assert _levels(row, "bid") == [(float(p), float(q)) for p, q in bids]
        assert _levels(row, "ask") == [(float(p), float(q)) for p, q in asks]
    # every truth row of the recorded span that is missing lies inside a recorded gap
    emitted = {r["ts"] for r in rows}
    first, last = min(emitted), max(emitted)
    missing = [ts for ts in truth if first <= ts <= last and ts not in emitted]
    assert missing, "the injected faults must cost some rows"
    for ts in missing:
        assert any(g["start_ts"] <= ts <= g["end_ts"] for g in gaps), ts
    # dropped diffs are sequence gaps, lost connections are disconnections; nothing else happened
    assert {g["reason"] for g in gaps if g["reason"] != "no_snapshot"} == {"sequence_gap", "disconnected"}
    assert all(g["last_update_id"] is None or g["last_update_id"] > g["first_update_id"]
               for g in gaps if g["first_update_id"] is not None)
    assert all(res.counts["crossed"] == 0 for res in results)
    assert all(res.problems == [] for res in results)    # malformed frames never reach the files
    # trades: each once, each a real trade of the exchange
    true_trades = {t["trade_id"]: t for t in read_truth_trades(truth_dir, "BTCUSDT")}
    assert len({t["trade_id"] for t in trades}) == len(trades) > 0
    for t in trades:
        real = true_trades[t["trade_id"]]
        assert (t["ts"], t["price"], t["qty"], t["is_buyer_maker"]) == (
            real["trade_ts"], float(real["price"]), float(real["qty"]), real["is_buyer_maker"])
