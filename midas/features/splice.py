"""A features partition whose book columns are the book partition's column chunks, copied.

A `features` partition (SPEC §3) is the hour's `clean/book` rows, all their columns, followed by the
feature columns. Encoding the 43 book columns again costs more than half of writing the partition,
yet their bytes already exist, compressed, in the book partition. `write_spliced_partition` writes
the partition as, for each row group of the book file:

    the book row group's column chunks, copied byte for byte (never decoded),
    the feature columns of the same rows, encoded as writing.WRITE_OPTIONS says (ZSTD, no dictionary)

then one footer (Parquet's Thrift FileMetaData, through the codec of midas.features.parquet_parallel):
the book's schema elements and the features', row group i = book row group i's column chunks (their
statistics, encodings and sizes untouched, their byte offsets moved to where the chunks now lie) +
the features' chunks of those rows, the Arrow schema (`ARROW:schema`, as pyarrow writes it) of the
book's Arrow schema + the features' fields with the book's key-value metadata + the given metadata.
Readers see the table `pq.write_table(book + features)` would give (tests/features/test_features_splice.py
reads it with pyarrow, DuckDB and Polars); the book columns keep their own encodings (the rebuild's
dictionary pages) and statistics, so row group pruning works as on the book partition.

What the splice cannot carry safely (encryption, page indexes, bloom filters, nested columns,
column chunks in another file, footer fields it does not know, a row count other than the
features') raises SpliceUnsupported naming the file and the reason, before anything is written:
the caller then writes the partition the ordinary way (midas.features.writing.write_partition).
"""

from __future__ import annotations

import base64
import functools
import os
import struct
import threading
from concurrent.futures import Executor, Future
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from midas.features.parquet_parallel import (BINARY, STRUCT, MAGIC, ParquetJoinError, encode_piece,
                                             field_of, read_struct, split_piece, encode_footer)
from midas.features.writing import WRITE_OPTIONS, write_pool

__all__ = ["SpliceUnsupported", "write_spliced_partition"]

# Field ids of parquet.thrift. FileMetaData:
_FMD_VERSION, _FMD_SCHEMA, _FMD_NUM_ROWS, _FMD_ROW_GROUPS, _FMD_KV, _FMD_CREATED_BY, \
    _FMD_COLUMN_ORDERS = range(1, 8)
# (8 encryption_algorithm and 9 footer_signing_key_metadata: encrypted columns, refused)
# KeyValue:
_KV_KEY, _KV_VALUE = 1, 2
# SchemaElement:
_SE_REPETITION, _SE_NAME, _SE_NUM_CHILDREN = 3, 4, 5
_REPEATED = 2
# RowGroup:
_RG_COLUMNS, _RG_TOTAL_BYTE_SIZE, _RG_NUM_ROWS, _RG_SORTING, _RG_FILE_OFFSET, \
    _RG_TOTAL_COMPRESSED_SIZE, _RG_ORDINAL = range(1, 8)
# ColumnChunk:
_CC_FILE_PATH, _CC_FILE_OFFSET, _CC_META_DATA = 1, 2, 3
_CC_PAGE_INDEX = {4: "an offset index", 5: "an offset index", 6: "a column index", 7: "a column index"}
_CC_ENCRYPTED = (8, 9)
# ColumnMetaData:
_CMD_PATH, _CMD_TOTAL_COMPRESSED, _CMD_DATA_PAGE, _CMD_INDEX_PAGE, _CMD_DICT_PAGE = 3, 7, 9, 10, 11
_CMD_BLOOM = (14, 15)

# The fields the splice knows, per struct; any other field might hold a byte offset it would not
# move, so a book footer with one is refused.
_KNOWN_FILE = {_FMD_VERSION, _FMD_SCHEMA, _FMD_NUM_ROWS, _FMD_ROW_GROUPS, _FMD_KV, _FMD_CREATED_BY,
               _FMD_COLUMN_ORDERS}
_KNOWN_ROW_GROUP = set(range(1, 8))
_KNOWN_CHUNK = {_CC_FILE_PATH, _CC_FILE_OFFSET, _CC_META_DATA}
# 1 type .. 13 encoding_stats (10 index_page_offset is moved too), 16 size_statistics,
# 17 geospatial_statistics: none but the page offsets is a position in the file
_KNOWN_CHUNK_META = set(range(1, 14)) | {16, 17}


class SpliceUnsupported(ValueError):
    """The book file holds something the splice cannot carry safely: write the partition by
    re-encoding the whole table instead (midas.features.writing.write_partition)."""


