"""Several hours in one pass (midas.features.hours): the partitions are the ones hour by hour gives,
whatever the grouping (days, a size limit, a missing hour, a data directory DuckDB would glob)."""

from __future__ import annotations

import shutil
import threading

import pyarrow.parquet as pq
import pytest

import midas.features.hours as hours_module
from midas.config import load_settings
from midas.errors import DataError
from midas.features import compute_features_hour, compute_features_hours
from midas.layout import hour_start_us, parse_hour, partition_file
from tests.features.test_features_hour_boundaries import (FUT, HOURS, SYM, assert_matches_oracle,
                                                          make_day, write_day)


def _settings(data_dir, **kw):
    return load_settings(env_file=None, data_dir=data_dir, symbols=[SYM], venue=FUT, **kw)


def _partitions(data_dir) -> dict[str, object]:
    """hour -> the features partition read whole (values, types and metadata)."""
    out = {}
    for hour in HOURS:
        path = partition_file(data_dir, "features", FUT, SYM, hour)
        if path.is_file():
            out[hour] = pq.read_table(path)
    return out


def _same_partitions(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for hour in a:
        assert a[hour].equals(b[hour], check_metadata=True), hour


@pytest.fixture
def day(tmp_path, clean):
    rows, trades = make_day(clean, seed=11)
    trades = write_day(tmp_path / "data", clean, rows, trades)
    oracle = clean.oracle(rows, trades, interval_us=100_000, ofi_window=10, bucket_us=100_000,
                          market_only=True)
    return tmp_path / "data", oracle


def _hour_by_hour(data_dir, reference_dir) -> dict:
    shutil.copytree(data_dir / "clean", reference_dir / "clean")
    s = _settings(reference_dir)
    for hour in HOURS:
        compute_features_hour(s, FUT, SYM, hour)
    return _partitions(reference_dir)


def test_one_call_over_two_days_equals_hour_by_hour(tmp_path, day):
    data_dir, oracle = day
    reference = _hour_by_hour(data_dir, tmp_path / "reference")
    written = []
    results = compute_features_hours(_settings(data_dir), FUT, SYM, reversed(HOURS),
                                     on_written=written.append)
    assert [r.hour for r in results] == [r.hour for r in written]
    assert [f"{r.hour:%Y-%m-%dT%H}" for r in results] == HOURS          # oldest first, each once
    assert [r.rows for r in results] == [35, 39, 35]
    # 22 sums the day's books; 23 is in 22's pass; 00 starts a new day (a new pass)
    assert [r.ofi_carry_source for r in results] == ["book", "span", "none"]
    assert_matches_oracle(results, oracle)
    _same_partitions(_partitions(data_dir), reference)


def test_size_limit_splits_a_day_and_carries_the_ofi_sum(tmp_path, day, monkeypatch):
    data_dir, oracle = day
    reference = _hour_by_hour(data_dir, tmp_path / "reference")
    monkeypatch.setattr(hours_module, "MAX_SPAN_ROWS", 36)       # 22 (35 rows) and 23 (39) apart
    results = compute_features_hours(_settings(data_dir), FUT, SYM, HOURS)
    assert [r.ofi_carry_source for r in results] == ["book", "span", "none"]
    assert_matches_oracle(results, oracle)
    _same_partitions(_partitions(data_dir), reference)


def test_hours_not_consecutive_are_separate_passes(tmp_path, day):
    data_dir, oracle = day
    reference = _hour_by_hour(data_dir, tmp_path / "reference")
    results = compute_features_hours(_settings(data_dir), FUT, SYM, [HOURS[0], HOURS[2]])
    assert [r.ofi_carry_source for r in results] == ["book", "none"]
    results += compute_features_hours(_settings(data_dir), FUT, SYM, [HOURS[1]])
    assert results[-1].ofi_carry_source == "features"
    assert_matches_oracle(results, oracle)
    _same_partitions(_partitions(data_dir), reference)


def test_first_hour_of_a_day_on_a_fresh_thread(tmp_path, day):
    """The first computation of a thread's connection, with no carry or seed query before it (a
    day's first hour): the SQL must read the hour's partitions, not the connection's placeholders."""
    data_dir, oracle = day
    got: list = []
    errors: list = []

    def run():
        try:
            got.append(compute_features_hour(_settings(data_dir), FUT, SYM, HOURS[2]))
        except Exception as e:  # noqa: BLE001 - re-raised in the test's thread
            errors.append(e)

    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    assert not errors, errors
    assert got[0].rows == 35
    assert_matches_oracle(got, {ts: f for ts, f in oracle.items()
                                if ts >= got[0].hour.timestamp() * 1_000_000})


def test_data_dir_with_glob_characters(tmp_path, day):
    """DuckDB's read_parquet would expand `[...]` as a pattern: such a directory is read by pyarrow."""
    data_dir, oracle = day
    reference = _hour_by_hour(data_dir, tmp_path / "reference")
    odd = tmp_path / "runs [2024]*"
    shutil.copytree(data_dir, odd)
    results = compute_features_hours(_settings(odd), FUT, SYM, HOURS)
    assert_matches_oracle(results, oracle)
    _same_partitions(_partitions(odd), reference)


def test_missing_book_partition_fails_before_writing(tmp_path, day):
    data_dir, _ = day
    partition_file(data_dir, "book", FUT, SYM, HOURS[1]).unlink()
    with pytest.raises(DataError, match=r"no clean/book partition .* hour 2024-07-18T23"):
        compute_features_hours(_settings(data_dir), FUT, SYM, HOURS)
    assert _partitions(data_dir) == {}


def test_book_columns_copied_or_encoded_again_give_the_same_partition(tmp_path, day):
    """The book columns are copied from the book partition when its row groups are the configured
    ones; with another PARQUET_ROW_GROUP_SIZE the whole partition is encoded again in groups of
    that size. Both read back as the same table."""
    data_dir, oracle = day
    copied = compute_features_hours(_settings(data_dir), FUT, SYM, HOURS)
    copied_tables = _partitions(data_dir)
    assert [pq.ParquetFile(r.path).metadata.num_row_groups for r in copied] == [1, 1, 1]
    # dictionary pages only where copied: the book rebuild's (here pyarrow's default) encoding
    first = pq.ParquetFile(copied[0].path).metadata.row_group(0)
    assert first.column(1).dictionary_page_offset is not None           # a book column, copied
    assert first.column(first.num_columns - 1).dictionary_page_offset is None   # liquidity_10

    encoded = compute_features_hours(_settings(data_dir, parquet_row_group_size=10), FUT, SYM, HOURS)
    assert [[pq.ParquetFile(r.path).metadata.row_group(i).num_rows
             for i in range(pq.ParquetFile(r.path).metadata.num_row_groups)] for r in encoded] == [
        [10, 10, 10, 5], [10, 10, 10, 9], [10, 10, 10, 5]]
    assert pq.ParquetFile(encoded[0].path).metadata.row_group(0).column(1).dictionary_page_offset is None
    _same_partitions(_partitions(data_dir), copied_tables)
    assert_matches_oracle(encoded, oracle)


def test_book_rebuilt_while_its_features_are_computed(tmp_path, day, monkeypatch):
    """A book partition replaced between the feature query and the write is refused, not paired
    with features computed from the rows it had before; the old features partition stays."""
    data_dir, _ = day
    compute_features_hours(_settings(data_dir), FUT, SYM, [HOURS[2]])
    before = _partitions(data_dir)
    book = partition_file(data_dir, "book", FUT, SYM, HOURS[2])
    real_sql = hours_module.run_feature_sql

    def sql_then_rebuild(*args, **kw):
        out = real_sql(*args, **kw)
        table = pq.read_table(book)
        pq.write_table(table.slice(0, table.num_rows - 1), book)     # the rebuild lands meanwhile
        return out

    monkeypatch.setattr(hours_module, "run_feature_sql", sql_then_rebuild)
    with pytest.raises(DataError, match="changed while its features were computed"):
        compute_features_hours(_settings(data_dir), FUT, SYM, [HOURS[2]])
    _same_partitions(_partitions(data_dir), before)


def test_partitions_of_other_depths_and_an_empty_hour_in_one_pass(tmp_path, clean):
    """DuckDB reads the book partitions by column name: a shallower partition (ORDER_BOOK_DEPTH 3)
    after a deeper one gives NULL levels (counted as 0), and an hour without rows (all in a gap)
    gets an empty partition, in the same pass as its neighbours."""
    rows, trades = make_day(clean, seed=5)
    thin = [dict(r, bids=r["bids"][:3], asks=r["asks"][:3]) for r in rows]
    data_dir = tmp_path / "data"
    trades = write_day(data_dir, clean, thin, trades)
    start = hour_start_us(parse_hour(HOURS[1]))
    in_second = [r for r in thin if start <= r["ts"] < start + 3_600_000_000]
    clean.write(data_dir, "book", FUT, SYM, HOURS[1], clean.book_table(in_second, depth=3))
    assert len(pq.read_schema(partition_file(data_dir, "book", FUT, SYM, HOURS[1])).names) == 3 + 4 * 3
    empty = "2024-07-19T01"
    clean.write(data_dir, "book", FUT, SYM, empty, clean.book_table([]))
    results = compute_features_hours(_settings(data_dir), FUT, SYM, [*HOURS, empty])
    assert [r.rows for r in results] == [35, 39, 35, 0]
    assert [r.ofi_carry_source for r in results] == ["book", "span", "none", "span"]
    assert pq.read_table(results[3].path).num_rows == 0
    oracle = clean.oracle(thin, trades, interval_us=100_000, ofi_window=10, bucket_us=100_000,
                          market_only=True)
    assert_matches_oracle(results[:3], oracle)


def test_unreadable_partition_is_a_data_error_naming_it(tmp_path, day):
    data_dir, _ = day
    before = _partitions(data_dir)
    trades = partition_file(data_dir, "trades", FUT, SYM, HOURS[1])
    trades.write_bytes(b"PAR1 not really parquet")
    with pytest.raises(DataError, match=r"trades/.*hour=23/part-0.parquet: cannot read this Parquet partition"):
        compute_features_hours(_settings(data_dir), FUT, SYM, HOURS)
    assert _partitions(data_dir) == before
