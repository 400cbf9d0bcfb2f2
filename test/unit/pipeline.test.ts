/**
 * The batching stage's flush scheduling, without Kafka or a database: partitions that hold entries
 * ride along in one flush (group commit), at most `concurrency` flushes run at once, a partition is
 * never in two flushes, failed jobs are retried alone or with others, and offsets are committed only
 * for the jobs that succeeded.
 */
import { Registry } from 'prom-client';
import type { FlushJob, FlushOutcome } from '../../src/batch/flush';
import { Pipeline, type PipelineSettings } from '../../src/batch/pipeline';
import type { InboundBatch, OffsetToCommit } from '../../src/consumer/port';
import { createLogger } from '../../src/observe/logger';
import { createMetrics } from '../../src/observe/metrics';
import { OffsetCommitter } from '../../src/offsets/committer';
import { ResumePoints, type ResumePort } from '../../src/offsets/resume';

const TOPIC = 'bars.1m';
const T0 = Date.UTC(2026, 10, 24, 14, 31);

const SETTINGS: PipelineSettings = {
  batchSize: 3,
  intervalMs: 60_000,
  flushOnCaughtUp: false,
  concurrency: 1,
  queueSize: 1000,
  queueBytes: 64 * 1024 * 1024,
  maxRetries: 3,
  retryDelayMs: 1,
  retryMaxDelayMs: 1,
  roomWaitMs: 50,
  partitionFloor: 1000, // no partition share below the whole buffers (shares: their own tests)
};

function message(offset: number, minute: number) {
  const bar = {
    symbol: 'AAA',
    timestamp: new Date(T0 + minute * 60_000).toISOString(),
    open: 1,
    high: 2,
    low: 0.5,
    close: 1.5,
    volume: 10,
  };
  return {
    offset: String(offset),
    key: null,
    value: Buffer.from(JSON.stringify(bar)),
    headers: {},
    timestamp: String(T0),
  };
}

/** `count` messages of a partition from offset `from`, the log end far ahead (not caught up). */
function batch(partition: number, from: number, count: number): InboundBatch {
  return {
    topic: TOPIC,
    partition,
    highWatermark: '1000000',
    messages: Array.from({ length: count }, (_, i) => message(from + i, from + i)),
  };
}

interface Call {
  jobs: { partition: number; offsets: string }[];
  finish(outcomes?: (job: FlushJob) => FlushOutcome): void;
}

const ok = (job: FlushJob): FlushOutcome => ({
  ok: true,
  result: {
    written: job.batch.barCount,
    skippedFenced: 0,
    writtenCompressed: 0,
    deadLettered: 0,
    commitOffset: job.batch.nextOffset,
  },
});

/** Lets setImmediate callbacks (the pipeline's pump) and promise continuations run. */
const settle = async () => {
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
};

/** Settles until `done()` holds (commits go through the committer's own promise chain). */
async function until(done: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !done(); i++) await new Promise((r) => setTimeout(r, 2));
}

async function setup(settings: Partial<PipelineSettings> = {}, partitions = [0, 1, 2]) {
  const calls: Call[] = [];
  const commits: string[] = [];
  const consumer = {
    pause: jest.fn(),
    resume: jest.fn(),
    seek: jest.fn(),
    committedOffsets: jest.fn(async () => new Map<number, bigint>()),
    logOffsets: jest.fn(async () => new Map()),
    commit: jest.fn(async (offsets: OffsetToCommit[]) => {
      for (const o of offsets) commits.push(`${o.partition}:${o.offset}`);
    }),
  };
  const logger = createLogger('silent');
  const metrics = createMetrics(new Registry(), false);
  const committer = new OffsetCommitter(consumer, logger, metrics);
  const pipeline = new Pipeline(
    { ...SETTINGS, ...settings },
    {
      flush: (jobs) =>
        new Promise<FlushOutcome[]>((resolve) => {
          calls.push({
            jobs: jobs.map((j) => ({
              partition: j.partition,
              offsets: j.batch.entries.map((e) => e.offset).join(','),
            })),
            finish: (outcome = ok) => resolve(jobs.map(outcome)),
          });
        }),
      classify: (err) => ({ class: 'transient', code: null, message: String(err) }),
      consumer,
      resume: new ResumePoints({
        fences: async () => new Map(),
        resetFence: async () => undefined,
        consumer,
        committer,
        fromBeginning: true,
        metrics,
        logger,
      }),
      committer,
      metrics,
      logger,
    },
  );
  pipeline.handleAssignment(partitions.map((partition) => ({ topic: TOPIC, partition })));
  await settle(); // fences loaded
  return { pipeline, calls, commits, metrics, consumer };
}