def _leaf_name(element: list) -> str:
    return bytes(field_of(element, _SE_NAME)[2]).decode("utf-8", "replace")


def _chunk_range(meta: list) -> tuple[int, int]:
    """(first byte, length) of a column chunk: from its dictionary page when it has one, else its
    first data page, over total_compressed_size bytes. An offset of 0 is unset (byte 0 is the
    magic): pyarrow writes an empty dictionary-encoded chunk as a dictionary page and
    data_page_offset 0."""
    start = field_of(meta, _CMD_DATA_PAGE)[2]
    dictionary = field_of(meta, _CMD_DICT_PAGE)
    if dictionary is not None and dictionary[2] > 0 and (start == 0 or dictionary[2] < start):
        start = dictionary[2]
    return start, field_of(meta, _CMD_TOTAL_COMPRESSED)[2]


def _move_chunk(chunk: list, delta: int) -> None:
    """Move the byte offsets a ColumnChunk holds by `delta` (its bytes now start `delta` later);
    offsets of 0 mean unset and stay 0."""
    fields = [field_of(chunk, _CC_FILE_OFFSET)]          # deprecated
    meta = field_of(chunk, _CC_META_DATA)[2]
    fields += [field_of(meta, fid) for fid in (_CMD_DATA_PAGE, _CMD_INDEX_PAGE, _CMD_DICT_PAGE)]
    for field in fields:
        if field is not None and field[2]:
            field[2] += delta


