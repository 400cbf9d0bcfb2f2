/**
 * One assigned partition's whole life as one state machine: a pure transition function
 * `step(state, event, context) → { state, effects }`. The classes around it (./pipeline.ts,
 * ./scheduler.ts, ./admission.ts) only carry out the effects it returns and feed it events; none of
 * them writes a partition's state (the `Partition` holder at the bottom is the only writer).
 *
 *                 ┌──────────── doubt (any sign the log is not the one our position belongs to) ─────────────┐
 *                 ▼                                                                                         │
 *   assigned ─▶ loading ──resume point read──▶ verifying ──same message──▶ idle ◀─────────┐                │
 *               │  ▲ ▲                           │  └──message gone (fence trusted)──▶─────┤                │
 *               │  │ └──backoff── read failed    └──another message──▶ replacing ──fence moved──▶ idle     │
 *               │  │                                                       ▲ └──backoff── move failed      │
 *               │  └────────── settling ◀── doubt while a write is in flight (waits for it)               │
 *               └──log ends before the fence──▶ replacing                                                   │
 *   idle ──took──▶ filling ──flush rule fired, slot given──▶ flushing ──ok, empty──▶ idle                    │
 *                     ▲                                         │ └──ok, more buffered──▶ filling           │
 *                     │                                         └──failed──▶ retrying (backoff → ready →    │
 *                     └──────────── took (the refetched batch: due at once) ◀── refetching)                 │
 *   any mode ──revoked──▶ revoked (terminal)                                                                 │
 *   idle, filling, flushing, retrying, verifying ─────────────────────────────────────────────────────────┘
 *
 * - loading: reading where the partition resumes (the database fence, the group's committed offset, the
 *   log's bounds: ../offsets/resume.ts decides from them); fetching paused; a failed read backs off.
 * - verifying: sought to the last message the fence covers; the first message fetched says whether the
 *   fence belongs to this log (it is skipped and fetching goes on at the fence) or the log was replaced.
 * - replacing: the log is not the one the fence was written against (topic re-created, log truncated):
 *   the fence is moved to where the new log is consumed from (its start, or its end with
 *   KAFKA_FROM_BEGINNING=false), logged and counted; fetching paused meanwhile.
 * - settling: a doubt arrived while a write was in flight: the buffer is dropped (it is fetched again),
 *   the write may finish (and commit: its rows are durable), then the resume point is read again.
 * - idle / filling / flushing: taking messages; `filling` holds entries and says why its flush is due
 *   (or has a timer armed for the interval rule); `flushing` has a batch in flight (entries taken
 *   meanwhile wait in the buffer).
 * - retrying: the write of a batch failed. The partition holds nothing (its buffer is dropped: healthy
 *   partitions never wait for room a failing one holds) and is paused; after the backoff it waits for a
 *   retry slot (`ready`), then is sought back to the failed batch's first offset and resumed
 *   (`refetching`); the batch it fetches again is flushed at once, alone.
 * - revoked: the partition went to another member; an in-flight write finishes but commits nothing.
 *
 * Doubts: a fetch below the next expected offset (kafkajs reset its position: an out-of-range answer, a
 * rejoin's refetch from the committed offset), a log end below the position, kafkajs reporting an
 * out-of-range reset or a broker that does not host the topic (deleted: kafkajs may go on at the old
 * positions in a re-created log), the fence moved back (an operator's `offsets reset`), a
 * re-assignment. Each runs the resume check again: nothing is ever skipped silently.
 *
 * Stopping is not a mode: it is the pipeline's lifecycle, given to `step` in the context (nothing is
 * taken, and every filling partition is due).
 */
import { BarSlabs } from '../contract/packedBar';
import type { ClassifiedDbError } from '../store/errors';
import { decideResume, type ResumeFacts } from '../offsets/resume';
import { PartitionBuffer, SourceArena, type EntryStores } from './buffer';
import { flushDecision, retryDelayMs, type FlushPolicy, type FlushReason } from './policy';

/** A batch handed to a write: the offsets it covers, what it holds. */
export interface BatchInfo {
  first: bigint;
  /** The offset after its last entry. */
  next: bigint;
  entries: number;
  bars: number;
}

/** A streak of failures of the current stage: reading or moving the fence, or writing. */
export interface Failure {
  stage: 'resume' | 'write';
  attempts: number;
  error: ClassifiedDbError;
}

