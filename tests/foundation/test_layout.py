"""Paths under DATA_DIR: names per SPEC, and nothing from input can escape DATA_DIR."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from midas.errors import LayoutError
from midas.layout import (check_date, check_symbol, hour_of_us, hours_between, list_raw_files,
                          parse_hour, parse_raw_file_name, partition_file, raw_file_path)


def test_raw_file_path_follows_spec():
    p = raw_file_path(Path("d"), "binance-futures", "btcusdt", parse_hour("2024-07-18T23"), 2)
    assert p == Path("d/raw/binance-futures/BTCUSDT/2024-07-18/BTCUSDT_20240718T23_2.jsonl.zst")
    partial = raw_file_path(Path("d"), "binance", "ETHUSDT", parse_hour("2024-07-18T00"), 0, partial=True)
    assert partial.name == "ETHUSDT_20240718T00_0.jsonl.zst.partial"


def test_partition_file_follows_spec():
    p = partition_file(Path("d"), "book", "binance", "btcusdt", parse_hour("2024-08-09T00"))
    assert p == Path("d/clean/book/venue=binance/symbol=BTCUSDT/date=2024-08-09/hour=00/part-0.parquet")
    f = partition_file(Path("d"), "features", "binance", "BTCUSDT", parse_hour("2024-08-09T00"))
    assert f == Path("d/features/venue=binance/symbol=BTCUSDT/date=2024-08-09/hour=00/part-0.parquet")


@pytest.mark.parametrize("bad", ["../etc", "btc usdt", "", "a", "BTC'; DROP TABLE x;--", "BTC/USDT", "b" * 21])
def test_bad_symbols_are_refused(bad):
    with pytest.raises(LayoutError, match="is not allowed"):
        check_symbol(bad)
    with pytest.raises(LayoutError):
        raw_file_path(Path("d"), "binance", bad, parse_hour("2024-07-18T23"), 0)


@pytest.mark.parametrize("bad", ["2024-07-18'; --", "../../2024", "2024-13-01", "24-07-18"])
def test_bad_dates_are_refused(bad):
    with pytest.raises(LayoutError):
        check_date(bad)


@pytest.mark.parametrize("bad", ["2024-07-18T24", "2024-07-18", "yesterday", "2024-07-18T23'--"])
def test_bad_hours_are_refused(bad):
    with pytest.raises(LayoutError, match="hour"):
        parse_hour(bad)


def test_unknown_venue_and_dataset_are_refused():
    with pytest.raises(LayoutError, match="venue 'kraken' is unknown"):
        partition_file(Path("d"), "book", "kraken", "BTCUSDT", parse_hour("2024-07-18T23"))
    with pytest.raises(LayoutError, match="dataset 'orders' is unknown"):
        partition_file(Path("d"), "orders", "binance", "BTCUSDT", parse_hour("2024-07-18T23"))


def test_hours():
    assert parse_hour("2024-07-18T23") == datetime(2024, 7, 18, 23, tzinfo=timezone.utc)
    assert hour_of_us(1721347199_999_999) == datetime(2024, 7, 18, 23, tzinfo=timezone.utc)
    assert hour_of_us(1721347200_000_000) == datetime(2024, 7, 19, 0, tzinfo=timezone.utc)
    assert [h.hour for h in hours_between(parse_hour("2024-07-18T22"), parse_hour("2024-07-19T01"))] == [22, 23, 0, 1]


def test_list_raw_files_orders_by_hour_and_part_and_skips_partial(tmp_path):
    paths = [raw_file_path(tmp_path, "binance", "BTCUSDT", parse_hour(h), n)
             for h, n in [("2024-07-19T00", 0), ("2024-07-18T23", 10), ("2024-07-18T23", 2)]]
    for p in paths:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"")
    partial = raw_file_path(tmp_path, "binance", "BTCUSDT", parse_hour("2024-07-19T00"), 1, partial=True)
    partial.write_bytes(b"")
    assert [p.name for p in list_raw_files(tmp_path, "binance", "BTCUSDT")] == [
        "BTCUSDT_20240718T23_2.jsonl.zst", "BTCUSDT_20240718T23_10.jsonl.zst", "BTCUSDT_20240719T00_0.jsonl.zst"]
    assert list_raw_files(tmp_path, "binance", "BTCUSDT", partial=True) == [partial]
    assert parse_raw_file_name("notes.txt") is None


def test_a_symlinked_dataset_directory_is_inside_and_dot_dot_is_not(tmp_path):
    """clean/ on another disk through a symlink is a normal setup; `..` out of DATA_DIR is not."""
    from midas.layout import _inside, partition_file

    data_dir, elsewhere = tmp_path / "data", tmp_path / "bigdisk" / "clean"
    elsewhere.mkdir(parents=True)
    data_dir.mkdir()
    (data_dir / "clean").symlink_to(elsewhere, target_is_directory=True)
    path = partition_file(data_dir, "book", "binance", "BTCUSDT", "2024-07-18T23")
    assert path == data_dir / "clean/book/venue=binance/symbol=BTCUSDT/date=2024-07-18/hour=23/part-0.parquet"
    with pytest.raises(LayoutError, match="escapes the data directory"):
        _inside(data_dir, data_dir / "clean" / ".." / ".." / "bigdisk")
    with pytest.raises(LayoutError, match="escapes the data directory"):
        _inside(data_dir, tmp_path / "database")           # a sibling whose name starts alike
    assert _inside(data_dir, data_dir) == data_dir