describe('pipeline flush scheduling', () => {
  test('a due partition takes the others that hold entries along, in one flush', async () => {
    const { pipeline, calls, commits } = await setup();
    pipeline.handleBatch(batch(1, 0, 2)); // below the batch size: not due
    pipeline.handleBatch(batch(2, 0, 1));
    await settle();
    expect(calls).toHaveLength(0);
    pipeline.handleBatch(batch(0, 10, 3)); // due (size)
    await settle();
    expect(calls.map((c) => c.jobs)).toEqual([
      [
        { partition: 0, offsets: '10,11,12' },
        { partition: 1, offsets: '0,1' },
        { partition: 2, offsets: '0' },
      ],
    ]);
    calls[0]!.finish();
    await settle();
    await until(() => commits.length === 3);
    expect(commits.sort()).toEqual(['0:13', '1:2', '2:1']);
    expect(pipeline.status().depth).toBe(0);
  });

  test('while the only slot is busy, due partitions gather and go together; each takes up to 3 batches', async () => {
    const { pipeline, calls } = await setup({ concurrency: 1 });
    pipeline.handleBatch(batch(0, 0, 3));
    await settle();
    expect(calls).toHaveLength(1);
    // Partition 0 is being written: its new entries wait; 1 and 2 become due meanwhile.
    pipeline.handleBatch(batch(0, 3, 4));
    pipeline.handleBatch(batch(1, 0, 3));
    pipeline.handleBatch(batch(2, 0, 11));
    await settle();
    expect(calls).toHaveLength(1);
    calls[0]!.finish();
    await settle();
    expect(calls.map((c) => c.jobs)).toHaveLength(2);
    expect(calls[1]!.jobs).toEqual([
      { partition: 0, offsets: '3,4,5,6' },
      { partition: 1, offsets: '0,1,2' },
      { partition: 2, offsets: '0,1,2,3,4,5,6,7,8' }, // 3 batches of 3
    ]);
    calls[1]!.finish();
    await settle();
    // What is left (2: offsets 9, 10) is below the batch size, not due: it waits.
    expect(calls).toHaveLength(2);
    expect(pipeline.status().depth).toBe(2);
  });

  test('two slots: the second flush takes only partitions not already being written', async () => {
    const { pipeline, calls } = await setup({ concurrency: 2 });
    pipeline.handleBatch(batch(0, 0, 3));
    await settle();
    pipeline.handleBatch(batch(1, 0, 3));
    pipeline.handleBatch(batch(0, 3, 3));
    await settle();
    expect(calls.map((c) => c.jobs.map((j) => j.partition))).toEqual([[0], [1]]);
    calls[1]!.finish();
    calls[0]!.finish();
    await settle();
    expect(calls[2]!.jobs).toEqual([{ partition: 0, offsets: '3,4,5' }]);
    expect(calls).toHaveLength(3);
  });

  test('a failed job is retried with its own batch; only the jobs that succeeded are committed', async () => {
    const { pipeline, calls, commits, metrics } = await setup();
    pipeline.handleBatch(batch(1, 0, 2));
    pipeline.handleBatch(batch(0, 0, 3));
    await settle();
    calls[0]!.finish((job) => (job.partition === 1 ? { ok: false, error: new Error('boom') } : ok(job)));
    await settle();
    await until(() => commits.length === 1);
    expect(commits).toEqual(['0:3']);
    expect(pipeline.status().depth).toBe(2); // partition 1's batch, kept for the retry
    // More for partition 0 arrives meanwhile; the retry goes alone or with it, whichever comes first.
    pipeline.handleBatch(batch(0, 3, 3));
    await until(() => {
      for (const c of calls.slice(1)) c.finish();
      return commits.length === 3;
    });
    const later = calls.slice(1).flatMap((c) => c.jobs);
    expect(later).toHaveLength(2);
    expect(later).toContainEqual({ partition: 1, offsets: '0,1' });
    expect(later).toContainEqual({ partition: 0, offsets: '3,4,5' });
    expect(commits.sort()).toEqual(['0:3', '0:6', '1:2']);
    expect(pipeline.status().depth).toBe(0);
    expect((await metrics.writeErrors.get()).values.map((v) => v.value)).toEqual([1]);
  });

  test('drain flushes everything through the slots and resolves once committed', async () => {
    const { pipeline, calls, commits } = await setup({ concurrency: 1 });
    pipeline.handleBatch(batch(0, 0, 2));
    pipeline.handleBatch(batch(1, 0, 13));
    await settle();
    // Partition 1 is due (size): one flush with 0 along.
    expect(calls).toHaveLength(1);
    const drained = pipeline.drain(Date.now() + 5_000);
    const finisher = setInterval(() => calls.forEach((c) => c.finish()), 5);
    await expect(drained).resolves.toBe(true);
    clearInterval(finisher);
    expect(calls.map((c) => c.jobs)).toEqual([
      [
        { partition: 0, offsets: '0,1' },
        { partition: 1, offsets: '0,1,2,3,4,5,6,7,8' },
      ],
      [{ partition: 1, offsets: '9,10,11,12' }],
    ]);
    expect(commits.sort()).toEqual(['0:2', '1:13', '1:9']);
  });
});