export type Mode =
  | { name: 'loading'; phase: 'reading' | 'backoff' }
  | { name: 'verifying'; check: bigint; fingerprint: string; fence: bigint; committed: bigint | null }
  | { name: 'replacing'; phase: 'moving' | 'backoff'; fence: bigint; found: string }
  | { name: 'settling'; batch: BatchInfo; reason: string }
  | { name: 'idle' }
  | { name: 'filling'; due: FlushReason | null; timer: boolean }
  | { name: 'flushing'; batch: BatchInfo }
  /** `since`: when the current phase began (the scheduler gives retry slots to the longest ready first). */
  | { name: 'retrying'; phase: 'backoff' | 'ready' | 'refetching'; from: bigint; since: number }
  | { name: 'revoked' };

export type ModeName = Mode['name'];

export interface PartitionState {
  readonly topic: string;
  readonly partition: number;
  /** Ownership generation (../offsets/committer.ts): a commit carries it; renewed by every resume. */
  readonly generation: number;
  readonly mode: Mode;
  /** The next offset expected from Kafka (null until the resume point is known). */
  readonly next: bigint | null;
  /** The fence as this partition last left it: what its next write expects to find (null: unknown). */
  readonly written: bigint | null;
  /** The last fetch reached the end of the log. */
  readonly caughtUp: boolean;
  readonly failing: Failure | null;
  /** When the partition last showed progress (fetched, wrote, or started taking). */
  readonly aliveAtMs: number;
  /** Reported as stalled (assigned, behind, no progress for longer than stallMs). */
  readonly stalled: boolean;
}

/** What the buffer holds (the executor owns the entries; the machine reads the counts). */
export interface BufferView {
  size: number;
  barCount: number;
  oldestArrivalMs: number | null;
}

export interface MachineSettings extends FlushPolicy {
  /** Most bars one flush takes from a partition. */
  maxBarsPerFlush: number;
  maxRetries: number;
  retryDelayMs: number;
  retryMaxDelayMs: number;
  /** KAFKA_FROM_BEGINNING: where a log without a usable position is consumed from. */
  fromBeginning: boolean;
  /** No progress for this long while behind: stalled. */
  stallMs: number;
  /** How long a retry slot waits for the refetched batch before it is given back. */
  refetchWaitMs: number;
}

export interface Context {
  now: number;
  buffered: BufferView;
  /** The buffers as a whole are full, or this partition holds its share: flush what is there. */
  pressure: boolean;
  /** The pipeline stopped taking messages (graceful drain). */
  stopping: boolean;
  settings: MachineSettings;
  /** Jitter for backoffs (injectable: tests and the simulation seed it). */
  random: () => number;
}

export type Counter =
  | 'resumeSkippedOffsets'
  | 'resumeRereadOffsets'
  | 'logReplaced'
  | 'positionDoubts'
  | 'retentionSkippedOffsets';

export type Effect =
  /** Stop / start fetching this partition (with the other reasons the executor knows). */
  | { kind: 'pause' }
  | { kind: 'resume' }
  | { kind: 'seek'; offset: bigint }
  /** Read the resume facts (fence, committed offset, log bounds) under a new ownership generation. */
  | { kind: 'readResume' }
  /** Move the fence to where the new log is consumed from (its start or its end). */
  | { kind: 'moveFence'; to: 'start' | 'end'; fence: bigint; found: string }
  /** The one timer of the partition: replaced by the next, cancelled on leaving a timed mode. */
  | { kind: 'timer'; ms: number }
  | { kind: 'cancelTimer' }
  /** Take the fetched messages from offset `from` on (at most `max` entries; null: as room allows). */
  | { kind: 'take'; from: bigint; max: number | null }
  /** The partition wants a flush slot (due) or a retry slot (ready). */
  | { kind: 'wantSlot' }
  /** Drop what the buffer holds (it will be fetched again). */
  | { kind: 'dropBuffer' }
  /** Everything below `offset` is durable: commit it. */
  | { kind: 'commit'; offset: bigint }
  | { kind: 'failures'; attempts: number }
  | { kind: 'stalled'; on: boolean; behind: bigint }
  | { kind: 'log'; level: 'debug' | 'info' | 'warn' | 'error'; msg: string; fields: Record<string, unknown> }
  | { kind: 'count'; counter: Counter; n: number; reason?: string };

