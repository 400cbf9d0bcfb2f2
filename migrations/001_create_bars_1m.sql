-- bars_1m: one row per (symbol, minute). The primary key (symbol, "timestamp") is the only index:
-- it serves the upsert's conflict check, "bars of a symbol in a time range" and "latest N bars of a
-- symbol" (a backward scan). Another index on (symbol) or ("timestamp", symbol) would duplicate it, and
-- every index costs write throughput on the hot path. TimescaleDB also creates no extra time index here
-- (create_default_indexes => false): the key already leads chunk exclusion's range scans.
CREATE TABLE IF NOT EXISTS bars_1m (
    symbol      text             NOT NULL,
    "timestamp" timestamptz      NOT NULL,
    open        double precision NOT NULL,
    high        double precision NOT NULL,
    low         double precision NOT NULL,
    close       double precision NOT NULL,
    volume      bigint           NOT NULL,
    vwap        double precision NULL,
    PRIMARY KEY (symbol, "timestamp")
);

-- A hypertable on "timestamp" when TimescaleDB is installed or installable; plain PostgreSQL keeps a
-- regular table. The extension is created only when the server offers it; a server that offers it but
-- cannot load it (not in shared_preload_libraries) leaves a NOTICE and a plain table.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')
       AND EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb') THEN
        BEGIN
            CREATE EXTENSION IF NOT EXISTS timescaledb WITH SCHEMA public;
        EXCEPTION WHEN OTHERS THEN
            RAISE NOTICE 'timescaledb is available but could not be created (%); bars_1m stays a plain table', SQLERRM;
        END;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        PERFORM create_hypertable(
            'bars_1m'::regclass, 'timestamp',
            chunk_time_interval => INTERVAL '1 day',
            create_default_indexes => false,
            if_not_exists => true,
            migrate_data => true
        );
    END IF;
END
$$;
