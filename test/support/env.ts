/**
 * Where the integration tests find their services. scripts/test.sh starts Kafka and a real TimescaleDB
 * (scripts/timescaledb.sh) and exports these.
 *
 * - PG: the database the write-path suites run against. scripts/test.sh points it at the TimescaleDB
 *   cluster for the main run (bars_1m a hypertable) and at the machine's plain PostgreSQL for the
 *   plain-PostgreSQL run. Default: the machine's PostgreSQL (127.0.0.1:5432, trust auth, database `test`).
 * - TSDB: a TimescaleDB server (extension preloaded), for the suites that are about TimescaleDB itself.
 * - PLAIN_PG: a PostgreSQL without TimescaleDB, for the suites that check the plain-table path.
 * - SERVICE_PG: where the services under test reach PG: PG itself, or PgBouncer in transaction mode in
 *   front of it (TEST_PGBOUNCER_PORT, scripts/pgbouncer.sh). The tests' own connections (migrations,
 *   assertions, injected faults) always go to PG directly.
 */
export const KAFKA_BROKERS = process.env.TEST_KAFKA_BROKERS ?? '127.0.0.1:9092';

export interface PgTarget {
  host: string;
  port: number;
  user: string;
  database: string;
}

function target(prefix: string, port: number): PgTarget {
  return {
    host: process.env[`${prefix}_HOST`] ?? '127.0.0.1',
    port: Number(process.env[`${prefix}_PORT`] ?? port),
    user: process.env[`${prefix}_USER`] ?? 'postgres',
    database: process.env[`${prefix}_DATABASE`] ?? 'test',
  };
}

export const PG = target('TEST_PG', 5432);
export const TSDB = target('TEST_TSDB', 55432);
export const PLAIN_PG = target('TEST_PLAIN_PG', 5432);
export const SERVICE_PG: PgTarget = process.env.TEST_PGBOUNCER_PORT
  ? { ...PG, host: '127.0.0.1', port: Number(process.env.TEST_PGBOUNCER_PORT) }
  : PG;
/** Set by scripts/test.sh when PG is the TimescaleDB server: the harness then insists on a hypertable. */
export const PG_IS_TIMESCALEDB = process.env.TEST_PG_TIMESCALEDB === '1';
/** Binaries of the private PostgreSQL with TimescaleDB (scripts/timescaledb.sh bin), for clusters of a test's own. */
export const TSDB_BIN = process.env.TEST_TSDB_BIN ?? '';