export type Event =
  /** Kept across a rejoin: kafkajs refetches from the committed offset; check the position again. */
  | { kind: 'reassigned' }
  | { kind: 'resumeRead'; facts: ResumeFacts; generation: number }
  | { kind: 'resumeFailed'; error: ClassifiedDbError }
  /** A fetched batch, before anything is taken: its first offset and that message's fingerprint. */
  | { kind: 'fetched'; first: bigint; firstFingerprint: string; highWatermark: bigint }
  /** After intake: entries taken, the last offset consumed (taken or passed over), the log end. */
  | { kind: 'took'; taken: number; lastSeen: bigint | null; highWatermark: bigint }
  | { kind: 'flushStarted'; batch: BatchInfo }
  | { kind: 'flushed'; batch: BatchInfo; commitOffset: bigint; fenceBefore: bigint; rewound: boolean }
  | { kind: 'flushFailed'; batch: BatchInfo; error: ClassifiedDbError }
  | { kind: 'fenceMoved'; next: bigint }
  | { kind: 'fenceMoveFailed'; error: ClassifiedDbError }
  | { kind: 'timer' }
  /** A retry slot is granted to a `ready` partition. */
  | { kind: 'retrySlot' }
  /** Pressure or the lifecycle changed: apply the flush rule again. */
  | { kind: 'reconsider' }
  | { kind: 'doubt'; reason: string }
  /** The periodic watch: the log end, the fence as stored, whether fetching is held for room. */
  | { kind: 'observed'; highWatermark: bigint | null; fence: bigint | null; heldForRoom: boolean }
  | { kind: 'revoked' };

export interface Step {
  state: PartitionState;
  effects: Effect[];
}

/** A newly assigned partition: paused while its resume point is read. */
export function assigned(topic: string, partition: number, nowMs: number): Step {
  return {
    state: {
      topic,
      partition,
      generation: 0,
      mode: { name: 'loading', phase: 'reading' },
      next: null,
      written: null,
      caughtUp: false,
      failing: null,
      aliveAtMs: nowMs,
      stalled: false,
    },
    effects: [{ kind: 'pause' }, { kind: 'readResume' }],
  };
}

/** The transitions that exist (every other is refused: `step` throws). */
export const TRANSITIONS: Readonly<Record<ModeName, readonly ModeName[]>> = {
  loading: ['loading', 'verifying', 'replacing', 'idle', 'revoked'],
  verifying: ['loading', 'replacing', 'idle', 'revoked'],
  replacing: ['replacing', 'idle', 'revoked'],
  settling: ['loading', 'revoked'],
  idle: ['filling', 'loading', 'revoked'],
  filling: ['filling', 'flushing', 'loading', 'revoked'],
  flushing: ['idle', 'filling', 'retrying', 'settling', 'loading', 'revoked'],
  retrying: ['retrying', 'filling', 'loading', 'revoked'],
  revoked: [],
};

/** The pure transition function; see the header. Events a mode does not expect change nothing. */
export function step(s: PartitionState, e: Event, c: Context): Step {
  const out = transition(s, e, c);
  const from = s.mode.name;
  const to = out.state.mode.name;
  if (out.state.mode !== s.mode && !TRANSITIONS[from].includes(to)) {
    throw new Error(`partition ${s.topic}/${s.partition}: illegal transition ${from} -> ${to} on ${e.kind}`);
  }
  const broken = entryProblem(out.state, out.effects, c.buffered);
  if (broken) {
    throw new Error(`partition ${s.topic}/${s.partition}: cannot enter ${to} on ${e.kind}: ${broken}`);
  }
  const was = fetches(s);
  const now = fetches(out.state);
  if (was !== now) out.effects.push({ kind: now ? 'resume' : 'pause' });
  return out;
}

/**
 * Whether the partition fetches in this state: not while its resume point is read or its fence moved,
 * not while a doubt settles, and, once its writes fail, only to fetch its failed batch again.
 */
export function fetches(s: PartitionState): boolean {
  const m = s.mode;
  switch (m.name) {
    case 'verifying':
      return true;
    case 'idle':
    case 'filling':
    case 'flushing':
      return s.failing === null;
    case 'retrying':
      return m.phase === 'refetching';
    default:
      return false;
  }
}

/** Entry conditions of the modes that depend on the buffer. */
function entryProblem(s: PartitionState, effects: readonly Effect[], b: BufferView): string | null {
  const dropped = effects.some((x) => x.kind === 'dropBuffer');
  const size = dropped ? 0 : b.size;
  switch (s.mode.name) {
    case 'idle':
      return size === 0 ? null : `${size} entries are buffered`;
    case 'filling':
      return size > 0 ? null : 'nothing is buffered';
    case 'flushing':
    case 'settling':
      return s.mode.batch.entries > 0 ? null : 'the batch is empty';
    case 'retrying':
    case 'loading':
    case 'replacing':
      return size === 0 || s.mode.name === 'retrying' ? null : `${size} entries are buffered`;
    default:
      return null;
  }
}

const same = (s: PartitionState): Step => ({ state: s, effects: [] });

