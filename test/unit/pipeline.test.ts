/**
 * The batching stage's executors, without Kafka or a database (the partition machine itself has its
 * table-driven tests in partition.test.ts): partitions that hold entries ride along in one flush
 * (group commit), at most `concurrency` flushes run at once, a partition is never in two flushes,
 * a failed partition drops what it holds and is fetched again for its retry, alone, and never holds
 * back the healthy ones; offsets are committed only for the jobs that succeeded; a fetch below the
 * position, a replaced log and a fence moved back run the resume check again.
 */
import { Registry } from 'prom-client';
import type { FlushJob, FlushOutcome } from '../../src/batch/flush';
import { Pipeline, type PipelineSettings, type ResumeIo } from '../../src/batch/pipeline';
import type { InboundBatch, OffsetToCommit } from '../../src/consumer/port';
import { createLogger } from '../../src/observe/logger';
import { createMetrics } from '../../src/observe/metrics';
import { OffsetCommitter } from '../../src/offsets/committer';
import { fingerprint } from '../../src/offsets/fingerprint';
import type { ResumeFacts } from '../../src/offsets/resume';

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
  fromBeginning: true,
  stallMs: 60_000,
};

function value(minute: number): Buffer {
  const bar = {
    symbol: 'AAA',
    timestamp: new Date(T0 + minute * 60_000).toISOString(),
    open: 1,
    high: 2,
    low: 0.5,
    close: 1.5,
    volume: 10,
  };
  return Buffer.from(JSON.stringify(bar));
}

function message(offset: number, minute: number) {
  return { offset: String(offset), key: null, value: value(minute), headers: {}, timestamp: String(T0) };
}

/** `count` messages of a partition from offset `from`, the log end far ahead (not caught up). */
function batch(partition: number, from: number, count: number, highWatermark = 1_000_000): InboundBatch {
  return {
    topic: TOPIC,
    partition,
    highWatermark: String(highWatermark),
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
    fenceBefore: job.batch.entries[0]!.offset,
    rewound: false,
  },
});

/** Lets the clock's "soon" callbacks (the pump) and promise continuations run. */
const settle = async () => {
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
};

/** Settles until `done()` holds; fails here, naming `what`, if it does not within 2 s. */
async function until(what: string, done: () => boolean): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if (done()) return;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Resume facts: no fence and nothing committed (so: the log start), unless given per partition. */
function resumeIo(facts: Record<number, ResumeFacts> = {}): ResumeIo & { moves: string[] } {
  const moves: string[] = [];
  return {
    moves,
    read: async (_topic, partitions) =>
      new Map(
        partitions.map((p) => [
          p,
          facts[p] ?? {
            fence: null,
            committed: null,
            log: { low: 0n, high: 1_000_000n },
            topicHasFences: false,
          },
        ]),
      ),
    moveFence: async (_topic, partition, to) => {
      moves.push(`${partition}:${to}`);
      return 0n;
    },
  };
}

async function setup(
  settings: Partial<PipelineSettings> = {},
  partitions = [0, 1, 2],
  resume: ResumeIo = resumeIo(),
) {
  const calls: Call[] = [];
  const commits: string[] = [];
  const seeks: string[] = [];
  const consumer = {
    pause: jest.fn(),
    resume: jest.fn(),
    seek: jest.fn(
      (tp: { partition: number }, offset: string) => void seeks.push(`${tp.partition}:${offset}`),
    ),
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
      resume,
      committer,
      metrics,
      logger,
      random: () => 0.5,
    },
  );
  pipeline.handleAssignment(partitions.map((partition) => ({ topic: TOPIC, partition })));
  await settle(); // resume points read
  seeks.length = 0;
  return { pipeline, calls, commits, metrics, consumer, seeks };
}

