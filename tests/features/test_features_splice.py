"""midas.features.splice: a features partition whose book columns are the book partition's column
chunks copied byte for byte, read by pyarrow, DuckDB and Polars as the table pq.write_table writes."""

from __future__ import annotations

import base64
import os
import struct
from datetime import datetime, timezone

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pyarrow.parquet.encryption as pe
import pytest

import midas.features.splice as splice
from midas.book.partitions import PartitionWriter, book_schema
from midas.features import FEATURE_COLUMNS
from midas.features.parquet_parallel import decode_footer, encode_footer
from midas.features.splice import SpliceUnsupported, write_spliced_partition
from midas.layout import partition_file

META = {b"midas.ofi_day_end_units": b"-71219300000", b"midas.snapshot_interval_us": b"100000"}
T0 = 1_721_260_800_000_000          # 2024-07-18 00:00 UTC, µs
HOUR = datetime(2024, 7, 18, 0, tzinfo=timezone.utc)


def book(rows: int, seed: int = 3) -> pa.Table:
    """A clean/book table (book_schema(10)): the best levels always there, the deeper ones missing
    (null) on some rows as in a thin book, prices and sizes repeating as in the real ones."""
    rng = np.random.default_rng(seed)
    schema = book_schema(10)
    ts = T0 + np.arange(rows, dtype=np.int64) * 100_000 + (np.arange(rows) >= rows // 2) * 300_000
    best = 600_000 + np.cumsum(rng.integers(-1, 2, rows) * (rng.random(rows) < 0.2))
    depth = np.where(rng.random(rows) < 0.1, rng.integers(1, 10, rows), 10)
    columns = {"ts": ts, "update_id": 9_000_000 + np.arange(rows) * 7,
               "book_age_ms": rng.integers(0, 500, rows)}
    for side, sign in (("bid", -1), ("ask", 1)):
        for level in range(1, 11):
            px = (best + sign * (level - (side == "bid"))) / 10
            sz = np.round(rng.choice([0.001, 0.002, 0.01, 0.5, 1.234], rows), 3)
            missing = depth < level
            columns[f"{side}_px_{level:02d}"] = pa.array(px, mask=missing)
            columns[f"{side}_sz_{level:02d}"] = pa.array(sz, mask=missing)
    return pa.table([pa.array(columns[f.name], f.type) for f in schema], schema=schema)


def features(rows: int, seed: int = 5) -> pa.Table:
    """The 20 feature columns (float64, trade_count int64), with nulls."""
    rng = np.random.default_rng(seed)
    arrays = []
    for i, name in enumerate(FEATURE_COLUMNS):
        nulls = rng.random(rows) < 0.05 * (i % 3)
        if name == "trade_count":
            arrays.append(pa.array(rng.integers(0, 9, rows), pa.int64(), mask=nulls))
        else:
            arrays.append(pa.array(np.round(rng.normal(0, 100, rows), i % 6), pa.float64(), mask=nulls))
    return pa.table(arrays, names=list(FEATURE_COLUMNS))


def expected_table(book_table: pa.Table, feature_table: pa.Table, metadata=META) -> pa.Table:
    """book + features as compute_features_hour builds them: the book's schema and metadata, the
    feature columns appended, the metadata updated."""
    table = book_table
    for name in feature_table.column_names:
        table = table.append_column(feature_table.schema.field(name), feature_table.column(name))
    return table.replace_schema_metadata({**(book_table.schema.metadata or {}), **(metadata or {})})


def write_book(path, table: pa.Table, row_group_size: int, **options) -> None:
    """As the book rebuild writes: ZSTD, dictionary encoding on (pyarrow's default)."""
    pq.write_table(table, path, compression="zstd", row_group_size=row_group_size, **options)


def splice_and_reference(tmp_path, rows: int, row_group_size: int, book_meta=None):
    book_table = book(rows)
    if book_meta:
        book_table = book_table.replace_schema_metadata(book_meta)
    feature_table = features(rows)
    book_path = tmp_path / "book.parquet"
    write_book(book_path, book_table, row_group_size)
    book_table = pq.read_table(book_path)          # with the metadata the file holds
    spliced = tmp_path / "spliced.parquet"
    size = write_spliced_partition(book_path, feature_table, spliced, META)
    assert size == spliced.stat().st_size
    reference = tmp_path / "reference.parquet"
    expected = expected_table(book_table, feature_table)
    pq.write_table(expected, reference, compression="zstd", use_dictionary=False,
                   row_group_size=row_group_size)
    return book_path, spliced, reference, expected


def chunk_range(column) -> tuple[int, int]:
    start = column.data_page_offset
    if column.has_dictionary_page and column.dictionary_page_offset > 0 and (
            start == 0 or column.dictionary_page_offset < start):
        start = column.dictionary_page_offset
    return start, column.total_compressed_size


def footer_row_groups(data: bytes) -> list[dict]:
    """The RowGroup structs of a file's footer, {field id: value}."""
    footer_len = struct.unpack("<i", data[-8:-4])[0]
    tree = decode_footer(data[-8 - footer_len:-8])
    groups = next(value for fid, _type, value in tree if fid == 4)[1]
    return [{fid: value for fid, _type, value in group} for group in groups]


def assert_valid_parquet(path, book_path, expected: pa.Table) -> None:
    """The footer is consistent, every column chunk reads, and the book columns' chunks are the
    book file's bytes with the book file's statistics."""
    meta = pq.ParquetFile(path).metadata
    book_meta = pq.ParquetFile(book_path).metadata
    data, book_data = path.read_bytes(), book_path.read_bytes()
    assert meta.num_rows == expected.num_rows == book_meta.num_rows
    assert meta.num_columns == expected.num_columns
    assert meta.num_row_groups == book_meta.num_row_groups
    footer_groups, book_footer_groups = footer_row_groups(data), footer_row_groups(book_data)
    assert len(footer_groups) == meta.num_row_groups
    position = 4
    for i in range(meta.num_row_groups):
        group, book_group = meta.row_group(i), book_meta.row_group(i)
        assert group.num_rows == book_group.num_rows
        columns = [group.column(j) for j in range(group.num_columns)]
        assert group.total_byte_size == sum(c.total_uncompressed_size for c in columns)
        # RowGroup: 5 file_offset, 6 total_compressed_size (the fields the book's row groups have)
        assert footer_groups[i].keys() == book_footer_groups[i].keys()
        assert footer_groups[i][6] == sum(c.total_compressed_size for c in columns)
        assert footer_groups[i][5] == chunk_range(columns[0])[0] == position
        if not group.num_rows:                  # no data pages: data_page_offset unset, as pyarrow writes
            assert [c.data_page_offset for c in columns] == [0] * len(columns)
        for j, column in enumerate(columns):
            start, length = chunk_range(column)
            if length:                          # row group by row group, chunk after chunk
                assert start == position
            position += length
            if j < book_group.num_columns:
                book_column = book_group.column(j)
                book_start, book_length = chunk_range(book_column)
                assert data[start:start + length] == book_data[book_start:book_start + book_length]
                assert column.statistics == book_column.statistics
                assert column.encodings == book_column.encodings
                assert column.compression == book_column.compression
                assert column.num_values == book_column.num_values
            else:
                assert (column.compression, column.has_dictionary_page) == ("ZSTD", False)
                assert column.statistics is None or column.statistics.has_min_max or \
                    column.statistics.null_count == group.num_rows
    assert position == len(data) - 8 - struct.unpack("<i", data[-8:-4])[0]
    reader = pq.ParquetFile(path)
    for i in range(meta.num_row_groups):
        for name in expected.column_names:
            rows = expected.slice(sum(meta.row_group(k).num_rows for k in range(i)),
                                  meta.row_group(i).num_rows)
            assert reader.read_row_group(i, columns=[name]).column(0).equals(rows.column(name))


def duck(sql: str) -> pa.Table:
    with duckdb.connect() as con:
        return con.sql(sql).to_arrow_table()


@pytest.mark.parametrize("rows, row_group_size", [(3_500, 1_000), (700, 1_000), (0, 1_000)])
def test_spliced_file_reads_as_the_table_written_straightforwardly(tmp_path, rows, row_group_size):
    book_path, spliced, reference, expected = splice_and_reference(tmp_path, rows, row_group_size)
    groups = -(-rows // row_group_size) or 1
    assert pq.ParquetFile(spliced).metadata.num_row_groups == groups
    assert_valid_parquet(spliced, book_path, expected)
    # pyarrow: whole file, row groups, column subsets
    table = pq.read_table(spliced)
    assert table.equals(expected, check_metadata=True)
    assert table.schema.metadata == {**META}
    assert pq.read_table(spliced).equals(pq.read_table(reference), check_metadata=True)
    subset = ["ts", "ask_sz_10", "ofi", "trade_count", "bid_px_01"]
    assert pq.read_table(spliced, columns=subset).equals(expected.select(subset))
    if groups > 1:
        assert pq.ParquetFile(spliced).read_row_groups([1, 3]).equals(
            pa.concat_tables([expected.slice(1_000, 1_000), expected.slice(3_000, 500)]).combine_chunks())
    # DuckDB: the whole file, and with a filter on ts
    everything = f"SELECT * FROM read_parquet('{spliced}') ORDER BY ts"
    assert duck(everything).equals(duck(everything.replace(str(spliced), str(reference))))
    assert duck(everything).num_rows == rows
    cut = T0 + 250_000_000
    filtered = (f"SELECT ts, bid_px_10, ofi, trade_count FROM read_parquet('{spliced}') "
                f"WHERE ts >= {cut} ORDER BY ts")
    got = duck(filtered)
    assert got.equals(duck(filtered.replace(str(spliced), str(reference))))
    assert got.num_rows == sum(1 for t in expected.column("ts").to_pylist() if t >= cut)
    # Polars: read and scan with a filter
    assert pl.read_parquet(spliced).equals(pl.read_parquet(reference))
    assert pl.read_parquet(spliced).equals(pl.from_arrow(expected))
    scanned = pl.scan_parquet(spliced).filter(pl.col("ts") >= cut).select("ts", "ask_px_03", "ofi").collect()
    assert scanned.equals(pl.scan_parquet(reference).filter(pl.col("ts") >= cut)
                          .select("ts", "ask_px_03", "ofi").collect())
    assert scanned.height == got.num_rows


def test_book_metadata_is_kept_and_updated(tmp_path):
    book_meta = {b"midas.book_note": b"kept", b"midas.ofi_day_end_units": b"replaced"}
    _book, spliced, _reference, expected = splice_and_reference(tmp_path, 1_200, 1_000, book_meta)
    assert pq.read_schema(spliced).metadata == {b"midas.book_note": b"kept", **META}
    assert pq.read_table(spliced).equals(expected, check_metadata=True)


def test_no_metadata(tmp_path):
    book_path = tmp_path / "book.parquet"
    write_book(book_path, book(1_500), 1_000)
    write_spliced_partition(book_path, features(1_500), tmp_path / "out.parquet")
    table = pq.read_table(tmp_path / "out.parquet")
    assert table.schema.metadata is None
    assert table.equals(expected_table(pq.read_table(book_path), features(1_500), None), check_metadata=True)


def test_book_written_by_the_book_rebuild(tmp_path):
    """A partition written as midas.book.partitions.PartitionWriter writes it (rows added one by
    one, then a table: dictionary-encoded ZSTD row groups of 1,000 rows, one of them short)."""
    table = book(4_321)
    book_path = tmp_path / "book" / "part-0.parquet"
    writer = PartitionWriter(book_path, book_schema(10), 1_000)
    writer.add_rows(zip(*(c.to_pylist() for c in table.slice(0, 1_500).columns)))
    writer.write_table(table.slice(1_500))
    writer.close()
    meta = pq.ParquetFile(book_path).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [1_000, 500, 1_000, 1_000, 821]
    assert "RLE_DICTIONARY" in meta.row_group(0).column(5).encodings
    feature_table = features(4_321)
    out = tmp_path / "features" / "part-0.parquet"
    write_spliced_partition(book_path, feature_table, out, META)
    expected = expected_table(table, feature_table)
    assert pq.read_table(out).equals(expected, check_metadata=True)
    assert_valid_parquet(out, book_path, expected)


def test_book_chunks_keep_their_own_codec_and_page_format(tmp_path):
    """Chunks are copied, never re-encoded: a book written with Snappy, v2 data pages and no
    dictionary stays so, next to the ZSTD feature chunks, and reads the same."""
    book_path = tmp_path / "book.parquet"
    pq.write_table(book(2_345), book_path, compression="snappy", data_page_version="2.0",
                   use_dictionary=False, row_group_size=1_000)
    out = tmp_path / "out.parquet"
    write_spliced_partition(book_path, features(2_345), out, META)
    expected = expected_table(book(2_345), features(2_345))
    assert pq.read_table(out).equals(expected, check_metadata=True)
    pq.write_table(expected, tmp_path / "reference.parquet")
    query = "SELECT * FROM read_parquet('{}') ORDER BY ts"
    assert duck(query.format(out)).equals(duck(query.format(tmp_path / "reference.parquet")))
    assert pl.read_parquet(out).equals(pl.from_arrow(expected))
    meta = pq.ParquetFile(out).metadata
    assert [meta.row_group(2).column(j).compression for j in (0, 42, 43, 62)] == [
        "SNAPPY", "SNAPPY", "ZSTD", "ZSTD"]
    assert_valid_parquet(out, book_path, expected)


def test_hive_partitioned_reads(tmp_path):
    rows = 2_500
    book_path = partition_file(tmp_path / "data", "book", "binance-futures", "BTCUSDT", HOUR)
    book_path.parent.mkdir(parents=True)
    write_book(book_path, book(rows), 1_000)
    feature_table = features(rows)
    out = partition_file(tmp_path / "data", "features", "binance-futures", "BTCUSDT", HOUR)
    write_spliced_partition(book_path, feature_table, out, META)
    reference = partition_file(tmp_path / "ref", "features", "binance-futures", "BTCUSDT", HOUR)
    reference.parent.mkdir(parents=True)
    pq.write_table(expected_table(book(rows), feature_table), reference, compression="zstd")
    query = ("SELECT * FROM read_parquet('{root}/features/*/*/*/*/*.parquet', hive_partitioning = true) "
             "WHERE symbol = 'BTCUSDT' AND ts < {cut} ORDER BY ts")
    cut = T0 + 100_000_000
    got = duck(query.format(root=tmp_path / "data", cut=cut))
    assert got.num_rows == 1_000
    assert sorted(got.column_names[-4:]) == ["date", "hour", "symbol", "venue"]
    assert set(got.column("symbol").to_pylist()) == {"BTCUSDT"}
    assert got.equals(duck(query.format(root=tmp_path / "ref", cut=cut)))
    scanned = pl.scan_parquet(tmp_path / "data" / "features", hive_partitioning=True).filter(
        pl.col("ts") < cut).collect()
    assert scanned.equals(pl.scan_parquet(tmp_path / "ref" / "features", hive_partitioning=True).filter(
        pl.col("ts") < cut).collect())
    assert scanned.height == 1_000


def test_row_group_statistics_prune(tmp_path):
    book_path, spliced, _reference, expected = splice_and_reference(tmp_path, 3_500, 1_000)
    ts = expected.column("ts").to_pylist()
    cut = ts[2_100]
    fragment = next(ds.dataset(spliced, format="parquet").get_fragments())
    kept = fragment.split_by_row_group(ds.field("ts") >= cut)
    assert [f.row_groups[0].id for f in kept] == [2, 3]
    assert [f.row_groups[0].statistics["ts"] for f in kept] == [
        {"min": ts[2_000], "max": ts[2_999]}, {"min": ts[3_000], "max": ts[3_499]}]
    meta = pq.ParquetFile(spliced).metadata
    assert meta.row_group(1).column(0).statistics.max == ts[1_999]
    assert pq.read_table(spliced, filters=[("ts", ">=", cut)]).equals(
        expected.slice(2_100), check_metadata=True)
    # DuckDB skips the row groups the statistics exclude, and reads the same rows as from the book
    plans = {}
    for path in (spliced, book_path):
        with duckdb.connect() as con:
            plans[path] = con.sql(f"EXPLAIN ANALYZE SELECT count(*) FROM read_parquet('{path}') "
                                  f"WHERE ts >= {cut}").fetchall()[0][1]
        assert "Row Groups Scanned: 2 / 4" in plans[path]
        assert "1,400 rows" in plans[path]


def test_features_written_with_project_options_and_book_chunks_untouched(tmp_path):
    book_path, spliced, _reference, expected = splice_and_reference(tmp_path, 2_000, 1_000)
    meta = pq.ParquetFile(spliced).metadata
    names = [meta.schema.column(j).name for j in range(meta.num_columns)]
    assert names == expected.column_names
    group = meta.row_group(0)
    assert "RLE_DICTIONARY" in group.column(1).encodings          # the book's dictionary pages
    assert set(group.column(names.index("midprice")).encodings) == {"PLAIN", "RLE"}


def test_failed_write_leaves_the_old_partition(tmp_path, monkeypatch):
    book_path = tmp_path / "book.parquet"
    write_book(book_path, book(2_000), 1_000)
    out = tmp_path / "out" / "part-0.parquet"
    out.parent.mkdir()
    out.write_bytes(b"old partition")

    def broken(src, dst, start, length):
        splice._write_all(dst, b"x" * 100)
        raise OSError("disk full")

    monkeypatch.setattr(splice, "_copy_range", broken)
    with pytest.raises(OSError, match="disk full"):
        write_spliced_partition(book_path, features(2_000), out, META)
    assert out.read_bytes() == b"old partition"
    assert sorted(p.name for p in out.parent.iterdir()) == ["part-0.parquet"]


def rewrite_footer(path, change) -> None:
    """Rewrite the footer of a Parquet file: change(tree) edits its decoded FileMetaData."""
    data = path.read_bytes()
    footer_len = struct.unpack("<i", data[-8:-4])[0]
    tree = decode_footer(data[-8 - footer_len:-8])
    change(tree)
    footer = encode_footer(tree)
    path.write_bytes(data[:-8 - footer_len] + footer + struct.pack("<i", len(footer)) + b"PAR1")


def test_creator_and_column_orders_come_from_the_book(tmp_path):
    """The book chunks keep the writer name readers judge their statistics by; a book without
    column orders gives a file without any."""
    book_path = tmp_path / "book.parquet"
    write_book(book_path, book(1_500), 1_000)

    def older_writer_no_orders(tree):
        tree[:] = [[fid, ttype, b"parquet-cpp-arrow version 21.0.0" if fid == 6 else value]
                   for fid, ttype, value in tree if fid != 7]

    rewrite_footer(book_path, older_writer_no_orders)
    out = tmp_path / "out.parquet"
    write_spliced_partition(book_path, features(1_500), out, META)
    assert pq.ParquetFile(out).metadata.created_by == "parquet-cpp-arrow version 21.0.0"
    data = out.read_bytes()
    tree = decode_footer(data[-8 - struct.unpack("<i", data[-8:-4])[0]:-8])
    assert [fid for fid, _t, _v in tree] == [1, 2, 3, 4, 5, 6]
    assert pq.read_table(out).equals(expected_table(pq.read_table(book_path), features(1_500)),
                                     check_metadata=True)


# What the splice refuses ---------------------------------------------------------------------------

class _Kms(pe.KmsClient):
    def __init__(self, _config):
        pe.KmsClient.__init__(self)

    def wrap_key(self, key_bytes, master_key_identifier):
        return base64.b64encode(key_bytes)

    def unwrap_key(self, wrapped_key, master_key_identifier):
        return base64.b64decode(wrapped_key)


def _encrypted(plaintext_footer: bool) -> dict:
    config = pe.EncryptionConfiguration(footer_key="footer", column_keys={"col": ["bid_px_01"]},
                                        plaintext_footer=plaintext_footer)
    return {"encryption_properties": pe.CryptoFactory(_Kms).file_encryption_properties(
        pe.KmsConnectionConfig(), config)}


@pytest.mark.parametrize("options, reason", [
    ({"write_page_index": True}, "has a page index (an offset index for column 'ts' of row group 0)"),
    ({"write_page_index": True, "use_dictionary": False},
     "has a page index (an offset index for column 'ts' of row group 0)"),
    ({"bloom_filter_options": {"bid_px_02": {"ndv": 100}}},
     "has a bloom filter (column 'bid_px_02' of row group 0)"),
    (_encrypted(False), "has an encrypted footer"),
    (_encrypted(True), "has encrypted columns (encryption_algorithm in a plaintext footer)"),
])
def test_what_the_splice_cannot_carry_is_refused(tmp_path, options, reason):
    book_path = tmp_path / "book.parquet"
    write_book(book_path, book(1_500), 1_000, **options)
    out = tmp_path / "out.parquet"
    with pytest.raises(SpliceUnsupported) as caught:
        write_spliced_partition(book_path, features(1_500), out, META)
    assert str(caught.value) == f"{book_path}: cannot splice its column chunks: the file {reason}"
    assert isinstance(caught.value, ValueError)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["book.parquet"]


def test_nested_book_columns_are_refused(tmp_path):
    book_path = tmp_path / "book.parquet"
    pq.write_table(pa.table({"ts": [1, 2], "levels": [[1.0], [2.0, 3.0]]}), book_path)
    with pytest.raises(SpliceUnsupported, match=r"book.parquet: cannot splice its column chunks: "
                                                r"the file has nested columns \(group 'levels'\)"):
        write_spliced_partition(book_path, features(2), tmp_path / "out.parquet")


def test_row_count_mismatch_is_refused(tmp_path):
    book_path = tmp_path / "book.parquet"
    write_book(book_path, book(1_500), 1_000)
    with pytest.raises(SpliceUnsupported) as caught:
        write_spliced_partition(book_path, features(1_499), tmp_path / "out.parquet")
    assert str(caught.value) == (f"{book_path}: cannot splice its column chunks: the file has "
                                 "1500 rows, the features 1499")


def test_feature_column_named_like_a_book_column_is_refused(tmp_path):
    book_path = tmp_path / "book.parquet"
    write_book(book_path, book(10), 1_000)
    feature_table = features(10).append_column("ts", pa.array(range(10), pa.int64()))
    with pytest.raises(SpliceUnsupported,
                       match=r"cannot splice: feature columns \['ts'\] repeat a column name"):
        write_spliced_partition(book_path, feature_table, tmp_path / "out.parquet")


def test_nested_or_no_feature_columns_are_refused(tmp_path):
    book_path = tmp_path / "book.parquet"
    write_book(book_path, book(2), 1_000)
    nested = pa.table({"levels": pa.array([[1.0], [2.0]])})
    with pytest.raises(SpliceUnsupported) as caught:
        write_spliced_partition(book_path, nested, tmp_path / "out.parquet")
    assert str(caught.value) == f"{book_path}: cannot splice: nested feature columns ['levels']"
    with pytest.raises(SpliceUnsupported) as caught:
        write_spliced_partition(book_path, features(2).select([]), tmp_path / "out.parquet")
    assert str(caught.value) == f"{book_path}: cannot splice: no feature columns"


def test_unknown_footer_fields_are_refused(tmp_path):
    book_path = tmp_path / "book.parquet"
    write_book(book_path, book(1_500), 1_000)

    def add_row_group_field(tree):
        groups = next(value for fid, _t, value in tree if fid == 4)[1]
        groups[1].append([10, 5, 7])                            # RowGroup field 10, i32

    rewrite_footer(book_path, add_row_group_field)
    with pytest.raises(SpliceUnsupported) as caught:
        write_spliced_partition(book_path, features(1_500), tmp_path / "out.parquet")
    assert str(caught.value) == (f"{book_path}: cannot splice its column chunks: the file has "
                                 "RowGroup fields the splice does not know ([10]) in row group 1")


def test_not_a_parquet_file_is_refused(tmp_path):
    book_path = tmp_path / "book.parquet"
    for data, reason in ((b"PAR1" + b"\0" * 40, "is not a Parquet file (no PAR1 magic)"),
                         (b"PAR1", "is not a Parquet file (4 bytes)")):
        book_path.write_bytes(data)
        with pytest.raises(SpliceUnsupported) as caught:
            write_spliced_partition(book_path, features(0), tmp_path / "out.parquet")
        assert str(caught.value) == f"{book_path}: cannot splice its column chunks: the file {reason}"
    assert not (tmp_path / "out.parquet").exists()


def test_book_without_row_groups(tmp_path):
    """A file with the schema and no row group at all (a writer closed before any row)."""
    book_path = tmp_path / "book.parquet"
    pq.ParquetWriter(book_path, book_schema(10), compression="zstd").close()
    assert pq.ParquetFile(book_path).metadata.num_row_groups == 0
    out = tmp_path / "out.parquet"
    write_spliced_partition(book_path, features(0), out, META)
    assert pq.ParquetFile(out).metadata.num_row_groups == 0
    assert pq.read_table(out).equals(expected_table(book(0), features(0)), check_metadata=True)
    assert duck(f"SELECT count(*) AS n FROM read_parquet('{out}')").column("n").to_pylist() == [0]


def test_book_changed_since_read_is_refused(tmp_path):
    book_path = tmp_path / "book.parquet"
    write_book(book_path, book(1_500), 1_000)
    before = book_path.stat()
    write_spliced_partition(book_path, features(1_500), tmp_path / "out.parquet", book_stat=before)
    assert pq.read_table(tmp_path / "out.parquet").num_rows == 1_500
    write_book(tmp_path / "new.parquet", book(1_500, seed=9), 1_000)
    (tmp_path / "new.parquet").replace(book_path)          # a rebuild renames a new file into place
    with pytest.raises(SpliceUnsupported) as caught:
        write_spliced_partition(book_path, features(1_500), tmp_path / "out.parquet", book_stat=before)
    assert str(caught.value) == (f"{book_path}: cannot splice its column chunks: the file changed "
                                 "since the book rows were read")


@pytest.mark.parametrize("metadata", [None, {b"midas.book_sources": b'{"2024-07-18T00": [1, 2]}',
                                             b"midas.ofi_day_end_units": b"-12"}])
def test_footer_template_is_the_one_pyarrow_writes(metadata):
    """The columns' part of the footer is cached per column set; the key-value metadata (with
    ARROW:schema) is built per call: byte for byte the footer of pyarrow's own empty file."""
    from midas.features import splice
    from midas.features.parquet_parallel import encode_piece, split_piece, encode_footer
    from midas.features.writing import WRITE_OPTIONS

    schema = pa.schema([pa.field("ts", pa.int64(), nullable=False), ("bid_px_01", pa.float64()),
                        ("trade_count", pa.int64())], metadata=metadata)
    _body, expected = split_piece(encode_piece(schema.empty_table(), 1, WRITE_OPTIONS))
    assert encode_footer(splice._template_footer(schema)) == encode_footer(expected)
    hits = splice._columns_template.cache_info().hits
    other = schema.with_metadata({b"midas.ofi_day_end_units": b"7"})
    _body, expected = split_piece(encode_piece(other.empty_table(), 1, WRITE_OPTIONS))
    assert encode_footer(splice._template_footer(other)) == encode_footer(expected)
    assert splice._columns_template.cache_info().hits == hits + 1


@pytest.mark.parametrize("kernel", ["missing", "refuses", "stops_halfway"])
def test_book_chunks_copied_without_copy_file_range(tmp_path, monkeypatch, kernel):
    """Where the kernel copy does not exist, fails between the two files, or stops early, the
    rest is copied by read and write: the same file."""
    real = getattr(os, "copy_file_range", None)
    if kernel == "missing":
        monkeypatch.delattr(os, "copy_file_range", raising=False)
    elif kernel == "refuses":
        def refuse(*args):
            raise OSError(18, "Invalid cross-device link")
        monkeypatch.setattr(os, "copy_file_range", refuse, raising=False)
    else:
        calls = []

        def half(src, dst, count, offset):
            calls.append(count)
            if len(calls) > 1 or real is None:
                return 0
            return real(src, dst, max(1, count // 2), offset)
        monkeypatch.setattr(os, "copy_file_range", half, raising=False)
    book_path, spliced, reference, expected = splice_and_reference(tmp_path, 3_500, 1_000)
    assert pq.read_table(spliced).equals(expected, check_metadata=True)
    assert_valid_parquet(spliced, book_path, expected)
