-- Native compression of bars_1m chunks older than 7 days (TimescaleDB only; on plain PostgreSQL, or
-- when bars_1m is not a hypertable, this is a no-op that still gets recorded).
--
-- segmentby symbol: each compressed batch holds one symbol, so "bars of a symbol in a range" reads only
-- that symbol's batches, and the writer's upsert of a late bar touches one segment. orderby "timestamp"
-- DESC matches the latest-N read. 7 days: minute bars are rewritten (late versions, replays) mostly
-- within minutes or hours; a later upsert into a compressed chunk still works, it is only slower.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        RETURN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM timescaledb_information.hypertables
                   WHERE hypertable_schema = current_schema() AND hypertable_name = 'bars_1m') THEN
        RAISE NOTICE 'bars_1m is not a hypertable; no compression';
        RETURN;
    END IF;
    ALTER TABLE bars_1m SET (
        timescaledb.compress,
        timescaledb.compress_segmentby = 'symbol',
        timescaledb.compress_orderby = '"timestamp" DESC'
    );
    PERFORM add_compression_policy('bars_1m', INTERVAL '7 days', if_not_exists => true);
END
$$;
