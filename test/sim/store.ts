/**
 * The database as the simulation needs it: bars_1m, the fences, and what a write transaction does
 * (src/store/writeBatch.ts and writeSql.ts, modelled: create and lock the fence rows, skip what lies
 * below a fence, write nothing for a partition whose fence is below what it expects, replace a stored
 * bar only by a strictly newer version (revision, version time, origin), advance the fences with the
 * fingerprint of the last message, all or nothing; keep bars_latest from the rows changed: a later
 * minute, or the same minute at a newer version, replaces a symbol's row; a delete keeps its key's
 * tombstone (the newest delete's version), removes the stored bar when at least as new, and a bar is
 * written only when no tombstone of its key is at least as new; bars_latest falls back to the
 * symbol's newest remaining bar), with faults: an outage (every statement fails),
 * fence rows held by another session (a write touching them fails after the lock timeout), and a writer
 * killed while its transaction runs (committed or rolled back, at random).
 */
import type { BarEntry, Entry } from '../../src/batch/buffer';
import type { FlushFn, FlushJob, FlushOutcome } from '../../src/batch/flush';
import type { ResumeIo } from '../../src/batch/pipeline';
import { messageTimeOf, unpackBar, versionTimeOf } from '../../src/contract/packedBar';
import { fingerprint } from '../../src/offsets/fingerprint';
import type { ResumeFacts } from '../../src/offsets/resume';
import { sourceOf } from '../../src/batch/buffer';
import { ROOT, type Scope, type SimClock } from './clock';
import type { SimKafka } from './kafka';

export type Version = readonly [bigint, number, bigint];

export interface StoredRow {
  /** open,high,low,close,volume,vwap as text: what the checker compares. */
  values: string;
  version: Version;
}

export function compareVersions(a: Version, b: Version): number {
  if (a[0] !== b[0]) return a[0] < b[0] ? -1 : 1;
  if (a[1] !== b[1]) return a[1] < b[1] ? -1 : 1;
  if (a[2] !== b[2]) return a[2] < b[2] ? -1 : 1;
  return 0;
}

export const originOf = (partition: number, offset: bigint): bigint => (BigInt(partition) << 48n) + offset;

class DbError extends Error {
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
  }
}

export class SimStore {
  readonly bars = new Map<string, StoredRow>();
  /** Fences of the one group, by partition; `incarnation` says which log they were written against. */
  readonly fences = new Map<number, { next: bigint; fingerprint: string | null }>();
  /** The highest fence each partition ever had (any incarnation): a commit never passes it. */
  readonly everDurable = new Map<number, bigint>();
  /** When each partition's fence last moved forward. */
  readonly advancedAt = new Map<number, number>();
  /** Dead letters sent (at least once), by "partition:offset". */
  readonly deadLetters = new Set<string>();
  readonly locked = new Set<number>();
  outage = false;
  /** Rows inserted or replaced (the replay check counts them). */
  writes = 0;
  /**
   * bars_latest, kept as src/store/writeSql.ts keeps it: from each row changed, by its minute and then
   * its version (never recomputed from `bars`: latestMismatches compares the two).
   */
  readonly latest = new Map<string, { timestampMs: number; row: StoredRow }>();
  /** bar_tombstones: each deleted key's newest delete version. */
  readonly tombstones = new Map<string, Version>();

  constructor(
    private readonly clock: SimClock,
    private readonly kafka: SimKafka,
    private readonly settings: { latencyMs: number; lockTimeoutMs: number; random: () => number },
  ) {}

  /** The FlushFn of one member: its results reach it only while it lives. */
  flushFor(scope: Scope): FlushFn {
    return async (jobs) => {
      // The transaction runs on the database whatever happens to its writer.
      await this.clock.sleep(this.settings.latencyMs * (0.5 + this.settings.random()), ROOT);
      let outcomes: FlushOutcome[];
      if (this.outage) {
        outcomes = jobs.map(() => ({
          ok: false,
          error: new DbError('the database is not available', '57P03'),
        }));
      } else if (jobs.some((j) => this.locked.has(j.partition))) {
        await this.clock.sleep(this.settings.lockTimeoutMs, ROOT);
        outcomes = jobs.map(() => ({
          ok: false,
          error: new DbError('canceling statement due to lock timeout', '55P03'),
        }));
      } else if (scope.dead && this.settings.random() < 0.5) {
        outcomes = jobs.map(() => ({ ok: false, error: new Error('connection lost: rolled back') }));
      } else {
        outcomes = this.transaction(jobs);
      }
      if (scope.dead) return new Promise<FlushOutcome[]>(() => undefined); // nobody to tell
      return outcomes;
    };
  }