describe('pipeline flush scheduling', () => {
  test('a new partition reads where it resumes while paused, then is sought there and resumed', async () => {
    const { consumer } = await setup({}, [0]);
    expect(consumer.pause).toHaveBeenCalledWith([{ topic: TOPIC, partition: 0 }]);
    expect(consumer.seek).toHaveBeenCalledWith({ topic: TOPIC, partition: 0 }, '0');
    expect(consumer.resume).toHaveBeenLastCalledWith([{ topic: TOPIC, partition: 0 }]);
  });

  test('a due partition takes the others that hold entries along, in one flush', async () => {
    const { pipeline, calls, commits } = await setup();
    void pipeline.handleBatch(batch(1, 0, 2)); // below the batch size: not due
    void pipeline.handleBatch(batch(2, 0, 1));
    await settle();
    expect(calls).toHaveLength(0);
    void pipeline.handleBatch(batch(0, 10, 3)); // due (size); offsets 0-9 are a gap, not a doubt
    await settle();
    expect(calls.map((c) => c.jobs)).toEqual([
      [
        { partition: 0, offsets: '10,11,12' },
        { partition: 1, offsets: '0,1' },
        { partition: 2, offsets: '0' },
      ],
    ]);
    calls[0]!.finish();
    await until('three commits', () => commits.length === 3);
    expect(commits.sort()).toEqual(['0:13', '1:2', '2:1']);
    expect(pipeline.status().depth).toBe(0);
  });

  test('while the only slot is busy, due partitions gather and go together; each takes up to 3 batches', async () => {
    const { pipeline, calls } = await setup({ concurrency: 1 });
    void pipeline.handleBatch(batch(0, 0, 3));
    await settle();
    expect(calls).toHaveLength(1);
    // Partition 0 is being written: its new entries wait; 1 and 2 become due meanwhile.
    void pipeline.handleBatch(batch(0, 3, 4));
    void pipeline.handleBatch(batch(1, 0, 3));
    void pipeline.handleBatch(batch(2, 0, 11));
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
    void pipeline.handleBatch(batch(0, 0, 3));
    await settle();
    void pipeline.handleBatch(batch(1, 0, 3));
    void pipeline.handleBatch(batch(0, 3, 3));
    await settle();
    expect(calls.map((c) => c.jobs.map((j) => j.partition))).toEqual([[0], [1]]);
    calls[1]!.finish();
    calls[0]!.finish();
    await settle();
    expect(calls[2]!.jobs).toEqual([{ partition: 0, offsets: '3,4,5' }]);
    expect(calls).toHaveLength(3);
  });

  test('a failed job drops what its partition holds; it is fetched again and retried alone; only successes commit', async () => {
    const { pipeline, calls, commits, metrics, seeks } = await setup();
    void pipeline.handleBatch(batch(1, 0, 2));
    void pipeline.handleBatch(batch(0, 0, 3));
    await settle();
    calls[0]!.finish((job) => (job.partition === 1 ? { ok: false, error: new Error('boom') } : ok(job)));
    await until('the commit of 0', () => commits.length === 1);
    expect(commits).toEqual(['0:3']);
    // Partition 1 holds nothing: after its backoff it is sought back to its batch and fetched again.
    await until('partition 1 sought back', () => seeks.includes('1:0'));
    expect(pipeline.status().depth).toBe(0);
    void pipeline.handleBatch(batch(1, 0, 2)); // the refetch: due at once
    void pipeline.handleBatch(batch(0, 3, 3));
    await until('both written', () => {
      for (const c of calls.slice(1)) c.finish();
      return commits.length === 3;
    });
    const later = calls.slice(1).map((c) => c.jobs);
    expect(later).toContainEqual([{ partition: 1, offsets: '0,1' }]); // alone
    expect(later.flat()).toContainEqual({ partition: 0, offsets: '3,4,5' });
    expect(commits.sort()).toEqual(['0:3', '0:6', '1:2']);
    expect(pipeline.status().depth).toBe(0);
    expect((await metrics.writeErrors.get()).values.map((v) => v.value)).toEqual([1]);
  });

  test('drain flushes everything through the slots and resolves once committed', async () => {
    const { pipeline, calls, commits } = await setup({ concurrency: 1 });
    void pipeline.handleBatch(batch(0, 0, 2));
    void pipeline.handleBatch(batch(1, 0, 13));
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
    // Nothing more is taken once draining.
    await expect(pipeline.handleBatch(batch(0, 2, 3))).resolves.toBeNull();
  });

  test('drain does not wait for a partition whose writes fail: it holds nothing, and drained is false', async () => {
    const { pipeline, calls } = await setup({ concurrency: 1 }, [0]);
    void pipeline.handleBatch(batch(0, 0, 3));
    await settle();
    calls[0]!.finish(() => ({ ok: false, error: new Error('down') }));
    await settle();
    const started = Date.now();
    await expect(pipeline.drain(Date.now() + 5_000)).resolves.toBe(false);
    expect(Date.now() - started).toBeLessThan(2_000);
  });
});

