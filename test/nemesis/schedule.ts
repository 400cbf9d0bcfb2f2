/**
 * The schedule generator: pure and seeded (mulberry32 of src/demo/random.ts), so a seed gives the same
 * schedule on every machine: the same messages (values, keys, routes, record times relative to the
 * send) on the produce track, and the same operations on the operation track. Only what depends on the
 * running system is left open: the wall clock (record times are relative to the send) and, on the
 * produce track, the partition count at send time (a key's partition; a slot modulo the count). The
 * two tracks run concurrently; the operations run one after another, each at its time or when the one
 * before has finished.
 *
 * `scenario: 'issue'` puts every scenario the issue names into the first 1.5 minutes (partitions added
 * to 12 and 4 of their fence rows locked while the rest flows, the topic re-created after that, a
 * replay with every instance stopped, `offsets reset --force` while members run, a committed offset
 * moved ahead of the fence, an identical re-send followed by an older version on another partition,
 * and one of each other operation); beyond that, and in `random`, operations are drawn by weight.
 */
import { mulberry32 } from '../../src/demo/random';
import type {
  BackfillRow,
  BarFields,
  BulkPlan,
  MessageSpec,
  Op,
  OpEvent,
  OpKind,
  ProduceEvent,
  ProduceKind,
  Route,
  Schedule,
  TimeSpec,
} from './model';
import { OP_KINDS } from './model';

/** Bars are in January 2024: in the past for any clock this suite runs under, after BARS_MIN_TIMESTAMP. */
export const BASE_MS = Date.UTC(2024, 0, 2, 14, 30);
const SYMBOLS = 60;
/** Minutes far from the live range, for the identical re-send scenario (its keys are its own). */
const RESEND_MINUTES = 100_000;
const MAX_PARTITIONS = 16;
const MAX_INSTANCES = 4;
/** The bulk feed's symbols, B0000…B4999 (./bulk.ts): each bulk minute has one bar of each. */
export const BULK_SYMBOLS = 5000;
/** Messages of one bulk send at most (a producer send of a few thousand, acks -1). */
export const BULK_CHUNK = 2500;

export interface ScheduleOptions {
  seed: number;
  minutes: number;
  scenario?: 'random' | 'issue';
  /**
   * Plan each operation kind at least this many times, spread over the run (default: `defaultEveryOp`,
   * 3 from 20 minutes on, else 0: the planner's random draws only).
   */
  everyOp?: number;
  /** Messages a second of the bulk feed (./bulk.ts), on top of the produce track (default 0: none). */
  rate?: number;
}

/** Runs of 20 minutes or more plan every operation kind at least 3 times; shorter ones do not. */
export function defaultEveryOp(minutes: number): number {
  return minutes >= 20 ? 3 : 0;
}

type Rand = () => number;

const round4 = (x: number) => Math.round(x * 10_000) / 10_000;

export function symbolName(i: number): string {
  return `NZ${String(i).padStart(3, '0')}`;
}

/** A valid bar's fields, drawn from `rand`. */
export function drawBar(rand: Rand, symbol: string, timestampMs: number): BarFields {
  const open = round4(10 + rand() * 490);
  const close = round4(open * (1 + (rand() - 0.5) * 0.02));
  const high = round4(Math.max(open, close) + rand() * 0.5);
  const low = round4(Math.max(0.0001, Math.min(open, close) - rand() * 0.5));
  const r = rand();
  const vwap = r < 0.15 ? null : Math.min(high, Math.max(low, round4(low + (high - low) * rand())));
  return { symbol, timestampMs, open, high, low, close, volume: Math.floor(rand() * 1_000_000), vwap };
}

/**
 * A valid bar's JSON text: the timestamp as ISO-8601 UTC, sometimes with an offset or as epoch ms; vwap
 * sometimes absent; revision absent, null or a number.
 */
function barJson(rand: Rand, b: BarFields, revision: number): string {
  const t = rand();
  const timestamp =
    t < 0.1
      ? b.timestampMs
      : t < 0.15
        ? new Date(b.timestampMs + 3_600_000).toISOString().replace('.000Z', '+01:00')
        : new Date(b.timestampMs).toISOString();
  const o: Record<string, unknown> = {
    symbol: b.symbol,
    timestamp,
    open: b.open,
    high: b.high,
    low: b.low,
    close: b.close,
    volume: b.volume,
  };
  if (b.vwap !== null || rand() < 0.5) o.vwap = b.vwap;
  if (revision > 0) o.revision = revision;
  else if (rand() < 0.1) o.revision = rand() < 0.5 ? 0 : null;
  return JSON.stringify(o);
}

