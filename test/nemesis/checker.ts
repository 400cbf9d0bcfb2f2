/**
 * The checker: pure. From what was produced (every incarnation of the topic's log as read back from the
 * broker, what the producer meant by each message, the backfills) and what was done (operator resets,
 * topic deletions, outage windows), it computes for every key (symbol, minute) the rows that MAY be
 * stored and the versions that MUST have landed, and compares the table exactly. It also judges the
 * monitor's samples (fences, stalls) and the dead letters.
 *
 * The version rule (docs/contract.md "Which version wins", as it is after the fixes in progress):
 * - a valid message's version is (revision, versionTime, origin): revision = its `revision` field (0
 *   when absent or null); versionTime = header `bar-writer.version-time` when present, else the record
 *   timestamp, except that a versionTime more than 1 h ahead of the time the service receives the
 *   message, or negative, is unusable and the bar's close (timestamp + 60 s) is used instead; origin =
 *   partition × 2^48 + offset. The producer makes "future" times either at most 10 minutes ahead of the
 *   send (used as they are: receipt is never before the send) or at least a year ahead (never usable:
 *   receipt is within the run), so the checker classifies them without knowing receipt times;
 * - a backfill row's version is (its revision or 0, the load's --version-time or 0, its ordinal in the
 *   load);
 * - a stored row is replaced only by a strictly greater version, whatever the values: the stored row of
 *   a key is the maximum version among the valid messages and rows that landed (values AND version
 *   columns: revision, source_time = versionTime, source_origin where the table has it);
 * - a delete (`"deleted": true`, a backfill row with `deleted` true) is a version of its key like a bar:
 *   the key holds a row exactly when the maximum version that landed is a bar's, and of a bar and a
 *   delete with the same version the delete is the greater (docs/contract.md "Deleting a bar").
 *
 * MUST and MAY. A valid message or row "lands" when it takes part in that maximum.
 * - Every valid message of the topic's current (last) incarnation MUST land, except those in a skip
 *   range: offsets [fence before, target) of a partition an operator moved forward (`offsets reset` to
 *   latest or to an offset beyond the fence; the fence before is as the CLI printed it, a lower bound of
 *   the real one), which MAY land.
 * - A message of an earlier incarnation (the topic was deleted and re-created) MUST land when it lies
 *   below the fence read just before the deletion, and that fence's fingerprint names a message of that
 *   incarnation (so it was written against it), and it is not in a skip range; every other message of
 *   an earlier incarnation MAY land.
 * - A backfill row MUST land when the load finished (exit 0); rows of a failed load MAY.
 * - `offsets reset --to earliest` and a committed offset moved ahead of the fence change nothing: the
 *   messages stay MUST (the fence wins).
 * - Invalid messages never land. Each invalid message that is MUST by the rules above MUST have a dead
 *   letter (matched by its id, source partition and offset); a valid message MUST NOT have one.
 * Then for each key: with no stored row, no MUST candidate may exist (else "lost", or "deleted wrongly"
 * when the key has a delete older than that candidate) unless a delete is among the candidates whose
 * version no MUST candidate exceeds (it may be the newest that landed); a stored row must equal
 * (values and version) some bar candidate c such that no MUST candidate has a greater version than c
 * (a MAY candidate above it may simply not have landed). Otherwise the row is "deleted present" (the
 * greatest MUST version is a delete), "extra" (the key never had
 * a valid message or row), "invalid landed" (its values are an invalid message's), "version" (the
 * values of an acceptable candidate with another version: e.g. an identical re-send that did not move
 * the stored version) or "stale" (anything else: an older version's values).
 *
 * The bulk feed (`--rate`, ./bulk.ts) is judged by the same rules, key by key: its records are read back
 * as (partition, offset, record time, bulk index) when their value, key and headers are exactly what the
 * index derives, and the checker derives the bar again; its stored rows are kept by bulk index. Bulk keys
 * are the feed's own: a message or backfill row of another kind on one is reported.
 *
 * Fences and stalls. A fence is "of the current incarnation" when it was moved after that incarnation
 * was created (database clock) and its fingerprint names no message of an earlier one (a late write of
 * buffered messages of the deleted log may still move it: that fence is the old log's). Such a fence must
 * never be ahead of the log end; after quiescence every partition's fence and committed offset equal its
 * log end. A partition's position is its fence of the current incarnation (0 otherwise); it is stalled
 * while it is healthy (no window covers it: its fence rows locked, PostgreSQL, PgBouncer or the broker
 * restarting, the topic missing, no instance running) and behind its log end with a position that does
 * not move. The clock restarts at the end of each unhealthy window; the longest stall per partition must
 * stay under the bound.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import {
  bulkBar,
  bulkEventOf,
  bulkMinuteMs,
  bulkIndexOfKey,
  bulkTotal,
  bulkValue,
  findBulk,
  isBulkId,
  storedBulkRow,
  type BulkRange,
} from './bulk';
import {
  ID_HEADER,
  OP_KINDS,
  VERSION_TIME_HEADER,
  type BackfillDone,
  type BarFields,
  type DeadLetterSeen,
  type FenceRow,
  type Incarnation,
  type LogRecord,
  type OpDone,
  type ReplayMeasure,
  type Sample,
  type Sent,
  type SkipRange,
  type StoredBulk,
  type StoredRow,
  type Window,
} from './model';

export const ONE_HOUR_MS = 3_600_000;
/** Produced "future" record times are at most this far ahead of the send (used as they are). */
const LEGIT_AHEAD_MS = 11 * 60_000;
/** ... or at least this far (never usable). */
const BOUNDED_AHEAD_MS = 24 * ONE_HOUR_MS;
const ORIGIN_PARTITION = 2n ** 48n;

export interface Version {
  revision: number;
  time: number;
  origin: bigint;
}

export function compareVersions(a: Version, b: Version): number {
  if (a.revision !== b.revision) return a.revision < b.revision ? -1 : 1;
  if (a.time !== b.time) return a.time < b.time ? -1 : 1;
  if (a.origin !== b.origin) return a.origin < b.origin ? -1 : 1;
  return 0;
}

