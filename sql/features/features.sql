-- features: table macro. The feature columns of SPEC §3, one row per clean/book grid row of
-- `book_input` from hour_start on, in ts order. Grain: (venue, symbol, ts). midas.features runs
-- it for one hour (ts in [hour_start, hour_start + 1 h), through features_of_hour.sql) and puts
-- the hour's book columns in front; given more rows (several hours or days) it is the one-pass
-- computation of all of them. A macro, so that a connection parses and binds this text once
-- and each hour only calls it (~15 % of an hour's feature SQL CPU, bench/RESULTS.md).
--
-- Inputs (relations registered by midas.features):
--   book_input  (ts, bid_px_01, ask_px_01, bid_sz_01..10, ask_sz_01..10): the hour's grid rows plus
--               the rows from hour_start - ofi_window_us on (so ofi and ofi_10 continue across
--               the hour boundary); levels beyond ORDER_BOOK_DEPTH are NULL.
--   trade_input (ts, trade_id, price, qty, is_buyer_maker, trade_type): trades with
--               ts in (hour_start - bucket_us, hour_start + 1 h).
-- Parameters:
--   hour_start, interval_us (grid), ofi_window_us (OFI_WINDOW x grid), bucket_us
--   (TIME_BUCKET_MS), market_only (futures),
--   ofi_carry_units (sum of the ofi of hour_start's day before hour_start in 1e-8 units, NULL
--   if none; later days start from zero),
--   seed_ts, seed_px, seed_qty (the last trade at or before hour_start - bucket_us, or NULL).
-- Exact arithmetic: sizes are summed as integer 1e-8 units (to_units), so ofi, ofi_10,
-- ofi_cumulative and the taker volumes do not depend on summation order or on hour boundaries.
CREATE OR REPLACE TEMP MACRO features(hour_start, interval_us, ofi_window_us, bucket_us, market_only,
                                      ofi_carry_units, seed_ts, seed_px, seed_qty) AS TABLE
WITH level_sums AS (
    -- per grid row, in input order (no sort yet): ofi and the summed sizes of the first levels
    SELECT ts, ofi_units, bid_px_01, ask_px_01, bid_sz_01, ask_sz_01,
           coalesce(bid_sz_01, 0) AS bid_sum_1,
           coalesce(ask_sz_01, 0) AS ask_sum_1,
           coalesce(bid_sz_01, 0) + coalesce(bid_sz_02, 0) + coalesce(bid_sz_03, 0)
               + coalesce(bid_sz_04, 0) + coalesce(bid_sz_05, 0) AS bid_sum_5,
           coalesce(ask_sz_01, 0) + coalesce(ask_sz_02, 0) + coalesce(ask_sz_03, 0)
               + coalesce(ask_sz_04, 0) + coalesce(ask_sz_05, 0) AS ask_sum_5,
           coalesce(bid_sz_01, 0) + coalesce(bid_sz_02, 0) + coalesce(bid_sz_03, 0)
               + coalesce(bid_sz_04, 0) + coalesce(bid_sz_05, 0) + coalesce(bid_sz_06, 0)
               + coalesce(bid_sz_07, 0) + coalesce(bid_sz_08, 0) + coalesce(bid_sz_09, 0)
               + coalesce(bid_sz_10, 0) AS bid_sum_10,
           coalesce(ask_sz_01, 0) + coalesce(ask_sz_02, 0) + coalesce(ask_sz_03, 0)
               + coalesce(ask_sz_04, 0) + coalesce(ask_sz_05, 0) + coalesce(ask_sz_06, 0)
               + coalesce(ask_sz_07, 0) + coalesce(ask_sz_08, 0) + coalesce(ask_sz_09, 0)
               + coalesce(ask_sz_10, 0) AS ask_sum_10
    FROM grid_ofi(interval_us)
),
grid_rows AS (
    -- the per-row features (SPEC §3 formulas, evaluated left to right as written there), and the
    -- running sum and count of ofi over the input (streaming windows: input order, no sort)
    SELECT ts, ofi_units,
           sum(ofi_units) OVER (ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS running_units,
           count(ofi_units) OVER (ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS running_rows,
           (bid_px_01 + ask_px_01) / 2 AS midprice,
           ask_px_01 - bid_px_01 AS spread,
           (ask_px_01 - bid_px_01) / ((bid_px_01 + ask_px_01) / 2) * 10000 AS spread_bps,
           (bid_px_01 * ask_sz_01 + ask_px_01 * bid_sz_01) / (bid_sz_01 + ask_sz_01) AS microprice,
           CASE WHEN bid_sum_1 + ask_sum_1 <> 0
                THEN (bid_sum_1 - ask_sum_1) / (bid_sum_1 + ask_sum_1) END AS imbalance,
           CASE WHEN bid_sum_5 + ask_sum_5 <> 0
                THEN (bid_sum_5 - ask_sum_5) / (bid_sum_5 + ask_sum_5) END AS imbalance_5,
           CASE WHEN bid_sum_10 + ask_sum_10 <> 0
                THEN (bid_sum_10 - ask_sum_10) / (bid_sum_10 + ask_sum_10) END AS imbalance_10,
           bid_sum_1 + ask_sum_1 AS liquidity_1,
           bid_sum_5 + ask_sum_5 AS liquidity_5,
           bid_sum_10 + ask_sum_10 AS liquidity_10
    FROM level_sums
),
running AS (
    -- the narrow running sums, the only columns that get sorted; probe_ts: where the window
    -- before ts starts (a column, as ASOF needs a plain inequality between the two sides)
    SELECT ts, ts - CAST(ofi_window_us AS BIGINT) AS probe_ts, running_units, running_rows
    FROM grid_rows
),
ofi_window AS (
    -- ofi_10: the ofi of the rows in (ts - ofi_window_us, ts] (a missing grid time shortens it):
    -- the running sum at ts minus the running sum at the last row at or before ts - ofi_window_us
    -- (exact: integer units); NULL when that window holds no ofi
    SELECT w.ts AS window_ts, w.running_units, w.running_rows,
           CASE WHEN w.running_rows - coalesce(p.running_rows, 0) > 0
                THEN coalesce(w.running_units, 0) - coalesce(p.running_units, 0)
           END AS ofi_window_units
    FROM running AS w
    ASOF LEFT JOIN running AS p ON w.probe_ts >= p.ts
    WHERE w.ts >= CAST(hour_start AS BIGINT)
),
day_starts AS (
    -- per UTC day (from hour_start on): the running ofi sum and count just before its first row,
    -- so the day's running ofi is running_units - before_units
    SELECT ts // 86400000000 AS day,
           arg_min(running_units - coalesce(ofi_units, 0), ts) AS before_units,
           arg_min(running_rows - CAST(ofi_units IS NOT NULL AS BIGINT), ts) AS before_rows
    FROM grid_rows
    WHERE ts >= CAST(hour_start AS BIGINT)
    GROUP BY day
),
trade_grid AS (
    SELECT ts AS grid_ts, buy_units, sell_units, trades, last_px, last_qty
    FROM trade_buckets(interval_us, bucket_us, market_only)
    UNION ALL
    -- the last trade before the trades given (from earlier hours), with no volume
    SELECT CAST(seed_ts AS BIGINT), CAST(0 AS HUGEINT), CAST(0 AS HUGEINT), CAST(0 AS BIGINT),
           CAST(seed_px AS DOUBLE), CAST(seed_qty AS DOUBLE)
    WHERE seed_ts IS NOT NULL
),
windows_and_trades AS (
    -- still narrow (no book columns): one ASOF join, the latest grid time with trades at or before
    -- ts gives the last trade; its bucket sums are this row's when it is this row's own grid time;
    -- the day's running ofi is running_units - before_units. Sorted by ts here, while still
    -- narrow, so that it lines up row by row with the wide grid rows (below).
    SELECT w.window_ts, w.ofi_window_units,
           CASE WHEN t.grid_ts = w.window_ts THEN t.buy_units ELSE CAST(0 AS HUGEINT) END AS buy_units,
           CASE WHEN t.grid_ts = w.window_ts THEN t.sell_units ELSE CAST(0 AS HUGEINT) END AS sell_units,
           CASE WHEN t.grid_ts = w.window_ts THEN t.trades ELSE CAST(0 AS BIGINT) END AS trade_count,
           t.last_px AS last_trade_px,
           t.last_qty AS last_trade_qty,
           w.window_ts // 86400000000 = CAST(hour_start AS BIGINT) // 86400000000 AS in_first_day,
           w.running_units - d.before_units AS ofi_day_units,
           w.running_rows - d.before_rows AS ofi_day_rows
    FROM ofi_window AS w
    ASOF LEFT JOIN trade_grid AS t ON w.window_ts >= t.grid_ts
    JOIN day_starts AS d ON d.day = w.window_ts // 86400000000
    WHERE w.window_ts >= CAST(hour_start AS BIGINT)
    ORDER BY w.window_ts
),
hour_rows AS (
    -- the wide per-row features from hour_start on, still in input (= ts) order: never sorted
    SELECT * FROM grid_rows WHERE ts >= CAST(hour_start AS BIGINT)
),
with_trades AS (
    -- POSITIONAL JOIN: both sides hold the same grid times in ts order, so row i meets row i
    -- (no hash join, no sort of the wide rows); a row that does not line up is an error, not a
    -- wrong value
    SELECT g.*, wt.* EXCLUDE (window_ts),
           CASE WHEN g.ts IS DISTINCT FROM wt.window_ts
                THEN error('features: grid rows out of order at ts ' || CAST(g.ts AS VARCHAR))
           END AS misaligned
    FROM hour_rows AS g
    POSITIONAL JOIN windows_and_trades AS wt
)
SELECT
    ts,
    midprice,
    spread,
    spread_bps,
    microprice,
    imbalance,
    imbalance_5,
    imbalance_10,
    from_units(ofi_units) AS ofi,
    from_units(ofi_window_units) AS ofi_10,
    CASE WHEN NOT in_first_day THEN
              CASE WHEN ofi_day_rows > 0 THEN from_units(ofi_day_units) END
         WHEN CAST(ofi_carry_units AS HUGEINT) IS NULL AND ofi_day_rows = 0 THEN NULL
         ELSE from_units(coalesce(CAST(ofi_carry_units AS HUGEINT), 0) + ofi_day_units)
    END AS ofi_cumulative,
    from_units(buy_units) AS taker_buy_volume,
    from_units(sell_units) AS taker_sell_volume,
    from_units(buy_units - sell_units) AS signed_volume,
    CASE WHEN buy_units + sell_units = 0 THEN CAST(0 AS DOUBLE)
         ELSE CAST(buy_units - sell_units AS DOUBLE) / CAST(buy_units + sell_units AS DOUBLE)
    END AS volume_imbalance,
    trade_count,
    last_trade_px,
    last_trade_qty,
    liquidity_1,
    liquidity_5,
    liquidity_10
FROM with_trades
WHERE misaligned IS NULL;
