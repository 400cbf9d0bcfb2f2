/**
 * The nemesis suite's vocabulary, shared by the generator (./schedule.ts), the runner (./runner.ts) and
 * the checker (./checker.ts): what is produced (message specs, resolved against the running system only
 * for the partition count and the wall clock), the operations, and what the run records (the logs read
 * back from Kafka, the operations as done, the monitor's samples, the stored table).
 */

/** The fields of a bar as the message contract reads them (timestamp as epoch ms). */
export interface BarFields {
  symbol: string;
  timestampMs: number;
  open: number;
  high: number;
  low: number;
  close: number;
  volume: number;
  vwap: number | null;
}

/** Where a message goes: by key (hash of the symbol modulo the partition count at send time), or a slot. */
export type Route = { kind: 'key' } | { kind: 'slot'; slot: number };

/**
 * A message's record timestamp, relative to the time it is sent (the generator is pure: it knows no
 * clock). `client`: left to the Kafka client; `rel`: send time + ms (negative: the past; never more than
 * 10 minutes ahead); `years`: years ahead; `micros`: the send time in microseconds (read as ms: ~50,000
 * years ahead). The last two are unusable as versions (the bar's close is used instead).
 */
export type TimeSpec =
  { kind: 'client' } | { kind: 'rel'; ms: number } | { kind: 'years'; years: number } | { kind: 'micros' };

/** The header that overrides a message's version time (decimal epoch ms). */
export const VERSION_TIME_HEADER = 'bar-writer.version-time';
/** Every produced message carries its id: the checker maps what it reads back to what was meant. */
export const ID_HEADER = 'nemesis.id';

export interface MessageSpec {
  id: string;
  key: string;
  route: Route;
  time: TimeSpec;
  /** The exact value sent. */
  value: string;
  /** Whether the message contract accepts it (the generator only makes clear-cut cases). */
  valid: boolean;
  /** An invalid message's reason, for the report. */
  invalidKind?: string;
  /** The row an invalid message would be if it landed (when it has one): "invalid landed" is told by it. */
  wouldBe?: BarFields;
  /** `bar-writer.version-time` = send time + relMs, or `years` ahead (unusable). */
  versionHeader?: { relMs: number } | { years: number };
}

export type ProduceKind =
  | 'bars'
  | 'correction'
  | 'tie'
  | 'revision'
  | 'invalid'
  | 'explicit-partition'
  | 'out-of-order'
  | 'future'
  | 'version-header'
  | 'identical-resend'
  | 'identical-resend-older'
  | 'delete';

export interface ProduceEvent {
  at: number;
  kind: ProduceKind;
  messages: MessageSpec[];
}

/**
 * The bulk feed (`--rate`, ./bulk.ts): bars derived from the seed and a bulk index g (symbol g mod
 * `symbols`, minute ⌊g / symbols⌋), sent as events of consecutive indices.
 */
export interface BulkPlan {
  /** Messages a second. */
  rate: number;
  symbols: number;
  events: { at: number; first: number; count: number }[];
}

export interface BackfillRow {
  symbol: string;
  timestampMs: number;
  open: number;
  high: number;
  low: number;
  close: number;
  volume: number;
  vwap: number | null;
  revision: number;
  /** A delete of its key (the CSV's `deleted` column, true): its prices are not sent. */
  deleted?: boolean;
}

export type ResetTarget = 'earliest' | 'latest' | { partition: number; fraction: number };

export type Op =
  | { kind: 'sigkill'; instance: number; downMs: number }
  | { kind: 'restart'; instance: number }
  | { kind: 'add-instance'; instance: number }
  | { kind: 'remove-instance'; instance: number }
  | { kind: 'add-partitions'; to: number }
  | { kind: 'recreate-topic'; partitions: number }
  | { kind: 'lock-fences'; partitions: number[]; holdMs: number }
  | { kind: 'pg-restart'; mode: 'fast' | 'immediate'; downMs: number }
  | { kind: 'pgbouncer-restart'; downMs: number }
  | { kind: 'broker-restart'; downMs: number }
  | { kind: 'offsets-reset'; to: ResetTarget; force: boolean }
  | { kind: 'replay' }
  | { kind: 'commit-ahead'; partitions: number[]; fraction: number; messages: MessageSpec[] }
  | { kind: 'dlq-replay' }
  | { kind: 'backfill'; rows: BackfillRow[]; versionTime: number | null };

export type OpKind = Op['kind'];

/** Every operation kind, in the report's order (a Record: the compiler sees that none is missing). */
const OP_KIND_SET: Record<OpKind, true> = {
  sigkill: true,
  restart: true,
  'add-instance': true,
  'remove-instance': true,
  'add-partitions': true,
  'recreate-topic': true,
  'lock-fences': true,
  'pg-restart': true,
  'pgbouncer-restart': true,
  'broker-restart': true,
  'offsets-reset': true,
  replay: true,
  'commit-ahead': true,
  'dlq-replay': true,
  backfill: true,
};
export const OP_KINDS = Object.keys(OP_KIND_SET) as readonly OpKind[];

export interface OpEvent {
  at: number;
  op: Op;
}