/** Candidates in the rule's order: by version; of a bar and a delete of the same version, the delete. */
export function compareCandidates(
  a: Pick<Candidate, 'version' | 'deleted'>,
  b: Pick<Candidate, 'version' | 'deleted'>,
): number {
  return compareVersions(a.version, b.version) || (a.deleted ? 1 : 0) - (b.deleted ? 1 : 0);
}

export interface Candidate {
  /** A delete's fields are its key, its prices NaN (equal to no stored row). */
  fields: BarFields;
  version: Version;
  /** A delete of its key. */
  deleted?: boolean;
  must: boolean;
  /** Where it came from, for the report. */
  source: string;
  /** The record timestamp as sent, and how the version time was found (for the causes in the report). */
  raw?: number;
  header?: boolean;
  bounded?: boolean;
  backfill?: boolean;
}

/** The bulk feed of a run (./bulk.ts): what derives its records, when each send was tried, its stored rows. */
export interface BulkInput {
  seed: number;
  symbols: number;
  events: BulkRange[];
  /** When each event was first handed to the producer (epoch ms; NaN: never). */
  sentAtMs: Float64Array;
  /** bars_1m's rows of the feed's keys (the others are `stored`). */
  stored: StoredBulk;
}

export interface CheckInput {
  /** Every incarnation of the topic, oldest first; the last is the current one. */
  incarnations: Incarnation[];
  sent: Map<string, Sent>;
  skips: SkipRange[];
  backfills: BackfillDone[];
  stored: StoredRow[];
  /** Whether bars_1m has source_origin (compared then). */
  hasOrigin: boolean;
  /**
   * bars_latest as stored (absent: a run from before it existed). It must hold, per symbol, exactly the
   * row of `stored` with the symbol's greatest minute, values and version alike.
   */
  latest?: StoredRow[];
  /** Keys stored more than once (the primary key forbids it; counted anyway). */
  duplicated: number;
  deadLetters: DeadLetterSeen[];
  samples: Sample[];
  windows: Window[];
  /** After quiescence, per partition of the current incarnation. */
  final: { partition: number; fence: FenceRow | null; committed: bigint | null; logEnd: bigint }[];
  replays: ReplayMeasure[];
  ops: OpDone[];
  stallBoundMs: number;
  /** The bulk feed, when the run had one: its records are the incarnations' `bulk` columns. */
  bulk?: BulkInput;
}

export interface Figures {
  producedRecords: number;
  messagesSent: number;
  /** Of the produced records, those of the bulk feed; its messages sent. */
  bulkRecords: number;
  bulkSent: number;
  validRecords: number;
  invalidRecords: number;
  backfillRows: number;
  mustRecords: number;
  mayRecords: number;
  keys: number;
  mustKeys: number;
  stored: number;
  lost: number;
  stale: number;
  version: number;
  extra: number;
  invalidLanded: number;
  duplicated: number;
  /** Symbols whose bars_latest row is not their newest stored bar (or is missing, or has none). */
  latestMismatch: number;
  /** Valid delete records and backfill delete rows (of the bulk feed's too). */
  deleteRecords: number;
  /** Keys whose greatest MUST version is a delete (no row), or a bar newer than a MUST delete (a row). */
  deletedKeys: number;
  restoredKeys: number;
  /** Keys with a row though the greatest MUST version is a delete; without one though it is a bar newer than a delete. */
  deletedPresent: number;
  deletedWrongly: number;
  invalidMustDeadLetter: number;
  notDeadLettered: number;
  validDeadLettered: number;
  fenceAhead: number;
  finalMismatch: number;
  /** Rows replays wrote that were not explained by skip ranges (a discrepancy). */
  replayWrites: number;
  /** Rows replays wrote of messages in skip ranges that had not landed (allowed). */
  replaySkippedWrites: number;
  unclassifiable: number;
  stallMsByPartition: Map<number, number>;
  stallBoundMs: number;
  stallsOverBound: number;
  opFailures: number;
  /** Operations done, by kind (every kind, zero included), and those that found nothing to act on. */
  opCounts: Map<string, number>;
  opNoops: Map<string, number>;
  /** Stale and version findings by their likely cause (a hint for the reader; the rule decides). */
  causes: Map<string, number>;
}

export interface Verdict {
  figures: Figures;
  /** One line per discrepancy kind with a few examples each. */
  discrepancies: string[];
  ok: boolean;
}

/** A delete's fields: its key; NaN prices, equal to no stored row's. */
export function deletedFields(symbol: string, timestampMs: number): BarFields {
  return { symbol, timestampMs, open: NaN, high: NaN, low: NaN, close: NaN, volume: NaN, vwap: null };
}

const keyOf = (symbol: string, ms: number) => `${symbol}|${new Date(ms).toISOString()}`;

function sameValues(a: BarFields | StoredRow, b: BarFields): boolean {
  return (
    a.open === b.open &&
    a.high === b.high &&
    a.low === b.low &&
    a.close === b.close &&
    a.volume === b.volume &&
    (a.vwap ?? null) === (b.vwap ?? null)
  );
}

/**
 * The fields of a valid message's value (the generator only makes values the contract accepts); a
 * delete (`"deleted": true`) says so, its prices NaN whatever the value holds (the contract ignores them).
 */
export function parseBar(value: Buffer | string): {
  fields: BarFields;
  revision: number;
  deleted?: true;
} {
  const o = JSON.parse(value.toString()) as Record<string, unknown>;
  const ts = typeof o.timestamp === 'number' ? o.timestamp : Date.parse(String(o.timestamp));
  if (o.deleted === true)
    return {
      fields: deletedFields(String(o.symbol), ts),
      revision: typeof o.revision === 'number' ? o.revision : 0,
      deleted: true,
    };
  return {
    fields: {
      symbol: String(o.symbol),
      timestampMs: ts,
      open: Number(o.open),
      high: Number(o.high),
      low: Number(o.low),
      close: Number(o.close),
      volume: Number(o.volume),
      vwap: o.vwap === undefined || o.vwap === null ? null : Number(o.vwap),
    },
    revision: typeof o.revision === 'number' ? o.revision : 0,
  };
}

