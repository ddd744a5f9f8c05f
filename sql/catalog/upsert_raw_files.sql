-- upsert_raw_files: insert or replace the rows of the registered relation `raw_file_rows`
-- (path, venue, symbol, hour, records, bytes, first_local_ts, last_local_ts) into `raw_files`.
-- Grain: one row per raw file.
INSERT OR REPLACE INTO raw_files
SELECT CAST(path AS VARCHAR), CAST(venue AS VARCHAR), CAST(symbol AS VARCHAR),
       CAST(hour AS TIMESTAMP), CAST(records AS BIGINT), CAST(bytes AS BIGINT),
       CAST(first_local_ts AS BIGINT), CAST(last_local_ts AS BIGINT)
FROM raw_file_rows;
