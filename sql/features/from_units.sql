-- from_units: scalar macro. An integer number of 1e-8 units (BIGINT or HUGEINT) back to DOUBLE.
-- Grain: one value. Exactly rounded while |units| < 2^53 (9e7 in whole units).
CREATE OR REPLACE TEMP MACRO from_units(units) AS
    CAST(units AS DOUBLE) / CAST(100000000 AS DOUBLE);
