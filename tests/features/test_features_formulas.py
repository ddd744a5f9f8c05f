"""Every SPEC §3 feature formula on small hand-made books and trades, with hand-computed values."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from midas.config import load_settings
from midas.errors import DataError, LayoutError
from midas.features import FEATURE_COLUMNS, compute_features_hour

FUT = "binance-futures"
SPOT = "binance"
SYM = "BTCUSDT"
H = "2024-07-18T10"


def settings(tmp_path, venue=FUT, **kw):
    return load_settings(env_file=None, data_dir=tmp_path, symbols=[SYM], venue=venue, **kw)


def features_rows(result) -> list[dict]:
    return pq.read_table(result.path).to_pylist()


def test_level_formulas_with_missing_levels(tmp_path, clean):
    # 3 bid levels, 6 ask levels: missing levels count as 0 in the 5- and 10-level sums.
    bids = [(100.0, 1.0), (99.5, 2.0), (99.0, 4.0)]
    asks = [(100.5, 3.0), (101.0, 0.5), (101.5, 0.25), (102.0, 1.0), (102.5, 2.0), (103.0, 8.0)]
    clean.write(tmp_path, "book", FUT, SYM, H, clean.book_table([{"ts": clean.t(H, 0), "bids": bids, "asks": asks}]))
    result = compute_features_hour(settings(tmp_path), FUT, SYM, H)
    assert result.rows == 1
    row = features_rows(result)[0]
    assert row["midprice"] == 100.25
    assert row["spread"] == 0.5
    assert row["spread_bps"] == 0.5 / 100.25 * 10000
    assert row["microprice"] == (100.0 * 3.0 + 100.5 * 1.0) / 4.0 == 100.125
    assert row["imbalance"] == (1.0 - 3.0) / 4.0 == -0.5
    assert row["imbalance_5"] == (7.0 - 6.75) / 13.75
    assert row["imbalance_10"] == (7.0 - 14.75) / 21.75
    assert (row["liquidity_1"], row["liquidity_5"], row["liquidity_10"]) == (4.0, 13.75, 21.75)
    # the book columns are kept as they are, in front of the features
    assert row["bid_px_03"] == 99.0 and row["bid_px_04"] is None and row["ask_sz_06"] == 8.0
    names = pq.read_schema(result.path).names
    assert names[-len(FEATURE_COLUMNS):] == list(FEATURE_COLUMNS)
    assert names[0] == "ts" and "update_id" in names and "book_age_ms" in names


def test_ofi_when_best_prices_move_up_down_and_stay_and_after_a_gap(tmp_path, clean):
    rows = [
        {"ts": clean.t(H, 0), "bids": [(100.0, 2.0)], "asks": [(101.0, 3.0)]},
        # bid up (e_b = +qb = 1.0), ask unchanged (-qa + qa' = -2.0 + 3.0): ofi 2.0
        {"ts": clean.t(H, 100), "bids": [(100.5, 1.0)], "asks": [(101.0, 2.0)]},
        # bid down (e_b = -qb' = -1.0), ask down (e_a = -qa = -0.5): ofi -1.5
        {"ts": clean.t(H, 200), "bids": [(100.0, 4.0)], "asks": [(100.75, 0.5)]},
        # bid unchanged (5.0 - 4.0), ask up (+qa' = 0.5): ofi 1.5
        {"ts": clean.t(H, 300), "bids": [(100.0, 5.0)], "asks": [(101.0, 2.5)]},
        # grid time 400 missing (a gap): the row at 500 has no ofi
        {"ts": clean.t(H, 500), "bids": [(100.0, 5.0)], "asks": [(101.0, 2.5)]},
        # both prices unchanged: the seed's dBidSize - dAskSize = 0.25 - (-0.5)
        {"ts": clean.t(H, 600), "bids": [(100.0, 5.25)], "asks": [(101.0, 2.0)]},
    ]
    clean.write(tmp_path, "book", FUT, SYM, H, clean.book_table(rows))
    out = features_rows(compute_features_hour(settings(tmp_path, ofi_window=3), FUT, SYM, H))
    assert [r["ofi"] for r in out] == [None, 2.0, -1.5, 1.5, None, 0.75]
    # ofi_10 (OFI_WINDOW=3): sum over (ts - 300 ms, ts]; the gap shortens the window
    assert [r["ofi_10"] for r in out] == [None, 2.0, 0.5, 2.0, 1.5, 0.75]
    assert [r["ofi_cumulative"] for r in out] == [None, 2.0, 0.5, 2.0, 2.0, 2.75]


def test_taker_volumes_buckets_market_only_and_last_trade(tmp_path, clean):
    rows = [{"ts": clean.t(H, ms), "bids": [(100.0, 1.0)], "asks": [(100.5, 1.0)]} for ms in (0, 100, 200, 300)]
    clean.write(tmp_path, "book", FUT, SYM, H, clean.book_table(rows))
    trades = [
        (clean.t(H, 0), 10, 100.5, 0.5, False, "MARKET"),           # in the bucket of ts 0 (T == ts)
        (clean.t(H, 1), 11, 100.0, 0.25, True, "MARKET"),           # (0, 100]
        (clean.t(H, 100), 12, 100.5, 1.5, False, "MARKET"),         # (0, 100], the last one at 100
        (clean.t(H, 150), 13, 99.0, 7.0, True, "INSURANCE_FUND"),   # not market activity
        (clean.t(H, 250), 15, 100.5, 0.125, True, "MARKET"),        # same T: trade_id 15 is last
        (clean.t(H, 250), 14, 100.25, 0.375, True, "MARKET"),
    ]
    clean.write(tmp_path, "trades", FUT, SYM, H, clean.trades_table(trades))
    out = features_rows(compute_features_hour(settings(tmp_path), FUT, SYM, H))
    assert [r["taker_buy_volume"] for r in out] == [0.5, 1.5, 0.0, 0.0]
    assert [r["taker_sell_volume"] for r in out] == [0.0, 0.25, 0.0, 0.5]
    assert [r["signed_volume"] for r in out] == [0.5, 1.25, 0.0, -0.5]
    assert [r["volume_imbalance"] for r in out] == [1.0, 1.25 / 1.75, 0.0, -1.0]
    assert [r["trade_count"] for r in out] == [1, 2, 0, 2]
    assert [r["last_trade_px"] for r in out] == [100.5, 100.5, 100.5, 100.5]
    assert [r["last_trade_qty"] for r in out] == [0.5, 1.5, 1.5, 0.125]


def test_spot_counts_every_trade(tmp_path, clean):
    rows = [{"ts": clean.t(H, 100), "bids": [(100.0, 1.0)], "asks": [(100.5, 1.0)]}]
    clean.write(tmp_path, "book", SPOT, SYM, H, clean.book_table(rows))
    trades = [(clean.t(H, 50), 1, 100.5, 0.5, False, None), (clean.t(H, 60), 2, 100.0, 0.25, True, None)]
    clean.write(tmp_path, "trades", SPOT, SYM, H, clean.trades_table(trades))
    row = features_rows(compute_features_hour(settings(tmp_path, venue=SPOT), SPOT, SYM, H))[0]
    assert (row["taker_buy_volume"], row["taker_sell_volume"], row["trade_count"]) == (0.5, 0.25, 2)
    assert (row["last_trade_px"], row["last_trade_qty"]) == (100.0, 0.25)


def test_hour_without_trades_takes_last_trade_from_earlier_hours(tmp_path, clean):
    earlier = "2024-07-18T07"
    clean.write(tmp_path, "trades", FUT, SYM, earlier, clean.trades_table([
        (clean.t(earlier, 5_000), 1, 99.5, 2.0, False, "MARKET"),
        (clean.t(earlier, 6_000), 2, 98.0, 9.0, False, "ADL"),   # not MARKET: never the last trade
    ]))
    clean.write(tmp_path, "trades", FUT, SYM, "2024-07-18T09", clean.trades_table([]))
    clean.write(tmp_path, "book", FUT, SYM, H, clean.book_table(
        [{"ts": clean.t(H, 0), "bids": [(100.0, 1.0)], "asks": [(100.5, 1.0)]}]))
    row = features_rows(compute_features_hour(settings(tmp_path), FUT, SYM, H))[0]
    assert (row["last_trade_px"], row["last_trade_qty"]) == (99.5, 2.0)
    assert (row["taker_buy_volume"], row["taker_sell_volume"], row["trade_count"]) == (0.0, 0.0, 0)
    assert row["volume_imbalance"] == 0.0


def test_no_trade_ever_gives_nulls(tmp_path, clean):
    clean.write(tmp_path, "book", FUT, SYM, H, clean.book_table(
        [{"ts": clean.t(H, 0), "bids": [], "asks": [(100.5, 1.0)]}]))
    row = features_rows(compute_features_hour(settings(tmp_path), FUT, SYM, H))[0]
    assert row["last_trade_px"] is None and row["last_trade_qty"] is None
    # an empty bid side: no midprice, imbalance counts the missing side as 0
    assert row["midprice"] is None and row["microprice"] is None and row["imbalance"] == -1.0


def test_parquet_layout_row_groups_and_rerun(tmp_path, clean):
    rows = [{"ts": clean.t(H, 100 * k), "bids": [(100.0, 1.0)], "asks": [(100.5, 1.0)]} for k in range(5)]
    clean.write(tmp_path, "book", FUT, SYM, H, clean.book_table(rows))
    s = settings(tmp_path, parquet_row_group_size=2)
    first = compute_features_hour(s, FUT, SYM, H)
    meta = pq.ParquetFile(first.path).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [2, 2, 1]
    assert meta.row_group(0).column(0).compression == "ZSTD"
    # the settings behind the windowed columns travel with the partition
    kv = pq.read_schema(first.path).metadata
    assert (kv[b"midas.ofi_window"], kv[b"midas.time_bucket_us"], kv[b"midas.snapshot_interval_us"]) == (
        b"10", b"100000", b"100000")
    wider = compute_features_hour(settings(tmp_path, ofi_window=50, time_bucket_ms=1000), FUT, SYM, H)
    kv = pq.read_schema(wider.path).metadata
    assert (kv[b"midas.ofi_window"], kv[b"midas.time_bucket_us"]) == (b"50", b"1000000")
    assert str(first.path).endswith(
        "features/venue=binance-futures/symbol=BTCUSDT/date=2024-07-18/hour=10/part-0.parquet")
    again = compute_features_hour(s, FUT, SYM, H)
    assert pq.read_table(again.path).equals(pq.read_table(first.path))
    assert sorted(p.name for p in first.path.parent.iterdir()) == ["part-0.parquet"]


def test_empty_book_hour_gives_empty_features(tmp_path, clean):
    clean.write(tmp_path, "book", FUT, SYM, H, clean.book_table([]))
    result = compute_features_hour(settings(tmp_path), FUT, SYM, H)
    assert result.rows == 0
    assert pq.read_schema(result.path).names[-len(FEATURE_COLUMNS):] == list(FEATURE_COLUMNS)


def test_missing_or_bad_book_partition_is_a_clear_error(tmp_path, clean):
    s = settings(tmp_path)
    with pytest.raises(DataError, match=r"no clean/book partition for binance-futures BTCUSDT hour 2024-07-18T10"):
        compute_features_hour(s, FUT, SYM, H)
    rows = [{"ts": clean.t(H, ms), "bids": [(100.0, 1.0)], "asks": [(100.5, 1.0)]} for ms in (0, 200, 100)]
    path = clean.write(tmp_path, "book", FUT, SYM, H, clean.book_table(rows))
    with pytest.raises(DataError, match=r"part-0.parquet: grid times not strictly increasing at row 2"):
        compute_features_hour(s, FUT, SYM, H)
    path.unlink()
    clean.write(tmp_path, "book", FUT, SYM, H, clean.book_table(
        [{"ts": clean.t(H, 50), "bids": [(100.0, 1.0)], "asks": [(100.5, 1.0)]}]))
    with pytest.raises(DataError, match=r"is not on the 100 ms grid"):
        compute_features_hour(s, FUT, SYM, H)


@pytest.mark.parametrize("symbol", ["../etc", "BTC'; DROP TABLE x; --", "a/b", ""])
def test_symbol_that_would_escape_or_inject_is_refused(tmp_path, symbol):
    with pytest.raises(LayoutError, match="is not allowed"):
        compute_features_hour(settings(tmp_path), FUT, symbol, H)


@pytest.mark.parametrize("hour", ["2024-07-18T10'; DROP", "../2024-07-18T10", "2024-13-01T00"])
def test_hour_that_would_inject_is_refused(tmp_path, hour):
    with pytest.raises(LayoutError, match="hour"):
        compute_features_hour(settings(tmp_path), FUT, SYM, hour)


def test_unsorted_lookback_partition_is_refused(tmp_path, clean):
    prev = "2024-07-18T09"
    clean.write(tmp_path, "book", FUT, SYM, prev, clean.book_table(
        [{"ts": clean.t(prev, ms), "bids": [(100.0, 1.0)], "asks": [(100.5, 1.0)]}
         for ms in (3_599_900, 3_599_800)]))
    clean.write(tmp_path, "book", FUT, SYM, H, clean.book_table(
        [{"ts": clean.t(H, 0), "bids": [(100.0, 1.0)], "asks": [(100.5, 1.0)]}]))
    with pytest.raises(DataError, match="grid times not strictly increasing at row 1"):
        compute_features_hour(settings(tmp_path), FUT, SYM, H)


def test_cli_features_recomputes_and_registers(tmp_path, clean, capsys):
    from midas.catalog import run_query
    from midas.cli import main

    clean.write(tmp_path, "book", FUT, SYM, H, clean.book_table(
        [{"ts": clean.t(H, 100 * k), "bids": [(100.0, 1.0 + k)], "asks": [(100.5, 1.0)]} for k in range(4)]))
    assert main(["features", "--data-dir", str(tmp_path), "--venue", FUT, "--symbols", SYM]) == 0
    assert capsys.readouterr().out.startswith("binance-futures BTCUSDT 2024-07-18T10: features=4 in ")
    assert run_query(settings(tmp_path), "SELECT dataset, rows FROM partitions ORDER BY dataset")[1] == [
        ("book", 4), ("features", 4)]
    assert main(["features", "--data-dir", str(tmp_path), "--hour", "2024-07-18T11"]) == 2
    assert "no clean/book partition for binance-futures BTCUSDT hour 2024-07-18T11" in capsys.readouterr().err


def test_hour_boundary_by_hand(tmp_path, clean):
    prev, hour = "2024-07-18T09", H
    clean.write(tmp_path, "book", FUT, SYM, prev, clean.book_table([
        {"ts": clean.t(prev, 3_599_800), "bids": [(100.0, 1.0)], "asks": [(100.5, 1.0)]},
        {"ts": clean.t(prev, 3_599_900), "bids": [(100.0, 3.0)], "asks": [(100.5, 1.0)]},   # ofi 2.0
    ]))
    clean.write(tmp_path, "trades", FUT, SYM, prev, clean.trades_table([
        (clean.t(prev, 3_599_950), 7, 100.5, 0.75, False, "MARKET"),   # in (10:00 - 100 ms, 10:00]
    ]))
    clean.write(tmp_path, "book", FUT, SYM, hour, clean.book_table([
        {"ts": clean.t(hour, 0), "bids": [(100.5, 0.5)], "asks": [(101.0, 2.0)]},  # bid up, ask up
        {"ts": clean.t(hour, 100), "bids": [(100.5, 0.5)], "asks": [(101.0, 1.5)]},
    ]))
    clean.write(tmp_path, "trades", FUT, SYM, hour, clean.trades_table([]))
    s = settings(tmp_path, ofi_window=3)
    first = features_rows(compute_features_hour(s, FUT, SYM, prev))
    assert [r["ofi"] for r in first] == [None, 2.0]
    out = features_rows(compute_features_hour(s, FUT, SYM, hour))
    # 10:00:00.000 against 09:59:59.900: e_b = +qb = 0.5 (bid up); e_a = +qa' = 1.0 (ask up)
    assert [r["ofi"] for r in out] == [1.5, 0.5]
    # ofi_10 over (ts - 300 ms, ts]: 09:59:59.800 (null), .900 (2.0), 10:00:00.000 (1.5)
    assert [r["ofi_10"] for r in out] == [3.5, 4.0]
    assert [r["ofi_cumulative"] for r in out] == [3.5, 4.0]
    assert [r["taker_buy_volume"] for r in out] == [0.75, 0.0]
    assert [r["trade_count"] for r in out] == [1, 0]
    assert [r["last_trade_px"] for r in out] == [100.5, 100.5]
    assert [r["last_trade_qty"] for r in out] == [0.75, 0.75]


def test_failed_hour_leaves_nothing_for_the_next_one(tmp_path, clean):
    """Each thread keeps one feature connection between hours; an error drops it, and the next
    hour on that thread gives exactly what a fresh thread gives."""
    import threading

    import midas.features as features

    s = settings(tmp_path)
    other = "2024-07-19T05"
    rows = [{"ts": clean.t(other, 100 * k), "bids": [(100.0 + k, 1.0 + k)], "asks": [(101.0 + k, 2.0)]}
            for k in range(4)]
    clean.write(tmp_path, "book", FUT, SYM, other, clean.book_table(rows))
    fresh: list = []
    worker = threading.Thread(target=lambda: fresh.extend(features_rows(compute_features_hour(s, FUT, SYM, other))))
    worker.start()
    worker.join()
    # bid and ask both up one tick: ofi = new bid size + previous ask size
    assert [r["ofi"] for r in fresh] == [None, 4.0, 5.0, 6.0]

    unsorted = [{"ts": clean.t(H, ms), "bids": [(100.0, 1.0)], "asks": [(100.5, 1.0)]} for ms in (0, 200, 100)]
    clean.write(tmp_path, "book", FUT, SYM, H, clean.book_table(unsorted))
    kept = features.thread_connection()
    with pytest.raises(DataError, match="not strictly increasing"):
        compute_features_hour(s, FUT, SYM, H)
    replaced = features.thread_connection()
    assert replaced is not kept
    assert features_rows(compute_features_hour(s, FUT, SYM, other)) == fresh
    assert features.thread_connection() is replaced
