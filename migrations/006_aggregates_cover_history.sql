-- The refresh policies of the continuous aggregates cover all of bars_1m's history (start_offset NULL),
-- not only its last 7 days (TimescaleDB only; elsewhere a no-op that still gets recorded).
--
-- Why: a policy re-materializes only the invalidated buckets inside its window. With a 7-day window, a
-- late correction of a bar older than that (a vendor's fix of last month's prints, a backfill) was
-- recorded in the invalidation log and never materialized: the aggregate stayed stale for good. With
-- the whole history as the window, every policy run materializes every invalidated bucket, whatever its
-- age, and only those: untouched history costs nothing (the refresh works from the invalidation log).
--
-- Retention (BARS_DB_RETENTION) interacts: dropping chunks also invalidates their range, and a refresh
-- over a range whose raw bars are gone would erase its buckets. So when retention is set, `npm run
-- migrate` sets every refresh policy's start_offset to the retention interval (src/store/
-- timescaleSettings.ts): the policies then never reach a dropped chunk, and the aggregates keep the
-- buckets of bars past retention. Without retention, NULL (below) is the setting it keeps.
DO $$
DECLARE
    j record;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        RETURN;
    END IF;
    FOR j IN
        SELECT job_id, config FROM timescaledb_information.jobs
        WHERE proc_name = 'policy_refresh_continuous_aggregate'
          AND hypertable_schema = current_schema()
          AND hypertable_name IN ('bars_5m', 'bars_15m', 'bars_1h', 'bars_1d')
    LOOP
        PERFORM alter_job(j.job_id, config => j.config || jsonb_build_object('start_offset', NULL));
    END LOOP;
END
$$;
