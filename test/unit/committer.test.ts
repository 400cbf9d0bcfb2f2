import { Registry } from 'prom-client';
import { StaleCommitError, type OffsetToCommit, type TopicPartition } from '../../src/consumer/port';
import { createLogger } from '../../src/observe/logger';
import { createMetrics, type Metrics } from '../../src/observe/metrics';
import { OffsetCommitter, tpKey } from '../../src/offsets/committer';

const TOPIC = 'bars.1m';
const P0 = { topic: TOPIC, partition: 0 };
const P1 = { topic: TOPIC, partition: 1 };
const P2 = { topic: TOPIC, partition: 2 };

function rebalanceError(): Error {
  const err = new Error('The group is rebalancing, so a rejoin is needed');
  (err as Error & { cause: unknown }).cause = { type: 'REBALANCE_IN_PROGRESS', code: 27 };
  return err;
}

interface Deferred {
  promise: Promise<void>;
  resolve(): void;
  reject(err: unknown): void;
}

function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

function setup() {
  const consumer = { commit: jest.fn((_offsets: OffsetToCommit[], _epoch: number) => Promise.resolve()) };
  const logger = createLogger('silent');
  const metrics = createMetrics(new Registry(), false);
  const committer = new OffsetCommitter(consumer, logger, metrics);
  return { consumer, logger, metrics, committer };
}

/**
 * As the pipeline does: an assignment (join `epoch`), then a new generation for each partition that
 * starts from a freshly read resume point (the new ones); kept ones keep theirs.
 */
function own(c: OffsetCommitter, tps: TopicPartition[], epoch = 0): Map<string, number> {
  const kept = new Set(
    tps
      .filter((tp) => c.generation(tp.topic, tp.partition) !== null)
      .map((tp) => tpKey(tp.topic, tp.partition)),
  );
  c.assign(tps, epoch);
  const out = new Map<string, number>();
  for (const tp of tps) {
    const key = tpKey(tp.topic, tp.partition);
    out.set(key, kept.has(key) ? c.generation(tp.topic, tp.partition)! : c.renew(tp.topic, tp.partition));
  }
  return out;
}

/** The offsets committed so far, one "partition:offset" string per call. */
function commits(consumer: { commit: jest.Mock<Promise<void>, [OffsetToCommit[], number]> }): string[] {
  return consumer.commit.mock.calls.map(([offsets]) =>
    offsets.map((o) => `${o.topic}/${o.partition}:${o.offset}`).join(','),
  );
}

async function commitCount(metrics: Metrics, result: 'ok' | 'failed'): Promise<number> {
  const { values } = await metrics.offsetCommits.get();
  return values.find((v) => v.labels.result === result)?.value ?? 0;
}

describe('tpKey', () => {
  test('joins topic and partition with a NUL', () => {
    expect(tpKey('bars.1m', 3)).toBe('bars.1m\u00003');
    expect(tpKey('a', 12)).not.toBe(tpKey('a1', 2));
  });
});

describe('OffsetCommitter: assignment and generations', () => {
  test('new partitions get fresh, increasing generations', () => {
    const { committer } = setup();
    const gens = own(committer, [P0, P1]);
    expect([...gens]).toEqual([
      [tpKey(TOPIC, 0), 1],
      [tpKey(TOPIC, 1), 2],
    ]);
    expect(committer.generation(TOPIC, 0)).toBe(1);
    expect(committer.generation(TOPIC, 1)).toBe(2);
    expect(committer.generation(TOPIC, 2)).toBeNull();
    expect(committer.generation('other', 0)).toBeNull();
  });

  test('kept partitions keep their generation; revoked ones are forgotten; new ones get the next', () => {
    const { committer } = setup();
    own(committer, [P0, P1]);
    const gens = own(committer, [P0, P2]);
    expect(gens.get(tpKey(TOPIC, 0))).toBe(1);
    expect(gens.get(tpKey(TOPIC, 2))).toBe(3);
    expect(gens.size).toBe(2);
    expect(committer.generation(TOPIC, 1)).toBeNull();
  });

  test('a partition revoked and assigned back gets a new generation', () => {
    const { committer } = setup();
    own(committer, [P0]);
    own(committer, []);
    expect(committer.generation(TOPIC, 0)).toBeNull();
    own(committer, [P0]);
    expect(committer.generation(TOPIC, 0)).toBe(2);
  });
});