describe('pipeline backpressure: full buffers', () => {
  // Batches of 1: a flush takes up to 3 of them (MAX_BATCHES_PER_FLUSH), half the cap.
  const full = { queueSize: 6, batchSize: 1, concurrency: 1 };

  test('the handler waits for room, then takes the rest of its batch: nothing paused or dropped', async () => {
    const { pipeline, calls, consumer } = await setup({ ...full, roomWaitMs: 5_000 });
    const heartbeat = jest.fn(async () => undefined);
    let result: string | null | undefined;
    void pipeline.handleBatch(batch(0, 0, 10), heartbeat).then((r) => (result = r));
    await settle();
    // 6 taken (the cap), the first 3 in flight; the handler waits with offsets 6..9 still to take.
    expect(pipeline.status().depth).toBe(6);
    expect(result).toBeUndefined();
    expect(calls.map((c) => c.jobs)).toEqual([[{ partition: 0, offsets: '0,1,2' }]]);
    // Each finished flush makes room: the handler goes on, fills up again, waits again.
    let finished = 0;
    await until(() => {
      for (const c of calls.slice(finished)) c.finish();
      finished = calls.length;
      return result !== undefined;
    });
    expect(result).toBe('9');
    expect(consumer.pause).not.toHaveBeenCalledWith([{ topic: TOPIC, partition: 0 }]);
    expect(calls.map((c) => c.jobs)).toEqual([
      [{ partition: 0, offsets: '0,1,2' }],
      [{ partition: 0, offsets: '3,4,5' }],
      [{ partition: 0, offsets: '6,7,8' }],
    ]);
    expect(pipeline.status()).toMatchObject({ paused: 0 });
    expect(heartbeat).toHaveBeenCalled();
  });

  test('the handler goes on as soon as a flush frees any room, not only below half', async () => {
    const { pipeline, calls, consumer } = await setup({ queueSize: 8, batchSize: 1, roomWaitMs: 5_000 });
    let result: string | null | undefined;
    void pipeline.handleBatch(batch(0, 0, 10), async () => undefined).then((r) => (result = r));
    await settle();
    expect(pipeline.status().depth).toBe(8); // offsets 0..7 taken (full); 0,1,2 being written
    expect(result).toBeUndefined();
    calls[0]!.finish(); // 5 left of 8, above half: room for 3
    await until(() => result !== undefined);
    expect(result).toBe('9'); // 8 and 9 taken at once
    expect(pipeline.status().depth).toBe(7);
    expect(consumer.pause).not.toHaveBeenCalledWith([{ topic: TOPIC, partition: 0 }]);
  });

  test('without room within roomWaitMs the partition is paused and the rest is left for a refetch', async () => {
    const { pipeline, calls, consumer, metrics } = await setup({ ...full, roomWaitMs: 30 });
    const started = Date.now();
    await expect(pipeline.handleBatch(batch(0, 0, 10), async () => undefined)).resolves.toBe('5');
    expect(Date.now() - started).toBeGreaterThanOrEqual(25);
    expect(consumer.pause).toHaveBeenLastCalledWith([{ topic: TOPIC, partition: 0 }]);
    expect(pipeline.status()).toMatchObject({ depth: 6, paused: 1 });
    // A paused partition takes nothing more until the buffers drain below half; another partition
    // finding the buffers full pauses at once (the wait already timed out): no second wait.
    await expect(pipeline.handleBatch(batch(0, 6, 4))).resolves.toBeNull();
    const waited = (await metrics.backpressureSeconds.get()).values[0]!.value;
    await expect(pipeline.handleBatch(batch(1, 0, 3), async () => undefined)).resolves.toBeNull();
    expect((await metrics.backpressureSeconds.get()).values[0]!.value).toBe(waited);
    expect(consumer.pause).toHaveBeenLastCalledWith([{ topic: TOPIC, partition: 1 }]);
    calls[0]!.finish();
    await settle();
    expect(consumer.resume).toHaveBeenLastCalledWith([
      { topic: TOPIC, partition: 0 },
      { topic: TOPIC, partition: 1 },
    ]);
    expect(pipeline.status()).toMatchObject({ depth: 3, paused: 0 });
  });

  test('a failing heartbeat (rebalance) ends the wait at once; drain ends it too', async () => {
    const { pipeline, calls } = await setup({ ...full, roomWaitMs: 60_000 });
    const rebalancing = jest.fn(async () => {
      throw new Error('The group is rebalancing, so a rejoin is needed');
    });
    const first = pipeline.handleBatch(batch(0, 0, 10), rebalancing);
    // The heartbeat runs after the first wake-up (a flush finishing, with or without room).
    await settle();
    calls[0]!.finish(() => ({ ok: false, error: new Error('still down') }));
    await expect(first).resolves.toBe('5');
    expect(rebalancing).toHaveBeenCalledTimes(1);

    const second = pipeline.handleBatch(batch(1, 0, 3), async () => undefined);
    const drained = pipeline.drain(Date.now() + 50);
    await expect(second).resolves.toBeNull(); // full: nothing taken, and drain does not wait for room
    await drained;
  });
});

