-- Dead letters replayed by `bar-writer dlq replay` to the input topic: a second run does not replay the
-- same letter twice (a letter the service refuses again comes back as a new letter, at a new offset,
-- and can be replayed once more after the next fix). The service itself never reads or writes it.
CREATE TABLE IF NOT EXISTS bar_writer_dlq_replayed (
    dlq_topic     text        NOT NULL,
    dlq_partition integer     NOT NULL,
    dlq_offset    bigint      NOT NULL,
    replayed_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (dlq_topic, dlq_partition, dlq_offset)
);