describe('OffsetCommitter: renew (a partition resumes from a new resume point)', () => {
  test('a new generation with nothing durable: the old one no longer commits, and the offset may go back', async () => {
    const { consumer, committer } = setup();
    const old = own(committer, [P0]).get(tpKey(TOPIC, 0))!;
    await committer.durable(TOPIC, 0, 900n, old);
    const fresh = committer.renew(TOPIC, 0);
    expect(fresh).toBeGreaterThan(old);
    await committer.durable(TOPIC, 0, 1000n, old); // a flush of the old position: dropped
    await committer.durable(TOPIC, 0, 3n, fresh); // a replaced log's offsets are lower: committed
    expect(commits(consumer)).toEqual([`${TOPIC}/0:900`, `${TOPIC}/0:3`]);
  });
});

describe('OffsetCommitter: durable()', () => {
  test('commits an owned partition in its generation', async () => {
    const { consumer, committer, metrics } = setup();
    const g = own(committer, [P0, P1]).get(tpKey(TOPIC, 1))!;
    await committer.durable(TOPIC, 1, 42n, g);
    expect(consumer.commit).toHaveBeenCalledTimes(1);
    // Under the join epoch of the assignment (0: assigned without one).
    expect(consumer.commit).toHaveBeenCalledWith([{ topic: TOPIC, partition: 1, offset: '42' }], 0);
    expect(committer.pendingCount()).toBe(0);
    expect(await commitCount(metrics, 'ok')).toBe(1);
    expect(await commitCount(metrics, 'failed')).toBe(0);
  });

  test('offsets beyond 2^53 are committed exactly', async () => {
    const { consumer, committer } = setup();
    own(committer, [P0]);
    await committer.durable(TOPIC, 0, 9_007_199_254_740_993n, 1);
    expect(commits(consumer)).toEqual([`${TOPIC}/0:9007199254740993`]);
  });

  test('an unowned partition is not committed', async () => {
    const { consumer, committer } = setup();
    own(committer, [P0]);
    await committer.durable(TOPIC, 1, 5n, 1);
    await committer.durable('other-topic', 0, 5n, 1);
    expect(consumer.commit).not.toHaveBeenCalled();
    expect(committer.pendingCount()).toBe(0);
  });

  test('a wrong generation is not committed', async () => {
    const { consumer, committer } = setup();
    own(committer, [P0]);
    await committer.durable(TOPIC, 0, 5n, 2);
    await committer.durable(TOPIC, 0, 5n, 0);
    expect(consumer.commit).not.toHaveBeenCalled();
    expect(committer.pendingCount()).toBe(0);
  });

  test('after revoke and re-assign, the old generation is ignored and the new one commits', async () => {
    const { consumer, committer } = setup();
    const old = own(committer, [P0]).get(tpKey(TOPIC, 0))!;
    own(committer, []);
    const fresh = own(committer, [P0]).get(tpKey(TOPIC, 0))!;
    expect(fresh).not.toBe(old);
    await committer.durable(TOPIC, 0, 100n, old);
    expect(consumer.commit).not.toHaveBeenCalled();
    await committer.durable(TOPIC, 0, 7n, fresh);
    expect(commits(consumer)).toEqual([`${TOPIC}/0:7`]);
  });

  test('a kept partition’s flush from before the rebalance still commits', async () => {
    const { consumer, committer } = setup();
    const g = own(committer, [P0, P1]).get(tpKey(TOPIC, 0))!;
    own(committer, [P0]);
    await committer.durable(TOPIC, 0, 11n, g);
    expect(commits(consumer)).toEqual([`${TOPIC}/0:11`]);
  });

  test('commits only forwards', async () => {
    const { consumer, committer } = setup();
    own(committer, [P0]);
    await committer.durable(TOPIC, 0, 10n, 1);
    await committer.durable(TOPIC, 0, 5n, 1);
    await committer.durable(TOPIC, 0, 10n, 1);
    await committer.durable(TOPIC, 0, 11n, 1);
    expect(commits(consumer)).toEqual([`${TOPIC}/0:10`, `${TOPIC}/0:11`]);
    expect(committer.pendingCount()).toBe(0);
  });

  test('partitions are committed independently', async () => {
    const { consumer, committer } = setup();
    own(committer, [P0, P1]);
    await committer.durable(TOPIC, 0, 10n, 1);
    await committer.durable(TOPIC, 1, 3n, 2);
    await committer.durable(TOPIC, 1, 4n, 2);
    expect(commits(consumer)).toEqual([`${TOPIC}/0:10`, `${TOPIC}/1:3`, `${TOPIC}/1:4`]);
  });
});

