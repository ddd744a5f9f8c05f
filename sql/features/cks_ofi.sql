-- cks_ofi: scalar macro. Order-flow imbalance between two consecutive grid rows (Cont, Kukanov &
-- Stoikov 2014), in 1e-8 size units (BIGINT):
--   e = 1{Pb >= Pb'} qb - 1{Pb <= Pb'} qb' - 1{Pa <= Pa'} qa + 1{Pa >= Pa'} qa'   (primes: previous row)
-- Grain: one pair of rows. NULL when a best price or size of either row is NULL (an empty side).
CREATE OR REPLACE TEMP MACRO cks_ofi(bid_px, bid_units, ask_px, ask_units,
                                     prev_bid_px, prev_bid_units, prev_ask_px, prev_ask_units) AS
      CAST(bid_px >= prev_bid_px AS BIGINT) * bid_units
    - CAST(bid_px <= prev_bid_px AS BIGINT) * prev_bid_units
    - CAST(ask_px <= prev_ask_px AS BIGINT) * ask_units
    + CAST(ask_px >= prev_ask_px AS BIGINT) * prev_ask_units;
