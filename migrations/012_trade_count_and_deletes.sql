-- Bars as vendors publish them (docs/contract.md):
--
-- trade_count: the number of trades in the minute (the contract's optional `trade_count`), in bars_1m
-- and bars_latest. Nullable without a default: PostgreSQL adds it without rewriting the table, and
-- TimescaleDB without decompressing chunks; bars written before have none (NULL). The continuous
-- aggregates sum it: a continuous aggregate cannot gain a column, so `migrate` rebuilds each one from
-- bars_1m after this migration, once, and says so (src/store/timescaleSettings.ts).
--
-- bar_tombstones: a delete (`"deleted": true`) removes the stored bar whose version is not newer than
-- the delete's, and leaves its version here, per key: a bar is written only when no tombstone of its
-- key is at least as new, so a replay of an older version (a crash, an offsets reset, a dead-letter
-- replay, a backfill) does not bring the bar back, and a newer version does. One row per key ever
-- deleted, holding the newest delete's version. A plain table: deletes are rare (every trade of a
-- minute busted).
--
-- Writers of an earlier version neither read the tombstones nor delete: upgrade every writer before
-- producers send deletes (docs/contract.md "Deleting a bar").
ALTER TABLE bars_1m ADD COLUMN IF NOT EXISTS trade_count bigint NULL;
ALTER TABLE bars_latest ADD COLUMN IF NOT EXISTS trade_count bigint NULL;

CREATE TABLE IF NOT EXISTS bar_tombstones (
    symbol        text        NOT NULL,
    "timestamp"   timestamptz NOT NULL,
    revision      bigint      NOT NULL,
    source_time   timestamptz NOT NULL,
    source_origin bigint      NOT NULL,
    PRIMARY KEY (symbol, "timestamp")
);

-- The writer role (migrations/005_writer_role.sql) now deletes bars: DELETE on bars_1m and bars_latest
-- (a symbol's newest bar deleted falls back to its newest remaining one), and keeps the tombstones.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bar_writer_rw') THEN
        GRANT DELETE ON TABLE bars_1m, bars_latest TO bar_writer_rw;
        GRANT SELECT, INSERT, UPDATE ON TABLE bar_tombstones TO bar_writer_rw;
    END IF;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'cannot grant to bar_writer_rw (%)', SQLERRM;
END
$$;
