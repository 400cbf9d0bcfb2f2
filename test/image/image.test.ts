/**
 * The container image, for real (scripts/image.sh builds it: podman here, docker where an engine
 * exists), against the suite's broker and database through the host network: the operator CLI and
 * the migrations from the image, the service configured only by env with a read-only root filesystem,
 * exact contents after a produced feed, the non-root user, the HEALTHCHECK command, SIGTERM with
 * buffered bars, and a lean runtime (no compilers, production dependencies only).
 */
import { execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '../support/cluster';
import { PG_IS_TIMESCALEDB } from '../support/env';
import {
  diffTables,
  expectedTable,
  Harness,
  makeBars,
  metricValue,
  REPO,
  uniqueName,
  waitFor,
} from '../support/harness';

const IMAGE = process.env.TEST_IMAGE ?? 'bar-writer:test';
const exec = promisify(execFile);
/** Podman here (its rlimit defaults fail in this sandbox: `--ulimit host`); docker where an engine answers. */
const PODMAN =
  execFileSync(path.join(REPO, 'scripts', 'image.sh'), ['which'], { encoding: 'utf8' }).trim() === 'podman';

/** The container engine (scripts/image.sh engine …); resolves with its output, rejects on a non-zero exit. */
async function engine(...args: string[]): Promise<{ stdout: string; stderr: string }> {
  return exec(path.join(REPO, 'scripts', 'image.sh'), ['engine', ...args], { maxBuffer: 16 * 1024 * 1024 });
}

/** The exit code of `engine …` (0 included), with its output. */
async function engineCode(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    return { code: 0, ...(await engine(...args)) };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: e.code ?? -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

const envArgs = (env: Record<string, string>) => Object.entries(env).flatMap(([k, v]) => ['-e', `${k}=${v}`]);

describe(`the image ${IMAGE}`, () => {
  const h = new Harness();
  const containers: string[] = [];

  beforeAll(async () => {
    const exists = await engineCode('image', 'inspect', IMAGE);
    if (exists.code !== 0) throw new Error(`no image ${IMAGE}: build it with scripts/image.sh build`);
    await h.createTopics(3);
    h.onCleanup(() => h.dropSchema(h.schema));
  });
  afterAll(async () => {
    for (const c of containers) await engineCode('rm', '-f', c);
    await h.cleanup();
  });

  /** Runs the service container detached, configured by `env` only; resolves with its name and HTTP port. */
  async function runService(env: Record<string, string> = {}): Promise<{ name: string; port: number }> {
    const port = await freePort();
    const name = uniqueName('bw');
    containers.push(name);
    await engine(
      'run',
      '-d',
      '--name',
      name,
      '--network',
      'host',
      ...(PODMAN ? ['--ulimit', 'host'] : []),
      '--read-only',
      ...envArgs(h.env({ HTTP_PORT: String(port), LOG_LEVEL: 'info', ...env })),
      IMAGE,
    );
    await waitFor(`${name} ready`, async () => {
      const r = await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => null);
      return r?.status === 200;
    });
    return { name, port };
  }

  test('size, user, the operator CLI; no compilers and no dev dependencies in the runtime', async () => {
    const size = Number((await engine('image', 'inspect', '--format', '{{.Size}}', IMAGE)).stdout.trim());
    console.log(`image ${IMAGE}: ${(size / 1024 / 1024).toFixed(0)} MiB`);
    expect(size).toBeGreaterThan(0);

    expect((await engine('run', '--rm', IMAGE, 'id', '-u')).stdout.trim()).toBe('1000');
    const help = await engineCode('run', '--rm', IMAGE, 'bar-writer', '--help');
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^Usage: bar-writer <command>/m);
    for (const cmd of ['migrate', 'backfill', 'dlq', 'doctor', 'offsets']) expect(help.stdout).toContain(cmd);

    const compilers = await engine(
      'run',
      '--rm',
      IMAGE,
      'sh',
      '-c',
      'for c in gcc g++ cc c++ make python3 clang; do command -v $c; done; true',
    );
    expect(compilers.stdout.trim()).toBe('');
    const pkg = JSON.parse(fs.readFileSync(path.join(REPO, 'package.json'), 'utf8')) as {
      dependencies: Record<string, string>;
    };
    // Dev-only packages: those the lock file marks dev (a devDependency that a production package also
    // needs, such as @types/node for zstd-napi, is not one).
    const lock = JSON.parse(fs.readFileSync(path.join(REPO, 'package-lock.json'), 'utf8')) as {
      packages: Record<string, { dev?: boolean }>;
    };
    const devOnly = Object.entries(lock.packages)
      .filter(([p, v]) => v.dev === true && /^node_modules\/(@[^/]+\/)?[^/]+$/.test(p))
      .map(([p]) => p.slice('node_modules/'.length));
    expect(devOnly).toContain('typescript');
    const listed = (
      await engine(
        'run',
        '--rm',
        IMAGE,
        'node',
        '-e',
        "console.log(require('fs').readdirSync('node_modules').flatMap(d => d.startsWith('@') ? require('fs').readdirSync('node_modules/' + d).map(x => d + '/' + x) : [d]).join('\\n'))",
      )
    ).stdout
      .trim()
      .split('\n');
    expect(devOnly.filter((d) => listed.includes(d))).toEqual([]);
    for (const dep of Object.keys(pkg.dependencies)) expect(listed).toContain(dep);
  }, 120_000);

  test('migrates from the image, runs configured by env only, lands a feed exactly; HEALTHCHECK passes', async () => {
    const migrate = await engineCode(
      'run',
      '--rm',
      '--no-healthcheck', // a one-shot command (and podman without systemd would log that it cannot schedule it)
      '--network',
      'host',
      ...envArgs(h.env()),
      IMAGE,
      'node',
      'dist/cli/migrate.js',
    );
    expect({ code: migrate.code, stderr: migrate.stderr }).toEqual({ code: 0, stderr: '' });
    if (PG_IS_TIMESCALEDB) {
      const ht = await h.pool.query(
        `SELECT 1 FROM timescaledb_information.hypertables WHERE hypertable_schema = $1 AND hypertable_name = 'bars_1m'`,
        [h.schema],
      );
      expect(ht.rows).toHaveLength(1);
    }
    const { name, port } = await runService();
    const bars = makeBars(200, 100, Date.UTC(2026, 10, 26, 14, 30), 12); // 20,000 bars
    await h.produceBars(bars);
    await waitFor(
      'the feed to land',
      async () => (await h.rowCount()) === bars.length && (await h.caughtUp()),
      120_000,
    );
    expect(diffTables(expectedTable(bars), await h.storedBars())).toEqual([]);
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    expect(metricValue(metrics, 'bars_written_total')).toBe(bars.length);

    // The image's HEALTHCHECK command, run in the container as the engine would.
    const hc = JSON.parse(
      (await engine('image', 'inspect', '--format', '{{json .Config.Healthcheck}}', IMAGE)).stdout,
    ) as { Test: string[] };
    expect(hc.Test[0]).toBe('CMD');
    expect((await engineCode('exec', name, ...hc.Test.slice(1))).code).toBe(0);
    expect((await engine('exec', name, 'id', '-u')).stdout.trim()).toBe('1000');

    await engine('stop', '-t', '30', name);
    expect((await engine('inspect', '--format', '{{.State.ExitCode}}', name)).stdout.trim()).toBe('0');
  }, 300_000);

  test('SIGTERM with bars buffered: every bar is written and the container exits 0 within the grace period', async () => {
    // Nothing flushes on its own: a long interval, no flush at the log end, batches larger than the feed.
    const { name, port } = await runService({
      BARS_DB_WRITE_INTERVAL: '60s',
      KAFKA_SESSION_TIMEOUT: '90s',
      BARS_DB_FLUSH_ON_CAUGHT_UP: 'false',
      BARS_DB_WRITE_BATCH_SIZE: '10000',
      BARS_DB_WRITE_QUEUE_SIZE: '20000',
      SHUTDOWN_TIMEOUT: '20s',
    });
    const before = await h.rowCount();
    const bars = makeBars(100, 30, Date.UTC(2026, 10, 27, 14, 30), 13); // 3,000 bars
    await h.produceBars(bars);
    await waitFor('every bar buffered', async () => {
      const m = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      return metricValue(m, 'timescale_write_queue_depth') === bars.length;
    });
    expect(await h.rowCount()).toBe(before);

    const t0 = Date.now();
    await engine('stop', '-t', '30', name); // SIGTERM, then SIGKILL after 30 s
    const stoppedMs = Date.now() - t0;
    expect((await engine('inspect', '--format', '{{.State.ExitCode}}', name)).stdout.trim()).toBe('0');
    // Exit 0: ended by its own drain after SIGTERM (a kill at the grace period would be 137).
    console.log(`SIGTERM to exit with ${bars.length} bars buffered: ${stoppedMs} ms`);
    expect(await h.rowCount()).toBe(before + bars.length);
    expect(await h.caughtUp()).toBe(true);
  }, 180_000);
});
