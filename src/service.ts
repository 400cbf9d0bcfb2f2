/**
 * Wiring and lifecycle: builds every stage from the configuration, starts and stops them in order.
 *
 *   Kafka (ConsumerPort) ─▶ Pipeline (intake, admission, partitions, scheduler)
 *        ─▶ flush (store: fence + COPY + upsert; dead letters) ─▶ OffsetCommitter ─▶ Kafka
 *
 * start() and stop() are idempotent (a second call returns the first call's promise) and wait for each
 * other: stop() during start-up ends the connection attempt and waits for start-up to notice (it checks
 * between steps, and undoes what it did after), so nothing it creates is left running; start() after
 * stop() does nothing.
 */
import type { Kafka } from 'kafkajs';
import { Registry } from 'prom-client';
import type { Config } from './config';
import { createFlush } from './batch/flush';
import { Pipeline } from './batch/pipeline';
import { retryDelayMs } from './batch/policy';
import { MAX_BATCHES_PER_FLUSH } from './batch/scheduler';
import { firstBrokerReport, incompatibilityMessage } from './consumer/brokerVersions';
import { kafkaErrorType } from './consumer/errors';
import { createKafka, KafkajsConsumer, kafkaSecurityOptions } from './consumer/kafkajs';
import type { ConsumerPort } from './consumer/port';
import { KafkaDeadLetterSink, NoDeadLetterSink, type DeadLetterSink } from './deadletter/producer';
import { NOT_WRITTEN_REASONS } from './deadletter/records';
import { ensureDeadLetterTopic } from './deadletter/topic';
import { HttpServer } from './http/server';
import { errorMessage, type Logger } from './observe/logger';
import { createMetrics, HTTP_READ_RESULTS, zeroLabels, type Metrics } from './observe/metrics';
import { every, type Periodic } from './observe/periodic';
import { Readiness, type CheckResult } from './observe/readiness';
import { OffsetCommitter } from './offsets/committer';
import { reportLag } from './offsets/lag';
import { ResumePoints } from './offsets/resume';
import { CompressedChunks } from './store/compressedChunks';
import { classifyDbError, DB_ERROR_CLASSES } from './store/errors';
import { readFences, resetFence } from './store/fences';
import { databaseCheck, reportPool } from './store/health';
import { createPool, QUERY_TIMEOUT_MARGIN_MS, type Pool } from './store/pool';
import { BarReader } from './store/readBars';

export interface ServiceOptions {
  logger: Logger;
  registry?: Registry;
  /** Called when the service cannot go on (consumer crashed without restart). */
  onFatal?: (err: Error) => void;
}

/**
 * How long a fetched batch waits for room in full buffers before its partition is paused: long
 * enough for a couple of flushes on a healthy database (tens of ms each), short enough that a slow
 * or unreachable one shows as paused partitions within a second.
 */
const ROOM_WAIT_MS = 1000;
/** Start-up retries: from this delay, doubling, up to the cap (jittered by the policy's backoff). */
const STARTUP_RETRY_MS = 1000;
const STARTUP_RETRY_MAX_MS = 30_000;
/** How often the compressed chunks of bars_1m are read again (for bars_written_compressed_total). */
const COMPRESSED_REFRESH_MS = 60_000;
/** How long stop() waits for start-up to notice it (it checks between steps, every 250 ms at most). */
const STARTUP_STOP_WAIT_MS = 1000;
/** How long a read waits for a free read connection when DB_READ_TIMEOUT is 0 (no statement timeout). */
const READ_WAIT_DEFAULT_MS = 5000;

/** Where start-up is: readiness shows it (with the latest reason); the log gets one line per change. */
type StartupState =
  | { phase: 'starting' }
  | { phase: 'waiting for kafka'; reason: string }
  | { phase: 'waiting for the topic'; reason: string }
  | { phase: 'kafka incompatible'; reason: string }
  | { phase: 'consuming' }
  | { phase: 'stopped' };