export interface Schedule {
  seed: number;
  minutes: number;
  scenario: 'random' | 'issue';
  durationMs: number;
  initialPartitions: number;
  initialInstances: number;
  /** Each operation kind is planned at least this many times (0: no such guarantee). */
  everyOp?: number;
  /** The bulk feed (absent: none). */
  bulk?: BulkPlan;
  produce: ProduceEvent[];
  ops: OpEvent[];
}

// ---- What a run records ----

/** One record of a topic's log, as read back from the broker. */
export interface LogRecord {
  incarnation: number;
  partition: number;
  offset: bigint;
  /** The record timestamp (CreateTime), ms. */
  timestampMs: number;
  value: Buffer | null;
  headers: Record<string, string>;
  /** The ID_HEADER, or null (a record the suite did not produce). */
  id: string | null;
}

/** A fence row as read: next offset, fingerprint of the message before it, when it was last moved (db clock). */
export interface FenceRow {
  next: bigint;
  fingerprint: string | null;
  updatedMs: number;
}

/**
 * The bulk records of a log (./bulk.ts `BulkColumns`), sorted by partition and offset: the records whose
 * value, key and headers are exactly what their bulk id derives, each as (partition, offset, record
 * time, bulk index).
 */
export interface BulkRecords {
  partition: Int32Array;
  offset: Float64Array;
  timestampMs: Float64Array;
  index: Uint32Array;
}

export interface Incarnation {
  index: number;
  /** Runner clock (ms since the run's start) and database clock (epoch ms) right after the topic was created. */
  createdAt: number;
  createdDbMs: number;
  partitions: number;
  /** Its whole log, read back before it was deleted (or after quiescence, for the last one)... */
  records: LogRecord[];
  /** ... but for the bulk feed's records (absent: none). */
  bulk?: BulkRecords;
  /** The fences read just before it was deleted (none for the last one). */
  fencesAtDeletion: Map<number, FenceRow> | null;
}

/**
 * A partition an operator's reset moved to `to`: the offsets from the fence it had (its position in
 * that incarnation, read just before) up to `to` MAY be skipped (nothing when `to` is not ahead).
 */
export interface SkipRange {
  incarnation: number;
  partition: number;
  fenceBefore: FenceRow | null;
  to: bigint;
}

/** A time during which some partitions (null: all) are not expected to make progress. */
export interface Window {
  from: number;
  to: number;
  partitions: number[] | null;
  why: string;
}

export interface BackfillDone {
  rows: BackfillRow[];
  /** The version time the rows were loaded with (0: the default, the oldest). */
  versionTime: number;
  /** The CLI finished (exit 0): every row MUST have landed; else they MAY have. */
  ok: boolean;
}

/** One sample of the monitor: per partition of the current incarnation, its fence and log end. */
export interface Sample {
  t: number;
  incarnation: number;
  partitions: { partition: number; fence: FenceRow | null; logEnd: bigint }[];
}

export interface StoredRow {
  symbol: string;
  timestampMs: number;
  open: number;
  high: number;
  low: number;
  close: number;
  volume: number;
  vwap: number | null;
  revision: number;
  /** source_time in epoch ms (null: -infinity). */
  sourceTimeMs: number | null;
  /** source_origin, where the table has the column (undefined: it has not). */
  sourceOrigin?: bigint | null;
}

/**
 * bars_1m's rows of the bulk feed's keys, by bulk index g (./bulk.ts `storeBulkRow`): numbers kept
 * exactly (NaN stands for null: vwap, source_time -infinity, source_origin null or absent; a row whose
 * numbers a double cannot hold exactly, or a second row of a key, stays a StoredRow).
 */
export interface StoredBulk {
  /** 1 where the table has g's key. */
  present: Uint8Array;
  open: Float64Array;
  high: Float64Array;
  low: Float64Array;
  close: Float64Array;
  volume: Float64Array;
  vwap: Float64Array;
  revision: Float64Array;
  sourceTimeMs: Float64Array;
  sourceOrigin: Float64Array;
}

/** What the producer knew about a message it sent (by id). */
export interface Sent {
  spec: MessageSpec;
  /** Wall clock (epoch ms) when it was first handed to the producer. */
  sentAtMs: number;
}

export interface DeadLetterSeen {
  id: string | null;
  sourcePartition: number;
  sourceOffset: bigint;
  reason: string;
}

export interface ReplayMeasure {
  /** Rows of bars_1m whose xmin is newer than the replay's start: rows the replay wrote. */
  rowsWritten: number;
  /** n_tup_ins + n_tup_upd of bars_1m (table and chunks) after minus before. */
  tupleWrites: number;
  messagesReplayed: number;
  /** The topic's incarnation the replay read. */
  incarnation: number;
  /**
   * The message each written row now holds, from its source_origin (partition × 2^48 + offset;
   * partition -1: no origin). A replay may write only messages of a skip range that had not landed:
   * an operator's forward `offsets reset` left them behind, and reading the log again from its start
   * lands them (the checker's MustRule says which offsets those are).
   */
  written: { partition: number; offset: number }[];
}

export interface OpDone {
  kind: OpKind | 'quiesce';
  from: number;
  to: number;
  detail: string;
  /** An operation that did not do what an operator would expect of it (a CLI failing, a timeout). */
  failure?: string;
  /** It found nothing to act on (no instance to remove, no such partitions, ...): counted apart. */
  noop?: boolean;
}