describe('OffsetCommitter: failed commits', () => {
  test('a failed commit is not thrown, stays pending, and commitPending() retries it', async () => {
    const { consumer, committer, metrics, logger } = setup();
    const warn = jest.spyOn(logger, 'warn');
    own(committer, [P0]);
    consumer.commit.mockRejectedValueOnce(rebalanceError());
    expect(committer.pendingSummary()).toEqual({ pendingCommits: 0, lastCommitFailure: null });
    await expect(committer.durable(TOPIC, 0, 10n, 1)).resolves.toBeUndefined();
    expect(committer.pendingCount()).toBe(1);
    // What a stop that gives up at its deadline reports.
    expect(committer.pendingSummary()).toEqual({
      pendingCommits: 1,
      lastCommitFailure: 'REBALANCE_IN_PROGRESS',
    });
    expect(await commitCount(metrics, 'failed')).toBe(1);
    expect(warn).toHaveBeenCalledTimes(1);
    expect(warn.mock.calls[0]![0]).toMatchObject({
      topic: TOPIC,
      partition: 0,
      offset: '10',
      kafkaError: 'REBALANCE_IN_PROGRESS',
    });

    await committer.commitPending();
    expect(commits(consumer)).toEqual([`${TOPIC}/0:10`, `${TOPIC}/0:10`]);
    expect(committer.pendingCount()).toBe(0);
    expect(await commitCount(metrics, 'ok')).toBe(1);

    await committer.commitPending();
    expect(consumer.commit).toHaveBeenCalledTimes(2);
  });

  test('a retry that fails again stays pending', async () => {
    const { consumer, committer, metrics } = setup();
    own(committer, [P0]);
    consumer.commit.mockRejectedValue(rebalanceError());
    await committer.durable(TOPIC, 0, 10n, 1);
    await committer.commitPending();
    await committer.commitPending();
    expect(consumer.commit).toHaveBeenCalledTimes(3);
    expect(committer.pendingCount()).toBe(1);
    expect(await commitCount(metrics, 'failed')).toBe(3);
  });

  test('a later durable offset supersedes a failed one', async () => {
    const { consumer, committer } = setup();
    own(committer, [P0]);
    consumer.commit.mockRejectedValueOnce(rebalanceError());
    await committer.durable(TOPIC, 0, 10n, 1);
    await committer.durable(TOPIC, 0, 20n, 1);
    expect(commits(consumer)).toEqual([`${TOPIC}/0:10`, `${TOPIC}/0:20`]);
    expect(committer.pendingCount()).toBe(0);
  });

  test('commitPending retries every pending partition and nothing else', async () => {
    const { consumer, committer } = setup();
    own(committer, [P0, P1, P2]);
    consumer.commit.mockRejectedValueOnce(rebalanceError()).mockRejectedValueOnce(rebalanceError());
    await committer.durable(TOPIC, 0, 5n, 1);
    await committer.durable(TOPIC, 1, 6n, 2);
    await committer.durable(TOPIC, 2, 7n, 3);
    expect(committer.pendingCount()).toBe(2);
    consumer.commit.mockClear();
    await committer.commitPending();
    expect(commits(consumer).sort()).toEqual([`${TOPIC}/0:5`, `${TOPIC}/1:6`]);
    expect(committer.pendingCount()).toBe(0);
  });

  test('commitPending with nothing durable does nothing', async () => {
    const { consumer, committer } = setup();
    own(committer, [P0, P1]);
    await committer.commitPending();
    expect(consumer.commit).not.toHaveBeenCalled();
    expect(committer.pendingCount()).toBe(0);
  });

  test('a revoked partition’s pending commit is dropped', async () => {
    const { consumer, committer } = setup();
    own(committer, [P0]);
    consumer.commit.mockRejectedValueOnce(rebalanceError());
    await committer.durable(TOPIC, 0, 10n, 1);
    expect(committer.pendingCount()).toBe(1);
    own(committer, []);
    expect(committer.pendingCount()).toBe(0);
    own(committer, [P0]);
    expect(committer.pendingCount()).toBe(0);
    await committer.commitPending();
    expect(consumer.commit).toHaveBeenCalledTimes(1);
  });

  test('a plain Error without a Kafka error type is handled too', async () => {
    const { consumer, committer } = setup();
    own(committer, [P0]);
    consumer.commit.mockImplementationOnce(() => Promise.reject(new Error('broker away')));
    await expect(committer.durable(TOPIC, 0, 1n, 1)).resolves.toBeUndefined();
    expect(committer.pendingCount()).toBe(1);
    expect(committer.pendingSummary().lastCommitFailure).toBe('broker away');
  });
});

