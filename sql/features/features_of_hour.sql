-- features_of_hour: the features table macro called with the query's named parameters, over the
-- relations book_input and trade_input registered by midas.features.compute_feature_columns.
-- Grain: (venue, symbol, ts), one row per grid row of the hour (see features.sql).
SELECT *
FROM features($hour_start, $interval_us, $ofi_window_us, $bucket_us, $market_only,
              $ofi_carry_units, $seed_ts, $seed_px, $seed_qty);