/**
 * A delete's JSON text (docs/contract.md "Deleting a bar"): the key (the timestamp as ISO-8601 UTC or
 * epoch ms), `deleted: true` and the version; sometimes with stale prices, which the contract ignores.
 */
function deleteJson(rand: Rand, b: BarFields, revision: number): string {
  const o: Record<string, unknown> = {
    symbol: b.symbol,
    timestamp: rand() < 0.15 ? b.timestampMs : new Date(b.timestampMs).toISOString(),
    deleted: true,
  };
  if (revision > 0) o.revision = revision;
  else if (rand() < 0.1) o.revision = rand() < 0.5 ? 0 : null;
  if (rand() < 0.2)
    Object.assign(o, { open: b.open, high: b.high, low: b.low, close: b.close, volume: b.volume });
  return JSON.stringify(o);
}

const INVALID_KINDS = [
  'invalid_json',
  'ohlc_inconsistent',
  'missing_field',
  'wrong_type',
  'unaligned_timestamp',
  'invalid_volume',
  'not_object',
  'delete_wrong_type',
] as const;

class Generator {
  private readonly rand: Rand;
  private next = 0;
  /** Keys produced so far (symbol index, minute), and their latest revision. */
  private readonly keys: { s: number; m: number }[] = [];
  private readonly revisions = new Map<string, number>();
  private liveMinute = 0;
  private resendMinute = RESEND_MINUTES;

  constructor(private readonly seed: number) {
    this.rand = mulberry32(seed);
  }

