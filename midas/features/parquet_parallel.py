"""One Parquet file written by several threads: pieces of it are encoded in parallel.

pyarrow encodes and compresses a file's column chunks one after the other on one core; for the
features partitions (63 columns) that is the largest cost of the stage. Here the table is cut
into pieces (some of its columns x one row group), each encoded by `pyarrow.parquet.write_table`
into its own in-memory Parquet file on a thread pool (pyarrow releases the GIL while encoding),
and the pieces are joined into one file: their column chunk bytes in file order (row group by
row group, columns in order), then one footer listing every row group.

Pieces can be queued before the whole table exists: compute_features_hour queues an hour's book
columns as soon as it has read them, so they are encoded while the features are computed.

The footer is Parquet's Thrift `FileMetaData` (compact protocol). The pieces' footers are parsed
into a generic tree; a row group's column chunks are gathered from its pieces, their sizes summed,
and the byte offsets they hold (page, dictionary, index and bloom filter offsets) shifted by where
their piece's bytes now start; schema and key-value metadata come from the whole table's empty
file. Nothing else is touched: the joined file is byte for byte the file
`pq.write_table(table, path, row_group_size=...)` writes with the same options
(tests/features/test_features_parquet_parallel.py compares the bytes), so readers see the same
file, only written sooner.
"""

from __future__ import annotations

import struct
from concurrent.futures import Executor, Future
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

MAGIC = b"PAR1"

# Thrift compact protocol type ids
_BOOL_TRUE, _BOOL_FALSE, _BYTE, _I16, _I32, _I64, _DOUBLE, BINARY, _LIST, _SET, _MAP, STRUCT = range(1, 13)

# Field ids of parquet.thrift (https://github.com/apache/parquet-format/blob/master/src/main/thrift/parquet.thrift)
_FILE_NUM_ROWS, _FILE_ROW_GROUPS = 3, 4
_RG_COLUMNS, _RG_TOTAL_BYTE_SIZE, _RG_FILE_OFFSET, _RG_TOTAL_COMPRESSED_SIZE, _RG_ORDINAL = 1, 2, 5, 6, 7
_CC_FILE_OFFSET, _CC_META_DATA, _CC_OFFSET_INDEX_OFFSET, _CC_COLUMN_INDEX_OFFSET = 2, 3, 4, 6
# ColumnMetaData: data_page_offset, index_page_offset, dictionary_page_offset, bloom_filter_offset
_CMD_OFFSETS = (9, 10, 11, 14)


class ParquetJoinError(ValueError):
    """A piece written by pyarrow is not what the joiner expects (a bug, not bad input)."""


# Thrift compact protocol: a generic tree -------------------------------------------------------
# A struct is a list of [field id, type, value]; a list or set is (element type, [values]); a map
# is (key type, value type, [(key, value)]); a double is its 8 raw bytes; booleans are bool.

def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _unzigzag(n: int) -> int:
    return (n >> 1) ^ -(n & 1)


def _read_value(buf: bytes, pos: int, ttype: int):
    if ttype in (_BOOL_TRUE, _BOOL_FALSE):          # an element of a bool list: one byte
        return buf[pos] == _BOOL_TRUE, pos + 1
    if ttype == _BYTE:
        return buf[pos], pos + 1
    if ttype in (_I16, _I32, _I64):
        n, pos = _read_varint(buf, pos)
        return _unzigzag(n), pos
    if ttype == _DOUBLE:
        return buf[pos:pos + 8], pos + 8
    if ttype == BINARY:
        size, pos = _read_varint(buf, pos)
        return buf[pos:pos + size], pos + size
    if ttype in (_LIST, _SET):
        header = buf[pos]
        pos += 1
        size, etype = header >> 4, header & 0x0F
        if size == 15:
            size, pos = _read_varint(buf, pos)
        items = []
        for _ in range(size):
            item, pos = _read_value(buf, pos, etype)
            items.append(item)
        return (etype, items), pos
    if ttype == _MAP:
        size, pos = _read_varint(buf, pos)
        if size == 0:
            return (0, 0, []), pos
        ktype, vtype = buf[pos] >> 4, buf[pos] & 0x0F
        pos += 1
        pairs = []
        for _ in range(size):
            key, pos = _read_value(buf, pos, ktype)
            value, pos = _read_value(buf, pos, vtype)
            pairs.append((key, value))
        return (ktype, vtype, pairs), pos
    if ttype == STRUCT:
        return read_struct(buf, pos)
    raise ParquetJoinError(f"unknown Thrift compact type {ttype} at byte {pos}")


