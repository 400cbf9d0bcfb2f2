-- The third part of a bar's version, breaking ties of (revision, source_time): where the message that
-- wrote the row came from, as partition × 2^48 + offset (src/store/writeSql.ts). Within a partition a
-- later message wins a tie (a correction produced in the same millisecond as the bar it corrects);
-- across partitions an exact tie goes to the higher partition: arbitrary but fixed, so a replay never
-- flips it. A backfill's rows carry their ordinal in the load. The writer replaces a stored row only
-- with a strictly newer version (revision, source_time, source_origin): a replay of an older or equal
-- version writes nothing. Rows written before this migration have none (NULL, read as -1: the lowest).
-- Nullable without a default: PostgreSQL adds it without rewriting the table (and TimescaleDB without
-- decompressing chunks).
ALTER TABLE bars_1m ADD COLUMN IF NOT EXISTS source_origin bigint NULL;