class _Book:
    """The book file's footer, checked for what the splice can carry."""

    def __init__(self, path: Path, handle, size: int):
        self.path = path
        if size < 12:
            self.refuse(f"is not a Parquet file ({size} bytes)")
        fd = handle.fileno()
        head, tail = _read_exact(fd, 0, 4), _read_exact(fd, size - 8, 8)
        if tail[4:] == b"PARE":
            self.refuse("has an encrypted footer")
        if head != MAGIC or tail[4:] != MAGIC:
            self.refuse("is not a Parquet file (no PAR1 magic)")
        footer_len = struct.unpack("<i", tail[:4])[0]
        self.footer_start = size - 8 - footer_len
        if footer_len <= 0 or self.footer_start < 4:
            self.refuse(f"has a footer length of {footer_len} bytes in a file of {size}")
        footer = _read_exact(fd, self.footer_start, footer_len)
        try:
            self.footer, end = read_struct(footer, 0)
        except (ParquetJoinError, IndexError) as e:
            self.refuse(f"has a footer the splice cannot decode ({e})")
        if any(fid in (8, 9) for fid, _t, _v in self.footer):
            self.refuse("has encrypted columns (encryption_algorithm in a plaintext footer)")
        if end != footer_len:
            self.refuse(f"has {footer_len - end} bytes after the FileMetaData in its footer")
        self._check_footer()
        # the Arrow schema readers see: the file's ARROW:schema (or the one pyarrow infers) with
        # its key-value metadata, read by pyarrow from the same open file
        handle.seek(0)
        try:
            self.arrow_schema = pq.ParquetFile(handle).schema_arrow
        except (OSError, pa.ArrowException) as e:
            self.refuse(f"cannot be read by pyarrow ({e})")
        if self.arrow_schema.names != self.leaf_names:
            self.refuse(f"has an Arrow schema ({self.arrow_schema.names}) other than its Parquet "
                        f"columns ({self.leaf_names})")
        nested = [f.name for f in self.arrow_schema if pa.types.is_nested(f.type)]
        if nested:
            self.refuse(f"has nested columns {nested}")

    def refuse(self, reason: str):
        raise SpliceUnsupported(f"{self.path}: cannot splice its column chunks: the file {reason}")

    def _check_footer(self) -> None:
        footer = self.footer
        unknown = sorted({fid for fid, _t, _v in footer} - _KNOWN_FILE)
        if unknown:
            self.refuse(f"has FileMetaData fields the splice does not know ({unknown})")
        schema = field_of(footer, _FMD_SCHEMA)[2][1]
        root, leaves = schema[0], schema[1:]
        for element in leaves:
            if field_of(element, _SE_NUM_CHILDREN) is not None:
                self.refuse(f"has nested columns (group {_leaf_name(element)!r})")
            repetition = field_of(element, _SE_REPETITION)
            if repetition is not None and repetition[2] == _REPEATED:
                self.refuse(f"has nested columns (repeated {_leaf_name(element)!r})")
        children = field_of(root, _SE_NUM_CHILDREN)
        if children is None or children[2] != len(leaves):
            self.refuse("has a schema whose root does not hold every column")
        self.root, self.leaves = root, leaves
        self.leaf_names = [_leaf_name(e) for e in leaves]
        self.num_rows = field_of(footer, _FMD_NUM_ROWS)[2]
        groups = field_of(footer, _FMD_ROW_GROUPS)
        self.row_groups = groups[2][1] if groups is not None else []
        self.column_orders = field_of(footer, _FMD_COLUMN_ORDERS)
        if self.column_orders is not None and len(self.column_orders[2][1]) != len(leaves):
            self.refuse("has column orders for another number of columns")
        created_by = field_of(footer, _FMD_CREATED_BY)
        self.created_by = created_by[2] if created_by is not None else None
        total = 0
        for index, group in enumerate(self.row_groups):
            self._check_row_group(index, group)
            total += field_of(group, _RG_NUM_ROWS)[2]
        if total != self.num_rows:
            self.refuse(f"has row groups of {total} rows in all but says {self.num_rows}")

    def _check_row_group(self, index: int, group: list) -> None:
        unknown = sorted({fid for fid, _t, _v in group} - _KNOWN_ROW_GROUP)
        if unknown:
            self.refuse(f"has RowGroup fields the splice does not know ({unknown}) in row group {index}")
        chunks = field_of(group, _RG_COLUMNS)[2][1]
        if len(chunks) != len(self.leaves):
            self.refuse(f"has {len(chunks)} column chunks in row group {index} for "
                        f"{len(self.leaves)} columns")
        for name, chunk in zip(self.leaf_names, chunks):
            where = f"column {name!r} of row group {index}"
            fids = {fid for fid, _t, _v in chunk}
            if fids & set(_CC_ENCRYPTED):
                self.refuse(f"has an encrypted column chunk ({where})")
            if fids & set(_CC_PAGE_INDEX):
                kind = _CC_PAGE_INDEX[min(fids & set(_CC_PAGE_INDEX))]
                self.refuse(f"has a page index ({kind} for {where})")
            if _CC_FILE_PATH in fids:
                self.refuse(f"has a column chunk stored in another file ({where})")
            if fids - _KNOWN_CHUNK:
                self.refuse(f"has ColumnChunk fields the splice does not know "
                            f"({sorted(fids - _KNOWN_CHUNK)}, {where})")
            if _CC_META_DATA not in fids:
                self.refuse(f"has a column chunk without its metadata ({where})")
            meta = field_of(chunk, _CC_META_DATA)[2]
            meta_fids = {fid for fid, _t, _v in meta}
            if meta_fids & set(_CMD_BLOOM):
                self.refuse(f"has a bloom filter ({where})")
            if meta_fids - _KNOWN_CHUNK_META:
                self.refuse(f"has ColumnMetaData fields the splice does not know "
                            f"({sorted(meta_fids - _KNOWN_CHUNK_META)}, {where})")
            path = [bytes(p).decode("utf-8", "replace") for p in field_of(meta, _CMD_PATH)[2][1]]
            if path != [name]:
                self.refuse(f"has the chunk of {path} where column {name!r} should be (row group {index})")
            start, length = _chunk_range(meta)
            if length and not 4 <= start <= start + length <= self.footer_start:
                self.refuse(f"has a column chunk outside its data ({where}: bytes {start} to "
                            f"{start + length}, footer at {self.footer_start})")


def _read_exact(fd: int, start: int, length: int) -> bytes:
    parts, done = [], 0
    while done < length:
        data = os.pread(fd, length - done, start + done)
        if not data:
            raise OSError(f"file ended {length - done} bytes early")
        parts.append(data)
        done += len(data)
    return b"".join(parts)


def _kernel_copy(src: int, dst: int, start: int, length: int) -> int:
    """Bytes copied by os.copy_file_range (in the kernel, no user-space buffer) before it stops;
    0 where it does not exist or does not work between these files."""
    copied = 0
    copy = getattr(os, "copy_file_range", None)
    while copy is not None and copied < length:
        try:
            n = copy(src, dst, length - copied, start + copied)
        except OSError:                        # e.g. EXDEV, or a filesystem without it
            return copied
        if n == 0:
            return copied
        copied += n
    return copied


def _copy_range(src: int, dst: int, start: int, length: int) -> None:
    """Copy bytes [start, start + length) of file `src` to the current position of file `dst`:
    in the kernel where possible, the rest by read and write."""
    copied = _kernel_copy(src, dst, start, length)
    while copied < length:
        data = os.pread(src, min(length - copied, 1 << 24), start + copied)
        if not data:
            raise OSError(f"book file ended {length - copied} bytes early while being copied")
        _write_all(dst, data)
        copied += len(data)


