/**
 * Least privilege, end to end: the service runs as a LOGIN user whose only rights come from the group
 * role bar_writer_rw (migration 005), consumes a real topic and writes its bars; the same user cannot
 * delete, truncate, drop or create anything (SQLSTATE 42501, insufficient_privilege).
 */
import pg from 'pg';
import { PG, PG_IS_TIMESCALEDB } from '../support/env';
import {
  diffTables,
  expectedTable,
  Harness,
  httpGet,
  makeBars,
  sleep,
  uniqueName,
  waitFor,
} from '../support/harness';

describe('the writer role bar_writer_rw', () => {
  const h = new Harness();
  const role = uniqueName('bw_writer');
  const asRole = () => new pg.Client({ ...PG, user: role });

  beforeAll(async () => {
    await h.setupSchema();
    await h.pool.query(`CREATE ROLE "${role}" LOGIN IN ROLE bar_writer_rw`);
    // Registered before the service starts, so it runs after the service has stopped.
    h.onCleanup(async () => {
      for (let attempt = 0; ; attempt++) {
        try {
          await h.pool.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1`, [
            role,
          ]);
          await h.pool.query(`DROP OWNED BY "${role}"`); // temporary tables of sessions still ending
          await h.pool.query(`DROP ROLE "${role}"`);
          return;
        } catch (err) {
          if (attempt >= 20) throw err;
          await sleep(250);
        }
      }
    });
  });
  afterAll(() => h.cleanup());

  test('the migrations grant exactly SELECT, INSERT, UPDATE on the writer tables (DELETE too on the bars; SELECT on the aggregates), USAGE and TEMPORARY', async () => {
    const tables = await h.pool.query(
      `SELECT table_name, string_agg(privilege_type, ',' ORDER BY privilege_type) AS privileges
       FROM information_schema.role_table_grants
       WHERE grantee = 'bar_writer_rw' AND table_schema = $1 GROUP BY table_name ORDER BY table_name`,
      [h.schema],
    );
    // On TimescaleDB the continuous aggregates of 004 are readable too (the read side may serve them).
    const aggregates = PG_IS_TIMESCALEDB
      ? ['bars_15m', 'bars_1d', 'bars_1h', 'bars_5m'].map((table_name) => ({
          table_name,
          privileges: 'SELECT',
        }))
      : [];
    expect(tables.rows).toEqual(
      [
        { table_name: 'bar_tombstones', privileges: 'INSERT,SELECT,UPDATE' },
        { table_name: 'bar_writer_offsets', privileges: 'INSERT,SELECT,UPDATE' },
        // DELETE: a delete message removes a bar (migration 012).
        { table_name: 'bars_1m', privileges: 'DELETE,INSERT,SELECT,UPDATE' },
        { table_name: 'bars_latest', privileges: 'DELETE,INSERT,SELECT,UPDATE' },
        ...aggregates,
      ].sort((a, b) => (a.table_name < b.table_name ? -1 : 1)),
    );
    const other = await h.pool.query(
      `SELECT has_schema_privilege($1, $2, 'USAGE') AS usage, has_schema_privilege($1, $2, 'CREATE') AS create,
              has_database_privilege($1, current_database(), 'TEMPORARY') AS temp,
              has_table_privilege($1, $3, 'SELECT') AS migrations`,
      [role, h.schema, `"${h.schema}".bar_writer_migrations`],
    );
    expect(other.rows).toEqual([{ usage: true, create: false, temp: true, migrations: false }]);
  });

  test('the service, running as a member of the role, writes every bar of a real topic', async () => {
    await h.createTopics(2);
    const bars = makeBars(20, 15);
    await h.produceBars(bars);
    const service = await h.startService({ DB_USER: role });
    await waitFor(
      'all bars written and committed',
      async () => (await h.caughtUp()) && (await h.rowCount()) === 300,
    );
    expect(diffTables(expectedTable(bars), await h.storedBars())).toEqual([]);
    expect(await h.latestMismatches()).toBe(0); // kept by the writer role too
    // The read API runs as the same user.
    const latest = await httpGet(service.port, '/v1/bars/S0000/latest?limit=1');
    expect(latest.status).toBe(200);
    // Every connection of the service is the writer user.
    const sessions = await h.pool.query(
      `SELECT DISTINCT usename FROM pg_stat_activity WHERE application_name = 'bar-writer' AND datname = $1`,
      [PG.database],
    );
    expect(sessions.rows.map((r) => r.usename)).toContain(role);
  });

  test('as that user, TRUNCATE, DROP TABLE, CREATE TABLE, other DDL and DELETE beyond the bars fail with 42501', async () => {
    const c = asRole();
    await c.connect();
    try {
      const s = `"${h.schema}"`;
      const refused: Record<string, string | undefined> = {};
      // DELETE on bars_1m and bars_latest is the writer's since deletes (migration 012).
      for (const statement of [
        `TRUNCATE ${s}.bars_1m`,
        `DROP TABLE ${s}.bars_1m`,
        `CREATE TABLE ${s}.intruder (i int)`,
        `ALTER TABLE ${s}.bars_1m ADD COLUMN x int`,
        `CREATE INDEX ON ${s}.bars_1m (close)`,
        `DELETE FROM ${s}.bar_writer_offsets`,
        `TRUNCATE ${s}.bar_writer_offsets`,
        `TRUNCATE ${s}.bars_latest`,
        `DELETE FROM ${s}.bar_tombstones`,
        `TRUNCATE ${s}.bar_tombstones`,
        `SELECT * FROM ${s}.bar_writer_migrations`,
        `DROP SCHEMA ${s} CASCADE`,
      ]) {
        refused[statement] = await c.query(statement).then(
          () => 'succeeded',
          (err: { code?: string }) => err.code,
        );
      }
      expect(Object.entries(refused).filter(([, code]) => code !== '42501')).toEqual([]);
      // What the writer needs still works on this connection: reads, and a temporary table.
      expect((await c.query(`SELECT count(*)::int AS n FROM ${s}.bars_1m`)).rows).toEqual([{ n: 300 }]);
      await c.query('CREATE TEMP TABLE scratch (i int)');
    } finally {
      await c.end();
    }
    expect(await h.rowCount()).toBe(300);
  });
});
