-- trade_buckets: table macro. The trades of the registered relation `trade_input` (ts, trade_id,
-- price, qty, is_buyer_maker, trade_type) summed per sub-bucket (bucket_end - sub_bucket_us,
-- bucket_end], bucket_end a multiple of sub_bucket_us: taker buy and sell quantity in 1e-8 units
-- (aggressor buy = is_buyer_maker false), the trade count and the bucket's last trade (latest ts,
-- then highest trade_id). Only MARKET trades when market_only (futures).
-- Grain: one row per sub-bucket holding at least one trade.
CREATE OR REPLACE TEMP MACRO trade_buckets(sub_bucket_us, market_only) AS TABLE
SELECT (CAST(ts AS BIGINT) + CAST(sub_bucket_us AS BIGINT) - 1)
           // CAST(sub_bucket_us AS BIGINT) * CAST(sub_bucket_us AS BIGINT) AS bucket_end,
       CAST(sum(CASE WHEN NOT is_buyer_maker THEN to_units(qty) ELSE 0 END) AS HUGEINT) AS buy_units,
       CAST(sum(CASE WHEN is_buyer_maker THEN to_units(qty) ELSE 0 END) AS HUGEINT) AS sell_units,
       CAST(count(*) AS BIGINT) AS trades,
       CAST(max_by(price, (ts, trade_id)) AS DOUBLE) AS last_px,
       CAST(max_by(qty, (ts, trade_id)) AS DOUBLE) AS last_qty
FROM trade_input
WHERE NOT CAST(market_only AS BOOLEAN) OR trade_type = 'MARKET'
GROUP BY bucket_end;
