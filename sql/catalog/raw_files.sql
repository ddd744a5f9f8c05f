-- raw_files: table, one row per final raw file (grain: path, relative to DATA_DIR). hour = the
-- local-clock hour in the file name (UTC); records, bytes and the first/last local_ts (µs) inside.
CREATE TABLE IF NOT EXISTS raw_files (
    path           VARCHAR   NOT NULL PRIMARY KEY,
    venue          VARCHAR   NOT NULL,
    symbol         VARCHAR   NOT NULL,
    hour           TIMESTAMP NOT NULL,
    records        BIGINT    NOT NULL,
    bytes          BIGINT    NOT NULL,
    first_local_ts BIGINT,
    last_local_ts  BIGINT
);