  r(): number {
    return this.rand();
  }
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.rand() * (hi - lo + 1));
  }
  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.rand() * xs.length)]!;
  }
  weighted<T extends string>(weights: Partial<Record<T, number>>): T {
    const entries = Object.entries(weights) as [T, number][];
    const total = entries.reduce((a, [, w]) => a + w, 0);
    let x = this.rand() * total;
    for (const [k, w] of entries) {
      x -= w;
      if (x < 0) return k;
    }
    return entries[entries.length - 1]![0];
  }

  id(): string {
    return `${this.seed.toString(36)}.${(this.next++).toString(36)}`;
  }

  private keyOf(s: number, m: number): string {
    return `${s}|${m}`;
  }

  private existingKey(): { s: number; m: number } {
    if (this.keys.length === 0) return this.newLiveKey();
    // Recent keys more often than old ones.
    const i = Math.floor(this.keys.length * Math.sqrt(this.rand()));
    return this.keys[Math.min(i, this.keys.length - 1)]!;
  }

  private newLiveKey(): { s: number; m: number } {
    const k = { s: this.int(0, SYMBOLS - 1), m: this.liveMinute };
    this.keys.push(k);
    return k;
  }

  valid(
    s: number,
    m: number,
    route: Route,
    time: TimeSpec,
    revision = this.revisions.get(this.keyOf(s, m)) ?? 0,
  ) {
    const symbol = symbolName(s);
    const fields = drawBar(this.rand, symbol, BASE_MS + m * 60_000);
    return this.validOf(fields, route, time, revision);
  }

  validOf(fields: BarFields, route: Route, time: TimeSpec, revision: number): MessageSpec {
    return {
      id: this.id(),
      key: fields.symbol,
      route,
      time,
      value: barJson(this.rand, fields, revision),
      valid: true,
    };
  }

  /** A delete of (s, m) at `revision` (default: the key's latest revision, as the corrections). */
  del(
    s: number,
    m: number,
    route: Route,
    time: TimeSpec,
    revision = this.revisions.get(this.keyOf(s, m)) ?? 0,
  ): MessageSpec {
    const fields = drawBar(this.rand, symbolName(s), BASE_MS + m * 60_000);
    return {
      id: this.id(),
      key: fields.symbol,
      route,
      time,
      value: deleteJson(this.rand, fields, revision),
      valid: true,
    };
  }

  invalid(): MessageSpec {
    const kind = this.pick(INVALID_KINDS);
    const { s, m } =
      this.rand() < 0.7 ? this.existingKey() : { s: this.int(0, SYMBOLS - 1), m: this.liveMinute + 500 };
    const symbol = symbolName(s);
    const b = drawBar(this.rand, symbol, BASE_MS + m * 60_000);
    const iso = new Date(b.timestampMs).toISOString();
    const base = {
      id: this.id(),
      key: symbol,
      route: { kind: 'key' } as Route,
      time: { kind: 'client' } as TimeSpec,
      valid: false,
      invalidKind: kind,
    };
    const obj = (o: Record<string, unknown>) => JSON.stringify({ symbol, timestamp: iso, ...o });
    switch (kind) {
      case 'invalid_json':
        return { ...base, value: `{"symbol":"${symbol}","timestamp":"${iso}","open":${b.open},` };
      case 'ohlc_inconsistent': {
        const w = { ...b, high: b.low - 1, low: b.high + 1 };
        return {
          ...base,
          value: obj({ open: w.open, high: w.high, low: w.low, close: w.close, volume: w.volume }),
          wouldBe: { ...w, vwap: null },
        };
      }
      case 'missing_field':
        return { ...base, value: obj({ open: b.open, high: b.high, low: b.low, volume: b.volume }) };
      case 'wrong_type':
        return {
          ...base,
          value: obj({ open: String(b.open), high: b.high, low: b.low, close: b.close, volume: b.volume }),
          wouldBe: { ...b, vwap: null },
        };
      case 'unaligned_timestamp': {
        const ts = b.timestampMs + 30_000;
        return {
          ...base,
          value: JSON.stringify({
            symbol,
            timestamp: new Date(ts).toISOString(),
            open: b.open,
            high: b.high,
            low: b.low,
            close: b.close,
            volume: b.volume,
          }),
          wouldBe: { ...b, timestampMs: ts, vwap: null },
        };
      }
      case 'invalid_volume':
        return {
          ...base,
          value: obj({ open: b.open, high: b.high, low: b.low, close: b.close, volume: -5 - b.volume }),
          wouldBe: { ...b, volume: -5 - b.volume, vwap: null },
        };
      case 'not_object':
        return { ...base, value: `[${b.open},${b.high}]` };
      case 'delete_wrong_type':
        // `deleted` must be a boolean: "true" is refused (wrong_type), it deletes nothing.
        return { ...base, value: obj({ deleted: 'true' }) };
    }
  }

  /** One produce event of `kind` at `at` (some kinds add follow-ups to `out`). */
  produce(kind: ProduceKind, at: number, out: ProduceEvent[]): void {
    const msgs: MessageSpec[] = [];
    const client: TimeSpec = { kind: 'client' };
    const key: Route = { kind: 'key' };
    switch (kind) {
      case 'bars': {
        this.liveMinute++;
        const n = this.int(5, 45);
        const symbols = new Set<number>();
        while (symbols.size < n) symbols.add(this.int(0, SYMBOLS - 1));
        for (const s of symbols) {
          this.keys.push({ s, m: this.liveMinute });
          msgs.push(this.valid(s, this.liveMinute, key, this.rand() < 0.7 ? client : { kind: 'rel', ms: 0 }));
        }
        break;
      }
      case 'correction':
        for (let i = this.int(3, 20); i > 0; i--) {
          const k = this.existingKey();
          msgs.push(this.valid(k.s, k.m, key, client));
        }
        break;
      case 'tie':
        // Two versions of a key in the same millisecond on the same partition: the later offset wins.
        for (let i = this.int(1, 6); i > 0; i--) {
          const k = this.existingKey();
          const route: Route = { kind: 'slot', slot: this.int(0, MAX_PARTITIONS - 1) };
          const ms = -this.int(0, 5000);
          msgs.push(
            this.valid(k.s, k.m, route, { kind: 'rel', ms }),
            this.valid(k.s, k.m, route, { kind: 'rel', ms }),
          );
        }
        break;
      case 'revision':
        // A higher revision with an older record time: the revision wins.
        for (let i = this.int(1, 8); i > 0; i--) {
          const k = this.existingKey();
          const rev = (this.revisions.get(this.keyOf(k.s, k.m)) ?? 0) + this.int(1, 2);
          this.revisions.set(this.keyOf(k.s, k.m), rev);
          msgs.push(
            this.valid(
              k.s,
              k.m,
              this.rand() < 0.5 ? key : { kind: 'slot', slot: this.int(0, 15) },
              { kind: 'rel', ms: -this.int(10_000, 300_000) },
              rev,
            ),
          );
        }
        break;
      case 'invalid':
        for (let i = this.int(1, 6); i > 0; i--) msgs.push(this.invalid());
        break;
      case 'explicit-partition': {
        const route: Route = { kind: 'slot', slot: this.int(0, MAX_PARTITIONS - 1) };
        for (let i = this.int(3, 20); i > 0; i--) {
          const k = this.rand() < 0.5 ? this.existingKey() : this.newLiveKey();
          msgs.push(this.valid(k.s, k.m, route, client));
        }
        break;
      }
      case 'out-of-order':
        // A version, then an older one on another partition; or an exact tie across partitions, the
        // higher slot sent first.
        for (let i = this.int(1, 6); i > 0; i--) {
          const k = this.existingKey();
          const slot = this.int(0, MAX_PARTITIONS - 2);
          if (this.rand() < 0.6) {
            msgs.push(this.valid(k.s, k.m, { kind: 'slot', slot }, { kind: 'rel', ms: 0 }));
            msgs.push(
              this.valid(
                k.s,
                k.m,
                { kind: 'slot', slot: slot + 1 },
                { kind: 'rel', ms: -this.int(1, 60_000) },
              ),
            );
          } else {
            const ms = -this.int(0, 10_000);
            msgs.push(this.valid(k.s, k.m, { kind: 'slot', slot: slot + 1 }, { kind: 'rel', ms }));
            msgs.push(this.valid(k.s, k.m, { kind: 'slot', slot }, { kind: 'rel', ms }));
          }
        }
        break;
      case 'future':
        for (let i = this.int(1, 6); i > 0; i--) {
          const k = this.existingKey();
          const x = this.rand();
          const time: TimeSpec =
            x < 0.5
              ? { kind: 'rel', ms: this.int(1_000, 540_000) }
              : x < 0.8
                ? { kind: 'years', years: this.int(1, 40) }
                : { kind: 'micros' };
          msgs.push(
            this.valid(k.s, k.m, this.rand() < 0.7 ? key : { kind: 'slot', slot: this.int(0, 15) }, time),
          );
        }
        break;
      case 'version-header':
        for (let i = this.int(1, 4); i > 0; i--) {
          const k = this.existingKey();
          const m = this.valid(k.s, k.m, key, client);
          m.versionHeader = this.rand() < 0.8 ? { relMs: -this.int(0, 120_000) } : { years: this.int(1, 10) };
          msgs.push(m);
        }
        break;
      case 'identical-resend': {
        // A (values v, t-60s) on slot s; A' (v again, now) on s a moment later; then B (other values,
        // t-30s: newer than A, older than A') on slot s+1. A' is the newest: v must stay, at A's version.
        const n = this.int(20, 200);
        const slot = this.int(0, MAX_PARTITIONS - 2);
        const first: MessageSpec[] = [];
        const again: MessageSpec[] = [];
        const older: MessageSpec[] = [];
        for (let i = 0; i < n; i++) {
          const s = i % SYMBOLS;
          const m = this.resendMinute + Math.floor(i / SYMBOLS);
          const fields = drawBar(this.rand, symbolName(s), BASE_MS + m * 60_000);
          const a = this.validOf(fields, { kind: 'slot', slot }, { kind: 'rel', ms: -60_000 }, 0);
          first.push(a);
          again.push({ ...a, id: this.id(), time: { kind: 'rel', ms: 0 } });
          older.push(this.valid(s, m, { kind: 'slot', slot: slot + 1 }, { kind: 'rel', ms: -30_000 }, 0));
        }
        this.resendMinute += Math.ceil(n / SYMBOLS) + 1;
        out.push({ at, kind, messages: first });
        out.push({ at: at + 1500, kind, messages: again });
        out.push({ at: at + 3000, kind: 'identical-resend-older', messages: older });
        return;
      }
      case 'identical-resend-older':
        return;
      case 'delete':
        // Deletes, keyed or routed to a slot like the corrections: the version rule decides, a delete
        // winning a tie (docs/contract.md "Which version wins").
        for (let i = this.int(1, 6); i > 0; i--) {
          const x = this.rand();
          const slot = this.int(0, MAX_PARTITIONS - 2);
          if (x < 0.3) {
            // A landed bar deleted (a newer record time).
            const k = this.existingKey();
            msgs.push(this.del(k.s, k.m, this.rand() < 0.6 ? key : { kind: 'slot', slot }, client));
          } else if (x < 0.45) {
            // A bar, then a delete older than it on another partition: the delete loses.
            const k = this.existingKey();
            msgs.push(
              this.valid(k.s, k.m, { kind: 'slot', slot }, { kind: 'rel', ms: 0 }),
              this.del(k.s, k.m, { kind: 'slot', slot: slot + 1 }, { kind: 'rel', ms: -this.int(1, 60_000) }),
            );
          } else if (x < 0.65) {
            // A delete, then a newer bar (by key or on another partition): the bar restores the key.
            const k = this.existingKey();
            msgs.push(
              this.del(k.s, k.m, { kind: 'slot', slot }, { kind: 'rel', ms: -this.int(1_000, 60_000) }),
              this.valid(k.s, k.m, this.rand() < 0.5 ? key : { kind: 'slot', slot: slot + 1 }, client),
            );
          } else if (x < 0.75) {
            // A bar and a delete in the same millisecond on one partition: the later offset wins.
            const k = this.existingKey();
            const route: Route = { kind: 'slot', slot };
            const time: TimeSpec = { kind: 'rel', ms: -this.int(0, 5000) };
            const pair = [this.valid(k.s, k.m, route, time), this.del(k.s, k.m, route, time)];
            msgs.push(...(this.rand() < 0.5 ? pair : pair.reverse()));
          } else if (x < 0.85) {
            // A higher revision with an older record time deletes; the key's later corrections carry
            // that revision (and restore it with a newer time).
            const k = this.existingKey();
            const rev = (this.revisions.get(this.keyOf(k.s, k.m)) ?? 0) + this.int(1, 2);
            this.revisions.set(this.keyOf(k.s, k.m), rev);
            msgs.push(
              this.del(
                k.s,
                k.m,
                this.rand() < 0.5 ? key : { kind: 'slot', slot },
                { kind: 'rel', ms: -this.int(10_000, 300_000) },
                rev,
              ),
            );
          } else {
            // A minute never stored: far ahead (only a tombstone), or a little ahead of the live feed
            // (its bar, newer, restores the key when the feed gets there).
            const s = this.int(0, SYMBOLS - 1);
            const m =
              this.rand() < 0.5
                ? this.liveMinute + 500 + this.int(0, 100)
                : this.liveMinute + this.int(1, 30);
            msgs.push(
              this.del(s, m, key, this.rand() < 0.8 ? client : { kind: 'rel', ms: -this.int(0, 60_000) }),
            );
          }
        }
        break;
    }
    out.push({ at, kind, messages: msgs });
  }

  /** The rows of the last backfill planned (some rows of the next copy them at the same line). */
  private lastBackfill: BackfillRow[] = [];

  backfillRows(): BackfillRow[] {
    const rows: BackfillRow[] = [];
    for (let i = 0, n = this.int(20, 200); i < n; i++) {
      const prev = this.lastBackfill[i];
      if (prev && this.rand() < 0.05) {
        // The key and revision of the last backfill's row at the same line, bar for delete or delete
        // for bar: at the same --version-time the two are one version, and the delete wins the tie.
        const b = drawBar(this.rand, prev.symbol, prev.timestampMs);
        rows.push({ ...b, revision: prev.revision, ...(prev.deleted ? {} : { deleted: true }) });
        continue;
      }
      const x = this.rand();
      // Keys of the live feed (overlap), a little ahead of it (the feed reaches them later), or its own.
      const { s, m } =
        x < 0.6
          ? this.existingKey()
          : x < 0.85
            ? { s: this.int(0, SYMBOLS - 1), m: this.liveMinute + this.int(1, 30) }
            : { s: this.int(0, SYMBOLS - 1), m: -this.int(1, 500) };
      const b = drawBar(this.rand, symbolName(s), BASE_MS + m * 60_000);
      const revision = this.rand() < 0.15 ? this.int(1, 3) : 0;
      rows.push({ ...b, revision, ...(this.rand() < 0.1 ? { deleted: true } : {}) });
    }
    this.lastBackfill = rows;
    return rows;
  }
}

