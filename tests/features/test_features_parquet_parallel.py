"""midas.features.parquet_parallel: row groups encoded on several threads, joined into the file a
single pyarrow writer writes (compared byte for byte)."""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from concurrent.futures import ThreadPoolExecutor

from midas.features.parquet_parallel import ParallelParquetWriter, decode_footer, encode_footer


def write_table_parallel(table: pa.Table, path, row_group_size: int, workers: int, **options) -> None:
    with ThreadPoolExecutor(workers) as pool:
        writer = ParallelParquetWriter(pool, row_group_size, **options)
        writer.encode(table)
        writer.write(path, table.schema)


def _table(rows: int) -> pa.Table:
    rng = np.random.default_rng(7)
    price = 60_000 + np.cumsum(rng.integers(-1, 2, rows)) / 10
    size = rng.integers(1, 5_000, rows) / 1000
    return pa.table({
        "ts": pa.array(np.arange(rows, dtype=np.int64) * 100_000, pa.int64()),
        "bid_px_01": price,
        "bid_sz_01": pa.array([None if i % 97 == 0 else float(v) for i, v in enumerate(size)], pa.float64()),
        "trade_count": rng.integers(0, 9, rows),
        "is_buyer_maker": rng.random(rows) < 0.5,
        "trade_type": pa.array(["MARKET" if i % 5 else "LIQUIDATION" for i in range(rows)]),
    }).replace_schema_metadata({b"midas.ofi_day_end_units": b"-71219300000"})


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("rows, group", [(10_000, 1_000), (10_001, 1_000), (9_999, 2_500),
                                         (2_000, 5_000), (1_000, 1_000)])
@pytest.mark.parametrize("options", [
    {"compression": "zstd", "use_dictionary": False},
    {"compression": "zstd", "compression_level": 1, "use_dictionary": ["bid_px_01"],
     "write_statistics": ["ts"]},
    {"compression": "snappy"},
])
def test_same_bytes_as_one_pyarrow_writer(tmp_path, rows, group, options):
    table = _table(rows)
    pq.write_table(table, tmp_path / "single.parquet", row_group_size=group, **options)
    write_table_parallel(table, tmp_path / "parallel.parquet", group, 2, **options)
    assert _digest(tmp_path / "parallel.parquet") == _digest(tmp_path / "single.parquet")
    meta = pq.ParquetFile(tmp_path / "parallel.parquet").metadata
    expected_groups = [min(group, rows - start) for start in range(0, rows, group)]
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == expected_groups
    assert meta.num_rows == rows
    assert pq.read_table(tmp_path / "parallel.parquet").equals(table)


@pytest.mark.parametrize("rows, group", [(10_000, 1_000), (10_001, 3_000), (999, 1_000), (0, 1_000)])
@pytest.mark.parametrize("split", [[1, 3], [2], [5], [1, 2, 3, 4, 5]])
def test_columns_queued_in_groups_give_the_same_bytes(tmp_path, rows, group, split):
    """Columns queued in several calls (as compute_features_hour queues the book columns before
    the features are computed) make the file one writer makes of the whole table."""
    table = _table(rows)
    options = {"compression": "zstd", "use_dictionary": False}
    pq.write_table(table, tmp_path / "single.parquet", row_group_size=group, **options)
    bounds = [0, *split, table.num_columns]
    with ThreadPoolExecutor(2) as pool:
        writer = ParallelParquetWriter(pool, group, **options)
        for lo, hi in zip(bounds, bounds[1:]):
            writer.encode(table.select(table.column_names[lo:hi]))
        writer.write(tmp_path / "parallel.parquet", table.schema)
    assert _digest(tmp_path / "parallel.parquet") == _digest(tmp_path / "single.parquet")
    assert pq.read_table(tmp_path / "parallel.parquet").equals(table, check_metadata=True)


def test_columns_of_different_lengths_are_refused():
    with ThreadPoolExecutor(1) as pool:
        writer = ParallelParquetWriter(pool, 1_000)
        writer.encode(_table(10).select(["ts"]))
        with pytest.raises(ValueError, match="11 rows queued after 10"):
            writer.encode(_table(11).select(["bid_px_01"]))


def test_page_index_and_bloom_filters_are_refused():
    with ThreadPoolExecutor(1) as pool:
        for options in ({"write_page_index": True}, {"bloom_filter_options": {"ts": {}}}):
            with pytest.raises(ValueError, match="no page index or bloom filters"):
                ParallelParquetWriter(pool, 1_000, **options)


def test_empty_table(tmp_path):
    table = _table(0)
    write_table_parallel(table, tmp_path / "empty.parquet", 1_000, 2, compression="zstd")
    assert pq.read_table(tmp_path / "empty.parquet").equals(table)


def test_footer_decodes_and_encodes_to_the_same_bytes(tmp_path):
    pq.write_table(_table(3_000), tmp_path / "t.parquet", row_group_size=1_000, compression="zstd")
    data = (tmp_path / "t.parquet").read_bytes()
    footer_len = int.from_bytes(data[-8:-4], "little")
    footer = data[-8 - footer_len:-8]
    tree = decode_footer(footer)
    assert encode_footer(tree) == footer
    num_rows = next(value for fid, _type, value in tree if fid == 3)
    row_groups = next(value for fid, _type, value in tree if fid == 4)[1]
    assert (num_rows, len(row_groups)) == (3_000, 3)
