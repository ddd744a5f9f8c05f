"""Features of symbol-hours (SPEC §3): `clean/book` + `clean/trades` -> `features` partitions.

The feature math is the SQL of `sql/features/`, run by an in-memory DuckDB (midas.features.compute).
midas.features.hours runs it over hours: consecutive hours of a day in one pass, DuckDB reading the
partitions itself, and writes one partition per hour whose book columns are copied from the
hour's clean/book partition (midas.features.splice).

Windowed columns continue across hour boundaries exactly as a one-pass computation of the day:
  * `ofi`, `ofi_10` read the last `OFI_WINDOW` grid intervals of the previous hour(s);
  * `ofi_cumulative` starts from the day's ofi sum before the hour, carried from the previous hour's
    features partition when that partition was computed from the very book partitions that exist
    now (their sizes and modification times are stored in its metadata), else summed from the
    day's book partitions;
  * taker volumes read the trades of the last `TIME_BUCKET_MS` before the hour, and
    `last_trade_*` searches earlier trades partitions back to the last trade.
Sizes are summed as exact integers of 1e-8 units, so re-running an hour, or the whole day in one
pass, gives bit-identical values.
"""

from midas.features.compute import (FEATURE_COLUMNS, FeatureParams, FeaturesResult,
                                    compute_feature_columns, feature_connection, last_trade_before,
                                    ofi_carry, run_feature_sql, thread_connection)
from midas.features.hours import compute_features_hour, compute_features_hours
from midas.features.reading import (FEATURE_LEVELS, TRADE_COLUMNS, TRADE_SCHEMA, book_input_table,
                                    book_level_columns, partition_hours, read_partition)
from midas.features.writing import WRITE_OPTIONS, WRITE_THREADS, write_partition

__all__ = [
    "FEATURE_COLUMNS", "FEATURE_LEVELS", "TRADE_COLUMNS", "TRADE_SCHEMA", "WRITE_OPTIONS",
    "WRITE_THREADS", "FeatureParams", "FeaturesResult", "book_input_table", "book_level_columns",
    "compute_feature_columns", "compute_features_hour", "compute_features_hours",
    "feature_connection", "last_trade_before", "ofi_carry", "partition_hours", "read_partition",
    "run_feature_sql", "thread_connection", "write_partition",
]