/**
 * A record's version time: the header when present, else the record timestamp; unusable (negative, or
 * more than 1 h ahead of receipt) gives the bar's close. Null when the record's time cannot be
 * classified without its receipt time (the generator never makes one).
 */
export function versionTime(r: LogRecord, sentAtMs: number, barMs: number): number | null {
  const h = r.headers[VERSION_TIME_HEADER];
  return usableTime(h !== undefined && /^-?\d+$/.test(h) ? Number(h) : r.timestampMs, sentAtMs, barMs);
}

/** The version time a message's time `vt` gives (see `versionTime`). */
export function usableTime(vt: number, sentAtMs: number, barMs: number): number | null {
  if (vt < 0) return barMs + 60_000;
  const ahead = vt - sentAtMs;
  if (ahead <= LEGIT_AHEAD_MS) return vt;
  if (ahead >= BOUNDED_AHEAD_MS) return barMs + 60_000;
  return null;
}

export function fingerprintOf(offset: bigint, timestampMs: number, value: Buffer | null): string {
  const hash = crypto.createHash('sha256');
  hash.update(value === null ? '\u0000null' : value);
  return `${offset}:${timestampMs}:${hash.digest('base64url').slice(0, 22)}`;
}

/** Which incarnation a fence's fingerprint names a message of (null: none, or no fingerprint). */
export class FingerprintIndex {
  private readonly byIncarnation: Map<string, LogRecord>[];
  private readonly cache = new Map<string, number[]>();
  constructor(
    private readonly incarnations: Incarnation[],
    private readonly bulk?: Pick<BulkInput, 'seed' | 'symbols'>,
  ) {
    this.byIncarnation = incarnations.map(
      (inc) => new Map(inc.records.map((r) => [`${r.partition}:${r.offset}`, r])),
    );
  }
  /** The incarnations whose record at the fingerprint's offset has its time and hash. */
  owners(partition: number, fp: string | null): number[] {
    if (fp === null) return [];
    const key = `${partition}|${fp}`;
    const known = this.cache.get(key);
    if (known) return known;
    const m = /^(\d+):(-?\d+):/.exec(fp);
    const out: number[] = [];
    if (m) {
      this.byIncarnation.forEach((index, k) => {
        const r = index.get(`${partition}:${m[1]}`);
        if (r) {
          if (fingerprintOf(r.offset, r.timestampMs, r.value) === fp) out.push(k);
          return;
        }
        const b = this.incarnations[k]!.bulk;
        const j = b && this.bulk ? findBulk(b, partition, Number(m[1])) : -1;
        if (j < 0) return;
        const value = Buffer.from(bulkValue(this.bulk!.seed, this.bulk!.symbols, b!.index[j]!));
        if (fingerprintOf(BigInt(m[1]!), b!.timestampMs[j]!, value) === fp) out.push(k);
      });
    }
    this.cache.set(key, out);
    return out;
  }
}

/**
 * Whether a record MUST land (or be dead-lettered), by the rules at the top: the skip ranges and the
 * fences at deletion resolved once (offsets as numbers: exact below 2^53).
 */
export class MustRule {
  private readonly last: number;
  /** By incarnation, then partition: the skip ranges [from, to). */
  private readonly skips = new Map<number, Map<number, [number, number][]>>();
  /** By earlier incarnation, then partition: the fence's next offset when it names a message of it. */
  private readonly fences = new Map<number, Map<number, number>>();

  constructor(input: Pick<CheckInput, 'incarnations' | 'skips'>, fps: FingerprintIndex) {
    this.last = input.incarnations.length - 1;
    for (const s of input.skips) {
      const from = positionOf(s.fenceBefore, s.partition, s.incarnation, input.incarnations, fps);
      const byP = this.skips.get(s.incarnation) ?? new Map<number, [number, number][]>();
      byP.set(s.partition, [...(byP.get(s.partition) ?? []), [Number(from), Number(s.to)]]);
      this.skips.set(s.incarnation, byP);
    }
    input.incarnations.forEach((inc, k) => {
      if (k === this.last) return;
      const byP = new Map<number, number>();
      for (const [p, fence] of inc.fencesAtDeletion ?? [])
        if (fps.owners(p, fence.fingerprint).includes(k)) byP.set(p, Number(fence.next));
      this.fences.set(k, byP);
    });
  }

  /** Whether the record lies in a skip range (an operator moved its partition's fence past it). */
  skipped(incarnation: number, partition: number, offset: number): boolean {
    const ranges = this.skips.get(incarnation)?.get(partition);
    return ranges?.some(([from, to]) => offset >= from && offset < to) ?? false;
  }

  must(incarnation: number, partition: number, offset: number): boolean {
    if (this.skipped(incarnation, partition, offset)) return false;
    if (incarnation === this.last) return true;
    const next = this.fences.get(incarnation)?.get(partition);
    return next !== undefined && offset < next;
  }
}

/** Whether a record MUST land (or be dead-lettered), by the rules at the top. */
export function mustOf(
  r: LogRecord,
  input: Pick<CheckInput, 'incarnations' | 'skips'>,
  fps: FingerprintIndex,
): boolean {
  return new MustRule(input, fps).must(r.incarnation, r.partition, Number(r.offset));
}

class Examples {
  private readonly lines = new Map<string, string[]>();
  readonly counts = new Map<string, number>();
  add(kind: string, text: string): void {
    this.counts.set(kind, (this.counts.get(kind) ?? 0) + 1);
    const l = this.lines.get(kind) ?? [];
    if (l.length < 8) l.push(text);
    this.lines.set(kind, l);
  }
  count(kind: string): number {
    return this.counts.get(kind) ?? 0;
  }
  render(): string[] {
    return [...this.lines].map(([k, l]) => `${k}: ${this.count(k)}\n    ${l.join('\n    ')}`);
  }
}

const fmtFields = (f: BarFields | StoredRow) =>
  `o=${f.open} h=${f.high} l=${f.low} c=${f.close} v=${f.volume} vwap=${f.vwap}`;
