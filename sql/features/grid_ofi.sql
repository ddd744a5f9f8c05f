-- grid_ofi: table macro. Every row of the registered relation `book_input` (ts, bid_px_01,
-- ask_px_01, bid_sz_01..10, ask_sz_01..10) with `ofi_units`: cks_ofi against the previous grid row,
-- NULL when the grid time ts - interval_us has no row (start of data, after a gap).
-- Grain: one row per grid time ts (µs).
-- book_input must be in ts order (midas.features checks it): lag() OVER () is DuckDB's streaming
-- window, which reads the rows in input order without sorting them. The previous row is accepted
-- only when its ts is exactly ts - interval_us, so any other row can never produce an ofi.
CREATE OR REPLACE TEMP MACRO grid_ofi(interval_us) AS TABLE
WITH previous_row AS (
    SELECT *,
           lag(ts) OVER () AS prev_ts,
           lag(bid_px_01) OVER () AS prev_bid_px,
           lag(bid_sz_01) OVER () AS prev_bid_sz,
           lag(ask_px_01) OVER () AS prev_ask_px,
           lag(ask_sz_01) OVER () AS prev_ask_sz
    FROM book_input
)
SELECT * EXCLUDE (prev_ts, prev_bid_px, prev_bid_sz, prev_ask_px, prev_ask_sz),
       CASE WHEN prev_ts = ts - CAST(interval_us AS BIGINT)
            THEN cks_ofi(bid_px_01, to_units(bid_sz_01), ask_px_01, to_units(ask_sz_01),
                         prev_bid_px, to_units(prev_bid_sz), prev_ask_px, to_units(prev_ask_sz))
       END AS ofi_units
FROM previous_row;
