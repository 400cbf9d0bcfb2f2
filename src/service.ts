/**
 * Wiring: builds every stage from the configuration and owns the lifecycle.
 *
 *   Kafka (ConsumerPort) ─▶ Pipeline (decode, buffer, flush rule, backpressure)
 *        ─▶ flush (store: fence + COPY + upsert; dead letters) ─▶ OffsetCommitter ─▶ Kafka
 *
 * start() and stop() are idempotent: a second call returns the first call's promise.
 */
import type { Kafka } from 'kafkajs';
import { Registry } from 'prom-client';
import type { Config } from './config';
import { createFlush } from './batch/flush';
import { Pipeline } from './batch/pipeline';
import { createKafka, KafkajsConsumer } from './consumer/kafkajs';
import type { ConsumerPort } from './consumer/port';
import { KafkaDeadLetterSink, NoDeadLetterSink, type DeadLetterSink } from './deadletter/producer';
import { HttpServer, type CheckResult } from './http/server';
import { OffsetCommitter } from './offsets/committer';
import type { Logger } from './observe/logger';
import { createMetrics, type Metrics } from './observe/metrics';
import { classifyDbError } from './store/errors';
import { createPool, type Pool } from './store/pool';
import { getBars, getLatestBars } from './store/readBars';
import { readFences } from './store/writeBatch';

export interface ServiceOptions {
  logger: Logger;
  registry?: Registry;
  /** Called when the service cannot go on (consumer crashed without restart). */
  onFatal?: (err: Error) => void;
}

const COMMIT_RETRY_MS = 1000;
const LAG_REFRESH_MS = 10_000;
const DB_CHECK_TTL_MS = 2000;
/**
 * How long a fetched batch waits for room in full buffers before its partition is paused: long
 * enough for a couple of flushes on a healthy database (tens of ms each), short enough that a slow
 * or unreachable one shows as paused partitions within a second.
 */
const ROOM_WAIT_MS = 1000;

export class Service {
  readonly metrics: Metrics;
  private readonly pool: Pool;
  private readonly kafka: Kafka;
  private readonly consumer: ConsumerPort;
  private readonly deadLetters: DeadLetterSink & { stop?(): Promise<void> };
  private readonly committer: OffsetCommitter;
  private readonly pipeline: Pipeline;
  private readonly http: HttpServer;
  private readonly logger: Logger;
  private starting: Promise<void> | null = null;
  private stopping: Promise<boolean> | null = null;
  private stopped = false;
  private consumerRunning = false;
  private startupState = 'starting';
  /** The start-up state without its latest reason: a log line is written when this changes. */
  private startupPhase = 'starting';
  private deadLetterTopicReady = false;
  private timers: NodeJS.Timeout[] = [];
  private dbCheck: { at: number; result: CheckResult } | null = null;
  private dbCheckInFlight: Promise<CheckResult> | null = null;
  port = 0;

  constructor(
    private readonly config: Config,
    private readonly options: ServiceOptions,
  ) {
    const logger = options.logger;
    this.logger = logger;
    this.metrics = createMetrics(options.registry ?? new Registry());
    this.pool = createPool(config.db);
    this.kafka = createKafka(config.kafka, logger);
    this.consumer = new KafkajsConsumer(this.kafka, config.kafka, logger);
    this.deadLetters = config.kafka.dlqTopic
      ? new KafkaDeadLetterSink(this.kafka, config.kafka.dlqTopic)
      : new NoDeadLetterSink();
    this.committer = new OffsetCommitter(this.consumer, logger.child({ component: 'offsets' }), this.metrics);
    this.pipeline = new Pipeline(
      {
        batchSize: config.write.batchSize,
        concurrency: config.write.concurrency,
        intervalMs: config.write.intervalMs,
        flushOnCaughtUp: config.write.flushOnCaughtUp,
        queueSize: config.write.queueSize,
        queueBytes: config.write.queueBytes,
        roomWaitMs: ROOM_WAIT_MS,
        maxRetries: config.write.maxRetries,
        retryDelayMs: config.write.retryDelayMs,
        retryMaxDelayMs: config.write.retryMaxDelayMs,
      },
      {
        flush: createFlush({
          pool: this.pool,
          schema: config.db.schema,
          group: config.kafka.groupId,
          deadLetters: this.deadLetters,
        }),
        classify: classifyDbError,
        consumer: this.consumer,
        fences: async (topic, partitions) => {
          const all = await readFences(this.pool, config.db.schema, config.kafka.groupId, topic);
          return new Map([...all].filter(([p]) => partitions.includes(p)));
        },
        committer: this.committer,
        metrics: this.metrics,
        logger: logger.child({ component: 'pipeline' }),
      },
    );
    const schema = config.db.schema;
    this.http = new HttpServer({
      logger,
      registry: this.metrics.registry,
      liveness: () => this.liveness(),
      readiness: () => this.readiness(),
      reads: config.http.readApi
        ? {
            getBars: (symbol, start, end, limit) => getBars(this.pool, schema, symbol, start, end, limit),
            getLatestBars: (symbol, limit) => getLatestBars(this.pool, schema, symbol, limit),
          }
        : null,
      maxRangeMs: config.http.maxRangeMs,
      maxLimit: config.http.maxLimit,
    });
  }