const PRODUCE_WEIGHTS: Partial<Record<ProduceKind, number>> = {
  bars: 40,
  correction: 14,
  tie: 4,
  revision: 6,
  invalid: 8,
  'explicit-partition': 7,
  'out-of-order': 8,
  future: 5,
  'version-header': 3,
  'identical-resend': 1,
  delete: 6,
};

/** A rough duration of each operation, to space them (the runner waits for each anyway). */
function estimateMs(op: Op): number {
  switch (op.kind) {
    case 'sigkill':
      return op.downMs + 2000;
    case 'broker-restart':
      return op.downMs + 15_000;
    case 'pg-restart':
      return op.downMs + 4000;
    case 'pgbouncer-restart':
      return op.downMs + 2000;
    case 'replay':
      return 9000;
    case 'commit-ahead':
    case 'recreate-topic':
    case 'offsets-reset':
      return 4000;
    default:
      return 3000;
  }
}

/** Operations that take the fence rows or every instance away: not while fence rows are locked. */
export const CONFLICTS_WITH_LOCK: ReadonlySet<OpKind> = new Set([
  'pg-restart',
  'replay',
  'commit-ahead',
  'offsets-reset',
  'recreate-topic',
]);

class OpPlanner {
  partitions: number;
  instances: number[];
  nextInstance: number;
  lockUntil = 0;
  readonly ops: OpEvent[] = [];
  readonly counts = new Map<OpKind, number>();
  private everyOp = 0;
  private horizon = 0;
  private readonly phase = new Map<OpKind, number>();