def read_struct(buf: bytes, pos: int) -> tuple[list, int]:
    fields, last = [], 0
    while True:
        byte = buf[pos]
        pos += 1
        if byte == 0:                                  # STOP
            return fields, pos
        ttype, delta = byte & 0x0F, byte >> 4
        if delta:
            fid = last + delta
        else:
            n, pos = _read_varint(buf, pos)
            fid = _unzigzag(n)
        if ttype in (_BOOL_TRUE, _BOOL_FALSE):         # a bool field: the value is in the type
            value = ttype == _BOOL_TRUE
        else:
            value, pos = _read_value(buf, pos, ttype)
        fields.append([fid, ttype, value])
        last = fid


def _write_varint(out: bytearray, n: int) -> None:
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _zigzag(n: int) -> int:
    return n << 1 if n >= 0 else ((-n) << 1) - 1


def _write_value(out: bytearray, ttype: int, value) -> None:
    if ttype in (_BOOL_TRUE, _BOOL_FALSE):
        out.append(_BOOL_TRUE if value else _BOOL_FALSE)
    elif ttype == _BYTE:
        out.append(value)
    elif ttype in (_I16, _I32, _I64):
        _write_varint(out, _zigzag(value))
    elif ttype == _DOUBLE:
        out += value
    elif ttype == BINARY:
        _write_varint(out, len(value))
        out += value
    elif ttype in (_LIST, _SET):
        etype, items = value
        if len(items) < 15:
            out.append(len(items) << 4 | etype)
        else:
            out.append(0xF0 | etype)
            _write_varint(out, len(items))
        for item in items:
            _write_value(out, etype, item)
    elif ttype == _MAP:
        ktype, vtype, pairs = value
        _write_varint(out, len(pairs))
        if pairs:
            out.append(ktype << 4 | vtype)
        for key, item in pairs:
            _write_value(out, ktype, key)
            _write_value(out, vtype, item)
    elif ttype == STRUCT:
        _write_struct(out, value)
    else:
        raise ParquetJoinError(f"unknown Thrift compact type {ttype}")


def _write_struct(out: bytearray, fields: list) -> None:
    last = 0
    for fid, ttype, value in fields:
        if ttype in (_BOOL_TRUE, _BOOL_FALSE):
            ttype = _BOOL_TRUE if value else _BOOL_FALSE
        if 0 < fid - last <= 15:
            out.append((fid - last) << 4 | ttype)
        else:
            out.append(ttype)
            _write_varint(out, _zigzag(fid))
        if ttype not in (_BOOL_TRUE, _BOOL_FALSE):
            _write_value(out, ttype, value)
        last = fid
    out.append(0)


def decode_footer(footer: bytes) -> list:
    """The Thrift FileMetaData of a Parquet footer as a generic tree (see above)."""
    fields, end = read_struct(footer, 0)
    if end != len(footer):
        raise ParquetJoinError(f"footer has {len(footer) - end} bytes after FileMetaData")
    return fields


def encode_footer(fields: list) -> bytes:
    out = bytearray()
    _write_struct(out, fields)
    return bytes(out)


# Joining pieces -----------------------------------------------------------------------------------

def field_of(fields: list, fid: int) -> list | None:
    return next((f for f in fields if f[0] == fid), None)


def _shift(fields: list, fid: int, delta: int, keep_zero: bool = False) -> None:
    field = field_of(fields, fid)
    if field is not None and not (keep_zero and field[2] == 0):
        field[2] += delta


def split_piece(piece: pa.Buffer) -> tuple[memoryview, list]:
    """(the bytes between the leading magic and the footer, the decoded footer) of one piece."""
    data = memoryview(piece)
    if len(data) < 12 or data[:4] != MAGIC or data[-4:] != MAGIC:
        raise ParquetJoinError("piece is not a Parquet file")
    footer_len = struct.unpack("<i", data[-8:-4])[0]
    footer_start = len(data) - 8 - footer_len
    return data[4:footer_start], decode_footer(bytes(data[footer_start:-8]))


def encode_piece(table: pa.Table, row_group_size: int, options: dict) -> pa.Buffer:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, row_group_size=row_group_size, **options)
    return sink.getvalue()


