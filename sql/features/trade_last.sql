-- trade_last: table macro. The last trade of the registered relation `trade_input` at each distinct
-- trade time ts (highest trade_id among trades with the same ts): price and qty. Only MARKET
-- trades when market_only (futures). Grain: one row per distinct trade time.
CREATE OR REPLACE TEMP MACRO trade_last(market_only) AS TABLE
SELECT CAST(ts AS BIGINT) AS ts,
       CAST(max_by(price, trade_id) AS DOUBLE) AS last_px,
       CAST(max_by(qty, trade_id) AS DOUBLE) AS last_qty
FROM trade_input
WHERE NOT CAST(market_only AS BOOLEAN) OR trade_type = 'MARKET'
GROUP BY ts;