const fmtVersion = (v: Version) => `(rev ${v.revision}, t ${v.time}, origin ${v.origin})`;
const fmtStoredVersion = (s: StoredRow) =>
  `(rev ${s.revision}, t ${s.sourceTimeMs}${s.sourceOrigin === undefined ? '' : `, origin ${s.sourceOrigin}`})`;

/** What judging a key needs besides its candidates and stored row. */
interface KeyJudge {
  ex: Examples;
  causes: Map<string, number>;
  versionMatches: (s: StoredRow, v: Version) => boolean;
  /** Keys whose greatest MUST version is a delete; keys with a MUST bar newer than a MUST delete. */
  deleted: { keys: number; restored: number };
}

const newest = (cs: Candidate[]) =>
  cs.reduce<Candidate | null>((m, c) => (m === null || compareCandidates(c, m) > 0 ? c : m), null);
const fmtCandidate = (c: Candidate) =>
  `${c.deleted ? 'delete' : fmtFields(c.fields)} ${fmtVersion(c.version)} from ${c.source}`;

/**
 * One key (symbol, minute): with no stored row, no MUST candidate may exist unless a delete is
 * acceptable (none MUST above it); a stored row must equal (values and version) an acceptable bar
 * candidate. Returns whether a MUST exists.
 */
