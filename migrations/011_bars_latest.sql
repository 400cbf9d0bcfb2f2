-- bars_latest: the newest stored bar of every symbol (the row of bars_1m with the symbol's greatest
-- "timestamp"), with its version. It answers "the latest bar of every symbol" (GET /v1/latest) and is
-- the list of symbols (GET /v1/symbols; GET /v1/minute looks each one up in bars_1m by its primary key
-- instead of scanning a chunk).
--
-- The writer keeps it in the transaction that writes bars_1m, from the rows its upsert changed
-- (src/store/writeSql.ts): a symbol's row is replaced by a changed row of a later minute, or of the same
-- minute with a newer version (the version rule of bars_1m, README "Which version wins"); a correction
-- of an older minute leaves it alone. Row locks taken in symbol order after those of bars_1m, so
-- concurrent writers never deadlock and the later commit of a symbol's newest minute wins, as in bars_1m.
--
-- Why a table and not an index with a loose scan: measured on 5,000 symbols × 10 trading days (19.5M
-- rows, half the chunks compressed), the loose scan of bars_1m's primary key (a recursive CTE over the
-- symbols, then the newest bar of each) took 550-640 ms, and 65 ms even given the list of symbols; this
-- table answers in a few ms (docs/reads.md, bench/README.md).
--
-- fillfactor 50: every flush updates the rows of the symbols it writes; room on each page keeps those
-- updates HOT (no index entry per update).
--
-- The fill below reads bars_1m (it never rewrites it nor decompresses a chunk: a compressed chunk is
-- read as a query reads it) with a loose scan of the primary key: per symbol, its newest bar, found in
-- the newest chunk that holds the symbol. It takes the same rule as the writer, so it may run while
-- writers of this version write. Writers of an earlier version do not maintain the table: upgrade by
-- stopping them, migrating, then starting this version (docs/reads.md, "Upgrading").
CREATE TABLE IF NOT EXISTS bars_latest (
    symbol        text             NOT NULL PRIMARY KEY,
    "timestamp"   timestamptz      NOT NULL,
    open          double precision NOT NULL,
    high          double precision NOT NULL,
    low           double precision NOT NULL,
    close         double precision NOT NULL,
    volume        bigint           NOT NULL,
    vwap          double precision NULL,
    revision      bigint           NOT NULL,
    source_time   timestamptz      NOT NULL,
    source_origin bigint           NULL
) WITH (fillfactor = 50);

WITH RECURSIVE symbols AS (
    (SELECT symbol FROM bars_1m ORDER BY symbol LIMIT 1)
    UNION ALL
    SELECT (SELECT b.symbol FROM bars_1m b WHERE b.symbol > s.symbol ORDER BY b.symbol LIMIT 1)
    FROM symbols s WHERE s.symbol IS NOT NULL
)
INSERT INTO bars_latest AS l (symbol, "timestamp", open, high, low, close, volume, vwap, revision, source_time, source_origin)
SELECT n.symbol, n."timestamp", n.open, n.high, n.low, n.close, n.volume, n.vwap, n.revision, n.source_time, n.source_origin
FROM symbols s
CROSS JOIN LATERAL (
    SELECT * FROM bars_1m b WHERE b.symbol = s.symbol ORDER BY b."timestamp" DESC LIMIT 1
) n
WHERE s.symbol IS NOT NULL
ORDER BY n.symbol
ON CONFLICT (symbol) DO UPDATE SET
    "timestamp" = EXCLUDED."timestamp", open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low,
    close = EXCLUDED.close, volume = EXCLUDED.volume, vwap = EXCLUDED.vwap, revision = EXCLUDED.revision,
    source_time = EXCLUDED.source_time, source_origin = EXCLUDED.source_origin
WHERE (EXCLUDED."timestamp", EXCLUDED.revision, EXCLUDED.source_time, COALESCE(EXCLUDED.source_origin, -1))
    > (l."timestamp", l.revision, l.source_time, COALESCE(l.source_origin, -1));

-- The writer role (migrations/005_writer_role.sql) keeps the table and the read API reads it.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bar_writer_rw') THEN
        GRANT SELECT, INSERT, UPDATE ON TABLE bars_latest TO bar_writer_rw;
    END IF;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'cannot grant on bars_latest to bar_writer_rw (%)', SQLERRM;
END
$$;