  constructor(
    private readonly g: Generator,
    partitions: number,
    instances: number,
  ) {
    this.partitions = partitions;
    this.instances = Array.from({ length: instances }, (_, i) => i + 1);
    this.nextInstance = instances + 1;
  }

  /** Some distinct partitions of the current topic. */
  partitionsOf(k: number): number[] {
    const all = Array.from({ length: this.partitions }, (_, i) => i);
    const out: number[] = [];
    while (out.length < k && all.length > 0) out.push(all.splice(Math.floor(this.g.r() * all.length), 1)[0]!);
    return out.sort((a, b) => a - b);
  }

  make(kind: OpKind): Op {
    const g = this.g;
    switch (kind) {
      case 'sigkill':
        return { kind, instance: g.pick(this.instances), downMs: g.int(500, 4000) };
      case 'restart':
        return { kind, instance: g.pick(this.instances) };
      case 'add-instance': {
        const instance = this.nextInstance++;
        this.instances.push(instance);
        return { kind, instance };
      }
      case 'remove-instance': {
        const instance = g.pick(this.instances);
        this.instances = this.instances.filter((i) => i !== instance);
        return { kind, instance };
      }
      case 'add-partitions':
        this.partitions = Math.min(MAX_PARTITIONS, this.partitions + g.int(1, 6));
        return { kind, to: this.partitions };
      case 'recreate-topic':
        this.partitions = g.int(2, 12);
        return { kind, partitions: this.partitions };
      case 'lock-fences':
        return {
          kind,
          partitions: this.partitionsOf(g.int(1, Math.max(1, this.partitions - 2))),
          holdMs: g.int(10_000, 45_000),
        };
      case 'pg-restart':
        return { kind, mode: g.r() < 0.5 ? 'fast' : 'immediate', downMs: g.int(0, 4000) };
      case 'pgbouncer-restart':
        return { kind, downMs: g.int(0, 3000) };
      case 'broker-restart':
        return { kind, downMs: g.int(0, 3000) };
      case 'offsets-reset': {
        const x = g.r();
        const to =
          x < 0.4
            ? 'earliest'
            : x < 0.7
              ? 'latest'
              : { partition: g.int(0, this.partitions - 1), fraction: g.r() };
        return { kind, to, force: g.r() < 0.5 };
      }
      case 'replay':
        return { kind };
      case 'commit-ahead': {
        // Bars sent while every instance is stopped: the logs grow past the fences.
        const messages: ProduceEvent[] = [];
        g.produce('bars', 0, messages);
        return {
          kind,
          partitions: this.partitionsOf(g.int(1, this.partitions)),
          fraction: 0.2 + 0.8 * g.r(),
          messages: messages[0]!.messages,
        };
      }
      case 'dlq-replay':
        return { kind };
      case 'backfill':
        return {
          kind,
          rows: g.backfillRows(),
          versionTime: g.r() < 0.25 ? BASE_MS - g.int(0, 86_400_000) : null,
        };
    }
  }

