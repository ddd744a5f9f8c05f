-- partitions: table, one row per Parquet partition file of book, trades, gaps and features
-- (grain: dataset, venue, symbol, date, hour). rows and bytes of the file, written_at = the file's
-- modification time (UTC). Rebuilt from the files by `midas catalog rebuild`.
CREATE TABLE IF NOT EXISTS partitions (
    dataset    VARCHAR   NOT NULL,
    venue      VARCHAR   NOT NULL,
    symbol     VARCHAR   NOT NULL,
    date       DATE      NOT NULL,
    hour       INTEGER   NOT NULL,
    rows       BIGINT    NOT NULL,
    bytes      BIGINT    NOT NULL,
    written_at TIMESTAMP NOT NULL,
    PRIMARY KEY (dataset, venue, symbol, date, hour)
);
