-- delete_partition: remove the `partitions` row of one partition whose file no longer exists.
-- Grain: one (dataset, venue, symbol, date, hour).
DELETE FROM partitions
WHERE dataset = CAST($dataset AS VARCHAR) AND venue = CAST($venue AS VARCHAR)
  AND symbol = CAST($symbol AS VARCHAR) AND date = CAST($date AS DATE)
  AND hour = CAST($hour AS INTEGER);
