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
--               the hour boundary); levels beyond ORDER_BOOK_DEPTH are NULL. Strictly increasing
--               ts (midas.features checks it): every window below is DuckDB's streaming window
--               (OVER (), input order, no sort).
--   trade_input (ts, trade_id, price, qty, is_buyer_maker, trade_type): trades with
--               ts in (hour_start - bucket_us, hour_start + 1 h), in any order.
-- Parameters:
--   hour_start, interval_us (grid), ofi_window_us (OFI_WINDOW x grid), bucket_us
--   (TIME_BUCKET_MS), market_only (futures),
--   ofi_carry_units (sum of the ofi of hour_start's day before hour_start in 1e-8 units, NULL
--   if none; later days start from zero),
--   seed_ts, seed_px, seed_qty (the last trade at or before hour_start - bucket_us, or NULL).
-- Exact arithmetic: sizes are summed as integer 1e-8 units (to_units), so ofi, ofi_10,
-- ofi_cumulative and the taker volumes do not depend on summation order or on hour boundaries.
--
-- Plan (why it is shaped so): the wide per-row columns, ofi, ofi_10 and ofi_cumulative are one
-- pass over book_input in input order (streaming windows: lag/lead by a constant number of rows,
-- running sums), never sorted. Only two things need a search: the trades (buckets at grid times,
-- which need not be book rows) and ofi_10 of the few rows whose window is not exactly the
-- previous OFI_WINDOW rows (after a gap, at the start). Those are computed on a narrow relation
-- sorted by ts, which is lined up row by row with the wide rows by a POSITIONAL JOIN (checked).
-- N = ofi_window_us // interval_us below is a constant of the query (the lag/lead offsets).
-- Trade columns assume on-grid rows (ts a multiple of interval_us), as every output row is
-- (midas.features checks the hour's rows); only lookback rows, never output, may be off it.
CREATE OR REPLACE TEMP MACRO features(hour_start, interval_us, ofi_window_us, bucket_us, market_only,
                                      ofi_carry_units, seed_ts, seed_px, seed_qty) AS TABLE
WITH previous_rows AS (
    -- the previous input row (for ofi) and the row N back (is the ofi_10 window exactly the
    -- previous N rows?), in input order
    SELECT *,
           lag(ts) OVER () AS prev_ts,
           lag(bid_px_01) OVER () AS prev_bid_px,
           lag(bid_sz_01) OVER () AS prev_bid_sz,
           lag(ask_px_01) OVER () AS prev_ask_px,
           lag(ask_sz_01) OVER () AS prev_ask_sz,
           lag(ts, CAST(ofi_window_us AS BIGINT) // CAST(interval_us AS BIGINT)) OVER () AS back_ts
    FROM book_input
),
level_sums AS (
    -- per grid row: ofi (cks_ofi against the previous row, only when that row is exactly one
    -- grid interval earlier: NULL at the start and after a gap, as grid_ofi.sql), the summed sizes
    -- of the first levels; window_is_rows: the rows in (ts - ofi_window_us, ts] are exactly the
    -- previous N rows and this one (the row N back is at ts - ofi_window_us: ts strictly
    -- increases, so the rows after it are inside the window and it is the last row outside)
    SELECT ts, prev_ts, bid_px_01, ask_px_01, bid_sz_01, ask_sz_01,
           CASE WHEN prev_ts = ts - CAST(interval_us AS BIGINT)
                THEN cks_ofi(bid_px_01, to_units(bid_sz_01), ask_px_01, to_units(ask_sz_01),
                             prev_bid_px, to_units(prev_bid_sz), prev_ask_px, to_units(prev_ask_sz))
           END AS ofi_units,
           coalesce(back_ts = ts - CAST(ofi_window_us AS BIGINT), false) AS window_is_rows,
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
    FROM previous_rows
),
running AS (
    -- the running sum and count of ofi over the input (HUGEINT: exact whatever the length)
    SELECT *,
           sum(ofi_units) OVER (ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS running_units,
           count(ofi_units) OVER (ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS running_rows
    FROM level_sums
),
grid_rows AS (
    -- the per-row features (SPEC §3 formulas, evaluated left to right as written there), and:
    -- ofi_window_units: ofi_10 where window_is_rows (the running sum minus the running sum N rows
    --   back; NULL when the window holds no ofi); the other rows get it from `searched` below;
    -- searchable: this row can be the last row at or before ts' - ofi_window_us of a row ts'
    --   that is not window_is_rows. A row q is the last row at or before ts' - ofi_window_us
    --   exactly for the rows ts' in [ts_q + ofi_window_us, ts_{q+1} + ofi_window_us); when rows
    --   q+N and q+N+1 are both window_is_rows, that interval holds row q+N only (at ts_q + W,
    --   and row q+N+1 at ts_{q+1} + W), which is window_is_rows: such a q is never searched for;
    -- day_first: the first row of a UTC day from hour_start on, where the day's running ofi
    --   starts: before_units / before_rows, the running sum and count just before it, carried
    --   forward to the day's rows (last non-NULL value so far; days only increase).
    SELECT ts, ofi_units, running_units, running_rows, window_is_rows,
           CASE WHEN window_is_rows
                 AND running_rows
                     - lag(running_rows, CAST(ofi_window_us AS BIGINT) // CAST(interval_us AS BIGINT))
                           OVER () > 0
                THEN coalesce(running_units, 0)
                     - coalesce(lag(running_units, CAST(ofi_window_us AS BIGINT)
                                                   // CAST(interval_us AS BIGINT)) OVER (), 0)
           END AS ofi_window_units,
           NOT (coalesce(lead(window_is_rows, CAST(ofi_window_us AS BIGINT)
                                                 // CAST(interval_us AS BIGINT)) OVER (), false)
                AND coalesce(lead(window_is_rows, CAST(ofi_window_us AS BIGINT)
                                                     // CAST(interval_us AS BIGINT) + 1) OVER (),
                             false)) AS searchable,
           -- before_units: coalesce(running_units, 0) - ..., as a day whose first row has no
           -- running sum yet has none before it (0): running_units - before_units is NULL exactly
           -- while running_units is
           last_value(CASE WHEN ts >= CAST(hour_start AS BIGINT)
                            AND (prev_ts IS NULL OR prev_ts < CAST(hour_start AS BIGINT)
                                 OR prev_ts // 86400000000 <> ts // 86400000000)
                           THEN coalesce(running_units, 0) - coalesce(ofi_units, 0) END IGNORE NULLS)
               OVER (ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS before_units,
           last_value(CASE WHEN ts >= CAST(hour_start AS BIGINT)
                            AND (prev_ts IS NULL OR prev_ts < CAST(hour_start AS BIGINT)
                                 OR prev_ts // 86400000000 <> ts // 86400000000)
                           THEN running_rows - CAST(ofi_units IS NOT NULL AS BIGINT) END IGNORE NULLS)
               OVER (ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS before_rows,
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
    FROM running
),
searched AS (
    -- ofi_10 of the rows from hour_start on that are not window_is_rows (the first N rows of the
    -- input, the N rows after a gap): the running sum at ts minus the running sum at the last row
    -- at or before ts - ofi_window_us, found by an ASOF join among the searchable rows only (it
    -- is always one of them, see grid_rows); NULL when that window holds no ofi
    SELECT w.ts AS searched_ts,
           CASE WHEN w.running_rows - coalesce(p.running_rows, 0) > 0
                THEN coalesce(w.running_units, 0) - coalesce(p.running_units, 0)
           END AS searched_units
    FROM (SELECT ts, ts - CAST(ofi_window_us AS BIGINT) AS probe_ts, running_units, running_rows
          FROM grid_rows
          WHERE ts >= CAST(hour_start AS BIGINT) AND NOT window_is_rows) AS w
    ASOF LEFT JOIN (SELECT ts, running_units, running_rows FROM grid_rows WHERE searchable) AS p
        ON w.probe_ts >= p.ts
),
trade_grid AS (
    -- the trades per grid time, and the last trade before the trades given (from earlier
    -- hours), with no volume
    SELECT ts AS grid_ts, buy_units, sell_units, trades, last_px, last_qty
    FROM trade_buckets(interval_us, bucket_us, market_only)
    UNION ALL
    SELECT CAST(seed_ts AS BIGINT), CAST(0 AS HUGEINT), CAST(0 AS HUGEINT), CAST(0 AS BIGINT),
           CAST(seed_px AS DOUBLE), CAST(seed_qty AS DOUBLE)
    WHERE seed_ts IS NOT NULL
),
events AS (
    -- narrow: the grid times with trades (kind 0) and the grid rows from hour_start on (kind 1,
    -- with the searched ofi_10 where there is one; their ts from grid_rows, stored anyway, not a
    -- second read of book_input, which may be a view over Parquet files), sorted by (ts, kind):
    -- a grid row comes right after its own grid time's trades and after every earlier one.
    -- One BIGINT sort key,
    -- ts * 2 + kind (cheaper to sort than two columns; exact for |ts| < 2^62 µs, ~146,000
    -- years, and an overflow is an error, not a wrong key); ts = key >> 1, kind = key & 1.
    SELECT grid_ts * 2 AS event_key, buy_units, sell_units, trades, last_px, last_qty,
           CAST(NULL AS HUGEINT) AS searched_units
    FROM trade_grid
    UNION ALL
    SELECT b.ts * 2 + 1, NULL, NULL, NULL, NULL, NULL, s.searched_units
    FROM (SELECT ts FROM grid_rows WHERE ts >= CAST(hour_start AS BIGINT)) AS b
    LEFT JOIN searched AS s ON s.searched_ts = b.ts
    ORDER BY event_key
),
trades_per_row AS (
    -- one pass over the sorted events (streaming windows): a grid row's bucket sums are those of
    -- the event just before it when that is its own grid time's trades (key - 1); its last trade
    -- is that of the latest trades event so far (the latest grid time with trades at or before
    -- ts, as a struct so that a NULL price or quantity is carried as it is). Keys are unique
    -- (one trades row per grid time, one grid row per ts, the seed before the trades given): a
    -- key not above the previous one is an error, not a wrong value.
    SELECT event_key, searched_units,
           CASE WHEN lag(event_key) OVER () = event_key - 1
                THEN lag(buy_units) OVER () ELSE CAST(0 AS HUGEINT) END AS buy_units,
           CASE WHEN lag(event_key) OVER () = event_key - 1
                THEN lag(sell_units) OVER () ELSE CAST(0 AS HUGEINT) END AS sell_units,
           CASE WHEN lag(event_key) OVER () = event_key - 1
                THEN lag(trades) OVER () ELSE CAST(0 AS BIGINT) END AS trade_count,
           last_value(CASE WHEN event_key & 1 = 0 THEN {'px': last_px, 'qty': last_qty} END IGNORE NULLS)
               OVER (ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS last_trade,
           CASE WHEN lag(event_key) OVER () >= event_key
                THEN error('features: trade events out of order at ts ' || CAST(event_key >> 1 AS VARCHAR))
           END AS misordered
    FROM events
),
row_trades AS (
    SELECT event_key >> 1 AS window_ts, searched_units, buy_units, sell_units, trade_count,
           last_trade.px AS last_trade_px, last_trade.qty AS last_trade_qty
    FROM trades_per_row
    WHERE event_key & 1 = 1 AND misordered IS NULL
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
    POSITIONAL JOIN row_trades AS wt
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
    from_units(CASE WHEN window_is_rows THEN ofi_window_units ELSE searched_units END) AS ofi_10,
    CASE WHEN ts // 86400000000 <> CAST(hour_start AS BIGINT) // 86400000000 THEN
              CASE WHEN running_rows - before_rows > 0 THEN from_units(running_units - before_units) END
         WHEN CAST(ofi_carry_units AS HUGEINT) IS NULL AND running_rows - before_rows = 0 THEN NULL
         -- a carry and no ofi since hour_start yet (e.g. rows after a gap at the hour): the
         -- carry itself, as one pass over the day gives it
         ELSE from_units(coalesce(CAST(ofi_carry_units AS HUGEINT), 0)
                         + coalesce(running_units - before_units, 0))
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