  add(at: number, op: Op): number {
    this.ops.push({ at, op });
    this.counts.set(op.kind, this.count(op.kind) + 1);
    if (op.kind === 'lock-fences') this.lockUntil = at + op.holdMs + 2000;
    return at + estimateMs(op);
  }

  count(kind: OpKind): number {
    return this.counts.get(kind) ?? 0;
  }

  /**
   * Every kind at least `n` times: the i-th occurrence of a kind falls due at horizon × (i + φ) / n, φ
   * drawn per kind in [0, 1) (spread over the run, not all at its start), and is planned at the first
   * slot from then on where the kind is allowed (the random draws count too).
   */
  guarantee(n: number, horizonMs: number): void {
    this.everyOp = n;
    this.horizon = horizonMs;
    for (const k of OP_KINDS) this.phase.set(k, this.g.r());
  }

  private dueAt(kind: OpKind): number {
    return (this.horizon * (this.count(kind) + this.phase.get(kind)!)) / this.everyOp;
  }

  /** Whether `kind` may be planned at `t`: the constraints `random` draws under. */
  allowed(kind: OpKind, t: number): boolean {
    switch (kind) {
      case 'add-instance':
        return this.instances.length < MAX_INSTANCES;
      case 'remove-instance':
        return this.instances.length > 1;
      case 'add-partitions':
        return this.partitions < MAX_PARTITIONS;
      case 'lock-fences':
        return t >= this.lockUntil && this.partitions >= 3;
      default:
        return t >= this.lockUntil || !CONFLICTS_WITH_LOCK.has(kind);
    }
  }