  /** Starts HTTP at once, then keeps trying to join the consumer group until it runs (or stop()). */
  start(): Promise<void> {
    this.starting ??= this.doStart();
    return this.starting;
  }

  private async doStart(): Promise<void> {
    this.port = await this.http.listen(this.config.http.port);
    this.logger.info({ port: this.port }, 'http listening');
    this.every(COMMIT_RETRY_MS, () => this.committer.commitPending());
    this.every(LAG_REFRESH_MS, () => this.refreshLag());
    this.every(5000, async () => this.refreshPoolGauges());
    // Keeps bar_writer_ready current without a probe calling /readyz.
    this.every(5000, async () => void (await this.readiness()));
    let attempt = 0;
    while (!this.stopped) {
      try {
        await this.ensureDeadLetterTopic();
        await this.consumer.start({
          onBatch: (b, heartbeat) => this.pipeline.handleBatch(b, heartbeat),
          onAssignment: (tps) => {
            this.logger.info({ partitions: tps.map((t) => t.partition) }, 'partitions assigned');
            this.pipeline.handleAssignment(tps);
          },
          onFatal: (err) => this.options.onFatal?.(err),
        });
        if (this.stopped) {
          // stop() ran while this attempt was connecting: leave no consumer running behind it.
          await this.consumer.stop().catch(() => undefined);
          return;
        }
        this.consumerRunning = true;
        this.setStartupState('consuming', {});
        return;
      } catch (err) {
        if (this.stopped) return;
        attempt++;
        const missingTopic = (err as { type?: unknown }).type === 'UNKNOWN_TOPIC_OR_PARTITION';
        this.setStartupState(
          missingTopic ? `waiting for topic ${this.config.kafka.topic} to exist` : 'waiting for kafka',
          { err: (err as Error).message },
        );
        await this.consumer.stop().catch(() => undefined);
        const delay = Math.min(30_000, 500 * 2 ** Math.min(attempt, 6));
        // In slices, so that stop() does not leave this loop asleep for up to 30 s.
        const until = Date.now() + delay * (0.5 + Math.random() / 2);
        while (!this.stopped && Date.now() < until) await sleep(Math.min(250, until - Date.now()));
      }
    }
  }

  /** One log line per change of start-up state, not one per attempt. */
  private setStartupState(state: string, fields: Record<string, unknown>): void {
    // Readiness shows the latest reason; the log only the change of state.
    this.startupState = typeof fields.err === 'string' ? `${state}: ${fields.err}` : state;
    if (state === this.startupPhase) return;
    this.startupPhase = state;
    if (state === 'consuming')
      this.logger.info(
        { topic: this.config.kafka.topic, group: this.config.kafka.groupId },
        'consumer running',
      );
    else this.logger.warn(fields, `start-up: ${state}; retrying with backoff`);
  }

