-- Demo query 2: does order-flow imbalance predict the next midprice move? Per venue and symbol, the
-- correlation of each grid row's OFI (and 10-interval OFI) with the midprice change to the next
-- grid row, over rows where both are known and the next row follows without a gap (its own `ofi`
-- is not null). Grain: venue x symbol.
WITH moves AS (
    SELECT
        venue,
        symbol,
        ofi,
        ofi_10,
        lead(midprice) OVER by_time - midprice   AS next_move,
        lead(ofi) OVER by_time                  AS next_ofi
    FROM features
    WINDOW by_time AS (PARTITION BY venue, symbol ORDER BY ts)
)
SELECT
    venue,
    symbol,
    count(*)                                 AS rows,
    round(corr(ofi, next_move), 3)           AS corr_ofi_next_move,
    round(corr(ofi_10, next_move), 3)        AS corr_ofi10_next_move,
    round(avg(abs(next_move)), 6)            AS avg_abs_move
FROM moves
WHERE ofi IS NOT NULL AND next_move IS NOT NULL AND next_ofi IS NOT NULL
GROUP BY venue, symbol
ORDER BY venue, symbol
