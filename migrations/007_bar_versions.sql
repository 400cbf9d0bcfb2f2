-- The version of each stored bar, so that "latest version wins" holds across partitions, not only
-- within one (keys move between partitions when partitions are added; some producers do not key by
-- symbol). A bar's version is (revision, source_time):
--   revision     the message's optional integer `revision` field (0 when it has none): a producer that
--                corrects a bar can say so explicitly, whatever the timestamps;
--   source_time  the Kafka record timestamp of the message that wrote the row.
-- The writer replaces a stored row only with a version at least as new (src/store/writeSql.ts); rows
-- written before this migration have the lowest version (0, -infinity), so any message replaces them.
-- Constant defaults: PostgreSQL adds both columns without rewriting the table (and TimescaleDB without
-- decompressing chunks).
ALTER TABLE bars_1m ADD COLUMN IF NOT EXISTS revision bigint NOT NULL DEFAULT 0;
ALTER TABLE bars_1m ADD COLUMN IF NOT EXISTS source_time timestamptz NOT NULL DEFAULT '-infinity';