  private async ensureDeadLetterTopic(): Promise<void> {
    const topic = this.config.kafka.dlqTopic;
    if (!topic || this.deadLetterTopicReady) return;
    const admin = this.kafka.admin();
    try {
      // Brokers unreachable: this start-up attempt fails here (one round of connection retries, not two).
      await admin.connect();
      try {
        const existing = await admin.listTopics();
        if (!existing.includes(topic)) {
          await admin.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true });
          this.logger.info({ topic }, 'dead-letter topic created');
        }
        this.deadLetterTopicReady = true;
      } catch (err) {
        // Not fatal here: a dead letter that cannot be sent fails its flush, which is retried.
        this.logger.warn(
          { err: (err as Error).message, topic },
          'could not check or create the dead-letter topic',
        );
      }
    } finally {
      await admin.disconnect().catch(() => undefined);
    }
  }

  /**
   * Graceful stop, in this order: stop taking messages and pause fetching → flush every buffer and
   * commit its offsets (retrying until the deadline) → leave the group and disconnect Kafka → close the
   * dead-letter producer → end the pool → close HTTP. Resolves true when everything taken was durable
   * and committed before the deadline. Uncommitted messages are replayed by the next owner: late, never lost.
   */
  stop(deadlineMs = Date.now() + this.config.shutdownTimeoutMs): Promise<boolean> {
    this.stopping ??= this.doStop(deadlineMs);
    return this.stopping;
  }

  private async doStop(deadlineMs: number): Promise<boolean> {
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    let drained: boolean;
    try {
      drained = await this.pipeline.drain(deadlineMs);
      if (!drained)
        this.logger.warn(
          this.pipeline.status(),
          'shutdown deadline reached before every buffer was durable; the rest will be replayed',
        );
    } finally {
      this.pipeline.close();
      this.consumerRunning = false;
      await this.consumer
        .stop()
        .catch((err: unknown) => this.logger.warn({ err }, 'kafka disconnect failed'));
      await this.deadLetters.stop?.().catch(() => undefined);
      await this.pool.end().catch(() => undefined);
      await this.http.close();
    }
    this.logger.info({ drained }, 'stopped');
    return drained;
  }

  private every(ms: number, fn: () => Promise<void>): void {
    const t = setInterval(() => {
      fn().catch((err: unknown) => this.logger.debug({ err }, 'periodic task failed'));
    }, ms);
    t.unref();
    this.timers.push(t);
  }

  /** Lag of the partitions this instance owns (so a sum over replicas counts each partition once). */
  private async refreshLag(): Promise<void> {
    if (!this.consumerRunning) return;
    const owned = new Set(this.pipeline.assignedPartitions());
    const lags = await this.consumer.lag();
    this.metrics.consumerLag.reset();
    for (const p of lags) {
      if (!owned.has(p.partition)) continue;
      // No committed offset yet: count from the log start would overstate it after retention; use the end.
      const lag = p.committed === null ? p.highWatermark - p.lowWatermark : p.highWatermark - p.committed;
      this.metrics.consumerLag.set({ partition: String(p.partition) }, Number(lag < 0n ? 0n : lag));
    }
  }

  private refreshPoolGauges(): void {
    this.metrics.poolConnections.set({ state: 'total' }, this.pool.totalCount);
    this.metrics.poolConnections.set({ state: 'idle' }, this.pool.idleCount);
    this.metrics.poolConnections.set({ state: 'waiting' }, this.pool.waitingCount);
  }

  liveness(): Record<string, CheckResult> {
    return { eventLoop: { ok: true, detail: 'responding' } };
  }

  async readiness(): Promise<Record<string, CheckResult>> {
    const status = this.pipeline.status();
    const checks: Record<string, CheckResult> = {
      database: await this.checkDatabase(),
      kafka: this.consumer.isJoined()
        ? {
            ok: true,
            detail: `joined group ${this.config.kafka.groupId}, ${status.assigned} partition(s) assigned`,
          }
        : { ok: false, detail: this.stopped ? 'stopping' : `not joined (${this.startupState})` },
      writes:
        status.stuck.length === 0
          ? { ok: true, detail: `${status.depth} message(s) buffered, ${status.paused} partition(s) paused` }
          : {
              ok: false,
              detail: `partition(s) ${status.stuck.map((s) => s.partition).join(', ')} failing past ${this.config.write.maxRetries} retries: ${status.stuck[0]!.error?.message ?? 'unknown error'}`,
            },
    };
    this.metrics.ready.set(Object.values(checks).every((c) => c.ok) ? 1 : 0);
    return checks;
  }

  private async checkDatabase(): Promise<CheckResult> {
    if (this.dbCheck && Date.now() - this.dbCheck.at < DB_CHECK_TTL_MS) return this.dbCheck.result;
    this.dbCheckInFlight ??= (async () => {
      let result: CheckResult;
      try {
        await this.pool.query('SELECT 1');
        result = { ok: true, detail: 'reachable' };
      } catch (err) {
        result = { ok: false, detail: `unreachable: ${classifyDbError(err).message}` };
      }
      this.dbCheck = { at: Date.now(), result };
      this.dbCheckInFlight = null;
      return result;
    })();
    return this.dbCheckInFlight;
  }

  status() {
    return this.pipeline.status();
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
