-- Demo query 1: one row per venue, symbol and minute of the features: book rows, first and last midprice,
-- average spread in basis points and average level-1 / 5-level imbalance. Grain: venue x symbol x minute.
SELECT
    venue,
    symbol,
    strftime(make_timestamp(ts), '%Y-%m-%d %H:%M')     AS minute_utc,
    count(*)                                           AS book_rows,
    round(arg_min(midprice, ts), 4)                    AS first_mid,
    round(arg_max(midprice, ts), 4)                    AS last_mid,
    round(avg(spread_bps), 3)                          AS avg_spread_bps,
    round(avg(imbalance), 3)                           AS avg_imbalance,
    round(avg(imbalance_5), 3)                         AS avg_imbalance_5
FROM features
GROUP BY venue, symbol, minute_utc
ORDER BY venue, symbol, minute_utc
