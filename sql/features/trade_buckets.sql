-- trade_buckets: table macro. For each grid time ts (a multiple of interval_us) whose trade bucket
-- (ts - bucket_us, ts] holds at least one trade of the registered relation `trade_input` (ts,
-- trade_id, price, qty, is_buyer_maker, trade_type): the taker buy and sell quantity in 1e-8 units
-- (aggressor buy = is_buyer_maker false) and the trade count. Only MARKET trades when market_only
-- (futures). Each trade goes to every grid time in [T, T + bucket_us), found with generate_series
-- (one grid time when bucket_us = interval_us).
-- Grain: one row per grid time with trades in its bucket.
CREATE OR REPLACE TEMP MACRO trade_buckets(interval_us, bucket_us, market_only) AS TABLE
WITH trade_grid_times AS (
    SELECT unnest(generate_series(
               (CAST(ts AS BIGINT) + CAST(interval_us AS BIGINT) - 1)
                   // CAST(interval_us AS BIGINT) * CAST(interval_us AS BIGINT),
               CAST(ts AS BIGINT) + CAST(bucket_us AS BIGINT) - 1,
               CAST(interval_us AS BIGINT))) AS grid_ts,
           is_buyer_maker,
           to_units(qty) AS qty_units
    FROM trade_input
    WHERE NOT CAST(market_only AS BOOLEAN) OR trade_type = 'MARKET'
)
SELECT grid_ts AS ts,
       CAST(sum(CASE WHEN NOT is_buyer_maker THEN qty_units ELSE 0 END) AS HUGEINT) AS buy_units,
       CAST(sum(CASE WHEN is_buyer_maker THEN qty_units ELSE 0 END) AS HUGEINT) AS sell_units,
       CAST(count(*) AS BIGINT) AS trades
FROM trade_grid_times
GROUP BY grid_ts;
