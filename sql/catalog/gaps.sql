-- gaps: view over every Parquet partition of clean/gaps: one row per interval without a valid book.
-- Grain: as the dataset; columns of the files plus the hive partition columns venue, symbol,
-- date (DATE) and hour (INTEGER), so WHERE symbol = 'BTCUSDT' AND date = '2024-07-18' reads only
-- the matching files. __DATASET_GLOB__ is replaced by midas.catalog with the quoted absolute glob of
-- the dataset under DATA_DIR (DDL cannot take parameters; the path never comes from a query).
CREATE OR REPLACE VIEW gaps AS
SELECT *
FROM read_parquet(__DATASET_GLOB__, hive_partitioning = true,
                  hive_types = {'venue': VARCHAR, 'symbol': VARCHAR, 'date': DATE, 'hour': INTEGER});
