-- bar-writer:no-transaction
-- Continuous aggregates bars_5m, bars_15m, bars_1h and bars_1d over bars_1m, with refresh policies
-- (TimescaleDB only; on plain PostgreSQL, or when bars_1m is not a hypertable, a no-op that still gets
-- recorded). The first line makes the runner send this file outside a transaction block: the initial
-- CALL refresh_continuous_aggregate refuses to run inside one (or inside an EXCEPTION block). Every step
-- is idempotent, so a run that failed half-way is simply repeated.
--
-- Each aggregate has the shape of bars_1m, one row per (symbol, bucket):
--   "timestamp"  bucket start: time_bucket(width, "timestamp"), buckets aligned on UTC (days start at
--                00:00 UTC, not at an exchange's session open);
--   open         first(open, "timestamp"): the open of the bucket's earliest bar;
--   high, low    max(high), min(low);
--   close        last(close, "timestamp"): the close of the bucket's latest bar ("timestamp" is unique
--                per symbol, so first/last never tie);
--   volume       sum(volume), numeric: a sum of bigints can exceed bigint and would fail the refresh;
--   vwap         sum(vwap * volume) / sum(volume) over the bucket's bars that HAVE a vwap; null when
--                none has one or their volume is 0. A bar's vwap is its traded value divided by its
--                volume, so vwap * volume is the bar's traded value and the quotient is the exact VWAP
--                of those bars. Bars without a vwap are left out instead of imputed (e.g. with
--                (high + low + close) / 3): an estimate mixed in would make every bucket's vwap
--                inexact without saying so. The price of this choice: when some bars lack a vwap, the
--                bucket's vwap covers only part of its volume.
-- All four read bars_1m directly (not one another), so each is exact on its own.
--
-- Refresh: materialized_only = false (real-time aggregation): a query also aggregates the bars_1m rows
-- newer than what was materialized, so the current, incomplete bucket is visible and nothing waits for
-- a policy run. Policies (name, width, start_offset, end_offset, schedule_interval below):
--   start_offset 7 days: late or corrected bars up to a week old (the age at which 003 compresses
--     chunks) are re-aggregated automatically. An older backfill needs a manual
--     CALL refresh_continuous_aggregate('bars_1h', from, to). Any retention (BARS_DB_RETENTION) must be
--     longer than this, or a refresh over dropped chunks would erase their buckets; the migrate CLI
--     refuses a shorter one.
--   end_offset 1 minute: a bucket is materialized once its last minute bar is due (bars arrive when
--     final, about a minute after they start); a bar later than that is caught by the next run.
--   schedule_interval: about a third of the bucket width or less (1 min, 5 min, 15 min, 1 h): a policy
--     run only re-aggregates invalidated or new buckets, and real-time aggregation covers the gap.
-- The first creation aggregates all of bars_1m at once (the CALL below): on a large existing table the
-- migration takes that long.
DO $$
DECLARE
    cagg text[];
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        RETURN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM timescaledb_information.hypertables
                   WHERE hypertable_schema = current_schema() AND hypertable_name = 'bars_1m') THEN
        RAISE NOTICE 'bars_1m is not a hypertable; no continuous aggregates';
        RETURN;
    END IF;
    FOREACH cagg SLICE 1 IN ARRAY ARRAY[
        -- name       width         start_offset  end_offset   schedule_interval
        ['bars_5m',  '5 minutes',  '7 days',     '1 minute',  '1 minute'],
        ['bars_15m', '15 minutes', '7 days',     '1 minute',  '5 minutes'],
        ['bars_1h',  '1 hour',     '7 days',     '1 minute',  '15 minutes'],
        ['bars_1d',  '1 day',      '7 days',     '1 minute',  '1 hour']
    ] LOOP
        EXECUTE format($view$
            CREATE MATERIALIZED VIEW IF NOT EXISTS %1$I
            WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
            SELECT symbol,
                   time_bucket(%2$L::interval, "timestamp") AS "timestamp",
                   first(open, "timestamp") AS open,
                   max(high) AS high,
                   min(low) AS low,
                   last(close, "timestamp") AS close,
                   sum(volume) AS volume,
                   sum(vwap * volume) FILTER (WHERE vwap IS NOT NULL)
                       / nullif(sum(volume) FILTER (WHERE vwap IS NOT NULL), 0) AS vwap
            FROM bars_1m
            GROUP BY symbol, time_bucket(%2$L::interval, "timestamp")
            WITH NO DATA
        $view$, cagg[1], cagg[2]);
        PERFORM add_continuous_aggregate_policy(
            cagg[1]::regclass,
            start_offset => cagg[3]::interval,
            end_offset => cagg[4]::interval,
            schedule_interval => cagg[5]::interval,
            if_not_exists => true
        );
        -- Aggregates what bars_1m already holds (the policy covers only the last start_offset). Commits.
        CALL refresh_continuous_aggregate(cagg[1]::regclass, NULL, NULL);
    END LOOP;
END
$$;