def _shift_row_group(group: list, delta: int) -> None:
    """Move every byte offset a RowGroup holds by `delta` (its bytes now start `delta` later)."""
    for chunk in field_of(group, _RG_COLUMNS)[2][1]:
        _shift(chunk, _CC_FILE_OFFSET, delta, keep_zero=True)   # deprecated; 0 means unset
        _shift(chunk, _CC_OFFSET_INDEX_OFFSET, delta)
        _shift(chunk, _CC_COLUMN_INDEX_OFFSET, delta)
        meta = field_of(chunk, _CC_META_DATA)
        if meta is not None:
            for fid in _CMD_OFFSETS:
                _shift(meta[2], fid, delta)
    _shift(group, _RG_FILE_OFFSET, delta)


class ParallelParquetWriter:
    """One Parquet file from pieces encoded on a thread pool, byte for byte the file
    `pq.write_table(table, path, row_group_size=row_group_size, **options)` writes.

    `encode(columns)` queues some columns of the table (all its rows), one piece per row group,
    and returns at once: a caller can queue the columns it already has, compute the others
    meanwhile and queue them later. `write(path, schema)` waits for the pieces and writes the file
    of the whole table, its columns in the order queued (`schema`: theirs, with its metadata).
    `options` are pq.write_table's (compression, use_dictionary, ...); a page index or bloom
    filters, which pyarrow places after all the row groups, are not supported."""

    def __init__(self, pool: Executor, row_group_size: int, **options):
        if options.get("write_page_index") or options.get("bloom_filter_options"):
            raise ValueError("ParallelParquetWriter writes no page index or bloom filters")
        self.pool, self.row_group_size, self.options = pool, row_group_size, options
        self.num_rows: int | None = None
        self._column_groups: list[list[Future]] = []

    def encode(self, columns: pa.Table) -> None:
        if self.num_rows is not None and columns.num_rows != self.num_rows:
            raise ValueError(f"{columns.num_rows} rows queued after {self.num_rows}")
        self.num_rows = columns.num_rows
        self._column_groups.append([
            self.pool.submit(encode_piece, columns.slice(start, self.row_group_size),
                             self.row_group_size, self.options)
            for start in range(0, columns.num_rows, self.row_group_size)])

    def write(self, path: Path, schema: pa.Schema) -> None:
        if not self.num_rows:                  # no rows: pyarrow's own empty file
            pq.write_table(schema.empty_table(), path, row_group_size=self.row_group_size,
                           **self.options)
            return
        # schema, key-value metadata and column orders of the whole table, from its empty file
        _body, footer = split_piece(encode_piece(schema.empty_table(), self.row_group_size,
                                                   self.options))
        row_groups = []
        with open(path, "wb") as out:
            out.write(MAGIC)
            position = len(MAGIC)
            for index in range(len(self._column_groups[0])):
                group = None
                for pieces in self._column_groups:
                    body, piece_footer = split_piece(pieces[index].result())
                    piece_groups = field_of(piece_footer, _FILE_ROW_GROUPS)[2][1]
                    if len(piece_groups) != 1:
                        raise ParquetJoinError(f"piece has {len(piece_groups)} row groups, expected 1")
                    piece_group = piece_groups[0]
                    _shift_row_group(piece_group, position - len(MAGIC))
                    if group is None:
                        group = piece_group
                    else:                       # the row group's next columns
                        field_of(group, _RG_COLUMNS)[2][1].extend(field_of(piece_group, _RG_COLUMNS)[2][1])
                        for fid in (_RG_TOTAL_BYTE_SIZE, _RG_TOTAL_COMPRESSED_SIZE):
                            field_of(group, fid)[2] += field_of(piece_group, fid)[2]
                    out.write(body)
                    position += len(body)
                ordinal = field_of(group, _RG_ORDINAL)
                if ordinal is not None:
                    ordinal[2] = index
                row_groups.append(group)
            field_of(footer, _FILE_NUM_ROWS)[2] = self.num_rows
            rg_field = field_of(footer, _FILE_ROW_GROUPS)
            rg_field[2] = (STRUCT, row_groups)
            encoded = encode_footer(footer)
            out.write(encoded)
            out.write(struct.pack("<i", len(encoded)))
            out.write(MAGIC)