describe('pipeline backpressure: full buffers', () => {
  // Batches of 1: a flush takes up to 3 of them (MAX_BATCHES_PER_FLUSH), half the cap.
  const full = { queueSize: 6, batchSize: 1, concurrency: 1 };

  test('the handler waits for room, then takes the rest of its batch: nothing paused or dropped', async () => {
    const { pipeline, calls, consumer } = await setup({ ...full, roomWaitMs: 5_000 });
    const heartbeat = jest.fn(async () => undefined);
    consumer.pause.mockClear();
    let result: string | null | undefined;
    void pipeline.handleBatch(batch(0, 0, 10), heartbeat).then((r) => (result = r));
    await settle();
    // 6 taken (the cap), the first 3 in flight; the handler waits with offsets 6..9 still to take.
    expect(pipeline.status().depth).toBe(6);
    expect(result).toBeUndefined();
    expect(calls.map((c) => c.jobs)).toEqual([[{ partition: 0, offsets: '0,1,2' }]]);
    // Each finished flush makes room: the handler goes on, fills up again, waits again.
    let finished = 0;
    await until('the handler to return', () => {
      for (const c of calls.slice(finished)) c.finish();
      finished = calls.length;
      return result !== undefined;
    });
    expect(result).toBe('9');
    expect(consumer.pause).not.toHaveBeenCalled();
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
    consumer.pause.mockClear();
    let result: string | null | undefined;
    void pipeline.handleBatch(batch(0, 0, 10), async () => undefined).then((r) => (result = r));
    await settle();
    expect(pipeline.status().depth).toBe(8); // offsets 0..7 taken (full); 0,1,2 being written
    expect(result).toBeUndefined();
    calls[0]!.finish(); // 5 left of 8, above half: room for 3
    await until('the handler to return', () => result !== undefined);
    expect(result).toBe('9'); // 8 and 9 taken at once
    expect(pipeline.status().depth).toBe(7);
    expect(consumer.pause).not.toHaveBeenCalled();
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

    void pipeline.handleBatch(batch(1, 0, 6), async () => undefined);
    await settle();
    const second = pipeline.handleBatch(batch(2, 0, 3), async () => undefined);
    const drained = pipeline.drain(Date.now() + 50);
    await expect(second).resolves.toBeNull(); // full: nothing taken, and drain does not wait for room
    await drained;
  });
});

