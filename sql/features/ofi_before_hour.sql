-- ofi_before_hour: one row (ofi_units HUGEINT, ofi_rows BIGINT): the sum and count of the non-NULL
-- `ofi` of the grid rows of the day before the hour, ts in [$day_start, $hour_start), read from
-- `book_input` (which holds the day's rows from $day_start - $interval_us on).
-- Grain: one symbol-hour. ofi_units is NULL when no row of the day before the hour has an ofi.
SELECT CAST(sum(ofi_units) AS HUGEINT) AS ofi_units,
       CAST(count(ofi_units) AS BIGINT) AS ofi_rows
FROM grid_ofi($interval_us)
WHERE ts >= CAST($day_start AS BIGINT) AND ts < CAST($hour_start AS BIGINT);