function judgeKey(
  k: string,
  cands: Candidate[],
  s: StoredRow | undefined,
  invalids: BarFields[],
  { ex, causes, versionMatches, deleted }: KeyJudge,
): boolean {
  const mustMax = newest(cands.filter((c) => c.must));
  const acceptable = cands.filter((c) => mustMax === null || compareCandidates(c, mustMax) >= 0);
  const bars = acceptable.filter((c) => !c.deleted);
  // A delete the greatest MUST version is newer than: the bar after it restored the key.
  const overruled = mustMax && !mustMax.deleted ? newest(cands.filter((c) => c.deleted)) : null;
  if (mustMax?.deleted) deleted.keys++;
  else if (overruled?.must) deleted.restored++;
  if (!s) {
    if (mustMax && !acceptable.some((c) => c.deleted)) {
      const best = newest(acceptable)!;
      if (overruled)
        ex.add(
          'deleted wrongly',
          `${k}: no row; expected ${fmtCandidate(best)}, newer than the delete ${fmtVersion(overruled.version)} from ${overruled.source}`,
        );
      else ex.add('lost', `${k}: expected ${fmtCandidate(best)}`);
    }
    return mustMax !== null;
  }
  if (bars.some((c) => sameValues(s, c.fields) && versionMatches(s, c.version))) return mustMax !== null;
  const older = cands.find((c) => !c.deleted && sameValues(s, c.fields) && versionMatches(s, c.version));
  if (mustMax?.deleted) {
    ex.add(
      'deleted present',
      `${k}: stored ${fmtFields(s)} ${fmtStoredVersion(s)}${older ? ` (${older.source})` : ''}; deleted by ${fmtCandidate(mustMax)}`,
    );
    return true;
  }
  const best = newest(bars);
  if (best === null) {
    // Only deletes (that may not have landed): nothing may be stored.
    ex.add('extra', `${k}: ${fmtFields(s)} ${fmtStoredVersion(s)}; the key has deletes only`);
    return mustMax !== null;
  }
  const cause = likelyCause(
    s,
    cands.filter((c) => !c.deleted),
    best,
    versionMatches,
  );
  causes.set(cause, (causes.get(cause) ?? 0) + 1);
  const why = `${k}: stored ${fmtFields(s)} ${fmtStoredVersion(s)}; expected ${fmtFields(best.fields)} ${fmtVersion(best.version)} from ${best.source}${acceptable.length > 1 ? ` (or ${acceptable.length - 1} other acceptable)` : ''}`;
  if (bars.some((c) => sameValues(s, c.fields))) {
    ex.add('version', `${why}${older ? `; the stored version is ${older.source}'s` : ''}`);
  } else if (invalids.some((f) => sameValues(s, f))) {
    ex.add('invalid landed', why);
  } else {
    ex.add('stale', `${why}${older ? `; stored is ${older.source}` : ''}`);
  }
  return mustMax !== null;
}

/** What the bulk feed adds to the figures. */
interface BulkCounts {
  records: number;
  sent: number;
  must: number;
  may: number;
  unclassifiable: number;
  keys: number;
  mustKeys: number;
  stored: number;
  deletes: number;
}

/**
 * The bulk feed's keys, by the same rules (`judgeKey`): a first pass over the incarnations' bulk columns
 * finds each key's records (as (incarnation, row) references in typed arrays: no object per record
 * lives beyond its key), a second judges each key against its stored row.
 */
function checkBulk(input: CheckInput, rule: MustRule, judge: KeyJudge): BulkCounts {
  const B = input.bulk!;
  const { ex } = judge;
  const total = bulkTotal(B);
  const counts: BulkCounts = {
    records: 0,
    sent: 0,
    must: 0,
    may: 0,
    unclassifiable: 0,
    keys: 0,
    mustKeys: 0,
    stored: 0,
    deletes: 0,
  };
  B.events.forEach((e, i) => {
    if (!Number.isNaN(B.sentAtMs[i]!)) counts.sent += e.count;
  });
  // Per key: how many records (0, 1, 2 = more), the first one's reference, the others'.
  const n = new Uint8Array(total);
  const firstInc = new Uint16Array(total);
  const firstRow = new Uint32Array(total);
  const more = new Map<number, [number, number][]>();
  const sentAt = (g: number) => {
    const e = g < total ? bulkEventOf(B, g) : -1;
    return e < 0 ? NaN : B.sentAtMs[e]!;
  };
  input.incarnations.forEach((inc, k) => {
    const c = inc.bulk;
    if (!c) return;
    for (let j = 0; j < c.index.length; j++) {
      counts.records++;
      const g = c.index[j]!;
      const where = `incarnation ${k} partition ${c.partition[j]} offset ${c.offset[j]}`;
      const at = sentAt(g);
      if (Number.isNaN(at)) {
        ex.add('unknown record', `${where}: bulk index ${g}, never sent`);
        continue;
      }
      if (rule.must(k, c.partition[j]!, c.offset[j]!)) counts.must++;
      else counts.may++;
      if (usableTime(c.timestampMs[j]!, at, bulkMinuteMs(B.symbols, g)) === null) {
        counts.unclassifiable++;
        ex.add('unclassifiable', `${where}: bulk ${g}: record time ${c.timestampMs[j]} sent at ${at}`);
        continue;
      }
      if (n[g] === 0) {
        firstInc[g] = k;
        firstRow[g] = j;
        n[g] = 1;
      } else {
        more.set(g, [...(more.get(g) ?? []), [k, j]]);
        n[g] = 2;
      }
    }
  });
  const candidate = (fields: BarFields, k: number, j: number): Candidate => {
    const c = input.incarnations[k]!.bulk!;
    const [p, offset, ts] = [c.partition[j]!, c.offset[j]!, c.timestampMs[j]!];
    return {
      fields,
      version: {
        revision: 0,
        time: usableTime(ts, sentAt(c.index[j]!), fields.timestampMs)!,
        origin: BigInt(p) * ORIGIN_PARTITION + BigInt(offset),
      },
      must: rule.must(k, p, offset),
      source: `bulk ${c.index[j]}@${k}/${p}/${offset}`,
      raw: ts,
      header: false,
      bounded: false,
    };
  };
  for (let g = 0; g < total; g++) {
    const s = storedBulkRow(B.stored, g, B.symbols, input.hasOrigin);
    if (s) counts.stored++;
    if (n[g] === 0) {
      if (s) ex.add('extra', `${keyOf(s.symbol, s.timestampMs)}: ${fmtFields(s)} ${fmtStoredVersion(s)}`);
      continue;
    }
    counts.keys++;
    const fields = bulkBar(B.seed, B.symbols, g);
    const cands = [candidate(fields, firstInc[g]!, firstRow[g]!)];
    if (n[g] === 2) for (const [k, j] of more.get(g)!) cands.push(candidate(fields, k, j));
    if (judgeKey(keyOf(fields.symbol, fields.timestampMs), cands, s, [], judge)) counts.mustKeys++;
  }
  return counts;
}

export function check(input: CheckInput): Verdict {
  const ex = new Examples();
  const fps = new FingerprintIndex(input.incarnations, input.bulk);
  const rule = new MustRule(input, fps);
  const candidates = new Map<string, Candidate[]>();
  const invalidByKey = new Map<string, BarFields[]>();
  const add = (c: Candidate) => {
    const k = keyOf(c.fields.symbol, c.fields.timestampMs);
    const l = candidates.get(k) ?? [];
    l.push(c);
    candidates.set(k, l);
  };

  let producedRecords = 0;
  let validRecords = 0;
  let invalidRecords = 0;
  let mustRecords = 0;
  let mayRecords = 0;
  let unclassifiable = 0;
  let deleteRecords = 0;
  const mustDeadLetter = new Set<string>();
  const dlKey = (id: string | null, p: number, o: bigint) => `${id}|${p}|${o}`;

  for (const inc of input.incarnations) {
    for (const r of inc.records) {
      producedRecords++;
      const sent = r.id === null ? undefined : input.sent.get(r.id);
      if (!sent) {
        ex.add(
          'unknown record',
          `incarnation ${r.incarnation} partition ${r.partition} offset ${r.offset} id ${r.id}${isBulkId(r.id) ? ' (a bulk id: its value, key or headers are not what the id derives)' : ''}`,
        );
        continue;
      }
      const must = rule.must(r.incarnation, r.partition, Number(r.offset));
      if (must) mustRecords++;
      else mayRecords++;
      if (!sent.spec.valid) {
        invalidRecords++;
        if (sent.spec.wouldBe) {
          const k = keyOf(sent.spec.wouldBe.symbol, sent.spec.wouldBe.timestampMs);
          invalidByKey.set(k, [...(invalidByKey.get(k) ?? []), sent.spec.wouldBe]);
        }
        if (must) mustDeadLetter.add(dlKey(r.id, r.partition, r.offset));
        continue;
      }
      validRecords++;
      const { fields, revision, deleted } = parseBar(r.value ?? '');
      if (deleted) deleteRecords++;
      const time = versionTime(r, sent.sentAtMs, fields.timestampMs);
      if (time === null) {
        unclassifiable++;
        ex.add('unclassifiable', `${r.id}: record time ${r.timestampMs} sent at ${sent.sentAtMs}`);
        continue;
      }
      const header = r.headers[VERSION_TIME_HEADER] !== undefined;
      add({
        fields,
        version: { revision, time, origin: BigInt(r.partition) * ORIGIN_PARTITION + r.offset },
        ...(deleted ? { deleted } : {}),
        must,
        source: `${r.id}@${r.incarnation}/${r.partition}/${r.offset}`,
        raw: r.timestampMs,
        header,
        bounded:
          time === fields.timestampMs + 60_000 &&
          time !== (header ? Number(r.headers[VERSION_TIME_HEADER]) : r.timestampMs),
      });
    }
  }
  let backfillRows = 0;
  input.backfills.forEach((b, n) => {
    b.rows.forEach((row, i) => {
      backfillRows++;
      if (row.deleted) deleteRecords++;
      add({
        fields: row.deleted ? deletedFields(row.symbol, row.timestampMs) : { ...row },
        version: { revision: row.revision, time: b.versionTime, origin: BigInt(i) },
        ...(row.deleted ? { deleted: true } : {}),
        must: b.ok,
        source: `backfill#${n} row ${i}`,
        backfill: true,
      });
    });
  });

  // The table.
  const stored = new Map<string, StoredRow>();
  for (const s of input.stored) stored.set(keyOf(s.symbol, s.timestampMs), s);
  let mustKeys = 0;
  const causes = new Map<string, number>();
  const versionMatches = (s: StoredRow, v: Version) =>
    s.revision === v.revision &&
    s.sourceTimeMs === v.time &&
    (!input.hasOrigin || s.sourceOrigin === v.origin);
  const judge: KeyJudge = { ex, causes, versionMatches, deleted: { keys: 0, restored: 0 } };
  for (const [k, cands] of candidates)
    if (judgeKey(k, cands, stored.get(k), invalidByKey.get(k) ?? [], judge)) mustKeys++;
  if (input.bulk) {
    // Bulk keys are the feed's own: nothing else may have one (it would be judged apart from them).
    const total = bulkTotal(input.bulk);
    for (const [k, cands] of candidates) {
      const f = cands[0]!.fields;
      if (bulkIndexOfKey(input.bulk.symbols, total, f.symbol, f.timestampMs) !== null)
        ex.add('bulk key collision', `${k}: ${cands.map((c) => c.source).join(', ')}`);
    }
  }
  const bulk = input.bulk ? checkBulk(input, rule, judge) : null;
  for (const [k, s] of stored) {
    if (candidates.has(k)) continue;
    if ((invalidByKey.get(k) ?? []).some((f) => sameValues(s, f)))
      ex.add('invalid landed', `${k}: ${fmtFields(s)}`);
    else ex.add('extra', `${k}: ${fmtFields(s)} ${fmtStoredVersion(s)}`);
  }
  if (input.duplicated > 0) ex.add('duplicated', `${input.duplicated} keys stored more than once`);

  // bars_latest: the newest stored bar of each symbol, exactly.
  if (input.latest) {
    const newest = new Map<string, StoredRow>();
    const consider = (s: StoredRow) => {
      if ((newest.get(s.symbol)?.timestampMs ?? -Infinity) < s.timestampMs) newest.set(s.symbol, s);
    };
    for (const s of input.stored) consider(s);
    if (input.bulk) {
      // The bulk feed's rows are kept as columns: each one stored, rebuilt as a row.
      const B = input.bulk;
      for (let g = 0, total = bulkTotal(B); g < total; g++) {
        const s = storedBulkRow(B.stored, g, B.symbols, input.hasOrigin);
        if (s) consider(s);
      }
    }
    const kept = new Map(input.latest.map((l) => [l.symbol, l]));
    const say = (r: StoredRow | undefined) =>
      r
        ? `${new Date(r.timestampMs).toISOString()} ${fmtFields(r)} ${fmtStoredVersion(r)}/${r.sourceOrigin ?? '-'}`
        : 'none';
    for (const symbol of new Set([...newest.keys(), ...kept.keys()])) {
      const want = say(newest.get(symbol));
      const got = say(kept.get(symbol));
      if (want !== got) ex.add('latest', `${symbol}: bars_latest ${got}; newest stored ${want}`);
    }
  }

  // Dead letters.
  const lettered = new Set(input.deadLetters.map((d) => dlKey(d.id, d.sourcePartition, d.sourceOffset)));
  for (const k of mustDeadLetter) if (!lettered.has(k)) ex.add('not dead-lettered', k);
  for (const d of input.deadLetters) {
    const sent = d.id === null ? undefined : input.sent.get(d.id);
    if (sent?.spec.valid || isBulkId(d.id))
      ex.add('valid dead-lettered', `${d.id} (${d.reason}) from ${d.sourcePartition}/${d.sourceOffset}`);
  }

  // Fences and stalls.
  const stalls = judgeSamples(input, fps, ex);
  let stallsOverBound = 0;
  for (const [p, ms] of stalls) {
    if (ms > input.stallBoundMs) {
      stallsOverBound++;
      ex.add(
        'stall',
        `partition ${p} stalled ${(ms / 1000).toFixed(1)} s while healthy (bound ${input.stallBoundMs / 1000} s)`,
      );
    }
  }
  let finalMismatch = 0;
  for (const f of input.final) {
    const fence = f.fence?.next ?? 0n;
    const committed = f.committed ?? 0n;
    if (fence !== f.logEnd || committed !== f.logEnd) {
      finalMismatch++;
      ex.add(
        'final position',
        `partition ${f.partition}: fence ${f.fence?.next ?? '-'}, committed ${f.committed ?? '-'}, log end ${f.logEnd}`,
      );
    }
  }
  // A replay writes nothing but the messages of skip ranges that had not landed (MAY records: an
  // operator's forward reset left them behind; reading the log again from its start lands them). A
  // written row is explained when the message it now holds (its source_origin) is one of those; the
  // tuple count may exceed the rows when a skipped key was written twice, never when nothing is explained.
  let replayWrites = 0;
  let replaySkippedWrites = 0;
  for (const r of input.replays) {
    const skipped = r.written.filter((w) => rule.skipped(r.incarnation, w.partition, w.offset));
    const unexplained = Math.max(r.rowsWritten - skipped.length, skipped.length === 0 ? r.tupleWrites : 0);
    replaySkippedWrites += skipped.length;
    if (unexplained > 0) {
      replayWrites += unexplained;
      const held = r.written
        .filter((w) => !skipped.includes(w))
        .slice(0, 5)
        .map((w) => `${w.partition}:${w.offset}`)
        .join(', ');
      ex.add(
        'replay wrote',
        `a replay of ${r.messagesReplayed} messages wrote ${r.rowsWritten} rows (xmin) / ${r.tupleWrites} tuples (n_tup_ins + n_tup_upd), ` +
          `${skipped.length} of them messages of skip ranges; the others hold partition:offset ${held || '-'}`,
      );
    }
  }
  const opCounts = new Map<string, number>(OP_KINDS.map((k) => [k, 0]));
  const opNoops = new Map<string, number>();
  let opFailures = 0;
  for (const o of input.ops) {
    opCounts.set(o.kind, (opCounts.get(o.kind) ?? 0) + 1);
    if (o.noop) opNoops.set(o.kind, (opNoops.get(o.kind) ?? 0) + 1);
    if (o.failure) {
      opFailures++;
      ex.add('operation failed', `${o.kind} at ${(o.from / 1000).toFixed(1)} s: ${o.failure}`);
    }
  }

  const figures: Figures = {
    producedRecords: producedRecords + (bulk?.records ?? 0),
    messagesSent: input.sent.size + (bulk?.sent ?? 0),
    bulkRecords: bulk?.records ?? 0,
    bulkSent: bulk?.sent ?? 0,
    validRecords: validRecords + (bulk?.records ?? 0),
    invalidRecords,
    backfillRows,
    mustRecords: mustRecords + (bulk?.must ?? 0),
    mayRecords: mayRecords + (bulk?.may ?? 0),
    keys: candidates.size + (bulk?.keys ?? 0),
    mustKeys: mustKeys + (bulk?.mustKeys ?? 0),
    stored: stored.size + (bulk?.stored ?? 0),
    lost: ex.count('lost'),
    stale: ex.count('stale'),
    version: ex.count('version'),
    extra: ex.count('extra'),
    invalidLanded: ex.count('invalid landed'),
    duplicated: input.duplicated,
    latestMismatch: ex.count('latest'),
    deleteRecords: deleteRecords + (bulk?.deletes ?? 0),
    deletedKeys: judge.deleted.keys,
    restoredKeys: judge.deleted.restored,
    deletedPresent: ex.count('deleted present'),
    deletedWrongly: ex.count('deleted wrongly'),
    invalidMustDeadLetter: mustDeadLetter.size,
    notDeadLettered: ex.count('not dead-lettered'),
    validDeadLettered: ex.count('valid dead-lettered'),
    fenceAhead: ex.count('fence ahead'),
    finalMismatch,
    replayWrites,
    replaySkippedWrites,
    unclassifiable: unclassifiable + (bulk?.unclassifiable ?? 0),
    stallMsByPartition: stalls,
    stallBoundMs: input.stallBoundMs,
    stallsOverBound,
    opFailures,
    opCounts,
    opNoops,
    causes,
  };
  const discrepancies = ex.render();
  return { figures, discrepancies, ok: discrepancies.length === 0 };
}

/**
 * Why a stored row is not what the rule says, as far as the logs tell: which message (or backfill) it
 * came from, and how its stored version differs from the rule's.
 */
function likelyCause(
  s: StoredRow,
  cands: Candidate[],
  best: Candidate,
  versionMatches: (s: StoredRow, v: Version) => boolean,
): string {
  const same = cands.filter((c) => sameValues(s, c.fields) && c.version.revision === s.revision);
  const exact = same.find((c) => versionMatches(s, c.version));
  if (exact) {
    if (exact.version.revision === best.version.revision && exact.version.time === best.version.time)
      return 'exact tie of (revision, time) not won by the higher origin';
    if (sameValues(s, best.fields)) return 'identical re-send did not move the stored version';
    if (cands.some((c) => sameValues(c.fields, best.fields) && compareVersions(c.version, exact.version) < 0))
      return 'an older version replaced an identical re-send (its version was not kept)';
    return 'an older version replaced a newer one';
  }
  const raw = same.find((c) => c.raw === s.sourceTimeMs);
  if (raw?.header) return 'bar-writer.version-time header not used';
  if (raw?.bounded) return 'unusable record time (> 1 h ahead) stored as the version';
  if (raw) return "stored version time is the record time, not the rule's";
  if (same.some((c) => c.backfill)) return 'backfill not versioned by --version-time (default 0)';
  return 'unexplained';
}

/** A fence's position in the current incarnation (0 when the fence is an earlier incarnation's). */
export function positionOf(
  fence: FenceRow | null,
  partition: number,
  incarnation: number,
  incarnations: Incarnation[],
  fps: FingerprintIndex,
): bigint {
  if (!fence) return 0n;
  if (fence.updatedMs < incarnations[incarnation]!.createdDbMs) return 0n;
  const owners = fps.owners(partition, fence.fingerprint);
  if (owners.length > 0 && !owners.includes(incarnation)) return 0n;
  return fence.next;
}

/** Fence-ahead findings (into `ex`) and the longest stall per partition. */
function judgeSamples(input: CheckInput, fps: FingerprintIndex, ex: Examples): Map<number, number> {
  const longest = new Map<number, number>();
  const since = new Map<number, number>();
  const lastPos = new Map<number, bigint>();
  // A window anywhere between the last sample and this one counts (a short outage between two samples).
  const unhealthy = (from: number, to: number, p: number) =>
    input.windows.some(
      (w) => w.from <= to && from <= w.to && (w.partitions === null || w.partitions.includes(p)),
    );
  let prevT = -Infinity;
  for (const s of input.samples) {
    const present = new Set<number>();
    for (const { partition: p, fence, logEnd } of s.partitions) {
      present.add(p);
      const pos = positionOf(fence, p, s.incarnation, input.incarnations, fps);
      if (fence && pos === fence.next && fence.next > logEnd) {
        ex.add(
          'fence ahead',
          `t=${(s.t / 1000).toFixed(1)} s partition ${p}: fence ${fence.next} > log end ${logEnd}`,
        );
      }
      if (!longest.has(p)) longest.set(p, 0);
      // A gap in the samples (the monitor could not read) restarts the clock: nothing is known of it.
      if (unhealthy(prevT, s.t, p) || pos >= logEnd || s.t - prevT > 5000 || !since.has(p)) {
        since.set(p, s.t);
      } else if (pos !== lastPos.get(p)) {
        since.set(p, s.t);
      }
      lastPos.set(p, pos);
      longest.set(p, Math.max(longest.get(p)!, s.t - since.get(p)!));
    }
    for (const p of since.keys()) if (!present.has(p)) since.delete(p);
    prevT = s.t;
  }
  return longest;
}

/** The report's figures as lines. */
export function renderFigures(f: Figures): string[] {
  const stall = [...f.stallMsByPartition]
    .sort((a, b) => a[0] - b[0])
    .map(([p, ms]) => `${p}:${(ms / 1000).toFixed(1)}`)
    .join(' ');
  return [
    `produced: ${f.producedRecords} records in the logs (${f.messagesSent} messages sent; ${f.validRecords} valid, ${f.invalidRecords} invalid), ${f.backfillRows} backfill rows${f.bulkSent ? `; of them the bulk feed's: ${f.bulkRecords} records, ${f.bulkSent} messages sent` : ''}`,
    `must/may: ${f.mustRecords} records MUST, ${f.mayRecords} MAY; ${f.keys} keys, ${f.mustKeys} must-land keys`,
    `stored: ${f.stored} rows; lost ${f.lost}, stale ${f.stale}, version ${f.version}, extra ${f.extra}, invalid landed ${f.invalidLanded}, duplicated ${f.duplicated}; bars_latest off for ${f.latestMismatch} symbols`,
    `deletes: ${f.deleteRecords} delete records and rows; ${f.deletedKeys} keys deleted (their greatest MUST version), ${f.restoredKeys} restored by a newer bar; deleted present ${f.deletedPresent}, deleted wrongly ${f.deletedWrongly}`,
    `dead letters: ${f.invalidMustDeadLetter} invalid MUST be dead-lettered, ${f.notDeadLettered} not; ${f.validDeadLettered} valid dead-lettered`,
    `fences: ${f.fenceAhead} samples ahead of the log end, ${f.finalMismatch} partitions not at the log end after quiescence; replays wrote ${f.replayWrites}${f.replaySkippedWrites ? ` (besides ${f.replaySkippedWrites} rows of skipped messages, which MAY land)` : ''}`,
    `longest stall while healthy (s, bound ${f.stallBoundMs / 1000}): ${stall || '-'}${f.stallsOverBound ? ` (${f.stallsOverBound} over)` : ''}`,
    ...(f.causes.size
      ? [
          `likely causes: ${[...f.causes]
            .sort((a, b) => b[1] - a[1])
            .map(([c, n]) => `${c} ${n}`)
            .join('; ')}`,
        ]
      : []),
    `operations: ${[...f.opCounts].map(([k, n]) => `${k} ${n}${f.opNoops.get(k) ? ` (${f.opNoops.get(k)} did nothing)` : ''}`).join(', ')}${f.opFailures ? `; ${f.opFailures} failed` : ''}`,
    ...(f.unclassifiable ? [`unclassifiable record times: ${f.unclassifiable}`] : []),
  ];
}

/** The id a record carries (the ID_HEADER). */
export function idOf(headers: Record<string, string>): string | null {
  return headers[ID_HEADER] ?? null;
}

/** A check input as JSON (bigints, Buffers and Maps kept), so a kept run can be checked again offline. */
export function serializeInput(input: CheckInput): string {
  return JSON.stringify(input, (_, v: unknown) => {
    if (typeof v === 'bigint') return { $b: v.toString() };
    if (v instanceof Map) return { $m: [...v] };
    return v;
  });
}

export function deserializeInput(text: string): CheckInput {
  return JSON.parse(text, (_, v: unknown) => revive(v)) as CheckInput;
}

function revive(v: unknown): unknown {
  if (v && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    if (typeof o.$b === 'string') return BigInt(o.$b);
    if (Array.isArray(o.$m)) return new Map(o.$m as [unknown, unknown][]);
    if (typeof o.$buf === 'string') return Buffer.from(o.$buf, 'base64');
    if (o.type === 'Buffer' && Array.isArray(o.data)) return Buffer.from(o.data as number[]);
  }
  return v;
}

const FORMAT = 'nemesis-check-input/2';
const TYPED = { Int32Array, Uint32Array, Uint16Array, Uint8Array, Float64Array } as const;
type TypedName = keyof typeof TYPED;

/**
 * Writes a check input to `file` for `--check` (a kept run): a header line (format, the JSON's length),
 * the input as JSON (bigints, Maps, Buffers as base64), then the bytes of its typed arrays (the bulk
 * feed's columns), each referenced from the JSON by type, position and length: no single string holds
 * millions of records.
 */
export function writeInput(file: string, input: CheckInput): void {
  const arrays: ArrayBufferView[] = [];
  let at = 0;
  const json = JSON.stringify(input, function (this: Record<string, unknown>, key: string, v: unknown) {
    const raw = this[key];
    if (Buffer.isBuffer(raw)) return { $buf: raw.toString('base64') };
    if (typeof v === 'bigint') return { $b: v.toString() };
    if (v instanceof Map) return { $m: [...v] };
    if (ArrayBuffer.isView(v) && v.constructor.name in TYPED) {
      const ref = { $ta: v.constructor.name, at, n: (v as unknown as { length: number }).length };
      arrays.push(v);
      at += Math.ceil(v.byteLength / 8) * 8;
      return ref;
    }
    return v;
  });
  const body = Buffer.from(json);
  const header = Buffer.from(`${FORMAT} ${body.length}\n`);
  const fd = fs.openSync(file, 'w');
  try {
    fs.writeSync(fd, header);
    fs.writeSync(fd, body);
    let pos = header.length + body.length;
    for (const a of arrays) {
      fs.writeSync(fd, new Uint8Array(a.buffer, a.byteOffset, a.byteLength), 0, a.byteLength, pos);
      pos += Math.ceil(a.byteLength / 8) * 8;
    }
    if (pos > header.length + body.length) fs.ftruncateSync(fd, pos);
  } finally {
    fs.closeSync(fd);
  }
}

/** Reads what `writeInput` wrote (or an earlier kept input: one JSON text). */
export function readInput(file: string): CheckInput {
  const fd = fs.openSync(file, 'r');
  try {
    const head = Buffer.alloc(64);
    const got = fs.readSync(fd, head, 0, head.length, 0);
    const line = head.subarray(0, got).toString('latin1').split('\n')[0]!;
    const m = new RegExp(`^${FORMAT} (\\d+)$`).exec(line);
    if (!m) return deserializeInput(fs.readFileSync(file, 'utf8'));
    const base = line.length + 1;
    const body = Buffer.alloc(Number(m[1]));
    fs.readSync(fd, body, 0, body.length, base);
    const binary = base + body.length;
    return JSON.parse(body.toString('utf8'), (_, v: unknown) => {
      const o = v as { $ta?: TypedName; at?: number; n?: number } | null;
      if (o && typeof o === 'object' && typeof o.$ta === 'string' && o.$ta in TYPED) {
        const a = new TYPED[o.$ta](o.n!);
        fs.readSync(fd, new Uint8Array(a.buffer), 0, a.byteLength, binary + o.at!);
        return a;
      }
      return revive(v);
    }) as CheckInput;
  } finally {
    fs.closeSync(fd);
  }
}
