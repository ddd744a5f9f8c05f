-- Demo query 3: the trades per venue and symbol: count, volume, volume-weighted average price, the share of
-- volume bought by takers, and the largest trade. Grain: venue x symbol.
SELECT
    venue,
    symbol,
    count(*)                                                        AS trades,
    round(sum(qty), 4)                                              AS volume,
    round(sum(price * qty) / nullif(sum(qty), 0), 4)                AS vwap,
    round(sum(CASE WHEN NOT is_buyer_maker THEN qty ELSE 0 END)
          / nullif(sum(qty), 0), 3)                                 AS taker_buy_share,
    max(qty)                                                        AS largest_qty
FROM trades
GROUP BY venue, symbol
ORDER BY venue, symbol
