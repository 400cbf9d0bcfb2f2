/**
 * A throw-away PostgreSQL cluster of a test's own (initdb, pg_ctl start, pg_ctl stop by its data
 * directory, kill by pid as a last resort), for tests that need a server configured differently from
 * the suite's: TLS only, TimescaleDB installed but not preloaded, … Its directory is removed on stop.
 */
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export function run(cmd: string, args: string[], cwd: string): string {
  try {
    return execFileSync(cmd, args, {
      cwd,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 60_000,
    });
  } catch (err) {
    const e = err as Error & { stdout?: string; stderr?: string };
    throw new Error(`${cmd} ${args.join(' ')} failed: ${e.message}\n${e.stdout ?? ''}${e.stderr ?? ''}`, {
      cause: err,
    });
  }
}

function portFree(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, host, () => s.close(() => resolve(true)));
  });
}

/** A port free on every one of `hosts`. */
export async function freePort(hosts: string[] = ['127.0.0.1']): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const port = 25432 + crypto.randomInt(20_000);
    let free = true;
    for (const host of hosts) free = free && (await portFree(port, host));
    if (free) return port;
  }
  throw new Error('no free port found');
}

export interface ClusterOptions {
  /** Directory of initdb, pg_ctl and postgres. */
  bin: string;
  /** Addresses to listen on (default 127.0.0.1). */
  hosts?: string[];
  /** Extra postgresql.conf lines (given the cluster's directory). */
  conf?: (dir: string) => string[];
  /** pg_hba.conf, replacing initdb's (default: trust). */
  hba?: string[];
  /** Runs in the cluster's directory before initdb (certificates, …); files are chowned after. */
  prepare?: (dir: string) => void;
}

export class TempCluster {
  readonly dir: string;
  readonly data: string;
  port = 0;
  private pid: number | null = null;
  private readonly onExit = () => {
    // A jest worker exiting without afterAll (killed, timed out) must not leave the postmaster behind.
    if (this.pid) {
      try {
        process.kill(this.pid, 'SIGQUIT');
      } catch {
        // already gone
      }
    }
  };

  constructor(private readonly options: ClusterOptions) {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bw-pg-'));
    this.data = path.join(this.dir, 'data');
  }

  /** initdb and postgres refuse to run as root: as root, they run as the postgres OS user. */
  private pg(bin: string, args: string[]): string {
    const exe = path.join(this.options.bin, bin);
    if (process.getuid?.() === 0) return run('runuser', ['-u', 'postgres', '--', exe, ...args], this.dir);
    return run(exe, args, this.dir);
  }

  async start(): Promise<this> {
    this.options.prepare?.(this.dir);
    if (process.getuid?.() === 0) run('chown', ['-R', 'postgres:postgres', this.dir], this.dir);
    this.pg('initdb', ['-D', this.data, '-U', 'postgres', '-A', 'trust', '--no-sync', '--no-instructions']);
    const hosts = this.options.hosts ?? ['127.0.0.1'];
    this.port = await freePort(hosts);
    fs.appendFileSync(
      path.join(this.data, 'postgresql.conf'),
      [
        '',
        `port = ${this.port}`,
        `listen_addresses = '${hosts.join(',')}'`,
        `unix_socket_directories = '${this.dir}'`,
        'fsync = off',
        'max_connections = 30',
        'shared_buffers = 32MB',
        ...(this.options.conf?.(this.dir) ?? []),
        '',
      ].join('\n'),
    );
    if (this.options.hba) {
      const hba = path.join(this.data, 'pg_hba.conf');
      fs.writeFileSync(hba, [...this.options.hba, ''].join('\n'));
      if (process.getuid?.() === 0) run('chown', ['postgres:postgres', hba], this.dir);
    }
    process.once('exit', this.onExit);
    this.pg('pg_ctl', [
      '-D',
      this.data,
      '-l',
      path.join(this.dir, 'postgres.log'),
      '-w',
      '-t',
      '30',
      'start',
    ]);
    this.pid = Number(fs.readFileSync(path.join(this.data, 'postmaster.pid'), 'utf8').split('\n')[0]);
    return this;
  }

  /** The server's log so far (for failure messages). */
  log(): string {
    try {
      return fs.readFileSync(path.join(this.dir, 'postgres.log'), 'utf8');
    } catch {
      return '';
    }
  }

  stop(): void {
    process.off('exit', this.onExit);
    if (this.pid) {
      try {
        this.pg('pg_ctl', ['-D', this.data, '-m', 'fast', '-w', '-t', '20', 'stop']);
      } catch (err) {
        console.error('pg_ctl stop failed, killing the postmaster:', err);
        try {
          process.kill(this.pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
      this.pid = null;
    }
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
