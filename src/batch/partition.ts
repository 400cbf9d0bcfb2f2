/**
 * One assigned partition in the batching stage: its buffer, where Kafka is in it, and its mode. The
 * mode is a discriminated union: each mode carries exactly the data it needs, and every change goes
 * through `to()`, which checks the transition and the new mode's entry condition.
 *
 *   loading ──resume point known──▶ idle ──entries taken──▶ filling ──slot free, rule fired──▶ flushing
 *      │  ▲                          ▲                         ▲                                 │ │
 *      │  └─log replaced─┐           └──────── ok, empty ──────┴──────── ok, more buffered ──────┘ │
 *      └─fence to check─▶ verifying ─fence confirmed─▶ idle                                        │ error
 *                                    flushing ◀──backoff passed, slot free── retrying ◀────────────┘
 *
 *   filling ──nothing to take──▶ idle;   any mode ──revoked──▶ revoked (terminal)
 *
 * - loading: the resume point (../offsets/resume.ts) is not known yet; fetching is paused.
 * - verifying: sought to the last message the fence covers; the first message fetched says whether the
 *   fence belongs to this log (then it is skipped) or the log was replaced (back to loading while the
 *   fence is moved).
 * - idle: nothing buffered, nothing in flight.
 * - filling: entries buffered; `due` says why the flush rule fired (the partition waits for a flush
 *   slot), else `timer` wakes it when the interval rule will fire.
 * - flushing: `batch` is being written (entries taken meanwhile wait in the buffer); `attempts` counts
 *   the failed tries of this batch so far.
 * - retrying: the write of `batch` failed; `ready` once the backoff has passed (it then waits for a slot).
 * - revoked: the partition went to another member; its buffer is dropped, an in-flight write finishes
 *   but commits nothing (the new owner replays from the committed offset).
 */
import { BarSlabs } from '../contract/packedBar';
import type { ResumePoint } from '../offsets/resume';
import type { ClassifiedDbError } from '../store/errors';
import { PartitionBuffer, SourceArena, type Batch, type EntryStores } from './buffer';
import type { FlushReason } from './policy';

export type Mode =
  | { name: 'loading'; attempts: number; lastError: ClassifiedDbError | null }
  | { name: 'verifying'; point: Extract<ResumePoint, { kind: 'verify' }> }
  | { name: 'idle' }
  | { name: 'filling'; due: FlushReason | null; timer: NodeJS.Timeout | null }
  | { name: 'flushing'; batch: Batch; attempts: number; lastError: ClassifiedDbError | null }
  | {
      name: 'retrying';
      batch: Batch;
      attempts: number;
      lastError: ClassifiedDbError;
      ready: boolean;
      timer: NodeJS.Timeout | null;
    }
  | { name: 'revoked' };

export type ModeName = Mode['name'];
export type ModeOf<N extends ModeName> = Extract<Mode, { name: N }>;

const TRANSITIONS: Record<ModeName, readonly ModeName[]> = {
  loading: ['verifying', 'idle', 'revoked'],
  verifying: ['idle', 'loading', 'revoked'],
  idle: ['filling', 'revoked'],
  filling: ['flushing', 'idle', 'revoked'],
  flushing: ['idle', 'filling', 'retrying', 'revoked'],
  retrying: ['flushing', 'revoked'],
  revoked: [],
};

export class Partition implements EntryStores {
  mode: Mode = { name: 'loading', attempts: 0, lastError: null };
  readonly buffer = new PartitionBuffer();
  /** Where the buffered bars' numbers are packed (see BarSlabs). */
  readonly bars = new BarSlabs();
  /** Where the buffered bars' value bytes are copied (see SourceArena). */
  readonly sources = new SourceArena();
  /** Next offset expected from Kafka; lower offsets are duplicates of what we hold (after a rejoin). */
  nextExpected: bigint | null = null;
  /** The last fetch reached the end of the log. */
  caughtUp = false;

  constructor(
    /** tpKey(topic, partition): how the pipeline and admission know it. */
    readonly key: string,
    readonly topic: string,
    readonly partition: number,
    /** Ownership generation (offsets/committer.ts): a commit carries it. */
    readonly generation: number,
  ) {}

  get name(): ModeName {
    return this.mode.name;
  }

  /** Moves to `next`, checking the transition and its entry condition; cancels the old mode's timer. */
  to<K extends ModeName>(next: ModeOf<K>): ModeOf<K> {
    const from = this.mode.name;
    if (from !== next.name && !TRANSITIONS[from].includes(next.name)) {
      throw new Error(
        `partition ${this.topic}/${this.partition}: illegal transition ${from} -> ${next.name}`,
      );
    }
    const broken = entryProblem(next, this.buffer.size);
    if (broken)
      throw new Error(`partition ${this.topic}/${this.partition}: cannot enter ${next.name}: ${broken}`);
    if ((this.mode.name === 'filling' || this.mode.name === 'retrying') && this.mode.timer) {
      clearTimeout(this.mode.timer);
    }
    this.mode = next;
    return next;
  }

  /** Failed attempts of the current batch (or of reading the resume point). */
  get attempts(): number {
    const m = this.mode;
    return m.name === 'loading' || m.name === 'flushing' || m.name === 'retrying' ? m.attempts : 0;
  }

  get lastError(): ClassifiedDbError | null {
    const m = this.mode;
    return m.name === 'loading' || m.name === 'flushing' || m.name === 'retrying' ? m.lastError : null;
  }

  /** The batch held for writing (in flight or waiting to be retried), if any. */
  get held(): Batch | null {
    const m = this.mode;
    return m.name === 'flushing' || m.name === 'retrying' ? m.batch : null;
  }
}

function entryProblem(next: Mode, buffered: number): string | null {
  switch (next.name) {
    case 'idle':
      return buffered === 0 ? null : `${buffered} entries are buffered`;
    case 'filling':
      return buffered > 0 ? null : 'nothing is buffered';
    case 'flushing':
    case 'retrying':
      return next.batch.entries.length > 0 ? null : 'the batch is empty';
    default:
      return null;
  }
}