export class Service {
  readonly metrics: Metrics;
  private readonly pool: Pool;
  /** The read API's own pool (null when HTTP_READ_API is off): a read never takes a writer's connection. */
  private readonly readPool: Pool | null;
  private readonly kafka: Kafka;
  private readonly consumer: ConsumerPort;
  private readonly deadLetters: DeadLetterSink;
  private readonly committer: OffsetCommitter;
  private readonly compressed: CompressedChunks;
  private readonly pipeline: Pipeline;
  private readonly http: HttpServer;
  private readonly readinessChecks: Readiness;
  private readonly logger: Logger;
  private starting: Promise<void> | null = null;
  private stopping: Promise<boolean> | null = null;
  private stopped = false;
  private state: StartupState = { phase: 'starting' };
  private periodic: Periodic[] = [];
  port = 0;

  constructor(
    private readonly config: Config,
    private readonly options: ServiceOptions,
  ) {
    const logger = options.logger;
    this.logger = logger;
    this.metrics = createMetrics(options.registry ?? new Registry());
    zeroLabels(this.metrics.barsRejected, 'reason', NOT_WRITTEN_REASONS);
    zeroLabels(this.metrics.writeErrors, 'class', DB_ERROR_CLASSES);
    zeroLabels(this.metrics.offsetCommits, 'result', ['ok', 'failed']);
    this.pool = createPool(config.db);
    this.readPool = config.http.readApi
      ? createPool(
          {
            ...config.db,
            maxConnections: config.db.readMaxConnections,
            maxIdleConnections: config.db.readMaxConnections,
          },
          'bar-writer-reads',
          config.db.readTimeoutMs > 0 ? config.db.readTimeoutMs + QUERY_TIMEOUT_MARGIN_MS : 0,
        )
      : null;
    zeroLabels(this.metrics.httpReads, 'result', HTTP_READ_RESULTS);
    this.kafka = createKafka(config.kafka, logger);
    this.consumer = new KafkajsConsumer(this.kafka, config.kafka, logger);
    this.deadLetters = config.kafka.dlqTopic
      ? new KafkaDeadLetterSink(this.kafka, config.kafka.dlqTopic)
      : new NoDeadLetterSink();
    this.compressed = new CompressedChunks(this.pool, config.db.schema);
    this.committer = new OffsetCommitter(this.consumer, logger.child({ component: 'offsets' }), this.metrics);
    const { schema } = config.db;
    const group = config.kafka.groupId;
    this.pipeline = new Pipeline(
      {
        batchSize: config.write.batchSize,
        concurrency: config.write.concurrency,
        intervalMs: config.write.intervalMs,
        flushOnCaughtUp: config.write.flushOnCaughtUp,
        queueSize: config.write.queueSize,
        queueBytes: config.write.queueBytes,
        // A partition may always hold what one flush takes from it, up to half the buffers.
        partitionFloor: Math.min(
          Math.floor(config.write.queueSize / 2),
          MAX_BATCHES_PER_FLUSH * config.write.batchSize,
        ),
        roomWaitMs: ROOM_WAIT_MS,
        minTimestampMs: config.write.minTimestampMs,
        maxRetries: config.write.maxRetries,
        retryDelayMs: config.write.retryDelayMs,
        retryMaxDelayMs: config.write.retryMaxDelayMs,
      },
      {
        flush: createFlush({
          pool: this.pool,
          schema,
          group,
          deadLetters: this.deadLetters,
          metrics: this.metrics,
          logger: logger.child({ component: 'flush' }),
          lockTimeoutMs: config.db.lockTimeoutMs,
          statementTimeoutMs: config.db.statementTimeoutMs,
          compressed: this.compressed,
        }),
        classify: classifyDbError,
        consumer: this.consumer,
        resume: new ResumePoints({
          fences: (topic, partitions) => readFences(this.pool, schema, group, topic, partitions),
          resetFence: (topic, partition, next) =>
            resetFence(this.pool, schema, group, topic, partition, next),
          consumer: this.consumer,
          committer: this.committer,
          fromBeginning: config.kafka.fromBeginning,
          metrics: this.metrics,
          logger: logger.child({ component: 'offsets' }),
        }),
        committer: this.committer,
        metrics: this.metrics,
        logger: logger.child({ component: 'pipeline' }),
      },
    );
    this.readinessChecks = new Readiness(
      {
        database: databaseCheck(this.pool),
        kafka: () => this.kafkaCheck(),
        writes: () => this.writesCheck(),
      },
      this.metrics,
    );
    this.http = new HttpServer({
      logger,
      registry: this.metrics.registry,
      liveness: () => this.liveness(),
      readiness: () => this.readiness(),
      metrics: this.metrics,
      reads: this.readPool ? new BarReader(this.readPool, schema, config.db.readTimeoutMs) : null,
      limits: {
        ...config.http,
        readConcurrency: config.db.readMaxConnections,
        readWaitMs: config.db.readTimeoutMs || READ_WAIT_DEFAULT_MS,
      },
    });
  }

