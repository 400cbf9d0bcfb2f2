-- The fence must belong to the log it was written against. A topic deleted and created again under the
-- same name (or a log truncated by an unclean leader election) starts its offsets again, and a fence of
-- the old log would make the writer skip the new log's first messages without a trace.
-- last_fingerprint identifies the last message written below next_offset: "<offset>:<record timestamp
-- ms>:<hash of its value>". On assignment the writer fetches that offset again and compares
-- (src/offsets/resume.ts); a different message, or a log that ends before the fence, is a new log.
-- NULL: unknown (written before this migration); such a fence is checked only against the log's end.
ALTER TABLE bar_writer_offsets ADD COLUMN IF NOT EXISTS last_fingerprint text;
