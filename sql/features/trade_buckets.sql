-- trade_buckets: table macro. The trades of the registered relation `trade_input` (ts, trade_id,
-- price, qty, is_buyer_maker, trade_type) per grid time (a multiple of interval_us): for each grid
-- time ts, the taker buy and sell quantity in 1e-8 units (aggressor buy = is_buyer_maker false) and
-- the count of the trades in its bucket (ts - bucket_us, ts], and the last trade (latest T, then
-- highest trade_id) among the trades assigned to it. Only MARKET trades when market_only (futures).
-- A trade at T is assigned to the first grid time at or after T, and to every further grid time
-- whose bucket holds it (generate_series; when bucket_us <= interval_us that is the first grid time
-- only, computed without the series). So the grid time with trades latest at or before a row's ts
-- holds the last trade with T <= ts.
-- Grain: one row per grid time with at least one trade assigned.
CREATE OR REPLACE TEMP MACRO trade_buckets(interval_us, bucket_us, market_only) AS TABLE
WITH assigned AS (
    -- bucket_us <= interval_us (the usual case): a trade belongs to one grid time only, no series
    SELECT ts AS trade_ts, trade_id, price, qty, is_buyer_maker,
           (CAST(ts AS BIGINT) + CAST(interval_us AS BIGINT) - 1)
               // CAST(interval_us AS BIGINT) * CAST(interval_us AS BIGINT) AS grid_ts
    FROM trade_input
    WHERE CAST(bucket_us AS BIGINT) <= CAST(interval_us AS BIGINT)
      AND (NOT CAST(market_only AS BOOLEAN) OR trade_type = 'MARKET')
    UNION ALL
    SELECT ts AS trade_ts, trade_id, price, qty, is_buyer_maker,
           unnest(generate_series(
               (CAST(ts AS BIGINT) + CAST(interval_us AS BIGINT) - 1)
                   // CAST(interval_us AS BIGINT) * CAST(interval_us AS BIGINT),
               greatest(CAST(ts AS BIGINT) + CAST(bucket_us AS BIGINT) - 1,
                        (CAST(ts AS BIGINT) + CAST(interval_us AS BIGINT) - 1)
                            // CAST(interval_us AS BIGINT) * CAST(interval_us AS BIGINT)),
               CAST(interval_us AS BIGINT))) AS grid_ts
    FROM trade_input
    WHERE CAST(bucket_us AS BIGINT) > CAST(interval_us AS BIGINT)
      AND (NOT CAST(market_only AS BOOLEAN) OR trade_type = 'MARKET')
),
in_bucket AS (
    SELECT *, grid_ts - CAST(bucket_us AS BIGINT) < trade_ts AS counted,
           to_units(qty) AS qty_units,
           -- (trade_ts, trade_id) as one number: later trade time first, then higher trade_id
           CAST(trade_ts AS HUGEINT) * CAST(9223372036854775808 AS HUGEINT)
               + CAST(trade_id AS HUGEINT) AS trade_order
    FROM assigned
)
SELECT grid_ts AS ts,
       CAST(sum(CASE WHEN counted AND NOT is_buyer_maker THEN qty_units ELSE 0 END) AS HUGEINT) AS buy_units,
       CAST(sum(CASE WHEN counted AND is_buyer_maker THEN qty_units ELSE 0 END) AS HUGEINT) AS sell_units,
       CAST(count(*) FILTER (WHERE counted) AS BIGINT) AS trades,
       CAST(max_by(price, trade_order) AS DOUBLE) AS last_px,
       CAST(max_by(qty, trade_order) AS DOUBLE) AS last_qty
FROM in_bucket
GROUP BY grid_ts;
