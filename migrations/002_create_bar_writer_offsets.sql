-- The database side of exactly-once: per (consumer group, topic, partition), the first offset not yet
-- written into bars_1m. Each write transaction locks its row, skips messages below it and advances it
-- in the same transaction as the upsert, so a replay (after a crash or a rebalance) or a late write by
-- an instance that lost the partition cannot write an older version over a newer one.
CREATE TABLE IF NOT EXISTS bar_writer_offsets (
    consumer_group text        NOT NULL,
    topic          text        NOT NULL,
    partition      integer     NOT NULL,
    next_offset    bigint      NOT NULL CHECK (next_offset >= 0),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, topic, partition)
);