  /** Starts HTTP at once, then keeps trying to join the consumer group until it runs (or stop()). */
  start(): Promise<void> {
    this.starting ??= this.doStart();
    return this.starting;
  }

  private async doStart(): Promise<void> {
    if (this.stopped) return;
    this.port = await this.http.listen(this.config.http.port);
    this.logger.info({ port: this.port }, 'http listening');
    if (this.stopped) {
      // stop() may have closed the server before it was listening: close it here.
      await this.http.close();
      return;
    }
    const logger = this.logger;
    void this.compressed.refresh().catch(() => undefined); // the timer's first tick is a minute away
    this.periodic = [
      this.committer.retryEvery(1000),
      reportLag(
        this.consumer,
        () => this.pipeline.assignedPartitions(),
        () => this.state.phase === 'consuming',
        this.metrics,
        logger,
      ),
      reportPool(this.pool, this.metrics.poolConnections, logger),
      ...(this.readPool ? [reportPool(this.readPool, this.metrics.readPoolConnections, logger)] : []),
      every(COMPRESSED_REFRESH_MS, 'compressed chunks', () => this.compressed.refresh(), logger),
      this.readinessChecks.refreshEvery(5000, logger),
    ];
    for (let attempt = 1; !this.stopped; attempt++) {
      try {
        if (this.config.kafka.dlqTopic) {
          // Brokers unreachable: this attempt fails here (one round of connection retries, not two).
          await ensureDeadLetterTopic(this.kafka, this.config.kafka.dlqTopic, logger);
        }
        await this.consumer.start({
          onBatch: (b, heartbeat) => this.pipeline.handleBatch(b, heartbeat),
          onAssignment: (tps, epoch) => {
            logger.info({ partitions: tps.map((t) => t.partition) }, 'partitions assigned');
            this.pipeline.handleAssignment(tps, epoch);
          },
          onFatal: (err) => this.options.onFatal?.(err),
        });
        if (this.stopped) return; // stop() stops the consumer once this returns
        this.setState({ phase: 'consuming' });
        void this.brokerReport().then((r) => {
          if (r) logger.info({ broker: r.broker, kafka: r.line }, `Kafka broker runs Kafka ${r.line}`);
        });
        return;
      } catch (err) {
        if (this.stopped) return;
        const reason = errorMessage(err);
        // A broker line that dropped something kafkajs needs: say so, naming the line, once per attempt's
        // reason (setState logs a change only).
        const report = await this.brokerReport();
        if (report && report.missing.length > 0) {
          this.setState({ phase: 'kafka incompatible', reason: incompatibilityMessage(report) });
        } else {
          this.setState(
            kafkaErrorType(err) === 'UNKNOWN_TOPIC_OR_PARTITION'
              ? { phase: 'waiting for the topic', reason }
              : { phase: 'waiting for kafka', reason },
          );
        }
        await this.consumer.stop().catch(() => undefined);
        // In slices, so that stop() does not leave this loop asleep for up to 30 s.
        const until = Date.now() + retryDelayMs(attempt, STARTUP_RETRY_MS, STARTUP_RETRY_MAX_MS);
        while (!this.stopped && Date.now() < until) await sleep(Math.min(250, until - Date.now()));
      }
    }
  }

  /** What the first reachable broker runs, and what kafkajs would miss there (null: none answered). */
  private brokerReport() {
    const { brokers } = this.config.kafka;
    return firstBrokerReport(brokers, kafkaSecurityOptions(this.config.kafka).ssl).catch(() => null);
  }

