-- known_raw_files: path and bytes of the registered raw files of one venue and symbol, so
-- registration rescans only new or grown files. Grain: one row per raw file.
SELECT path, bytes FROM raw_files
WHERE venue = CAST($venue AS VARCHAR) AND symbol = CAST($symbol AS VARCHAR);
