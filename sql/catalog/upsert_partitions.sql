-- upsert_partitions: insert or replace the rows of the registered relation `partition_rows`
-- (dataset, venue, symbol, date, hour, rows, bytes, written_at) into `partitions`.
-- Grain: one row per partition file.
INSERT OR REPLACE INTO partitions
SELECT CAST(dataset AS VARCHAR), CAST(venue AS VARCHAR), CAST(symbol AS VARCHAR), CAST(date AS DATE),
       CAST(hour AS INTEGER), CAST(rows AS BIGINT), CAST(bytes AS BIGINT),
       CAST(written_at AS TIMESTAMP)
FROM partition_rows;