function transition(s: PartitionState, e: Event, c: Context): Step {
  const m = s.mode;
  if (m.name === 'revoked') return same(s);
  switch (e.kind) {
    case 'revoked':
      return {
        state: { ...s, mode: { name: 'revoked' }, stalled: false },
        effects: [
          { kind: 'cancelTimer' },
          { kind: 'dropBuffer' },
          ...(s.stalled ? [STALLED_OFF] : []),
          ...(s.failing ? [{ kind: 'failures', attempts: 0 } as const] : []),
        ],
      };
    case 'reassigned':
      return doubt(s, c, 'the group rebalanced (kafkajs fetches again from the committed offset)', false);
    case 'doubt':
      return doubt(s, c, e.reason, true);
    case 'resumeRead':
      return m.name === 'loading' && m.phase === 'reading'
        ? resumeRead(s, e.facts, e.generation, c)
        : same(s);
    case 'resumeFailed':
      return m.name === 'loading' && m.phase === 'reading'
        ? backoff(s, { name: 'loading', phase: 'backoff' }, 'resume', e.error, c)
        : same(s);
    case 'fenceMoved':
      if (m.name !== 'replacing' || m.phase !== 'moving') return same(s);
      return {
        state: taking(s, e.next, e.next, c, { failing: null }),
        effects: [
          ...(s.failing ? [{ kind: 'failures', attempts: 0 } as const] : []),
          {
            kind: 'log',
            level: 'warn',
            msg: `the partition's log is not the one the fence was written against (topic re-created or log truncated): consuming it from ${c.settings.fromBeginning ? 'its start' : 'its end (KAFKA_FROM_BEGINNING=false)'}, not from the old fence`,
            fields: {
              topic: s.topic,
              partition: s.partition,
              fence: m.fence.toString(),
              found: m.found,
              resumeAt: e.next.toString(),
            },
          },
          { kind: 'seek', offset: e.next },
          { kind: 'commit', offset: e.next },
        ],
      };
    case 'fenceMoveFailed':
      return m.name === 'replacing' && m.phase === 'moving'
        ? backoff(s, { ...m, phase: 'backoff' }, 'resume', e.error, c)
        : same(s);
    case 'fetched':
      return fetched(s, e, c);
    case 'took':
      return took(s, e, c);
    case 'timer':
      return timer(s, c);
    case 'retrySlot':
      if (m.name !== 'retrying' || m.phase !== 'ready') return same(s);
      return {
        state: { ...s, mode: { ...m, phase: 'refetching', since: c.now }, next: m.from, caughtUp: false },
        effects: [
          { kind: 'seek', offset: m.from },
          { kind: 'timer', ms: c.settings.refetchWaitMs },
        ],
      };
    case 'reconsider':
      return m.name === 'filling' ? consider(s, m, c) : same(s);
    case 'flushStarted':
      if (m.name !== 'filling')
        throw new Error(`partition ${s.topic}/${s.partition}: flush started in ${m.name}`);
      return {
        state: { ...s, mode: { name: 'flushing', batch: e.batch } },
        effects: m.timer ? [{ kind: 'cancelTimer' }] : [],
      };
    case 'flushed':
      return flushed(s, e, c);
    case 'flushFailed':
      return flushFailed(s, e, c);
    case 'observed':
      return observed(s, e, c);
  }
}

/** Back to reading the resume point, whatever the partition was doing (a write in flight first ends). */
function doubt(s: PartitionState, c: Context, reason: string, count: boolean): Step {
  const m = s.mode;
  const fields = {
    topic: s.topic,
    partition: s.partition,
    mode: m.name,
    next: s.next?.toString() ?? null,
    reason,
  };
  const said: Effect[] = count
    ? [
        {
          kind: 'log',
          level: 'warn',
          msg: 'position in doubt; checking where the partition resumes',
          fields,
        },
        { kind: 'count', counter: 'positionDoubts', n: 1, reason: doubtLabel(reason) },
      ]
    : [{ kind: 'log', level: 'debug', msg: 'checking where the partition resumes', fields }];
  if (m.name === 'loading' || m.name === 'replacing' || m.name === 'settling') return same(s);
  if (m.name === 'flushing') {
    return {
      state: { ...s, mode: { name: 'settling', batch: m.batch, reason } },
      effects: [{ kind: 'dropBuffer' }, ...said],
    };
  }
  return reload(s, c, said);
}

/** Enters loading (reading): buffer dropped, paused, timer cancelled, resume facts read. */
function reload(s: PartitionState, c: Context, before: Effect[] = []): Step {
  return {
    state: {
      ...s,
      mode: { name: 'loading', phase: 'reading' },
      next: null,
      written: null,
      failing: null,
      caughtUp: false,
      aliveAtMs: c.now,
    },
    effects: [
      ...before,
      { kind: 'cancelTimer' },
      { kind: 'dropBuffer' },
      ...(s.failing ? [{ kind: 'failures', attempts: 0 } as const] : []),
      { kind: 'readResume' },
    ],
  };
}

