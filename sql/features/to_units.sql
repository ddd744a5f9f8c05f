-- to_units: scalar macro. A price or size (DOUBLE) as an exact integer number of 1e-8 units (BIGINT).
-- Grain: one value. Binance prices and quantities have at most 8 decimals, so rounding x * 1e8
-- recovers the exchange's decimal exactly; sums of units are exact, whatever their order.
CREATE OR REPLACE TEMP MACRO to_units(x) AS
    CAST(round(CAST(x AS DOUBLE) * CAST(100000000 AS DOUBLE)) AS BIGINT);
