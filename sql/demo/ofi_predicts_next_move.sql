-- Demo query 2: does order-flow imbalance predict the next midprice move? Per symbol, the
-- correlation of each grid row's OFI (and 10-interval OFI) with the midprice change to the next
-- grid row, over rows where both are known. Grain: symbol.
WITH moves AS (
    SELECT
        symbol,
        ofi,
        ofi_10,
        lead(midprice) OVER (PARTITION BY venue, symbol ORDER BY ts) - midprice AS next_move
    FROM features
)
SELECT
    symbol,
    count(*)                                 AS rows,
    round(corr(ofi, next_move), 3)           AS corr_ofi_next_move,
    round(corr(ofi_10, next_move), 3)        AS corr_ofi10_next_move,
    round(avg(abs(next_move)), 6)            AS avg_abs_move
FROM moves
WHERE ofi IS NOT NULL AND next_move IS NOT NULL
GROUP BY symbol
ORDER BY symbol