def _write_all(fd: int, data) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


@functools.lru_cache(maxsize=8)
def _columns_template(schema_ipc: bytes) -> tuple:
    """The footer pyarrow writes for an empty table of the schema (given without metadata, as its
    IPC bytes) with WRITE_OPTIONS, as a tuple of fields. Every hour of a symbol has the same
    columns and only other metadata: encoding and parsing an empty file costs ~10 ms, once."""
    schema = pa.ipc.read_schema(pa.py_buffer(schema_ipc))
    _body, footer = split_piece(encode_piece(schema.empty_table(), 1, WRITE_OPTIONS))
    return tuple(footer)


def _template_footer(schema: pa.Schema) -> list:
    """The footer pyarrow writes for an empty table of `schema` with WRITE_OPTIONS: its
    ARROW:schema and key-value metadata, and the Parquet schema and column orders of its columns.

    The columns' part is cached (_columns_template); the key-value metadata is built here as
    pyarrow builds it: the schema's metadata in order, then ARROW:schema, the base64 of the
    schema's IPC serialization (tests/features/test_features_splice.py compares the footers)."""
    template = list(_columns_template(schema.remove_metadata().serialize().to_pybytes()))
    pairs = [*(schema.metadata or {}).items(), (b"ARROW:schema", base64.b64encode(
        schema.serialize().to_pybytes()))]
    entries = [[[_KV_KEY, BINARY, key], [_KV_VALUE, BINARY, value]] for key, value in pairs]
    return [[fid, ttype, (STRUCT, entries)] if fid == _FMD_KV else [fid, ttype, value]
            for fid, ttype, value in template]


def write_spliced_partition(book_path: Path, features: pa.Table, out_path: Path,
                            metadata: dict[bytes, bytes] | None = None,
                            pool: Executor | None = None,
                            book_stat: os.stat_result | None = None) -> int:
    """Write the features partition `out_path`: the book partition `book_path`'s columns, their
    column chunks copied byte for byte, then the columns of `features` (the feature columns only,
    no `ts`, one row per book row in file order) encoded with WRITE_OPTIONS, in the book file's
    row groups. The schema metadata is the book file's updated with `metadata`. Written to a
    temporary name and renamed into place; returns the file's size in bytes.

    The feature row groups are encoded on `pool` (default: the write threads of
    midas.features.writing). `book_stat`: os.stat(book_path) taken before the caller read the
    book rows the features were computed from; when given, a book file replaced or modified since
    (another inode, size or modification time) is refused rather than spliced.

    Raises SpliceUnsupported (a ValueError) before writing anything when the book file holds what
    the splice cannot carry (see the module's docstring), its row count is not the features', it
    changed since `book_stat`, or a feature column is nested or repeats a column name; OSError when
    a file cannot be read or written (the old partition then stays as it was)."""
    book_path, out_path = Path(book_path), Path(out_path)
    with open(book_path, "rb", buffering=0) as handle:
        stat = os.fstat(handle.fileno())
        if book_stat is not None and (stat.st_ino, stat.st_dev, stat.st_size, stat.st_mtime_ns) != (
                book_stat.st_ino, book_stat.st_dev, book_stat.st_size, book_stat.st_mtime_ns):
            raise SpliceUnsupported(f"{book_path}: cannot splice its column chunks: the file changed "
                                    "since the book rows were read")
        book = _Book(book_path, handle, stat.st_size)
        if features.num_rows != book.num_rows:
            book.refuse(f"has {book.num_rows} rows, the features {features.num_rows}")
        if not features.num_columns:
            raise SpliceUnsupported(f"{book_path}: cannot splice: no feature columns")
        nested = [f.name for f in features.schema if pa.types.is_nested(f.type)]
        if nested:
            raise SpliceUnsupported(f"{book_path}: cannot splice: nested feature columns {nested}")
        clash = sorted(set(features.column_names) & set(book.leaf_names))
        if clash or len(set(features.column_names)) != features.num_columns:
            raise SpliceUnsupported(f"{book_path}: cannot splice: feature columns "
                                    f"{clash or features.column_names} repeat a column name")
        schema = pa.schema([*book.arrow_schema, *features.schema],
                           metadata={**(book.arrow_schema.metadata or {}), **(metadata or {})} or None)
        template = _template_footer(schema)
        pool = pool or write_pool()
        pieces: list[Future] = []
        start = 0
        for group in book.row_groups:
            rows = field_of(group, _RG_NUM_ROWS)[2]
            pieces.append(pool.submit(encode_piece, features.slice(start, rows), max(rows, 1),
                                      WRITE_OPTIONS))
            start += rows
        out_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = out_path.with_name(f".{out_path.name}.{os.getpid()}-{threading.get_ident()}.splice.tmp")
        try:
            with open(tmp, "wb", buffering=0) as out:
                _write_file(book, handle.fileno(), out.fileno(), pieces, template)
            os.replace(tmp, out_path)
        finally:
            for piece in pieces:
                piece.cancel()
            if tmp.exists():
                tmp.unlink()
    return out_path.stat().st_size