describe('pipeline: one partition that cannot be written', () => {
  const failing = (job: FlushJob): FlushOutcome =>
    job.partition === 0 ? { ok: false, error: new Error('lock timeout on the fence row') } : ok(job);

  test('it is retried alone, never in a transaction with healthy partitions; they keep being written', async () => {
    const { pipeline, calls, commits } = await setup({ concurrency: 2, batchSize: 3 });
    pipeline.handleBatch(batch(0, 0, 3)); // due: partition 0 alone in the first flush
    pipeline.handleBatch(batch(1, 0, 2)); // rides along
    await settle();
    expect(calls[0]!.jobs.map((j) => j.partition)).toEqual([0, 1]);
    calls[0]!.finish(() => ({ ok: false, error: new Error('lock timeout on the fence row') }));
    // Both retry alone (one slot for retries, one kept for healthy work); partition 1 succeeds alone.
    await until(() => {
      for (const c of calls.slice(1)) c.finish(failing);
      return commits.includes('1:2');
    });
    pipeline.handleBatch(batch(1, 2, 6));
    pipeline.handleBatch(batch(2, 0, 3));
    await until(() => {
      for (const c of calls.slice(1)) c.finish(failing);
      return commits.includes('1:8') && commits.includes('2:3');
    });
    const later = calls.slice(1).map((c) => c.jobs.map((j) => j.partition));
    // Every flush that held partition 0 held nothing else.
    expect(later.filter((ps) => ps.includes(0)).every((ps) => ps.length === 1)).toBe(true);
    expect(later.filter((ps) => ps.includes(0)).length).toBeGreaterThan(1);
    expect(pipeline.status().depth).toBe(3); // partition 0's batch, kept for the next retry
    expect(commits.some((c) => c.startsWith('0:'))).toBe(false);
  });

  test('it fills its share of the buffers and is paused at once; the others still find room', async () => {
    // queueSize 12 over 3 partitions: a share of 4 each (the floor is 3).
    const { pipeline, calls, consumer } = await setup({
      queueSize: 12,
      batchSize: 2,
      partitionFloor: 3,
      roomWaitMs: 60_000,
    });
    pipeline.handleBatch(batch(0, 0, 2));
    await settle();
    calls[0]!.finish(() => ({ ok: false, error: new Error('down') }));
    await settle();
    // Partition 0 holds its failed batch (2); 2 more fit its share, then it pauses without waiting.
    const started = Date.now();
    await expect(pipeline.handleBatch(batch(0, 2, 10), async () => undefined)).resolves.toBe('3');
    expect(Date.now() - started).toBeLessThan(1000);
    expect(consumer.pause).toHaveBeenLastCalledWith([{ topic: TOPIC, partition: 0 }]);
    expect(pipeline.status()).toMatchObject({ depth: 4, paused: 1 });
    // Partition 1 is not held back by it.
    await expect(pipeline.handleBatch(batch(1, 0, 4), async () => undefined)).resolves.toBe('3');
    expect(pipeline.status()).toMatchObject({ depth: 8, paused: 1 });
  });

  test('a healthy partition at its share waits for its own flush, then goes on', async () => {
    const { pipeline, calls, consumer } = await setup({
      queueSize: 12,
      batchSize: 2,
      partitionFloor: 3,
      roomWaitMs: 5000,
    });
    let result: string | null | undefined;
    void pipeline.handleBatch(batch(0, 0, 6), async () => undefined).then((r) => (result = r));
    await settle();
    expect(result).toBeUndefined(); // 4 taken (its share), waiting
    expect(pipeline.status().depth).toBe(4);
    await until(() => {
      for (const c of calls) c.finish();
      return result !== undefined;
    });
    expect(result).toBe('5');
    expect(consumer.pause).not.toHaveBeenCalledWith([{ topic: TOPIC, partition: 0 }]);
  });
});

