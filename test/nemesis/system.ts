/**
 * What the suite owns and restarts: its own Kafka broker (scripts/kafka.sh on its own port), its own
 * TimescaleDB cluster (the private PostgreSQL of scripts/timescaledb.sh, timescaledb preloaded), its own
 * PgBouncer in transaction mode in front of it (scripts/pgbouncer.sh), and the bar-writer instances
 * (`node dist/main.js`, configured by environment only, as operators run it). Everything is stopped by
 * its pid or data directory, also on failure (`stopAll`).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { run } from '../support/cluster';
import { ownBroker, REPO } from '../support/harness';

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/** `count` consecutive free ports (a broker takes its port and the next for its controller). */
export async function freePorts(count: number, rand: () => number = Math.random): Promise<number> {
  for (let i = 0; i < 100; i++) {
    const base = 30_000 + Math.floor(rand() * 20_000);
    let ok = true;
    for (let k = 0; k < count && ok; k++) ok = await portFree(base + k);
    if (ok) return base;
  }
  throw new Error('no free ports found');
}

/** The directory of the private PostgreSQL with TimescaleDB (TEST_TSDB_BIN, else scripts/timescaledb.sh bin). */
export function tsdbBin(): string {
  const bin =
    process.env.TEST_TSDB_BIN ||
    execFileSync(path.join(REPO, 'scripts', 'timescaledb.sh'), ['bin'], { encoding: 'utf8' }).trim();
  if (!fs.existsSync(path.join(bin, 'postgres'))) {
    throw new Error(`no PostgreSQL with TimescaleDB in ${bin}: run scripts/timescaledb.sh build first`);
  }
  return bin;
}

const asRoot = process.getuid?.() === 0;

/**
 * What must be stopped if the process is interrupted (SIGINT/SIGTERM to `npm run nemesis`): each
 * owner adds its synchronous stop while it runs (./main.ts calls them).
 */
export const emergencyStops = new Set<() => void>();

/** A TimescaleDB cluster of the suite's own: initdb once, then stopped and started at will. */
export class Postgres {
  readonly data: string;
  private running = false;
  private readonly onExit = () => {
    if (this.running) this.kill();
  };

  constructor(
    private readonly bin: string,
    readonly dir: string,
    readonly port: number,
  ) {
    this.data = path.join(dir, 'data');
  }

  private pg(exe: string, args: string[]): string {
    const full = path.join(this.bin, exe);
    return asRoot
      ? run('runuser', ['-u', 'postgres', '--', full, ...args], this.dir)
      : run(full, args, this.dir);
  }

  init(): void {
    fs.mkdirSync(this.dir, { recursive: true });
    if (asRoot) run('chown', ['-R', 'postgres:postgres', this.dir], this.dir);
    this.pg('initdb', [
      '-D',
      this.data,
      '-U',
      'postgres',
      '-A',
      'trust',
      '--no-sync',
      '--no-instructions',
      '--encoding=UTF8',
      '--locale=C.UTF-8',
    ]);
    fs.appendFileSync(
      path.join(this.data, 'postgresql.conf'),
      [
        '',
        // As scripts/timescaledb.sh runs it.
        "shared_preload_libraries = 'timescaledb'",
        'timescaledb.telemetry_level = off',
        `port = ${this.port}`,
        "listen_addresses = '127.0.0.1'",
        `unix_socket_directories = '${this.dir}'`,
        'max_connections = 100',
        'shared_buffers = 64MB',
        // Throw-away data: restarts (-m immediate too) recover from the WAL in the page cache.
        'fsync = off',
        '',
      ].join('\n'),
    );
    process.once('exit', this.onExit);
  }

  start(): void {
    this.pg('pg_ctl', [
      '-D',
      this.data,
      '-l',
      path.join(this.dir, 'postgres.log'),
      '-w',
      '-t',
      '60',
      'start',
    ]);
    this.running = true;
  }

  stop(mode: 'fast' | 'immediate' = 'fast'): void {
    if (!this.running) return;
    try {
      this.pg('pg_ctl', ['-D', this.data, '-m', mode, '-w', '-t', '30', 'stop']);
    } catch (err) {
      console.error('pg_ctl stop failed; killing the postmaster:', (err as Error).message);
      this.kill();
    }
    this.running = false;
  }

  private kill(): void {
    try {
      const pid = Number(fs.readFileSync(path.join(this.data, 'postmaster.pid'), 'utf8').split('\n')[0]);
      if (pid > 0) process.kill(pid, 'SIGKILL');
    } catch {
      // gone already
    }
    this.running = false;
  }

  remove(): void {
    this.stop();
    process.off('exit', this.onExit);
  }
}