  private transaction(jobs: readonly FlushJob[]): FlushOutcome[] {
    return jobs.map((job) => {
      const p = job.partition;
      const fence = this.fences.get(p)?.next ?? 0n;
      if (!this.fences.has(p)) this.fences.set(p, { next: 0n, fingerprint: null });
      const base = {
        written: 0,
        skippedFenced: 0,
        writtenCompressed: 0,
        deadLettered: 0,
        fenceBefore: fence,
      };
      if (job.expect !== null && fence < job.expect) {
        return { ok: true, result: { ...base, commitOffset: job.batch.nextOffset, rewound: true } };
      }
      let written = 0;
      for (const e of job.batch.entries) {
        if (e.offset < fence) continue;
        if (e.kind === 'rejected') {
          this.deadLetters.add(`${p}:${e.offset}`);
          continue;
        }
        written++;
        this.upsert(p, e);
      }
      const next = job.batch.nextOffset > fence ? job.batch.nextOffset : fence;
      if (job.batch.nextOffset > fence) {
        this.fences.set(p, { next, fingerprint: lastFingerprint(job.batch.entries) });
      }
      this.durable(p, next);
      return {
        ok: true,
        result: {
          ...base,
          written,
          skippedFenced: job.batch.barCount - written,
          commitOffset: next,
          rewound: false,
        },
      };
    });
  }

  private upsert(partition: number, e: BarEntry): void {
    const bar = unpackBar(e);
    const key = `${bar.symbol}|${bar.timestampMs}`;
    const version: Version = [BigInt(bar.revision), versionTimeOf(e), originOf(partition, e.offset)];
    if (bar.deleted) this.delete(key, version);
    else this.write(key, valuesOf(bar), version);
  }

  /** A bar: written unless a tombstone of its key is at least as new, or the stored row is. */
  private write(key: string, values: string, version: Version): void {
    const tombstone = this.tombstones.get(key);
    if (tombstone && compareVersions(tombstone, version) >= 0) return;
    const stored = this.bars.get(key);
    if (stored && compareVersions(version, stored.version) <= 0) return;
    this.writes++;
    this.changed(key, { values, version });
  }

  /** A delete: the tombstone keeps the newest; the stored bar goes when the delete is at least as new. */
  private delete(key: string, version: Version): void {
    const tombstone = this.tombstones.get(key);
    if (!tombstone || compareVersions(version, tombstone) > 0) {
      this.tombstones.set(key, version);
      this.writes++;
    }
    const stored = this.bars.get(key);
    if (!stored || compareVersions(version, stored.version) < 0) return;
    this.writes++;
    this.bars.delete(key);
    const [symbol, ts] = splitKey(key);
    if (this.latest.get(symbol)?.timestampMs !== ts) return;
    // The symbol's newest bar went: its newest remaining one (writeSql.ts repairLatest).
    let newest: { timestampMs: number; row: StoredRow } | null = null;
    for (const [k, row] of this.bars) {
      const [sym, t] = splitKey(k);
      if (sym === symbol && (newest === null || t > newest.timestampMs)) newest = { timestampMs: t, row };
    }
    if (newest) this.latest.set(symbol, newest);
    else this.latest.delete(symbol);
  }

  /** A row of bars_1m inserted or replaced, and bars_latest kept from it, in the same transaction. */
  private changed(key: string, row: StoredRow): void {
    this.bars.set(key, row);
    const [symbol, ts] = splitKey(key);
    const kept = this.latest.get(symbol);
    if (
      !kept ||
      ts > kept.timestampMs ||
      (ts === kept.timestampMs && compareVersions(row.version, kept.row.version) > 0)
    )
      this.latest.set(symbol, { timestampMs: ts, row });
  }

