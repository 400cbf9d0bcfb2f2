/**
 * The operations simulation: the real decision code of the service (src/batch: the partition state
 * machines, their executors, admission, the scheduler, intake; src/offsets: the committer and the
 * resume decision) on a virtual clock, against a modelled Kafka (./kafka.ts) and database
 * (./store.ts), under a seeded schedule of productions and operations: members crashed (SIGKILL),
 * stopped gracefully, added; partitions added; the topic deleted and re-created under running members;
 * fence rows held elsewhere; database outages; broker restarts (a rejoin); operator resets of the
 * fence (all stopped, and --force while running); committed offsets moved ahead with Kafka's tools;
 * dead letters replayed; backfills overlapping the feed.
 *
 * What it checks, every seed: the final table against an independent checker (./checker.ts: nothing
 * lost, stale or invented), bars_latest (kept from the rows each write changed) equal to the newest
 * stored bar of every symbol, a replay of every partition from its start writes nothing, every partition
 * catches up once healed (no stall for good), healthy partitions never stall while others fail, no
 * offset is ever committed beyond what was durable, and the buffers never exceed their bound.
 */
import { Registry } from 'prom-client';
import { Pipeline, type Observation, type PipelineSettings } from '../../src/batch/pipeline';
import { createLogger } from '../../src/observe/logger';
import { createMetrics } from '../../src/observe/metrics';
import { OffsetCommitter, tpKey } from '../../src/offsets/committer';
import { VERSION_TIME_HEADER } from '../../src/contract/version';
import { mulberry32 } from '../../src/demo/random';
import { fingerprint } from '../../src/offsets/fingerprint';
import { classifyDbError } from '../../src/store/errors';
import { check, type Loaded, type Produced, type Reset, type Verdict } from './checker';
import { Scope, SimClock } from './clock';
import { SimKafka, SimMember } from './kafka';
import { DELETED_VALUES, SimStore, valuesOf } from './store';

export interface SimOptions {
  /** Virtual seconds of productions and operations before healing (default 120). */
  seconds?: number;
  /** Record a line per operation (printed when a seed fails). */
  trace?: boolean;
  /** Chance of an operation every half second of virtual time (default 0.04). */
  operationRate?: number;
}

export interface SimResult {
  seed: number;
  problems: string[];
  verdict: Verdict | null;
  operations: Record<string, number>;
  produced: number;
  log: string[];
}

const T0 = Date.UTC(2026, 10, 24, 14, 30);
const BARS_FROM = T0 - 2 * 3_600_000;
const TOPIC = 'bars.sim';
const SYMBOLS = 12;
const MINUTES = 40;

interface Instance {
  id: number;
  scope: Scope;
  member: SimMember;
  pipeline: Pipeline;
  queueSize: number;
  state: 'running' | 'stopping' | 'gone';
  rejoining: boolean;
}