/** scripts/pgbouncer.sh with its own port and run directory, in front of `target`. */
export class PgBouncer {
  constructor(
    readonly port: number,
    private readonly runDir: string,
    private readonly targetPort: number,
  ) {}

  private sh(cmd: 'start' | 'stop'): void {
    execFileSync(path.join(REPO, 'scripts', 'pgbouncer.sh'), [cmd], {
      env: {
        ...process.env,
        PGBOUNCER_PORT: String(this.port),
        PGBOUNCER_RUN_DIR: this.runDir,
        PGBOUNCER_TARGET_HOST: '127.0.0.1',
        PGBOUNCER_TARGET_PORT: String(this.targetPort),
      },
      stdio: 'pipe',
    });
  }
  start(): void {
    this.sh('start');
  }
  stop(): void {
    this.sh('stop');
  }
}

export type Broker = ReturnType<typeof ownBroker>;

export function broker(port: number): Broker {
  return ownBroker(port);
}

export interface Instance {
  id: number;
  proc: ChildProcess;
  /** Set while the runner stops it on purpose (an exit then is no surprise). */
  stopping: boolean;
  log: string;
  /** The log file's size when this process was spawned: its own lines start there. */
  logStart: number;
}

/**
 * The bar-writer instances: started with the run's environment, each logging into its own file;
 * an instance that exits when nobody stopped it is restarted after a second (as an orchestrator
 * would), and counted. `onCount` hears the number running after every change (the runner records the
 * windows without any instance).
 */
export class Instances {
  readonly running = new Map<number, Instance>();
  unplannedExits: string[] = [];
  private closed = false;
  /** While every instance is stopped on purpose, restarts of crashed ones wait (`resumeAll`). */
  private held = false;
  private readonly deferred = new Set<number>();

  constructor(
    private readonly env: (id: number) => Record<string, string>,
    private readonly logDir: string,
    private readonly onCount: (n: number) => void,
  ) {
    emergencyStops.add(this.killAll);
  }

  private readonly killAll = () => {
    for (const inst of this.running.values()) inst.proc.kill('SIGKILL');
  };

  start(id: number): void {
    if (this.closed || this.running.has(id)) return;
    const log = path.join(this.logDir, `instance-${id}.log`);
    const fd = fs.openSync(log, 'a');
    const logStart = fs.fstatSync(fd).size;
    const proc = spawn(process.execPath, [path.join(REPO, 'dist', 'main.js')], {
      cwd: REPO,
      env: { PATH: process.env.PATH ?? '', ...this.env(id) },
      stdio: ['ignore', fd, fd],
    });
    fs.closeSync(fd);
    const inst: Instance = { id, proc, stopping: false, log, logStart };
    this.running.set(id, inst);
    this.onCount(this.running.size);
    proc.once('exit', (code, signal) => {
      if (this.running.get(id) === inst) this.running.delete(id);
      this.onCount(this.running.size);
      if (inst.stopping || this.closed) return;
      const tail = fs.readFileSync(log, 'utf8').split('\n').slice(-6).join('\n');
      this.unplannedExits.push(`instance ${id} exited (${code ?? signal}); restarted. Log tail:\n${tail}`);
      setTimeout(() => (this.held ? this.deferred.add(id) : this.start(id)), 1000);
    });
  }

  private async stopOne(id: number, signal: 'SIGTERM' | 'SIGKILL'): Promise<number | null> {
    const inst = this.running.get(id);
    if (!inst) return null;
    inst.stopping = true;
    const exited = new Promise<number | null>((r) => inst.proc.once('exit', (code) => r(code)));
    inst.proc.kill(signal);
    const timer = setTimeout(() => inst.proc.kill('SIGKILL'), 30_000);
    const code = await exited;
    clearTimeout(timer);
    return code;
  }

  /** SIGTERM; resolves with the exit code (0: drained and left the group). */
  terminate(id: number): Promise<number | null> {
    return this.stopOne(id, 'SIGTERM');
  }

  kill(id: number): Promise<number | null> {
    return this.stopOne(id, 'SIGKILL');
  }

  ids(): number[] {
    return [...this.running.keys()].sort((a, b) => a - b);
  }

  /** Stops every instance gracefully (restarts wait until `resumeAll`); resolves with the ids that ran. */
  async terminateAll(): Promise<number[]> {
    this.held = true;
    const ids = this.ids();
    await Promise.all(ids.map((id) => this.terminate(id)));
    return ids;
  }

  /** Starts `ids` again, and any crashed instance whose restart waited. */
  resumeAll(ids: number[]): void {
    this.held = false;
    for (const id of new Set([...ids, ...this.deferred])) this.start(id);
    this.deferred.clear();
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.ids().map((id) => this.kill(id)));
    emergencyStops.delete(this.killAll);
  }
}
