-- Least privilege for the service: a NOLOGIN group role bar_writer_rw holding exactly what bar-writer
-- needs, and nothing else (no DELETE, no TRUNCATE, no DDL, no access to bar_writer_migrations):
--   - USAGE on this schema;
--   - SELECT, INSERT, UPDATE on bars_1m (the upsert: INSERT … ON CONFLICT DO UPDATE … WHERE reads the
--     stored row; the read API selects) and on bar_writer_offsets (the fence: INSERT … ON CONFLICT DO
--     NOTHING, SELECT … FOR UPDATE, UPDATE);
--   - SELECT on the continuous aggregates of 004, where they exist;
--   - CONNECT and TEMPORARY on this database: the service stages each batch in a temporary table
--     (PostgreSQL grants both to PUBLIC by default; hardened databases revoke them).
-- TimescaleDB passes grants on a hypertable on to its chunks and compressed chunks.
-- The operator creates a LOGIN user for the service and grants it this role (see README.md).
--
-- The role is global to the cluster; the grants are for this schema and database. Creating the role
-- needs CREATEROLE: a migration owner without it gets a NOTICE and the migration still succeeds (a
-- superuser can create the role and run the GRANTs of README.md). Grants the owner may not give
-- (CONNECT/TEMPORARY on a database it does not own) are likewise skipped with a NOTICE.
-- On PostgreSQL before 15, PUBLIC may create tables in schema public: with DB_SCHEMA=public, revoke
-- that too (REVOKE CREATE ON SCHEMA public FROM PUBLIC), or keep bars_1m in its own schema.
DO $$
DECLARE
    agg text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bar_writer_rw') THEN
        BEGIN
            CREATE ROLE bar_writer_rw NOLOGIN;
        EXCEPTION
            WHEN insufficient_privilege THEN
                RAISE NOTICE 'cannot create role bar_writer_rw (%); no grants made', SQLERRM;
                RETURN;
            WHEN duplicate_object OR unique_violation THEN
                NULL; -- created at the same moment by the migration of another database
        END;
    END IF;
    BEGIN
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO bar_writer_rw', current_schema());
        GRANT SELECT, INSERT, UPDATE ON TABLE bars_1m, bar_writer_offsets TO bar_writer_rw;
        FOREACH agg IN ARRAY ARRAY['bars_5m', 'bars_15m', 'bars_1h', 'bars_1d'] LOOP
            IF to_regclass(format('%I.%I', current_schema(), agg)) IS NOT NULL THEN
                EXECUTE format('GRANT SELECT ON TABLE %I.%I TO bar_writer_rw', current_schema(), agg);
            END IF;
        END LOOP;
    EXCEPTION WHEN insufficient_privilege THEN
        RAISE NOTICE 'cannot grant on schema % to bar_writer_rw (%)', current_schema(), SQLERRM;
    END;
    BEGIN
        EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO bar_writer_rw', current_database());
    EXCEPTION WHEN insufficient_privilege THEN
        RAISE NOTICE 'cannot grant CONNECT, TEMPORARY on database % to bar_writer_rw (%)', current_database(), SQLERRM;
    END;
END
$$;