  /**
   * The kind the guarantee owes at `t`, most overdue first, or the operation that makes an owed kind
   * possible (an instance removed when there are already 4, the topic re-created at 16 partitions,
   * partitions added below 3 for a lock); null when nothing is owed or what is owed waits for a lock.
   */
  owed(t: number): OpKind | null {
    if (this.everyOp === 0) return null;
    const due = OP_KINDS.filter((k) => this.count(k) < this.everyOp && t >= this.dueAt(k)).sort(
      (a, b) => this.dueAt(a) - this.dueAt(b),
    );
    for (const k of due) if (this.allowed(k, t)) return k;
    for (const k of due) {
      const enabler: OpKind | null =
        k === 'add-instance'
          ? 'remove-instance'
          : k === 'remove-instance'
            ? 'add-instance'
            : k === 'add-partitions'
              ? 'recreate-topic'
              : k === 'lock-fences' && this.partitions < 3
                ? 'add-partitions'
                : null;
      if (enabler && this.allowed(enabler, t)) return enabler;
    }
    return null;
  }

  /** The kinds planned fewer than the guarantee's times. */
  short(): OpKind[] {
    return OP_KINDS.filter((k) => this.count(k) < this.everyOp);
  }

  /** A random operation allowed at `t`. */
  random(t: number): Op {
    const w: Partial<Record<OpKind, number>> = {
      sigkill: 12,
      restart: 8,
      'pgbouncer-restart': 6,
      'broker-restart': 4,
      'dlq-replay': 5,
      backfill: 5,
    };
    if (this.instances.length < MAX_INSTANCES) w['add-instance'] = 5;
    if (this.instances.length > 1) w['remove-instance'] = 5;
    if (this.partitions < MAX_PARTITIONS) w['add-partitions'] = 5;
    if (t >= this.lockUntil) {
      Object.assign(w, {
        'recreate-topic': 4,
        'pg-restart': 6,
        'offsets-reset': 6,
        replay: 3,
        'commit-ahead': 4,
      });
      if (this.partitions >= 3) w['lock-fences'] = 4;
    } else {
      for (const k of CONFLICTS_WITH_LOCK) delete w[k];
    }
    return this.make(this.g.weighted(w));
  }
}

/** The operation track (the first part of `generate`: the produce track draws on after it). */
function operationTrack(options: ScheduleOptions) {
  const seed = options.seed >>> 0;
  const scenario = options.scenario ?? 'random';
  const durationMs = Math.round(options.minutes * 60_000);
  const everyOp = options.everyOp ?? defaultEveryOp(options.minutes);
  const g = new Generator(seed);
  const initialPartitions = scenario === 'issue' ? 6 : g.int(2, 8);
  const initialInstances = scenario === 'issue' ? 2 : g.int(1, 3);

  // The operation track.
  const planner = new OpPlanner(g, initialPartitions, initialInstances);
  // What the guarantee owes is due by 85% of the run: the rest leaves room for a kind kept waiting.
  if (everyOp > 0) planner.guarantee(everyOp, durationMs * 0.85);
  let t = 3000;
  if (scenario === 'issue') {
    // Each scenario of the issue once, in about 70 s; then random operations as in 'random'.
    const p = planner;
    const at = (ms: number) => (t = Math.max(t, ms));
    t = p.add(at(2_000), { kind: 'add-partitions', to: (p.partitions = 12) });
    t = p.add(at(3_000), {
      kind: 'lock-fences',
      partitions: p.partitionsOf(4),
      holdMs: g.int(30_000, 35_000),
    });
    t = p.add(at(5_000), p.make('sigkill'));
    t = p.add(at(9_000), p.make('add-instance'));
    t = p.add(at(11_000), p.make('backfill'));
    t = p.add(at(13_000), p.make('dlq-replay'));
    t = p.add(at(15_000), p.make('pgbouncer-restart'));
    t = p.add(at(18_000), p.make('restart'));
    t = p.add(at(21_000), p.make('broker-restart'));
    t = p.add(at(p.lockUntil), p.make('remove-instance'));
    t = p.add(at(t), p.make('recreate-topic'));
    t = p.add(at(t), { kind: 'offsets-reset', to: g.r() < 0.5 ? 'latest' : 'earliest', force: true });
    t = p.add(at(t), { kind: 'replay' });
    t = p.add(at(t), p.make('commit-ahead'));
    t = p.add(at(t), p.make('pg-restart'));
    t = p.add(at(t), {
      kind: 'offsets-reset',
      to: { partition: g.int(0, p.partitions - 1), fraction: g.r() },
      force: false,
    });
  }
  while (t < durationMs - 8000) {
    t += g.int(1500, 6000);
    if (t >= durationMs - 8000) break;
    const owed = planner.owed(t);
    t = planner.add(t, owed === null ? planner.random(t) : planner.make(owed));
  }
  if (planner.short().length > 0) {
    throw new Error(
      `every operation kind ${everyOp} times does not fit in ${options.minutes} minutes (short: ${planner
        .short()
        .map((k) => `${k} ${planner.count(k)}`)
        .join(', ')}): a longer run, or a smaller --every-op`,
    );
  }
  return {
    g,
    seed,
    scenario,
    durationMs,
    everyOp,
    initialPartitions,
    initialInstances,
    ops: planner.ops,
    end: t,
  };
}

