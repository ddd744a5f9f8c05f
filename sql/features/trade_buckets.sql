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
--
-- Three ways to the same rows, exactly one of which receives the trades:
--   * in_order (the usual case: bucket_us = interval_us, trades in strictly increasing
--     (ts, trade_id) order as midas/book stores them, no NULL price or qty): one streaming pass
--     in input order, no hash table: every trade assigned is counted (T > grid_ts - bucket_us),
--     a bucket's last trade is its last row, and its sums and count are differences of running
--     sums (exact: integer units, HUGEINT) and of row numbers between consecutive bucket ends.
--     Whether the input qualifies is checked by its own pass (`qualifies`); when it does not, the
--     in_order rows are discarded, whatever they hold.
--   * one_bucket (bucket_us <= interval_us otherwise) and series (bucket_us > interval_us): a
--     GROUP BY grid time, for input in any order.
CREATE OR REPLACE TEMP MACRO trade_buckets(interval_us, bucket_us, market_only) AS TABLE
WITH qualifies AS (
    -- one row: true when the trades are in order for the in_order pass (see above)
    SELECT coalesce(bool_and(in_order), true) AS in_order
    FROM (SELECT coalesce(ts > lag(ts) OVER ()
                          OR (ts = lag(ts) OVER () AND trade_id > lag(trade_id) OVER ()),
                          row_number() OVER () = 1)
                 AND price IS NOT NULL AND qty IS NOT NULL AND ts IS NOT NULL
                 AND trade_id IS NOT NULL AS in_order
          FROM trade_input
          WHERE NOT CAST(market_only AS BOOLEAN) OR trade_type = 'MARKET')
),
in_order_running AS (
    -- per trade, in input order: its grid time, the next trade's, running sums of the taker
    -- quantities (BIGINT units per trade, HUGEINT sums) and the row number
    SELECT grid_ts, price, qty,
           lead(grid_ts) OVER () AS next_grid_ts,
           sum(buy_units) OVER (ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS running_buy,
           sum(sell_units) OVER (ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS running_sell,
           row_number() OVER () AS running_trades
    FROM (SELECT (CAST(ts AS BIGINT) + CAST(interval_us AS BIGINT) - 1)
                     // CAST(interval_us AS BIGINT) * CAST(interval_us AS BIGINT) AS grid_ts,
                 price, qty,
                 CASE WHEN NOT is_buyer_maker THEN to_units(qty) ELSE 0 END AS buy_units,
                 CASE WHEN is_buyer_maker THEN to_units(qty) ELSE 0 END AS sell_units
          FROM trade_input
          WHERE NOT CAST(market_only AS BOOLEAN) OR trade_type = 'MARKET')
),
in_order AS (
    -- the last trade of each grid time, still in input order: its bucket = the trades since the
    -- previous grid time's last trade
    SELECT grid_ts AS ts,
           running_buy - coalesce(lag(running_buy) OVER (), 0) AS buy_units,
           running_sell - coalesce(lag(running_sell) OVER (), 0) AS sell_units,
           running_trades - coalesce(lag(running_trades) OVER (), 0) AS trades,
           CAST(price AS DOUBLE) AS last_px,
           CAST(qty AS DOUBLE) AS last_qty
    FROM in_order_running
    WHERE next_grid_ts IS DISTINCT FROM grid_ts
),
assigned AS (
    -- bucket_us <= interval_us: a trade belongs to one grid time only, no series
    SELECT ts AS trade_ts, trade_id, price, qty, is_buyer_maker,
           (CAST(ts AS BIGINT) + CAST(interval_us AS BIGINT) - 1)
               // CAST(interval_us AS BIGINT) * CAST(interval_us AS BIGINT) AS grid_ts
    FROM trade_input
    WHERE CAST(bucket_us AS BIGINT) <= CAST(interval_us AS BIGINT)
      AND (NOT CAST(market_only AS BOOLEAN) OR trade_type = 'MARKET')
      AND NOT (CAST(bucket_us AS BIGINT) = CAST(interval_us AS BIGINT)
               AND (SELECT in_order FROM qualifies))
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
SELECT ts, buy_units, sell_units, trades, last_px, last_qty
FROM in_order
WHERE CAST(bucket_us AS BIGINT) = CAST(interval_us AS BIGINT) AND (SELECT in_order FROM qualifies)
UNION ALL
SELECT grid_ts AS ts,
       CAST(sum(CASE WHEN counted AND NOT is_buyer_maker THEN qty_units ELSE 0 END) AS HUGEINT) AS buy_units,
       CAST(sum(CASE WHEN counted AND is_buyer_maker THEN qty_units ELSE 0 END) AS HUGEINT) AS sell_units,
       CAST(count(*) FILTER (WHERE counted) AS BIGINT) AS trades,
       CAST(max_by(price, trade_order) AS DOUBLE) AS last_px,
       CAST(max_by(qty, trade_order) AS DOUBLE) AS last_qty
FROM in_bucket
GROUP BY grid_ts;