/** Short, bounded label of a doubt's reason for the counter. */
function doubtLabel(reason: string): string {
  if (reason.startsWith('offset out of range')) return 'offset_out_of_range';
  if (reason.startsWith('fetched below')) return 'offsets_backwards';
  if (reason.startsWith('the log ends below')) return 'log_end_below_position';
  if (reason.startsWith('the fence moved back')) return 'fence_moved_back';
  if (reason.startsWith('a broker does not host the topic')) return 'topic_missing';
  return 'other';
}

function resumeRead(s: PartitionState, facts: ResumeFacts, generation: number, c: Context): Step {
  const d = decideResume(facts, c.settings.fromBeginning);
  const base = { ...s, generation, failing: null };
  const cleared: Effect[] = [
    ...(s.failing ? [{ kind: 'failures', attempts: 0 } as const] : []),
    {
      kind: 'log',
      level: 'debug',
      msg: 'resume point read',
      fields: {
        topic: s.topic,
        partition: s.partition,
        decision: d.kind,
        at: d.kind === 'at' ? d.next.toString() : d.kind === 'verify' ? d.check.toString() : null,
        fence: facts.fence?.next.toString() ?? null,
        committed: facts.committed?.toString() ?? null,
        logStart: facts.log.low.toString(),
        logEnd: facts.log.high.toString(),
      },
    },
  ];
  const where = { topic: s.topic, partition: s.partition };
  switch (d.kind) {
    case 'replaced':
      return replacing(base, d.fence, d.why, c, cleared);
    case 'verify':
      return {
        state: {
          ...base,
          mode: {
            name: 'verifying',
            check: d.check,
            fingerprint: d.fingerprint,
            fence: d.fence,
            committed: d.committed,
          },
          next: d.check,
          caughtUp: false,
          aliveAtMs: c.now,
        },
        effects: [...cleared, { kind: 'seek', offset: d.check }],
      };
    case 'at': {
      const effects: Effect[] = [...cleared, { kind: 'seek', offset: d.next }];
      if (d.retentionSkipped > 0n) {
        effects.push(
          { kind: 'count', counter: 'retentionSkippedOffsets', n: Number(d.retentionSkipped) },
          {
            kind: 'log',
            level: 'warn',
            msg: 'offsets below the log start were deleted by retention before they were written; consuming from the log start',
            fields: {
              ...where,
              position: (d.next - d.retentionSkipped).toString(),
              logStart: d.next.toString(),
            },
          },
        );
      }
      if (d.fence !== null) effects.push(...fenceAgainstCommitted(s, d.fence, d.committed));
      return { state: taking(base, d.next, d.fence, c, {}), effects };
    }
  }
}

/** The log is not the one the fence was written against: counted, paused, the fence moved. */
function replacing(s: PartitionState, fence: bigint, found: string, c: Context, before: Effect[]): Step {
  return {
    state: { ...s, mode: { name: 'replacing', phase: 'moving', fence, found }, next: null, written: null },
    effects: [...before, { kind: 'count', counter: 'logReplaced', n: 1 }, moveFence(fence, found, c)],
  };
}

const moveFence = (fence: bigint, found: string, c: Context): Effect => ({
  kind: 'moveFence',
  to: c.settings.fromBeginning ? 'start' : 'end',
  fence,
  found,
});

/**
 * The fence holds: a committed offset behind it is moved up to it (the offsets between were written:
 * a commit lost in a crash, or another instance); one ahead of it is overruled (the fence wins: the
 * offsets between are read again; `bar-writer offsets reset` is how an operator skips). Both said once
 * with the count, and counted.
 */
function fenceAgainstCommitted(s: PartitionState, fence: bigint, committed: bigint | null): Effect[] {
  const fields = {
    topic: s.topic,
    partition: s.partition,
    fence: fence.toString(),
    committed: committed?.toString() ?? null,
  };
  if (committed === null || committed < fence) {
    const skipped = committed === null ? null : fence - committed;
    return [
      { kind: 'commit', offset: fence },
      ...(skipped !== null
        ? [{ kind: 'count', counter: 'resumeSkippedOffsets', n: Number(skipped) } as const]
        : []),
      {
        kind: 'log',
        level: 'info',
        msg: 'resuming from the database fence, ahead of the committed offset: the offsets between were written already (a commit lost in a crash, or another instance)',
        fields: { ...fields, skipped: skipped?.toString() ?? null },
      },
    ];
  }
  if (committed > fence) {
    return [
      { kind: 'count', counter: 'resumeRereadOffsets', n: Number(committed - fence) },
      {
        kind: 'log',
        level: 'warn',
        msg: 'the committed offset is ahead of the database fence (another deployment sharing the group id, or an offsets reset made with Kafka tools alone): the fence wins, the offsets between are read again; `bar-writer offsets reset` moves both',
        fields: { ...fields, reread: (committed - fence).toString() },
      },
    ];
  }
  return [];
}