/** The operations `generate` plans for `options` (without drawing the produce track). */
export function planOperations(
  options: ScheduleOptions,
): Pick<Schedule, 'initialPartitions' | 'initialInstances' | 'ops'> {
  const { initialPartitions, initialInstances, ops } = operationTrack(options);
  return { initialPartitions, initialInstances, ops };
}

export function generate(options: ScheduleOptions): Schedule {
  const {
    g,
    seed,
    scenario,
    durationMs,
    everyOp,
    initialPartitions,
    initialInstances,
    ops,
    end: t,
  } = operationTrack(options);

  // The produce track, as long as the operations are planned to run.
  const produce: ProduceEvent[] = [];
  if (scenario === 'issue') {
    g.produce('identical-resend', 1_000, produce);
    g.produce('identical-resend', 41_000, produce);
  }
  let resends = 0;
  const produceEnd = Math.max(durationMs, t + 3000);
  for (let at = 300; at < produceEnd; at += g.int(200, 700)) {
    let kind = g.weighted(PRODUCE_WEIGHTS);
    if (kind === 'identical-resend' && ++resends > 3) kind = 'bars';
    g.produce(kind, at, produce);
  }
  produce.sort((a, b) => a.at - b.at);
  const bulk = planBulk(options.rate ?? 0, 300, produceEnd);

  return {
    seed,
    minutes: options.minutes,
    scenario,
    durationMs,
    initialPartitions,
    initialInstances,
    ...(everyOp > 0 ? { everyOp } : {}),
    ...(bulk ? { bulk } : {}),
    produce,
    ops,
  };
}

/**
 * The bulk feed at `rate` messages a second from `fromMs` to `toMs` (run clock): a send a second of
 * `rate` messages, or of BULK_CHUNK messages `rate / BULK_CHUNK` times a second above that; the bulk
 * indices in order (./bulk.ts derives the bars). Null for rate 0. Draws nothing from the seed's
 * sequence: the rest of the schedule is the same with or without it.
 */
export function planBulk(rate: number, fromMs: number, toMs: number): BulkPlan | null {
  if (!(rate > 0)) return null;
  const chunk = Math.min(rate, BULK_CHUNK);
  const intervalMs = (1000 * chunk) / rate;
  const events: BulkPlan['events'] = [];
  for (let i = 0; fromMs + i * intervalMs < toMs; i++)
    events.push({ at: Math.round(fromMs + i * intervalMs), first: i * chunk, count: chunk });
  if (events.length * chunk >= 2 ** 32) throw new Error(`a bulk feed of ${events.length * chunk} messages`);
  return { rate, symbols: BULK_SYMBOLS, events };
}

/** One line per operation, for printing the schedule. */
export function describeOp(op: Op): string {
  switch (op.kind) {
    case 'sigkill':
      return `SIGKILL instance ${op.instance}, restart after ${op.downMs} ms`;
    case 'restart':
      return `graceful restart of instance ${op.instance}`;
    case 'add-instance':
      return `add instance ${op.instance}`;
    case 'remove-instance':
      return `remove instance ${op.instance} (SIGTERM)`;
    case 'add-partitions':
      return `add partitions up to ${op.to}`;
    case 'recreate-topic':
      return `delete and re-create the topic with ${op.partitions} partitions (instances running)`;
    case 'lock-fences':
      return `lock fence rows of partitions ${op.partitions.join(',')} FOR UPDATE for ${op.holdMs} ms`;
    case 'pg-restart':
      return `restart PostgreSQL (-m ${op.mode}, down ${op.downMs} ms)`;
    case 'pgbouncer-restart':
      return `restart PgBouncer (down ${op.downMs} ms)`;
    case 'broker-restart':
      return `restart the Kafka broker (down ${op.downMs} ms)`;
    case 'offsets-reset':
      return `offsets reset --to ${typeof op.to === 'string' ? op.to : `<${op.to.fraction.toFixed(2)} of the log> --partition ${op.to.partition}`}${op.force ? ' --force (members running)' : ' (instances stopped)'}`;
    case 'replay':
      return 'replay: every instance stopped, offsets reset --to earliest, started: must write nothing';
    case 'commit-ahead':
      return `committed offsets of partitions ${op.partitions.join(',')} moved ahead of the fence (${op.fraction.toFixed(2)} of the way to the log end)`;
    case 'dlq-replay':
      return 'dlq replay';
    case 'backfill':
      return `backfill of ${op.rows.length} rows${op.versionTime === null ? '' : ` (--version-time ${op.versionTime})`}`;
  }
}
