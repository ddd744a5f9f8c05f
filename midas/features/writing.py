"""Writing a features partition: ZSTD Parquet, PARQUET_ROW_GROUP_SIZE rows per group, encoded on
a shared pool of threads (midas.features.parquet_parallel), to a temporary name renamed into place."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa

from midas.features.parquet_parallel import ParallelParquetWriter

# Threads encoding partitions: the row groups of a partition in parallel, and an hour's book
# columns while its features are computed (midas.features.parquet_parallel).
WRITE_THREADS = min(4, os.cpu_count() or 1)
# No dictionary encoding: book sizes and feature values are nearly all distinct, so pyarrow builds
# dictionaries only to fall back to plain pages. On the real recordings' partitions this halves the
# writing CPU and the files come out ~17% smaller (bench/RESULTS.md).
WRITE_OPTIONS = {"compression": "zstd", "use_dictionary": False}
_WRITE_POOL: list[ThreadPoolExecutor] = []
_WRITE_POOL_LOCK = threading.Lock()


def write_pool() -> ThreadPoolExecutor:
    """The threads that encode partitions (WRITE_THREADS), shared by every caller."""
    with _WRITE_POOL_LOCK:
        if not _WRITE_POOL:
            _WRITE_POOL.append(ThreadPoolExecutor(WRITE_THREADS, thread_name_prefix="features-write"))
        return _WRITE_POOL[0]


def new_partition_writer(row_group_size: int) -> ParallelParquetWriter:
    return ParallelParquetWriter(write_pool(), row_group_size, **WRITE_OPTIONS)


def replace_file(path: Path, writer: ParallelParquetWriter, schema: pa.Schema) -> int:
    """Write the file to a temporary name, then rename it over `path`. Returns its size."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        writer.write(tmp, schema)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path.stat().st_size


def write_partition(table: pa.Table, path: Path, row_group_size: int,
                    metadata: dict[bytes, bytes] | None = None) -> int:
    """Write `table` as ZSTD Parquet to a temporary name, then rename it over `path`. Returns bytes.

    The row groups are encoded on the write threads; the file is the one pq.write_table writes."""
    if metadata:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
    writer = new_partition_writer(row_group_size)
    writer.encode(table)
    return replace_file(path, writer, table.schema)