/** Taking messages from `next` on; nothing buffered yet. */
function taking(
  s: PartitionState,
  next: bigint,
  written: bigint | null,
  c: Context,
  extra: Partial<PartitionState>,
): PartitionState {
  return { ...s, ...extra, mode: { name: 'idle' }, next, written, caughtUp: false, aliveAtMs: c.now };
}

function fetched(s: PartitionState, e: Extract<Event, { kind: 'fetched' }>, c: Context): Step {
  const m = s.mode;
  if (c.stopping) return same(s);
  const alive = { ...s, aliveAtMs: c.now, stalled: false };
  const unstall: Effect[] = s.stalled ? [STALLED_OFF] : [];
  if (m.name === 'verifying') {
    const where = { topic: s.topic, partition: s.partition };
    if (e.first === m.check) {
      if (e.firstFingerprint !== m.fingerprint) {
        return replacing(
          alive,
          m.fence,
          `${e.firstFingerprint} (the fence says ${m.fingerprint})`,
          c,
          unstall,
        );
      }
      return {
        state: taking(alive, m.fence, m.fence, c, {}),
        effects: [...unstall, ...fenceAgainstCommitted(s, m.fence, m.committed), take(m.fence, null)],
      };
    }
    if (e.first > m.check) {
      return {
        state: taking(alive, m.fence, m.fence, c, {}),
        effects: [
          ...unstall,
          {
            kind: 'log',
            level: 'info',
            msg: "the fence's last message is no longer in the log (retention or compaction); the fence is trusted",
            fields: { ...where, expected: m.check.toString(), first: e.first.toString() },
          },
          ...fenceAgainstCommitted(s, m.fence, m.committed),
          take(m.fence, null),
        ],
      };
    }
    return doubt(alive, c, `fetched below the checked offset ${m.check}: ${e.first}`, true);
  }
  const takes =
    m.name === 'idle' ||
    m.name === 'filling' ||
    m.name === 'flushing' ||
    (m.name === 'retrying' && m.phase === 'refetching');
  if (!takes || s.next === null) return same(s);
  if (e.first < s.next) {
    return doubt(alive, c, `fetched below the next expected offset ${s.next}: ${e.first}`, true);
  }
  if (e.highWatermark < s.next) {
    return doubt(
      alive,
      c,
      `the log ends below the position: log end ${e.highWatermark}, next ${s.next}`,
      true,
    );
  }
  const max = m.name === 'retrying' ? c.settings.maxBarsPerFlush : null;
  return { state: alive, effects: [...unstall, take(s.next, max)] };
}

const take = (from: bigint, max: number | null): Effect => ({ kind: 'take', from, max });

function took(s: PartitionState, e: Extract<Event, { kind: 'took' }>, c: Context): Step {
  const m = s.mode;
  if (m.name !== 'idle' && m.name !== 'filling' && m.name !== 'flushing' && m.name !== 'retrying') {
    return same(s);
  }
  let next = s.next;
  let caughtUp = s.caughtUp;
  if (e.lastSeen !== null) {
    next = e.lastSeen + 1n;
    caughtUp = next >= e.highWatermark;
  }
  const s2 = { ...s, next, caughtUp };
  if (m.name === 'retrying') {
    if (m.phase !== 'refetching' || e.taken === 0 || c.buffered.size === 0) return same(s2);
    // The refetched batch: due at once; the scheduler writes it alone.
    return {
      state: { ...s2, mode: { name: 'filling', due: 'retry', timer: false } },
      effects: [{ kind: 'cancelTimer' }, { kind: 'wantSlot' }],
    };
  }
  if (m.name === 'flushing') return same(s2);
  if (m.name === 'idle') {
    if (c.buffered.size === 0) return same(s2);
    return consider(
      { ...s2, mode: { name: 'filling', due: null, timer: false } },
      { name: 'filling', due: null, timer: false },
      c,
    );
  }
  return consider(s2, m, c);
}

/** The flush rule (./policy.ts) on a filling partition: due now, or a timer for when it will be. */
function consider(s: PartitionState, m: Extract<Mode, { name: 'filling' }>, c: Context): Step {
  if (m.due !== null) return same(s);
  const d = flushDecision(
    c.settings,
    {
      barCount: c.buffered.barCount,
      entryCount: c.buffered.size,
      oldestArrivalMs: c.buffered.oldestArrivalMs,
      caughtUp: s.caughtUp,
      pressure: c.pressure,
      draining: c.stopping,
    },
    c.now,
  );
  if (d.reason !== null) {
    return {
      state: { ...s, mode: { name: 'filling', due: d.reason, timer: false } },
      effects: [...(m.timer ? [{ kind: 'cancelTimer' } as const] : []), { kind: 'wantSlot' }],
    };
  }
  if (d.nextCheckMs !== null && !m.timer) {
    return {
      state: { ...s, mode: { name: 'filling', due: null, timer: true } },
      effects: [{ kind: 'timer', ms: Math.max(0, d.nextCheckMs - c.now) }],
    };
  }
  return same(s);
}