def _write_file(book: _Book, src: int, dst: int, pieces: list[Future], template: list) -> None:
    _write_all(dst, MAGIC)
    position = len(MAGIC)
    feature_leaves = field_of(template, _FMD_SCHEMA)[2][1][1 + len(book.leaves):]
    row_groups = []
    for index, (group, piece) in enumerate(zip(book.row_groups, pieces)):
        # the book's column chunks, in order; runs of adjacent chunks copied at once
        chunks = field_of(group, _RG_COLUMNS)[2][1]
        first = None
        run_start = run_end = None
        for chunk in chunks:
            chunk_start, length = _chunk_range(field_of(chunk, _CC_META_DATA)[2])
            if run_end != chunk_start:
                if run_start is not None:
                    _copy_range(src, dst, run_start, run_end - run_start)
                    position += run_end - run_start
                run_start = run_end = None
            new_start = position + (chunk_start - run_start if run_start is not None else 0)
            if chunk_start:
                _move_chunk(chunk, new_start - chunk_start)
            if not length:                             # no bytes (an empty row group's chunk)
                continue
            if run_start is None:
                run_start = chunk_start
            run_end = chunk_start + length
            if first is None:
                first = new_start
        if run_start is not None:
            _copy_range(src, dst, run_start, run_end - run_start)
            position += run_end - run_start
        # the features' column chunks of the same rows
        body, piece_footer = split_piece(piece.result())
        piece_groups = field_of(piece_footer, _FMD_ROW_GROUPS)[2][1]
        rows = field_of(group, _RG_NUM_ROWS)[2]
        if len(piece_groups) != 1 or field_of(piece_groups[0], _RG_NUM_ROWS)[2] != rows:
            raise ParquetJoinError(f"features piece of row group {index} is not one row group of its rows")
        if field_of(piece_footer, _FMD_SCHEMA)[2][1][1:] != feature_leaves:
            raise ParquetJoinError("features piece has another Parquet schema than the whole table's")
        piece_group = piece_groups[0]
        for chunk in field_of(piece_group, _RG_COLUMNS)[2][1]:
            _move_chunk(chunk, position - len(MAGIC))
        if first is None and body:
            first = position
        _write_all(dst, body)
        position += len(body)
        chunks.extend(field_of(piece_group, _RG_COLUMNS)[2][1])
        for fid in (_RG_TOTAL_BYTE_SIZE, _RG_TOTAL_COMPRESSED_SIZE):
            mine, theirs = field_of(group, fid), field_of(piece_group, fid)
            if mine is not None and theirs is not None:
                mine[2] += theirs[2]
        file_offset = field_of(group, _RG_FILE_OFFSET)
        if file_offset is not None and first is not None:
            file_offset[2] = first
        ordinal = field_of(group, _RG_ORDINAL)
        if ordinal is not None:
            ordinal[2] = index
        row_groups.append(group)

    # the footer: the template's version and key-value metadata (ARROW:schema), the book's schema
    # elements, creator and column orders, then the features'
    footer = []
    for fid, ttype, value in template:
        if fid == _FMD_SCHEMA:
            root = [list(f) for f in book.root]
            field_of(root, _SE_NUM_CHILDREN)[2] = len(book.leaves) + len(feature_leaves)
            value = (STRUCT, [root, *book.leaves, *feature_leaves])
        elif fid == _FMD_NUM_ROWS:
            value = book.num_rows
        elif fid == _FMD_ROW_GROUPS:
            value = (STRUCT, row_groups)
        elif fid == _FMD_CREATED_BY and book.created_by is not None:
            value = book.created_by            # the writer of the book chunks, whose statistics
        elif fid == _FMD_COLUMN_ORDERS:        # readers trust or not by it
            if book.column_orders is None:     # no orders for the book columns: none at all
                continue
            etype, orders = value
            value = (etype, [*book.column_orders[2][1], *orders[len(book.leaves):]])
        footer.append([fid, ttype, value])
    encoded = encode_footer(footer)
    _write_all(dst, encoded + struct.pack("<i", len(encoded)) + MAGIC)
