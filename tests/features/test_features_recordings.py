"""The real Binance recordings, imported and processed hour by hour with process_hour: the features
equal one pass over the whole recording and the plain-Python oracle of SPEC §3 (exact equality)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from midas.book import raw_hours
from midas.catalog import run_query
from midas.config import load_settings
from midas.features import (FEATURE_COLUMNS, FeatureParams, book_input_table,
                            compute_feature_columns, feature_connection)
from midas.importer import import_recording
from midas.layout import format_hour, partition_file
from midas.pipeline import process_hour

SYM = "BTCUSDT"
EXPECTED_HOURS = {"binance": ["2024-08-08T23", "2024-08-09T00"],
                  "binance-futures": ["2024-07-18T23", "2024-07-19T00"]}


@pytest.fixture(scope="module", params=["binance", "binance-futures"])
def processed(request, recordings, tmp_path_factory):
    venue = request.param
    data_dir = tmp_path_factory.mktemp(f"rec-{venue}")
    import_recording(recordings[venue], venue, data_dir)
    s = load_settings(env_file=None, data_dir=data_dir, symbols=[SYM], venue=venue)
    hours = raw_hours(s, venue, SYM)
    summaries = [process_hour(s, venue, SYM, h) for h in hours]
    return venue, s, hours, summaries


def _book_rows(table: pa.Table, depth: int) -> list[dict]:
    rows = []
    for r in table.to_pylist():
        bids = [(r[f"bid_px_{i:02d}"], r[f"bid_sz_{i:02d}"]) for i in range(1, depth + 1)
                if r[f"bid_px_{i:02d}"] is not None]
        asks = [(r[f"ask_px_{i:02d}"], r[f"ask_sz_{i:02d}"]) for i in range(1, depth + 1)
                if r[f"ask_px_{i:02d}"] is not None]
        rows.append({"ts": r["ts"], "bids": bids, "asks": asks})
    return rows


def _read(s, dataset, venue, hours) -> pa.Table:
    return pa.concat_tables([pq.read_table(partition_file(s.data_dir, dataset, venue, SYM, h))
                             for h in hours])


def test_hour_summaries_and_catalog(processed):
    venue, s, hours, summaries = processed
    assert [format_hour(h) for h in hours] == EXPECTED_HOURS[venue]
    for hour, summary in zip(hours, summaries):
        assert summary.rows["features"] == summary.rows["book"] > 1000
        gaps = pq.read_table(partition_file(s.data_dir, "gaps", venue, SYM, hour)).column("reason").to_pylist()
        assert summary.gaps == summary.rows["gaps"] == len(gaps)
        assert summary.gap_reasons == {r: gaps.count(r) for r in set(gaps)}
        assert set(summary.stage_seconds) == {"rebuild", "features", "catalog"}
        assert summary.seconds >= sum(summary.stage_seconds.values())
    columns, rows = run_query(s, "SELECT dataset, hour, rows FROM partitions WHERE dataset IN "
                                 "('book', 'features') ORDER BY dataset, date, hour")
    expected = [("book", h.hour, x.rows["book"]) for h, x in zip(hours, summaries)]
    expected += [("features", h.hour, x.rows["features"]) for h, x in zip(hours, summaries)]
    assert columns == ["dataset", "hour", "rows"] and rows == expected
    _, counted = run_query(s, "SELECT count(*) FROM features f JOIN book b USING (venue, symbol, ts)")
    assert counted == [(sum(x.rows["book"] for x in summaries),)]


def test_hour_by_hour_equals_plain_python_oracle(processed, clean):
    venue, s, hours, _ = processed
    book = _read(s, "book", venue, hours)
    trades = _read(s, "trades", venue, hours)
    oracle = clean.oracle(_book_rows(book, s.order_book_depth),
                          [tuple(t.values()) for t in trades.select(
                              ["ts", "trade_id", "price", "qty", "is_buyer_maker", "trade_type"]).to_pylist()],
                          interval_us=s.snapshot_interval_us, ofi_window=s.ofi_window,
                          bucket_us=s.time_bucket_ms * 1000, market_only=(venue == "binance-futures"))
    features = _read(s, "features", venue, hours)
    assert features.num_rows == len(oracle) == book.num_rows
    mismatches = []
    for row in features.select(["ts", *FEATURE_COLUMNS]).to_pylist():
        want = oracle[row.pop("ts")]
        if row != want:
            mismatches.append({k: (row[k], want[k]) for k in row if row[k] != want[k]})
    assert mismatches == []
    # the data exercises what matters: moves of the best prices, trades, and non-null windows
    assert features.column("ofi").null_count < 5
    assert sum(1 for v in features.column("trade_count").to_pylist() if v) > 500


def test_hour_by_hour_equals_one_pass(processed):
    venue, s, hours, _ = processed
    book = _read(s, "book", venue, hours)
    trades = _read(s, "trades", venue, hours).select(
        ["ts", "trade_id", "price", "qty", "is_buyer_maker", "trade_type"])
    params = FeatureParams.from_settings(s, venue, hours[0])
    con = feature_connection()
    try:
        one_pass = compute_feature_columns(con, book_input_table(book), trades, params, None, None)
    finally:
        con.close()
    by_hour = _read(s, "features", venue, hours).select(["ts", *FEATURE_COLUMNS])
    assert one_pass.num_rows == by_hour.num_rows
    assert one_pass.to_pylist() == by_hour.to_pylist()


def test_cli_process_reruns_an_hour_to_the_same_result(processed, capsys):
    from midas.cli import main

    venue, s, hours, summaries = processed
    before = pq.read_table(partition_file(s.data_dir, "features", venue, SYM, hours[1]))
    assert main(["process", "--data-dir", str(s.data_dir), "--venue", venue, "--symbols", SYM,
                 "--hour", format_hour(hours[1])]) == 0
    rows = summaries[1].rows
    assert capsys.readouterr().out.startswith(
        f"{venue} {SYM} {format_hour(hours[1])}: book={rows['book']} trades={rows['trades']} "
        f"features={rows['features']} gaps={summaries[1].gaps}")
    after = pq.read_table(partition_file(s.data_dir, "features", venue, SYM, hours[1]))
    assert after.equals(before)