describe('OffsetCommitter: concurrency', () => {
  test('one commit per partition at a time; a newer offset is committed after the in-flight one', async () => {
    const { consumer, committer } = setup();
    own(committer, [P0]);
    const gates: Deferred[] = [];
    let inFlight = 0;
    let maxInFlight = 0;
    consumer.commit.mockImplementation(async () => {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      const d = deferred();
      gates.push(d);
      try {
        await d.promise;
      } finally {
        inFlight--;
      }
    });

    const first = committer.durable(TOPIC, 0, 5n, 1);
    await Promise.resolve();
    expect(gates).toHaveLength(1);
    const second = committer.durable(TOPIC, 0, 9n, 1);
    const third = committer.durable(TOPIC, 0, 7n, 1);
    await new Promise((r) => setImmediate(r));
    expect(gates).toHaveLength(1); // still waiting for the first
    gates[0]!.resolve();
    await first;
    await new Promise((r) => setImmediate(r));
    expect(gates).toHaveLength(2);
    gates[1]!.resolve();
    await Promise.all([second, third]);
    expect(commits(consumer)).toEqual([`${TOPIC}/0:5`, `${TOPIC}/0:9`]);
    expect(maxInFlight).toBe(1);
    expect(committer.pendingCount()).toBe(0);
  });

  test('a lower offset arriving during an in-flight commit is not committed afterwards', async () => {
    const { consumer, committer } = setup();
    own(committer, [P0]);
    const gate = deferred();
    consumer.commit.mockImplementationOnce(() => gate.promise);
    const first = committer.durable(TOPIC, 0, 9n, 1);
    const second = committer.durable(TOPIC, 0, 5n, 1);
    gate.resolve();
    await Promise.all([first, second]);
    expect(commits(consumer)).toEqual([`${TOPIC}/0:9`]);
  });

  test('revoked while a commit is in flight: no further commit for the old ownership', async () => {
    const { consumer, committer } = setup();
    own(committer, [P0]);
    const gate = deferred();
    consumer.commit.mockImplementationOnce(() => gate.promise);
    const first = committer.durable(TOPIC, 0, 5n, 1);
    own(committer, []);
    const late = committer.durable(TOPIC, 0, 6n, 1);
    gate.resolve();
    await Promise.all([first, late]);
    expect(commits(consumer)).toEqual([`${TOPIC}/0:5`]);
    own(committer, [P0]);
    await committer.commitPending();
    expect(consumer.commit).toHaveBeenCalledTimes(1);
  });
});

describe('OffsetCommitter: join epochs', () => {
  test('each commit carries the epoch of the latest assignment; a kept partition commits under the new one', async () => {
    const { consumer, committer } = setup();
    own(committer, [P0], 4);
    await committer.durable(TOPIC, 0, 3n, 1);
    own(committer, [P0, P1], 5); // P0 kept (same generation), a new join
    await committer.durable(TOPIC, 0, 7n, 1);
    expect(consumer.commit.mock.calls.map(([, epoch]) => epoch)).toEqual([4, 5]);
  });

  test('a commit the consumer refuses as stale (rejoined meanwhile) is not recorded: still pending, sent again', async () => {
    const { consumer, committer, metrics } = setup();
    own(committer, [P0], 1);
    consumer.commit.mockImplementationOnce(() => Promise.reject(new StaleCommitError('during')));
    await committer.durable(TOPIC, 0, 12n, 1);
    expect(committer.pendingCount()).toBe(1);
    expect(await commitCount(metrics, 'failed')).toBe(1);
    own(committer, [P0], 2);
    await committer.commitPending();
    expect(committer.pendingCount()).toBe(0);
    expect(consumer.commit.mock.calls.map(([o, epoch]) => [o[0]!.offset, epoch])).toEqual([
      ['12', 1],
      ['12', 2],
    ]);
  });
});