  /**
   * Where bars_latest is not the newest stored bar of each symbol (the row of `bars` with the symbol's
   * greatest minute): every symbol of one missing from the other, or a different minute, values or
   * version. Empty when they agree.
   */
  latestMismatches(): string[] {
    const newest = new Map<string, { timestampMs: number; row: StoredRow }>();
    for (const [key, row] of this.bars) {
      const [symbol, ts] = splitKey(key);
      if ((newest.get(symbol)?.timestampMs ?? -Infinity) < ts) newest.set(symbol, { timestampMs: ts, row });
    }
    const out: string[] = [];
    for (const symbol of new Set([...newest.keys(), ...this.latest.keys()])) {
      const want = newest.get(symbol);
      const got = this.latest.get(symbol);
      const say = (x: typeof want) =>
        x ? `${x.timestampMs} ${x.row.values} v${x.row.version.join('/')}` : 'none';
      if (say(want) !== say(got)) out.push(`bars_latest ${symbol}: ${say(got)}, newest stored ${say(want)}`);
    }
    return out;
  }

  /** A backfill's row (version (revision, versionTime, ordinal), no fence); DELETED_VALUES: a delete. */
  load(key: string, values: string, version: Version): void {
    if (values === DELETED_VALUES) this.delete(key, version);
    else this.write(key, values, version);
  }

  resumeIo(): ResumeIo {
    return {
      read: async (_topic, partitions) => {
        await this.clock.sleep(2, ROOT);
        if (this.outage) throw new DbError('the database is not available', '57P03');
        const logs = this.kafka.logOffsets();
        const committed = this.kafka.committedOffsets(partitions);
        const out = new Map<number, ResumeFacts>();
        for (const p of partitions) {
          const log = logs.get(p);
          if (!log) throw new Error(`partition ${p} has no log offsets`);
          const f = this.fences.get(p);
          out.set(p, {
            fence: f ? { ...f } : null,
            committed: committed.get(p) ?? null,
            log,
            topicHasFences: this.fences.size > 0,
          });
        }
        return out;
      },
      moveFence: async (_topic, partition, to) => {
        await this.clock.sleep(2, ROOT);
        if (this.outage) throw new DbError('the database is not available', '57P03');
        const log = this.kafka.logOffsets().get(partition);
        if (!log) throw new Error(`partition ${partition} has no log offsets`);
        const next = to === 'start' ? log.low : log.high;
        this.fences.set(partition, { next, fingerprint: null });
        this.durable(partition, next);
        return next;
      },
    };
  }

  /** An operator's reset (offsets reset): the fence moved, back or forward, its fingerprint forgotten. */
  resetFence(partition: number, next: bigint, fingerprint: string | null = null): void {
    this.fences.set(partition, { next, fingerprint });
    this.durable(partition, next);
  }

  private durable(partition: number, next: bigint): void {
    if (next > (this.everDurable.get(partition) ?? -1n)) this.everDurable.set(partition, next);
    this.advancedAt.set(partition, this.clock.now());
  }
}

/** A key of `bars`, "symbol|epoch ms", split (a symbol may hold "|": the minute is after the last). */
function splitKey(key: string): [string, number] {
  const i = key.lastIndexOf('|');
  return [key.slice(0, i), Number(key.slice(i + 1))];
}

/** The values of a delete, for the checker (a delete has no values: only its key and version count). */
export const DELETED_VALUES = 'deleted';

export function valuesOf(bar: {
  open: number;
  high: number;
  low: number;
  close: number;
  volume: number;
  vwap: number | null;
}): string {
  return `${bar.open},${bar.high},${bar.low},${bar.close},${bar.volume},${bar.vwap}`;
}

function lastFingerprint(entries: readonly Entry[]): string {
  const last = entries[entries.length - 1]!;
  return last.kind === 'bar'
    ? fingerprint(last.offset, messageTimeOf(last), sourceOf(last))
    : fingerprint(last.offset, last.messageTimeMs, last.value);
}