describe('pipeline: partitions that cannot be written', () => {
  const failing =
    (bad: number[]) =>
    (job: FlushJob): FlushOutcome =>
      bad.includes(job.partition)
        ? { ok: false, error: new Error('lock timeout on the fence row') }
        : ok(job);

  test('a failing partition is retried alone, never in a transaction with healthy ones; they keep being written', async () => {
    const { pipeline, calls, commits, seeks } = await setup({ concurrency: 2, batchSize: 3 });
    void pipeline.handleBatch(batch(0, 0, 3)); // due: partition 0 alone in the first flush
    void pipeline.handleBatch(batch(1, 0, 2)); // rides along
    await settle();
    expect(calls[0]!.jobs.map((j) => j.partition)).toEqual([0, 1]);
    calls[0]!.finish(failing([0, 1]));
    // Both are fetched again; each retry goes alone (one slot for retries, one kept for healthy work).
    let fed = 0;
    const refeed = () => {
      for (const s of seeks.slice(fed)) {
        const [p, o] = s.split(':').map(Number) as [number, number];
        void pipeline.handleBatch(batch(p, o, p === 0 ? 3 : 2));
      }
      fed = seeks.length;
    };
    await until('partition 1 recovered', () => {
      refeed();
      for (const c of calls.slice(1)) c.finish(failing([0]));
      return commits.includes('1:2');
    });
    void pipeline.handleBatch(batch(1, 2, 6));
    void pipeline.handleBatch(batch(2, 0, 3));
    await until('1 and 2 written', () => {
      refeed();
      for (const c of calls.slice(1)) c.finish(failing([0]));
      return commits.includes('1:8') && commits.includes('2:3');
    });
    const later = calls.slice(1).map((c) => c.jobs.map((j) => j.partition));
    // Every flush that held partition 0 held nothing else.
    expect(later.filter((ps) => ps.includes(0)).every((ps) => ps.length === 1)).toBe(true);
    expect(later.filter((ps) => ps.includes(0)).length).toBeGreaterThan(1);
    expect(commits.some((c) => c.startsWith('0:'))).toBe(false);
  });

  test('however many fail (all but one), they hold no room: the healthy one takes the whole buffers', async () => {
    const partitions = [0, 1, 2, 3, 4, 5];
    const { pipeline, calls, commits } = await setup(
      {
        queueSize: 12,
        batchSize: 2,
        partitionFloor: 2,
        concurrency: 2,
        roomWaitMs: 60_000,
        retryDelayMs: 60_000,
        retryMaxDelayMs: 60_000,
      },
      partitions,
    );
    for (const p of [0, 1, 2, 3, 4]) void pipeline.handleBatch(batch(p, 0, 2));
    await settle();
    calls[0]!.finish(failing([0, 1, 2, 3, 4]));
    await settle();
    expect(pipeline.status()).toMatchObject({ depth: 0 }); // the failing ones dropped what they held
    // Partition 5 alone: it may take whole buffers' worth, flushed as it goes; never waits for them.
    let result: string | null | undefined;
    void pipeline.handleBatch(batch(5, 0, 30), async () => undefined).then((r) => (result = r));
    await until('partition 5 taken whole', () => {
      for (const c of calls.slice(1)) c.finish(failing([0, 1, 2, 3, 4]));
      return result !== undefined;
    });
    expect(result).toBe('29');
    await until('partition 5 committed', () => {
      for (const c of calls.slice(1)) c.finish();
      return commits.includes('5:30');
    });
    expect(
      calls
        .slice(1)
        .flatMap((c) => c.jobs)
        .every((j) => j.partition === 5),
    ).toBe(true);
  });

  test('retry slots go to the partition ready longest: two that keep failing do not starve three that would succeed', async () => {
    const partitions = [0, 1, 2, 3, 4];
    const { pipeline, calls, commits, seeks } = await setup({ concurrency: 2, batchSize: 2 }, partitions);
    for (const p of partitions) void pipeline.handleBatch(batch(p, 0, 2));
    await settle();
    calls[0]!.finish(failing(partitions)); // all five fail together (one of them held a lock)
    let fed = 0;
    const attemptsOf = (p: number) =>
      calls.slice(1).filter((c) => c.jobs.some((j) => j.partition === p)).length;
    await until('2, 3 and 4 recovered', () => {
      for (const s of seeks.slice(fed)) {
        const [p, o] = s.split(':').map(Number) as [number, number];
        void pipeline.handleBatch(batch(p, o, 2));
      }
      fed = seeks.length;
      for (const c of calls.slice(1)) c.finish(failing([0, 1]));
      return ['2:2', '3:2', '4:2'].every((c) => commits.includes(c));
    });
    // Each of 0 and 1 had at most two tries before the last of 2, 3 and 4 had its first.
    expect(Math.max(attemptsOf(0), attemptsOf(1))).toBeLessThanOrEqual(2);
  });

  test('a flush that ends after its partition was revoked and assigned again does not eat the new owner’s share', async () => {
    // queueSize 12 over 3 partitions: a share of 4 each.
    const { pipeline, calls } = await setup({
      queueSize: 12,
      batchSize: 2,
      partitionFloor: 3,
      roomWaitMs: 30,
    });
    void pipeline.handleBatch(batch(0, 0, 4));
    await settle();
    expect(calls[0]!.jobs).toEqual([{ partition: 0, offsets: '0,1,2,3' }]);
    pipeline.handleAssignment(
      [1, 2].map((partition) => ({ topic: TOPIC, partition })),
      1,
    );
    pipeline.handleAssignment(
      [0, 1, 2].map((partition) => ({ topic: TOPIC, partition })),
      2,
    );
    await settle(); // partition 0 again: a new owner, from offset 0
    calls[0]!.finish(); // the old flush ends now
    await settle();
    expect(pipeline.status().depth).toBe(0);
    // The new owner still takes exactly its share (4), not its share plus what the old flush released.
    await expect(pipeline.handleBatch(batch(0, 0, 10), async () => undefined)).resolves.toBe('3');
    expect(pipeline.status().depth).toBe(4);
  });

  test('a healthy partition at its share waits for its own flush, then goes on', async () => {
    const { pipeline, calls, consumer } = await setup({
      queueSize: 12,
      batchSize: 2,
      partitionFloor: 3,
      roomWaitMs: 5000,
    });
    consumer.pause.mockClear();
    let result: string | null | undefined;
    void pipeline.handleBatch(batch(0, 0, 6), async () => undefined).then((r) => (result = r));
    await settle();
    expect(result).toBeUndefined(); // 4 taken (its share), waiting
    expect(pipeline.status().depth).toBe(4);
    await until('the handler to return', () => {
      for (const c of calls) c.finish();
      return result !== undefined;
    });
    expect(result).toBe('5');
    expect(consumer.pause).not.toHaveBeenCalled();
  });
});

