-- last_trade_before: at most one row (ts, trade_id, price, qty): the last trade of `trade_input` with
-- ts <= $until (latest ts, then highest trade_id), counting only MARKET trades when $market_only.
-- Grain: one symbol. Used to carry last_trade_px / last_trade_qty across hours.
SELECT CAST(ts AS BIGINT) AS ts, CAST(trade_id AS BIGINT) AS trade_id,
       CAST(price AS DOUBLE) AS price, CAST(qty AS DOUBLE) AS qty
FROM trade_input
WHERE ts <= CAST($until AS BIGINT)
  AND (NOT CAST($market_only AS BOOLEAN) OR trade_type = 'MARKET')
ORDER BY ts DESC, trade_id DESC
LIMIT 1;