export async function simulate(seed: number, options: SimOptions = {}): Promise<SimResult> {
  const rand = mulberry32(seed);
  const int = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const chance = (p: number) => rand() < p;

  const clock = new SimClock(T0);
  const kafka = new SimKafka(TOPIC, int(1, 6));
  const store = new SimStore(clock, kafka, { latencyMs: int(2, 40), lockTimeoutMs: 1000, random: rand });
  const problems: string[] = [];
  const log: string[] = [];
  const ops: Record<string, number> = {};
  const note = (what: string) => {
    ops[what] = (ops[what] ?? 0) + 1;
    if (options.trace) log.push(`${((clock.now() - T0) / 1000).toFixed(1)}s ${what}`);
  };
  const produced: Produced[] = [];
  const resets: Reset[] = [];
  const loaded: Loaded[] = [];
  const instances: Instance[] = [];
  let nextId = 0;
  let lastOperationAt = T0;

  // Invariant: never a commit beyond what a transaction made durable (any incarnation).
  kafka.onCommit = (p, offset) => {
    const durable = store.everDurable.get(p) ?? 0n;
    if (offset > durable)
      problems.push(`partition ${p}: offset ${offset} committed, only ${durable} ever durable`);
  };

  // Whether kafkajs's out-of-range log line is recognized: sometimes never (a kafkajs that words it
  // otherwise), so the other signs of a moved position must suffice.
  const outOfRangeHeard = pick([0, 0.5, 1]);
  const settings: PipelineSettings = {
    batchSize: int(3, 20),
    intervalMs: pick([50, 200, 1000]),
    flushOnCaughtUp: chance(0.5),
    concurrency: int(1, 3),
    queueSize: int(40, 200),
    queueBytes: 64 * 1024 * 1024,
    partitionFloor: int(5, 30),
    roomWaitMs: 200,
    maxRetries: 2,
    retryDelayMs: 50,
    retryMaxDelayMs: 2000,
    fromBeginning: true,
    stallMs: 20_000,
    refetchWaitMs: 5000,
  };
  settings.partitionFloor = Math.min(settings.partitionFloor, Math.floor(settings.queueSize / 2));

  function startInstance(): Instance {
    const scope = new Scope();
    const member = new SimMember(kafka, clock, scope, {
      fetchMs: int(5, 100),
      maxBatch: int(1, 30),
      random: rand,
      outOfRangeHeard: outOfRangeHeard,
    });
    const logger = createLogger((process.env.SIM_LOG_LEVEL ?? 'silent') as 'silent').child({
      instance: nextId,
      sim: () => clock.now() - T0,
    });
    const metrics = createMetrics(new Registry(), false);
    const committer = new OffsetCommitter(member, logger, metrics);
    const inst: Instance = {
      id: nextId++,
      scope,
      member,
      pipeline: null!,
      queueSize: settings.queueSize,
      state: 'running',
      rejoining: false,
    };
    const pipeline = new Pipeline(settings, {
      flush: store.flushFor(scope),
      classify: classifyDbError,
      consumer: member,
      resume: store.resumeIo(),
      committer,
      metrics,
      logger,
      clock: clock.clockFor(scope),
      random: rand,
      onStalled: () => rejoin(inst),
    });
    inst.pipeline = pipeline;
    member.start({
      onBatch: (b, h) => pipeline.handleBatch(b, h),
      onAssignment: (tps, epoch) => pipeline.handleAssignment(tps, epoch),
      onFatal: () => undefined,
      onPositionReset: (tp, reason) => pipeline.doubt(tp.topic, tp.partition, reason),
      onTopicMissing: (reason) => pipeline.doubtAll(reason),
    });
    const every = (ms: number, fn: () => void) => {
      const tick = () => {
        fn();
        clock.after(ms, tick, scope);
      };
      clock.after(ms, tick, scope);
    };
    every(1000, () => {
      void committer.commitPending();
      const depth = pipeline.status().depth;
      if (depth > inst.queueSize)
        problems.push(`instance ${inst.id}: ${depth} entries buffered, over ${inst.queueSize}`);
    });
    every(5000, () => {
      const t = kafka.topic;
      if (!t || inst.state !== 'running') return;
      const seen = new Map<string, Observation>();
      for (const tp of member.assigned()) {
        if (tp.partition >= t.partitions.length) continue;
        seen.set(tpKey(TOPIC, tp.partition), {
          highWatermark: t.end(tp.partition),
          fence: store.fences.get(tp.partition)?.next ?? null,
        });
      }
      pipeline.observe(seen);
    });
    instances.push(inst);
    return inst;
  }

  /** The service's stall recovery: leave the group, join again. */
  function rejoin(inst: Instance): void {
    if (inst.rejoining || inst.state !== 'running') return;
    inst.rejoining = true;
    note('rejoin (stall recovery)');
    inst.pipeline.handleAssignment([], 0);
    kafka.leave(inst.member);
    clock.after(
      100,
      () => {
        if (inst.state === 'running') kafka.join(inst.member);
        clock.after(settings.stallMs, () => (inst.rejoining = false), inst.scope);
      },
      inst.scope,
    );
  }

  const live = () => instances.filter((i) => i.state === 'running');

  /** Advances virtual time until `p` settles (code awaiting virtual time cannot be awaited alone). */
  async function during<T>(p: Promise<T>): Promise<T> {
    let settled = false;
    const out = p.finally(() => (settled = true));
    while (!settled) await clock.runUntil(clock.now() + 100);
    return out;
  }
  /** An operation that takes virtual time runs beside the schedule; one at a time. */
  let operationInFlight: Promise<void> | null = null;
  const inBackground = (what: () => Promise<void>) => {
    operationInFlight = what().finally(() => (operationInFlight = null));
  };

  function crash(inst: Instance): void {
    inst.state = 'gone';
    inst.scope.dead = true;
    inst.pipeline.close();
    // The session expires later: its partitions wait until then.
    clock.after(10_000, () => kafka.leave(inst.member));
  }

  async function stopGracefully(inst: Instance): Promise<void> {
    inst.state = 'stopping';
    await inst.pipeline.drain(clock.now() + 5000);
    inst.pipeline.close();
    inst.member.stop();
    inst.scope.dead = true;
    inst.state = 'gone';
  }

  async function stopAll(): Promise<void> {
    await Promise.all(live().map(stopGracefully));
  }

  // ---- producing ----------------------------------------------------------------------------------
  const lastTimeOf = new Map<number, number>();
  function produce(): void {
    const t = kafka.topic;
    if (!t) return;
    const count = int(1, 25);
    for (let i = 0; i < count; i++) {
      const now = clock.now();
      const correction = produced.length > 0 && chance(0.35);
      const base = correction ? pick(produced) : null;
      const symbol = base ? base.key.split('|')[0]! : `S${int(0, SYMBOLS - 1)}`;
      const barStartMs = base ? base.barStartMs : BARS_FROM + int(0, MINUTES - 1) * 60_000;
      const partitions = t.partitions.length;
      const byKey = Number(symbol.slice(1)) % partitions;
      const partition = chance(0.8) ? byKey : int(0, partitions - 1);
      let recordTime = now;
      const r = rand();
      if (r < 0.08) recordTime = now - int(1, 600_000);
      else if (r < 0.13) recordTime = now + int(1, 600_000);
      else if (r < 0.16) recordTime = pick([now + 5 * 365 * 86_400_000, now * 1000, -5]);
      else if (r < 0.21) recordTime = lastTimeOf.get(partition) ?? now;
      lastTimeOf.set(partition, recordTime);
      const headerVersionTime = chance(0.03) ? now - int(0, 3_600_000) : null;
      const invalid = chance(0.05);
      const baseValues = base && base.values !== DELETED_VALUES ? base.values.split(',') : null;
      const open = baseValues && chance(0.3) ? Number(baseValues[0]) : int(100, 500) / 4;
      const close = baseValues && chance(0.3) ? Number(baseValues[3]) : int(100, 500) / 4;
      const high = Math.max(open, close) + int(0, 8) / 4;
      const low = Math.min(open, close) - int(0, 8) / 4;
      const volume = int(1, 10_000);
      const vwap = chance(0.2) ? null : (low + high) / 2;
      const revision = base && chance(0.3) ? base.revision + int(0, 2) : chance(0.2) ? int(0, 5) : 0;
      // A delete: every trade of a bar's minute busted (a correction of a bar sent before, mostly).
      const deleted = chance(base ? 0.12 : 0.01);
      const identical = !deleted && base && base.valid && base.values !== DELETED_VALUES && chance(0.15);
      const valuesText = deleted
        ? DELETED_VALUES
        : identical
          ? base.values
          : valuesOf({ open, high, low, close, volume, vwap });
      const [o, h, l, c, v, w] = valuesText.split(',');
      const json = deleted
        ? {
            symbol,
            timestamp: new Date(barStartMs).toISOString(),
            deleted: true,
            ...(revision > 0 || chance(0.1) ? { revision } : {}),
          }
        : {
            symbol,
            timestamp: new Date(barStartMs).toISOString(),
            open: Number(o),
            high: Number(h),
            low: Number(l),
            close: Number(c),
            volume: Number(v),
            ...(w === 'null' ? {} : { vwap: Number(w) }),
            ...(revision > 0 || chance(0.1) ? { revision } : {}),
          };
      const text = invalid
        ? pick([
            'not json',
            JSON.stringify({ symbol }),
            JSON.stringify('low' in json ? { ...json, high: json.low - 1 } : { ...json, deleted: 'yes' }),
          ])
        : JSON.stringify(json);
      const headers: Record<string, string> =
        headerVersionTime === null ? {} : { [VERSION_TIME_HEADER]: String(headerVersionTime) };
      const id = produced.length;
      const offset = kafka.produce(partition, {
        key: symbol,
        value: Buffer.from(text),
        timestamp: recordTime,
        headers,
        id,
      });
      if (offset === null) continue;
      produced.push({
        id,
        incarnation: kafka.incarnation,
        partition,
        offset,
        valid: !invalid,
        key: `${symbol}|${barStartMs}`,
        barStartMs,
        values: valuesText,
        revision,
        recordTime,
        headerVersionTime,
        producedAt: now,
      });
    }
  }

  /** Dead letters back to the topic (dlq replay): still invalid, never land. */
  function replayDeadLetters(): void {
    const t = kafka.topic;
    const invalid = produced.filter((m) => !m.valid && m.incarnation === kafka.incarnation);
    if (!t || invalid.length === 0) return;
    for (let i = 0; i < Math.min(5, invalid.length); i++) {
      const m = pick(invalid);
      const source = t.at(m.partition, m.offset);
      if (!source) continue;
      const partition = int(0, t.partitions.length - 1);
      const id = produced.length;
      const offset = kafka.produce(partition, {
        ...source,
        headers: { [VERSION_TIME_HEADER]: String(m.recordTime) },
        id,
      });
      if (offset !== null)
        produced.push({
          ...m,
          id,
          partition,
          offset,
          producedAt: clock.now(),
          headerVersionTime: m.recordTime,
        });
    }
  }

  function backfill(): void {
    let ordinal = BigInt(int(0, 1000));
    for (let i = 0; i < int(5, 30); i++) {
      const symbol = `S${int(0, SYMBOLS - 1)}`;
      const barStartMs = BARS_FROM + int(0, MINUTES - 1) * 60_000;
      const open = int(100, 500) / 4;
      const values = chance(0.05)
        ? DELETED_VALUES
        : valuesOf({
            open,
            high: open + 1,
            low: open - 1,
            close: open,
            volume: int(1, 99),
            vwap: null,
          });
      const row: Loaded = {
        key: `${symbol}|${barStartMs}`,
        values,
        version: [BigInt(int(0, 2)), 0, ordinal++],
      };
      loaded.push(row);
      store.load(row.key, row.values, row.version);
    }
  }

  // ---- operations ---------------------------------------------------------------------------------
  function operate(): void {
    const r = rand();
    const t = kafka.topic;
    lastOperationAt = clock.now();
    if (r < 0.08 && live().length > 0) {
      crash(pick(live()));
      note('SIGKILL an instance');
    } else if (r < 0.14 && live().length > 0) {
      note('graceful stop of an instance');
      void stopGracefully(pick(live()));
    } else if (r < 0.26 && live().length < 3) {
      startInstance();
      note('instance added');
    } else if (r < 0.32 && t && t.partitions.length < 12) {
      kafka.addPartitions(int(1, 3));
      note('partitions added');
    } else if (r < 0.38 && t) {
      kafka.deleteTopic();
      note('topic deleted and re-created under running instances');
      const count = int(1, 6);
      const rejoin = chance(0.5);
      clock.after(int(500, 5000), () => {
        if (!kafka.topic) kafka.createTopic(count, rejoin);
      });
    } else if (r < 0.48 && t) {
      const n = Math.min(t.partitions.length - (t.partitions.length > 1 ? 1 : 0), int(1, 4));
      const chosen = new Set<number>();
      while (chosen.size < n) chosen.add(int(0, t.partitions.length - 1));
      for (const p of chosen) store.locked.add(p);
      note(`fence rows of ${n} partition(s) held`);
      clock.after(int(2000, 30_000), () => {
        for (const p of chosen) store.locked.delete(p);
      });
    } else if (r < 0.56) {
      store.outage = true;
      note('database outage');
      clock.after(int(500, 10_000), () => (store.outage = false));
    } else if (r < 0.62) {
      kafka.rebalance();
      note('broker restart (the group rejoins)');
    } else if (r < 0.68 && t && !operationInFlight) {
      note('offsets reset --to earliest, every instance stopped');
      const restart = Math.max(1, live().length);
      inBackground(async () => {
        await stopAll();
        const now = kafka.topic;
        if (now) {
          for (let p = 0; p < now.partitions.length; p++) {
            store.resetFence(p, now.partitions[p]!.start);
            kafka.committed.set(p, now.partitions[p]!.start);
          }
        }
        for (let i = 0; i < restart; i++) startInstance();
      });
    } else if (r < 0.74 && t && live().length > 0) {
      const p = int(0, t.partitions.length - 1);
      const fence = store.fences.get(p)?.next ?? 0n;
      // Within the log, as the CLI insists: from its start to the fence (or its end, if shorter).
      const end = t.end(p) < fence ? t.end(p) : fence;
      const start = t.partitions[p]!.start;
      const to = end > start ? start + BigInt(int(0, Number(end - start))) : start;
      // As `bar-writer offsets reset` does: the fence keeps the identity of the message before it.
      const before = to > t.partitions[p]!.start ? t.at(p, to - 1n) : undefined;
      store.resetFence(p, to, before ? fingerprint(before.offset, before.timestamp, before.value) : null);
      resets.push({ incarnation: kafka.incarnation, partition: p, to });
      kafka.committed.set(p, to);
      note('offsets reset --force while instances run');
    } else if (r < 0.79 && t && !operationInFlight && store.fences.size > 0) {
      // (A group with no fence at all for the topic, a deployment from before fences or a new database,
      // follows the committed offset by design: the operation is for a group that has written.)
      note('committed offset moved ahead of the fence (Kafka tools), instances stopped');
      const restart = Math.max(1, live().length);
      inBackground(async () => {
        await stopAll();
        const now = kafka.topic;
        if (now) {
          const p = int(0, now.partitions.length - 1);
          kafka.committed.set(p, now.end(p));
        }
        for (let i = 0; i < restart; i++) startInstance();
      });
    } else if (r < 0.86) {
      replayDeadLetters();
      note('dlq replay');
    } else if (r < 0.93) {
      backfill();
      note('backfill overlapping the feed');
    }
  }

  // ---- healthy partitions never stall ---------------------------------------------------------------
  const caughtUpAt = new Map<number, number>();
  const faultActive = () =>
    store.outage || !kafka.topic || clock.now() - lastOperationAt < 15_000 || live().length === 0;
  function checkStalls(): void {
    const t = kafka.topic;
    if (!t || faultActive()) return;
    for (let p = 0; p < t.partitions.length; p++) {
      if (store.locked.has(p)) continue;
      const fence = store.fences.get(p)?.next ?? 0n;
      if (fence >= t.end(p)) {
        caughtUpAt.set(p, clock.now());
        continue;
      }
      const since = Math.max(
        store.advancedAt.get(p) ?? T0,
        caughtUpAt.get(p) ?? T0,
        lastOperationAt + 15_000,
      );
      if (clock.now() - since > 45_000) {
        problems.push(
          `partition ${p} healthy but stalled for ${Math.round((clock.now() - since) / 1000)} s at ${fence} of ${t.end(p)}`,
        );
        caughtUpAt.set(p, clock.now());
      }
    }
  }

  // ---- the run ------------------------------------------------------------------------------------
  const seconds = options.seconds ?? 120;
  startInstance();
  if (chance(0.5)) startInstance();
  const end = T0 + seconds * 1000;
  while (clock.now() < end && problems.length === 0) {
    if (chance(0.6)) produce();
    if (chance(options.operationRate ?? 0.04)) operate();
    await clock.runUntil(clock.now() + 500);
    checkStalls();
  }

  // Heal everything, stop producing, and wait until every partition is written to its end.
  if (operationInFlight) await during(operationInFlight);
  note('heal');
  store.outage = false;
  store.locked.clear();
  if (!kafka.topic) kafka.createTopic(int(1, 6));
  if (live().length === 0) startInstance();
  lastOperationAt = clock.now();
  const caughtUp = async (limitMs: number): Promise<boolean> => {
    const until = clock.now() + limitMs;
    while (clock.now() < until) {
      await clock.runUntil(clock.now() + 1000);
      const t = kafka.topic!;
      let done = true;
      for (let p = 0; p < t.partitions.length; p++) {
        const fence = store.fences.get(p)?.next ?? 0n;
        const committed = kafka.committed.get(p) ?? 0n;
        if (fence !== t.end(p) || committed !== t.end(p)) done = false;
      }
      if (done && live().every((i) => i.pipeline.status().depth === 0)) return true;
    }
    return false;
  };
  let verdict: Verdict | null = null;
  if (!(await caughtUp(600_000))) {
    const t = kafka.topic!;
    const behind = t.partitions
      .map(
        (_, p) =>
          `${p}: fence ${store.fences.get(p)?.next ?? '-'} committed ${kafka.committed.get(p) ?? '-'} end ${t.end(p)}`,
      )
      .join('; ');
    problems.push(`not caught up 10 minutes after healing: ${behind}`);
  } else {
    verdict = check(produced, loaded, kafka.incarnation, store.bars, resets);
    if (verdict.lost.length > 0) {
      const where = verdict.lost.slice(0, 3).map((k) =>
        produced
          .filter((m) => m.key === k && m.valid)
          .map((m) => `${k} p${m.partition}@${m.offset}#${m.incarnation}`)
          .join(' '),
      );
      const t = kafka.topic!;
      const state = t.partitions.map(
        (_, p) => `p${p} fence ${store.fences.get(p)?.next ?? '-'} end ${t.end(p)}`,
      );
      problems.push(
        `lost ${verdict.lost.length}: ${where.join('; ')} [incarnation ${kafka.incarnation}: ${state.join(', ')}]`,
      );
    }
    if (verdict.stale.length > 0)
      problems.push(`stale ${verdict.stale.length}: ${verdict.stale.slice(0, 5).join('; ')}`);
    if (verdict.invented.length > 0)
      problems.push(`invented ${verdict.invented.length}: ${verdict.invented.slice(0, 5).join('; ')}`);
    problems.push(...store.latestMismatches().slice(0, 5));

    // A replay of every partition from its start, every instance stopped first: nothing written.
    note('replay from the start (the no-op check)');
    await during(stopAll());
    const t = kafka.topic!;
    for (let p = 0; p < t.partitions.length; p++) {
      store.resetFence(p, 0n);
      kafka.committed.set(p, 0n);
    }
    const writes = store.writes;
    startInstance();
    const skipped = resets.some((r) => r.incarnation === kafka.incarnation);
    if (!(await caughtUp(600_000))) problems.push('the replay did not catch up');
    else if (!skipped && store.writes !== writes)
      problems.push(`the replay wrote ${store.writes - writes} row(s)`);
    else if (skipped) {
      // What an operator's reset skipped is written by the replay, and nothing else changes.
      const after = check(produced, loaded, kafka.incarnation, store.bars);
      const wrong = [...after.lost, ...after.stale, ...after.invented];
      if (wrong.length > 0) problems.push(`after the replay: ${wrong.slice(0, 5).join('; ')}`);
    }
    problems.push(
      ...store
        .latestMismatches()
        .slice(0, 5)
        .map((m) => `after the replay: ${m}`),
    );
  }
  for (const i of instances) {
    i.scope.dead = true;
    i.pipeline.close();
  }
  return { seed, problems, verdict, operations: ops, produced: produced.length, log };
}