describe('pipeline: where a partition resumes, and doubts', () => {
  const fp9 = fingerprint(9n, T0, value(9));

  test('a fence to check: the same message there is skipped, the rest taken from the fence on', async () => {
    const { pipeline, calls, commits } = await setup(
      {},
      [0],
      resumeIo({
        0: {
          fence: { next: 10n, fingerprint: fp9 },
          committed: 4n,
          log: { low: 0n, high: 100n },
          topicHasFences: true,
        },
      }),
    );
    await expect(pipeline.handleBatch(batch(0, 9, 4))).resolves.toBe('12');
    await settle();
    expect(calls[0]!.jobs).toEqual([{ partition: 0, offsets: '10,11,12' }]);
    expect(commits).toEqual(['0:10']); // the fence, ahead of the committed offset, committed
  });

  test('another message there: nothing taken, the fence moved to the new log, consumed from its start', async () => {
    const io = resumeIo({
      0: {
        fence: { next: 10n, fingerprint: fp9 },
        committed: null,
        log: { low: 0n, high: 100n },
        topicHasFences: true,
      },
    });
    const { pipeline, calls, seeks } = await setup({}, [0], io);
    const other = batch(0, 9, 4);
    other.messages[0]!.value = Buffer.from('another log');
    await expect(pipeline.handleBatch(other)).resolves.toBeNull();
    await settle();
    expect(io.moves).toEqual(['0:start']);
    expect(seeks).toEqual(['0:0']);
    // The new log from its start: offsets below the old fence are taken, not skipped.
    await expect(pipeline.handleBatch(batch(0, 0, 3))).resolves.toBe('2');
    await settle();
    expect(calls[0]!.jobs).toEqual([{ partition: 0, offsets: '0,1,2' }]);
  });

  test('a fetch below the position (kafkajs reset it): nothing taken, buffer dropped, the resume point read again', async () => {
    let reads = 0;
    const io = resumeIo();
    const counting: ResumeIo = { ...io, read: (t, ps) => (reads++, io.read(t, ps)) };
    const { pipeline, metrics, seeks } = await setup({ batchSize: 100 }, [0], counting);
    await pipeline.handleBatch(batch(0, 0, 5)); // buffered, not due
    expect(pipeline.status().depth).toBe(5);
    await expect(pipeline.handleBatch(batch(0, 2, 5))).resolves.toBeNull();
    expect(pipeline.status().depth).toBe(0);
    await settle();
    expect(reads).toBe(2);
    expect(seeks).toEqual(['0:0']); // no fence: where the log starts
    const doubts = (await metrics.positionDoubts.get()).values;
    expect(doubts.find((v) => v.labels.reason === 'offsets_backwards')?.value).toBe(1);
  });

  test('a write that finds its fence moved back writes nothing, and resumes from the fence', async () => {
    const io = resumeIo();
    const { pipeline, calls, commits, seeks } = await setup({}, [0], io);
    void pipeline.handleBatch(batch(0, 0, 3));
    await settle();
    calls[0]!.finish(); // fence 3
    await until('commit', () => commits.length === 1);
    void pipeline.handleBatch(batch(0, 3, 3));
    await settle();
    calls[1]!.finish((job) => {
      const done = ok(job);
      return done.ok
        ? { ok: true, result: { ...done.result, rewound: true, fenceBefore: 1n, written: 0 } }
        : done;
    });
    await settle();
    expect(commits).toEqual(['0:3']); // nothing for the rewound batch
    expect(seeks).toEqual(['0:0']); // read again (the fake has no fence: the log start)
  });
});