function timer(s: PartitionState, c: Context): Step {
  const m = s.mode;
  switch (m.name) {
    case 'filling':
      return m.timer ? consider({ ...s, mode: { ...m, timer: false } }, { ...m, timer: false }, c) : same(s);
    case 'loading':
      return m.phase === 'backoff'
        ? { state: { ...s, mode: { name: 'loading', phase: 'reading' } }, effects: [{ kind: 'readResume' }] }
        : same(s);
    case 'replacing':
      return m.phase === 'backoff'
        ? {
            state: { ...s, mode: { ...m, phase: 'moving' } },
            effects: [moveFence(m.fence, m.found, c)],
          }
        : same(s);
    case 'retrying':
      if (m.phase === 'backoff' && !c.stopping) {
        return {
          state: { ...s, mode: { ...m, phase: 'ready', since: c.now } },
          effects: [{ kind: 'wantSlot' }],
        };
      }
      if (m.phase === 'refetching') {
        // Nothing came back in time: the slot goes back (its turn comes again).
        return {
          state: { ...s, mode: { ...m, phase: 'ready', since: c.now } },
          effects: [{ kind: 'dropBuffer' }, { kind: 'wantSlot' }],
        };
      }
      return same(s);
    default:
      return same(s);
  }
}

function flushed(s: PartitionState, e: Extract<Event, { kind: 'flushed' }>, c: Context): Step {
  const m = s.mode;
  if (m.name === 'settling') {
    return reload(s, c, e.rewound ? [] : [{ kind: 'commit', offset: e.commitOffset }]);
  }
  if (m.name !== 'flushing') return same(s);
  if (e.rewound) {
    return doubt(
      { ...s, mode: { name: 'idle' } },
      c,
      `the fence moved back: found ${e.fenceBefore}, expected at least ${s.written ?? 'unknown'} (an operator's offsets reset)`,
      true,
    );
  }
  const effects: Effect[] = [{ kind: 'commit', offset: e.commitOffset }];
  if (s.failing) {
    effects.push({ kind: 'failures', attempts: 0 });
    if (s.failing.attempts > c.settings.maxRetries) {
      effects.push({
        kind: 'log',
        level: 'info',
        msg: 'write recovered',
        fields: { topic: s.topic, partition: s.partition, attempts: s.failing.attempts + 1 },
      });
    }
  }
  const s2: PartitionState = {
    ...s,
    written: e.commitOffset,
    failing: null,
    aliveAtMs: c.now,
    stalled: false,
  };
  if (s.stalled) effects.push(STALLED_OFF);
  if (c.buffered.size === 0) return { state: { ...s2, mode: { name: 'idle' } }, effects };
  const filling = { name: 'filling', due: null, timer: false } as const;
  const next = consider({ ...s2, mode: filling }, filling, c);
  return { state: next.state, effects: [...effects, ...next.effects] };
}

function flushFailed(s: PartitionState, e: Extract<Event, { kind: 'flushFailed' }>, c: Context): Step {
  const m = s.mode;
  if (m.name === 'settling') return reload(s, c);
  if (m.name !== 'flushing') return same(s);
  const attempts = (s.failing?.stage === 'write' ? s.failing.attempts : 0) + 1;
  const delay = retryDelayMs(attempts, c.settings.retryDelayMs, c.settings.retryMaxDelayMs, c.random);
  const fields = {
    topic: s.topic,
    partition: s.partition,
    attempt: attempts,
    class: e.error.class,
    code: e.error.code,
    error: e.error.message,
    retryInMs: delay,
    firstOffset: e.batch.first.toString(),
    nextOffset: e.batch.next.toString(),
  };
  const effects: Effect[] = [
    { kind: 'dropBuffer' },
    { kind: 'failures', attempts },
    { kind: 'timer', ms: delay },
  ];
  if (attempts === c.settings.maxRetries + 1) {
    effects.push({
      kind: 'log',
      level: 'error',
      msg: 'write keeps failing; partition not ready, retrying at the cap (its messages are fetched again for each retry)',
      fields,
    });
  } else if (attempts <= c.settings.maxRetries) {
    effects.push({ kind: 'log', level: 'warn', msg: 'write failed; retrying', fields });
  }
  return {
    state: {
      ...s,
      mode: { name: 'retrying', phase: 'backoff', from: e.batch.first, since: c.now },
      next: e.batch.first,
      failing: { stage: 'write', attempts, error: e.error },
    },
    effects,
  };
}