  /** One log line per change of start-up phase, not one per attempt. */
  private setState(next: StartupState): void {
    const changed = next.phase !== this.state.phase;
    this.state = next;
    if (!changed) return;
    if (next.phase === 'consuming') {
      this.logger.info(
        { topic: this.config.kafka.topic, group: this.config.kafka.groupId },
        'consumer running',
      );
    } else if (next.phase === 'waiting for kafka' || next.phase === 'waiting for the topic') {
      const what =
        next.phase === 'waiting for the topic'
          ? `waiting for topic ${this.config.kafka.topic} to exist`
          : next.phase;
      this.logger.warn({ err: next.reason }, `start-up: ${what}; retrying with backoff`);
    } else if (next.phase === 'kafka incompatible') {
      this.logger.error(`start-up: ${next.reason}; retrying with backoff`);
    }
  }

  /**
   * Graceful stop, in this order: let start-up notice and end → stop taking messages and pause fetching
   * → flush every buffer and commit its offsets (retrying until the deadline) → stop the periodic tasks
   * → leave the group and disconnect Kafka → close the dead-letter producer → end the pool → close
   * HTTP. Resolves true when everything taken was durable and committed before the deadline.
   * Uncommitted messages are replayed by the next owner: late, never lost.
   */
  stop(deadlineMs = Date.now() + this.config.shutdownTimeoutMs): Promise<boolean> {
    this.stopping ??= this.doStop(deadlineMs);
    return this.stopping;
  }

  private async doStop(deadlineMs: number): Promise<boolean> {
    this.stopped = true;
    // Start-up checks `stopped` between its steps. A connection attempt in flight is told to give up
    // (kafkajs would retry it for a while), then start-up gets a moment to notice; whatever it does
    // after that sees `stopped` and undoes itself.
    if (this.starting && this.state.phase !== 'consuming') {
      await this.consumer.stop().catch(() => undefined);
      await Promise.race([
        this.starting.catch(() => undefined),
        sleep(Math.min(STARTUP_STOP_WAIT_MS, deadlineMs - Date.now())),
      ]);
    }
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
      for (const p of this.periodic) p.stop();
      this.periodic = [];
      this.state = { phase: 'stopped' };
      await this.consumer
        .stop()
        .catch((err: unknown) => this.logger.warn({ err }, 'kafka disconnect failed'));
      await this.deadLetters.stop?.().catch(() => undefined);
      await this.pool.end().catch(() => undefined);
      await this.http.close();
      await this.readPool?.end().catch(() => undefined);
    }
    this.logger.info({ drained }, 'stopped');
    return drained;
  }

  liveness(): Record<string, CheckResult> {
    return { eventLoop: { ok: true, detail: 'responding' } };
  }

  readiness(): Promise<Record<string, CheckResult>> {
    return this.readinessChecks.evaluate();
  }

  private kafkaCheck(): CheckResult {
    if (this.consumer.isJoined()) {
      const assigned = this.pipeline.status().assigned;
      return {
        ok: true,
        detail: `joined group ${this.config.kafka.groupId}, ${assigned} partition(s) assigned`,
      };
    }
    const s = this.state;
    if (s.phase === 'stopped' || this.stopped) return { ok: false, detail: 'stopping' };
    const why =
      s.phase === 'waiting for the topic'
        ? `waiting for topic ${this.config.kafka.topic} to exist: ${s.reason}`
        : s.phase === 'waiting for kafka' || s.phase === 'kafka incompatible'
          ? `waiting for kafka: ${s.reason}`
          : s.phase;
    return { ok: false, detail: `not joined (${why})` };
  }

  private writesCheck(): CheckResult {
    const status = this.pipeline.status();
    if (status.stuck.length === 0) {
      return {
        ok: true,
        detail: `${status.depth} message(s) buffered, ${status.paused} partition(s) paused`,
      };
    }
    return {
      ok: false,
      detail: `partition(s) ${status.stuck.map((s) => s.partition).join(', ')} failing past ${this.config.write.maxRetries} retries: ${status.stuck[0]!.error?.message ?? 'unknown error'}`,
    };
  }

  status() {
    return this.pipeline.status();
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)).unref());
}
