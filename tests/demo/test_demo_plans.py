"""The demo's plans: fault timing, the real recordings' facts, and `--continue` seeds whose ids
start above everything already recorded."""

from __future__ import annotations

import pytest

from midas.demo.plans import (FIRST_SEED, continuing_seed, highest_ids, real_plans, recorded_counts,
                              recording_span_seconds, simulated_faults, simulated_plan)
from midas.demo.progress import RawProgress
from midas.exchange import SymbolMarket
from midas.layout import parse_hour, raw_file_path
from midas.raw import RawFileWriter

VENUE = "binance-futures"


def test_simulated_faults_happen_once_whatever_the_length():
    for seconds in (20, 120, 300):
        f = simulated_faults(seconds)
        assert f.drop_diffs == 3 and f.disconnect_every_secs == 0
        drop, age = f.drop_every_secs, f.max_connection_age_secs
        # timed from each connection's opening: the first connection drops diffs, then is closed;
        # the reopened one would meet either only after the collection has ended
        assert drop < age < seconds < age + drop
    plan = simulated_plan(20)
    assert plan.exchange["seed"] == FIRST_SEED and plan.symbols == ["BTCUSDT", "ETHUSDT"]


def test_real_recordings_facts(recordings):
    # the figures of shared/data/binance/README.md
    path = recordings["binance-futures"]
    assert recording_span_seconds(path) == pytest.approx(480, abs=1)
    assert recorded_counts(path) == {"depth": 9022, "trade": 10701, "bookTicker": 52260, "snapshot": 1}
    plans = real_plans(path.parent, 30.0)
    assert [(p.venue, p.recording.name) for p in plans] == [
        ("binance-futures", "usdm-btcusdt-2024-07-18T2357.txt.gz"), ("binance", "spot-btcusdt-2024-08-08T2354.txt.gz")]
    assert plans[0].collect_seconds == round(recording_span_seconds(path) / 30 + 12, 1)
    assert plans[0].exchange == {"venue": "binance-futures", "replay": [path], "speed": 30.0}


def test_real_plans_name_a_missing_recording(tmp_path):
    from midas.errors import DataError
    with pytest.raises(DataError, match="usdm-btcusdt-2024-07-18T2357.txt.gz not found"):
        real_plans(tmp_path, 30.0)


def _write(data_dir, symbol, records):
    w = RawFileWriter(raw_file_path(data_dir, VENUE, symbol, parse_hour("2026-01-01T00"), 0))
    for r in records:
        w.write({"venue": VENUE, "symbol": symbol, "exchange_ts": 1, "local_ts": 1, **r})
    w.close()


def test_continuing_seed_starts_above_the_recorded_ids(tmp_path):
    assert continuing_seed(tmp_path, VENUE, ["BTCUSDT", "ETHUSDT"]) == FIRST_SEED       # nothing recorded
    first = {s: SymbolMarket(s, VENUE, FIRST_SEED) for s in ("BTCUSDT", "ETHUSDT")}
    for s, m in first.items():   # what a first run of seed 7 records: its ids and some more
        _write(tmp_path, s, [
            {"type": "snapshot", "last_update_id": m.last_update_id},
            {"type": "depth", "first_update_id": m.last_update_id + 1, "last_update_id": m.last_update_id + 10**9},
            {"type": "trade", "trade_id": m.next_trade_id + 5000},
            {"type": "event", "event": "connected"}])
    assert highest_ids(tmp_path, VENUE, "BTCUSDT") == (first["BTCUSDT"].last_update_id + 10**9,
                                                       first["BTCUSDT"].next_trade_id + 5000)
    seed = continuing_seed(tmp_path, VENUE, ["BTCUSDT", "ETHUSDT"])
    assert seed > FIRST_SEED
    for s in ("BTCUSDT", "ETHUSDT"):
        m = SymbolMarket(s, VENUE, seed)                          # the exchange's full-size market
        high_update, high_trade = highest_ids(tmp_path, VENUE, s)
        assert m.last_update_id > high_update and m.next_trade_id > high_trade


def test_progress_since_an_earlier_poll():
    assert RawProgress(120, 5, 2, 9000).since(RawProgress(100, 3, 1, 7000)) == RawProgress(20, 2, 2, 2000)