/** A failure of reading or moving the fence: backoff, logged first and past maxRetries. */
function backoff(
  s: PartitionState,
  mode: Extract<Mode, { name: 'loading' | 'replacing' }>,
  stage: Failure['stage'],
  error: ClassifiedDbError,
  c: Context,
): Step {
  const attempts = (s.failing?.stage === stage ? s.failing.attempts : 0) + 1;
  const delay = retryDelayMs(attempts, c.settings.retryDelayMs, c.settings.retryMaxDelayMs, c.random);
  const effects: Effect[] = [
    { kind: 'timer', ms: delay },
    { kind: 'failures', attempts },
  ];
  if (attempts === 1 || attempts === c.settings.maxRetries + 1) {
    effects.push({
      kind: 'log',
      level: 'warn',
      msg:
        mode.name === 'loading'
          ? 'cannot read where the partition resumes (the offset fence); it stays paused, retrying'
          : 'cannot move the offset fence to the new log; the partition stays paused, retrying',
      fields: {
        topic: s.topic,
        partition: s.partition,
        attempt: attempts,
        error: error.message,
        retryInMs: delay,
      },
    });
  }
  return {
    state: {
      ...s,
      mode,
      failing: {
        stage,
        attempts,
        error: { ...error, message: `cannot read or move the offset fence: ${error.message}` },
      },
    },
    effects,
  };
}

function observed(s: PartitionState, e: Extract<Event, { kind: 'observed' }>, c: Context): Step {
  const m = s.mode;
  const quiet = m.name === 'idle' || m.name === 'filling';
  if (quiet && s.next !== null && e.highWatermark !== null && e.highWatermark < s.next) {
    return doubt(s, c, `the log ends below the position: log end ${e.highWatermark}, next ${s.next}`, true);
  }
  if (quiet && s.written !== null && e.fence !== null && e.fence < s.written) {
    return doubt(
      s,
      c,
      `the fence moved back: found ${e.fence}, last written ${s.written} (an operator's offsets reset)`,
      true,
    );
  }
  const watched = m.name === 'idle' || m.name === 'filling' || m.name === 'verifying';
  const behind =
    e.highWatermark !== null && s.next !== null && e.highWatermark > s.next ? e.highWatermark - s.next : 0n;
  const stalled = watched && !e.heldForRoom && behind > 0n && c.now - s.aliveAtMs > c.settings.stallMs;
  if (stalled === s.stalled) return same(s);
  if (!stalled) return { state: { ...s, stalled: false }, effects: [STALLED_OFF] };
  return {
    state: { ...s, stalled: true },
    effects: [
      { kind: 'stalled', on: true, behind },
      {
        kind: 'log',
        level: 'error',
        msg: 'partition stalled: behind its log end with no progress; the consumer rejoins to recover',
        fields: {
          topic: s.topic,
          partition: s.partition,
          mode: m.name,
          next: s.next?.toString() ?? null,
          logEnd: e.highWatermark?.toString() ?? null,
          quietMs: c.now - s.aliveAtMs,
        },
      },
    ],
  };
}

const STALLED_OFF: Effect = { kind: 'stalled', on: false, behind: 0n };

/**
 * The holder of one partition's state and storage. `apply` is the only writer of the state; the
 * buffer, slabs and arena are the storage the executors fill and empty as the effects say.
 */
export class Partition implements EntryStores {
  private current: PartitionState;
  readonly buffer = new PartitionBuffer();
  /** Where the buffered bars' numbers are packed (see BarSlabs). */
  readonly bars = new BarSlabs();
  /** Where the buffered bars' value bytes are copied (see SourceArena). */
  readonly sources = new SourceArena();

  constructor(
    /** tpKey(topic, partition): how the pipeline and admission know it. */
    readonly key: string,
    initial: PartitionState,
  ) {
    this.current = initial;
  }

  get state(): PartitionState {
    return this.current;
  }

  get topic(): string {
    return this.current.topic;
  }

  get partition(): number {
    return this.current.partition;
  }

  get mode(): Mode {
    return this.current.mode;
  }

  /** What the buffer holds, as the machine sees it. */
  view(): BufferView {
    return {
      size: this.buffer.size,
      barCount: this.buffer.barCount,
      oldestArrivalMs: this.buffer.oldestArrivalMs,
    };
  }

  /** Steps the machine with `event`; returns the effects to carry out, in order. */
  apply(event: Event, context: Omit<Context, 'buffered'>): Effect[] {
    const r = step(this.current, event, { ...context, buffered: this.view() });
    this.current = r.state;
    return r.effects;
  }
}
