/**
 * jest globalSetup of the integration project: fail fast, with the command that fixes it, when a
 * service the tests need is not there (rather than a bare ECONNREFUSED in every test).
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import pg from 'pg';
import { KAFKA_BROKERS, PG, PG_IS_TIMESCALEDB } from './env';

function reachable(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port, timeout: 2000 });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
    s.once('timeout', () => {
      s.destroy();
      resolve(false);
    });
  });
}

export default async function preflight(): Promise<void> {
  const problems: string[] = [];
  const [host, port] = KAFKA_BROKERS.split(',')[0]!.split(':');
  if (!(await reachable(host!, Number(port)))) {
    problems.push(
      `Kafka is not reachable at ${KAFKA_BROKERS}: start it with \`scripts/kafka.sh start\` (or run the whole suite with \`scripts/test.sh\`)`,
    );
  }
  const client = new pg.Client({ ...PG, connectionTimeoutMillis: 3000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
    if (PG_IS_TIMESCALEDB) {
      // The loader defines timescaledb.* settings only when it is preloaded.
      const r = await client.query(
        `SELECT (SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb')::int AS available,
                (SELECT count(*) FROM pg_settings WHERE name = 'timescaledb.max_background_workers')::int AS preloaded`,
      );
      const { available, preloaded } = r.rows[0] as { available: number; preloaded: number };
      if (!available || !preloaded) {
        problems.push(
          `TEST_PG_TIMESCALEDB=1 but ${PG.host}:${PG.port} has TimescaleDB ${available ? 'installed but not preloaded' : 'not installed'}: ` +
            "start the suite's own with `scripts/timescaledb.sh start` (scripts/test.sh does)",
        );
      }
    }
  } catch (err) {
    problems.push(
      `PostgreSQL is not reachable at ${PG.host}:${PG.port}/${PG.database} as ${PG.user} (${(err as Error).message}): ` +
        'start it with `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`',
    );
  } finally {
    await client.end().catch(() => undefined);
  }
  if (!fs.existsSync(path.join(__dirname, '..', '..', 'dist', 'main.js'))) {
    problems.push('dist/main.js is missing: run `npm run build` first (scripts/test.sh does)');
  }
  if (problems.length > 0) throw new Error(`integration preflight failed:\n  - ${problems.join('\n  - ')}`);
}