describe('pipeline: a fence to check on assignment', () => {
  async function withResume(resume: ResumePort) {
    const consumer = {
      pause: jest.fn(),
      resume: jest.fn(),
      commit: jest.fn(async () => undefined),
    };
    const logger = createLogger('silent');
    const metrics = createMetrics(new Registry(), false);
    const calls: Call[] = [];
    const pipeline = new Pipeline(SETTINGS, {
      flush: (jobs) =>
        new Promise<FlushOutcome[]>((resolve) => {
          calls.push({
            jobs: jobs.map((j) => ({
              partition: j.partition,
              offsets: j.batch.entries.map((e) => e.offset).join(','),
            })),
            finish: (outcome = ok) => resolve(jobs.map(outcome)),
          });
        }),
      classify: (err) => ({ class: 'transient', code: null, message: String(err) }),
      consumer,
      resume,
      committer: new OffsetCommitter(consumer, logger, metrics),
      metrics,
      logger,
    });
    pipeline.handleAssignment([{ topic: TOPIC, partition: 0 }]);
    await settle();
    return { pipeline, calls, consumer };
  }

  const point = { kind: 'verify', offset: 9n, fingerprint: 'fp9', fence: 10n, committed: 4n } as const;

  test('the same message at the checked offset: it is skipped, the rest taken from the fence on', async () => {
    const confirmed = jest.fn();
    const { pipeline, calls } = await withResume({
      resume: async () => new Map([[0, point]]),
      check: (_p, first) => (first.offset === '9' ? 'same' : 'replaced'),
      confirmed,
      replaced: jest.fn(),
    });
    await expect(pipeline.handleBatch(batch(0, 9, 4))).resolves.toBe('12');
    expect(confirmed).toHaveBeenCalledTimes(1);
    await settle();
    expect(calls[0]!.jobs).toEqual([{ partition: 0, offsets: '10,11,12' }]);
  });

  test('another message: nothing taken, the partition paused while the fence moves, then consumed from there', async () => {
    let moved!: (next: bigint) => void;
    const replaced = jest.fn(() => new Promise<bigint>((r) => (moved = r)));
    const { pipeline, calls, consumer } = await withResume({
      resume: async () => new Map([[0, point]]),
      check: () => 'replaced',
      confirmed: jest.fn(),
      replaced,
    });
    await expect(pipeline.handleBatch(batch(0, 9, 4))).resolves.toBeNull();
    expect(replaced).toHaveBeenCalledWith(
      TOPIC,
      expect.objectContaining({ partition: 0 }),
      '9:' + String(T0),
      10n,
    );
    expect(consumer.pause).toHaveBeenLastCalledWith([{ topic: TOPIC, partition: 0 }]);
    await expect(pipeline.handleBatch(batch(0, 0, 3))).resolves.toBeNull(); // paused meanwhile
    moved(0n);
    await settle();
    expect(consumer.resume).toHaveBeenLastCalledWith([{ topic: TOPIC, partition: 0 }]);
    // The new log from its start: offsets below the old fence are taken, not skipped.
    await expect(pipeline.handleBatch(batch(0, 0, 3))).resolves.toBe('2');
    await settle();
    expect(calls[0]!.jobs).toEqual([{ partition: 0, offsets: '0,1,2' }]);
  });
});
