/**
 * Wiring and lifecycle: builds every stage from the configuration, starts and stops them in order.
 *
 *   Kafka (ConsumerPort) ─▶ Pipeline (partition machines, intake, admission, scheduler)
 *        ─▶ flush (store: fence + COPY + upsert; dead letters) ─▶ OffsetCommitter ─▶ Kafka
 *
 * The lifecycle is one state:
 *
 *   idle ──start()──▶ starting ──consumer running──▶ running ──stop()──▶ stopping ──▶ stopped
 *                        │  └──stop()──▶ stopping (start-up is told to give up and waited for)   │
 *                        └──HTTP cannot listen──▶ stopped (start() rejects)     stop() failed ◀──┘ (retried by stop())
 *   stopped ──start()──▶ starting (a new run: new pools, clients and pipeline)
 *
 * start() and stop() are idempotent: a second call returns the call in flight. stop() waits for a
 * start-up in progress, however long it takes, up to its own deadline; then every resource is closed
 * even when another close fails (a failed close is retried by the next stop()). What one start
 * creates lives in a `Run`, so nothing of a stopped run is reused.
 */
import type { Kafka } from 'kafkajs';
import { Registry } from 'prom-client';
import type { Config } from './config';
import { createFlush } from './batch/flush';
import { Pipeline, type Observation } from './batch/pipeline';
import { retryDelayMs } from './batch/policy';
import { MAX_BATCHES_PER_FLUSH } from './batch/scheduler';
import { firstBrokerReport, incompatibilityMessage } from './consumer/brokerVersions';
import { kafkaErrorType } from './consumer/errors';
import { createKafka, KafkajsConsumer, KafkaSignals, kafkaSecurityOptions } from './consumer/kafkajs';
import type { ConsumerPort } from './consumer/port';
import { KafkaDeadLetterSink, NoDeadLetterSink, type DeadLetterSink } from './deadletter/producer';
import { NOT_WRITTEN_REASONS } from './deadletter/records';
import { ensureDeadLetterTopic } from './deadletter/topic';
import { HttpServer } from './http/server';
import { errorMessage, type Logger } from './observe/logger';
import { createMetrics, HTTP_READ_RESULTS, zeroLabels, type Metrics } from './observe/metrics';
import { every, type Periodic } from './observe/periodic';
import { Readiness, type CheckResult } from './observe/readiness';
import { OffsetCommitter, tpKey } from './offsets/committer';
import { lagOf } from './offsets/lag';
import { ResumeReader } from './offsets/resume';
import { CompressedChunks } from './store/compressedChunks';
import { classifyDbError, DB_ERROR_CLASSES } from './store/errors';
import { readFences, resetFence } from './store/fences';
import { databaseCheck, publicDetail, replicaCheck, reportPool } from './store/health';
import { createPool, QUERY_TIMEOUT_MARGIN_MS, readConnection, readsElsewhere, type Pool } from './store/pool';
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
/** Of a stop's deadline, what is kept for the drain and the closes after waiting for start-up. */
const STOP_RESERVE_MS = 1000;
/** How long a read waits for a free read connection when DB_READ_TIMEOUT is 0 (no statement timeout). */
const READ_WAIT_DEFAULT_MS = 5000;
/**
 * How often the watch reads the log ends, the committed offsets and the fences of the partitions
 * owned: lag, stalls, a log end below a position, a fence moved back by an operator.
 */
const WATCH_MS = 5000;

/** Where start-up is: readiness shows it (with the latest reason); the log gets one line per change. */
type StartupPhase =
  | { phase: 'starting' }
  | { phase: 'waiting for kafka'; reason: string }
  | { phase: 'waiting for the topic'; reason: string }
  | { phase: 'kafka incompatible'; reason: string }
  | { phase: 'consuming' }
  | { phase: 'rejoining'; reason: string }
  | { phase: 'stopped' };

type Lifecycle =
  | { name: 'idle' }
  | { name: 'starting'; run: Run; done: Promise<void> }
  | { name: 'running'; run: Run }
  | { name: 'stopping'; run: Run; done: Promise<boolean> }
  | { name: 'stopped'; failed: Run | null };

/** Everything one start creates and its stop closes. */
interface Run {
  pool: Pool;
  /** The read API's own pool (null when HTTP_READ_API is off): a read never takes a writer's connection. */
  readPool: Pool | null;
  kafka: Kafka;
  consumer: ConsumerPort;
  deadLetters: DeadLetterSink;
  committer: OffsetCommitter;
  compressed: CompressedChunks;
  pipeline: Pipeline;
  http: HttpServer;
  readiness: Readiness;
  periodic: Periodic[];
  /** stop() asked start-up to give up (`abort` wakes what start-up waits for). */
  aborted: boolean;
  abort: AbortController;
  /** What start-up awaits right now (stop() waits for it to end, up to its deadline). */
  inFlight: Set<Promise<unknown>>;
  startup: StartupPhase;
  /** A consumer rejoin in progress (stall recovery). */
  rejoining: Promise<void> | null;
  /** Resources closed so far (a failed stop retries the rest). */
  closed: Set<string>;
  /** Drain result of a stop that failed later on. */
  drained: boolean | null;
}

export class Service {
  readonly metrics: Metrics;
  private readonly logger: Logger;
  private state: Lifecycle = { name: 'idle' };
  /** The HTTP port of the current (or last) run. */
  port = 0;

  constructor(
    private readonly config: Config,
    private readonly options: ServiceOptions,
  ) {
    this.logger = options.logger;
    this.metrics = createMetrics(options.registry ?? new Registry());
    zeroLabels(this.metrics.barsRejected, 'reason', NOT_WRITTEN_REASONS);
    zeroLabels(this.metrics.writeErrors, 'class', DB_ERROR_CLASSES);
    zeroLabels(this.metrics.offsetCommits, 'result', ['ok', 'failed']);
    zeroLabels(this.metrics.httpReads, 'result', HTTP_READ_RESULTS);
    zeroLabels(this.metrics.positionDoubts, 'reason', [
      'offset_out_of_range',
      'offsets_backwards',
      'log_end_below_position',
      'fence_moved_back',
      'topic_missing',
      'other',
    ]);
    zeroLabels(this.metrics.consumerRestarts, 'reason', ['stalled']);
  }

  /** Starts HTTP at once, then keeps trying to join the consumer group until it runs (or stop()). */
  start(): Promise<void> {
    const s = this.state;
    if (s.name === 'starting') return s.done;
    if (s.name === 'running') return Promise.resolve();
    if (s.name === 'stopping') return s.done.then(() => this.start());
    const run = this.createRun();
    const done = this.doStart(run);
    this.state = { name: 'starting', run, done };
    return done;
  }

  private createRun(): Run {
    const { config, logger, metrics } = this;
    const pool = createPool(config.db);
    const readPool = config.http.readApi
      ? createPool(
          readConnection(config.db),
          'bar-writer-reads',
          config.db.readTimeoutMs > 0 ? config.db.readTimeoutMs + QUERY_TIMEOUT_MARGIN_MS : 0,
        )
      : null;
    const signals = new KafkaSignals();
    const kafka = createKafka(config.kafka, logger, signals);
    const consumer = new KafkajsConsumer(kafka, config.kafka, logger, signals);
    const deadLetters: DeadLetterSink = config.kafka.dlqTopic
      ? new KafkaDeadLetterSink(kafka, config.kafka.dlqTopic)
      : new NoDeadLetterSink();
    const compressed = new CompressedChunks(pool, config.db.schema);
    const committer = new OffsetCommitter(consumer, logger.child({ component: 'offsets' }), metrics);
    const { schema } = config.db;
    const group = config.kafka.groupId;
    // eslint-disable-next-line prefer-const
    let run: Run;
    const pipeline = new Pipeline(
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
        versionMaxFutureMs: config.write.versionMaxFutureMs,
        extraColumns: config.write.extraColumns,
        maxRetries: config.write.maxRetries,
        retryDelayMs: config.write.retryDelayMs,
        retryMaxDelayMs: config.write.retryMaxDelayMs,
        fromBeginning: config.kafka.fromBeginning,
        stallMs: config.kafka.stallTimeoutMs,
      },
      {
        flush: createFlush({
          pool,
          schema,
          group,
          deadLetters,
          metrics,
          logger: logger.child({ component: 'flush' }),
          lockTimeoutMs: config.db.lockTimeoutMs,
          statementTimeoutMs: config.db.statementTimeoutMs,
          compressed,
          extras: config.write.extraColumns,
        }),
        classify: classifyDbError,
        consumer,
        resume: new ResumeReader({
          fences: (topic) => readFences(pool, schema, group, topic),
          resetFence: (topic, partition, next) => resetFence(pool, schema, group, topic, partition, next),
          consumer,
        }),
        committer,
        metrics,
        logger: logger.child({ component: 'pipeline' }),
        onStalled: () => this.rejoin(run, 'stalled'),
      },
    );
    const readiness = new Readiness(
      {
        database: databaseCheck(
          pool,
          undefined,
          undefined,
          undefined,
          logger.child({ component: 'readiness' }),
        ),
        kafka: () => this.kafkaCheck(run),
        writes: () => this.writesCheck(run),
        // Reads on a server of their own (a replica): its state, never failing the writer's readiness.
        ...(readPool && readsElsewhere(config.db)
          ? {
              readReplica: replicaCheck(readPool, metrics, logger.child({ component: 'readiness' })),
            }
          : {}),
      },
      metrics,
    );
    const http = new HttpServer({
      logger,
      registry: metrics.registry,
      liveness: () => this.liveness(),
      readiness: () => readiness.evaluate(),
      metrics,
      reads: readPool
        ? new BarReader(readPool, schema, config.db.readTimeoutMs, {
            extras: config.write.extraColumns,
            timezone: config.db.aggregateTimezone,
          })
        : null,
      limits: {
        ...config.http,
        readConcurrency: config.db.readMaxConnections,
        readWaitMs: config.db.readTimeoutMs || READ_WAIT_DEFAULT_MS,
      },
    });
    run = {
      pool,
      readPool,
      kafka,
      consumer,
      deadLetters,
      committer,
      compressed,
      pipeline,
      http,
      readiness,
      periodic: [],
      aborted: false,
      abort: new AbortController(),
      inFlight: new Set(),
      startup: { phase: 'starting' },
      rejoining: null,
      closed: new Set(),
      drained: null,
    };
    return run;
  }

  private async doStart(run: Run): Promise<void> {
    try {
      this.port = await run.http.listen(this.config.http.port);
    } catch (err) {
      // Nothing else was started: close what the run created, and say why start() failed.
      await this.closeAll(run).catch(() => undefined);
      this.state = { name: 'stopped', failed: null };
      throw err;
    }
    this.logger.info({ port: this.port }, 'http listening');
    if (run.aborted) return;
    const { logger, metrics } = this;
    void run.compressed.refresh().catch(() => undefined); // the timer's first tick is a minute away
    run.periodic = [
      run.committer.retryEvery(1000),
      every(WATCH_MS, 'partition watch', () => this.watch(run), logger),
      reportPool(run.pool, metrics.poolConnections, logger),
      ...(run.readPool ? [reportPool(run.readPool, metrics.readPoolConnections, logger)] : []),
      every(COMPRESSED_REFRESH_MS, 'compressed chunks', () => run.compressed.refresh(), logger),
      run.readiness.refreshEvery(5000, logger),
    ];
    await this.joinGroup(run);
    if (!run.aborted && this.state.name === 'starting' && this.state.run === run) {
      this.state = { name: 'running', run };
    }
  }

  /**
   * Joins the consumer group, retrying with backoff until the consumer runs or the run is aborted. Used
   * by start-up and by a rejoin (stall recovery).
   */
  private async joinGroup(run: Run): Promise<void> {
    const { logger } = this;
    for (let attempt = 1; !run.aborted; attempt++) {
      try {
        if (this.config.kafka.dlqTopic) {
          // Brokers unreachable: this attempt fails here (one round of connection retries, not two).
          await untilAborted(
            run,
            ensureDeadLetterTopic(run.kafka, this.config.kafka.dlqTopic, logger, run.abort.signal),
          );
        }
        await untilAborted(
          run,
          run.consumer.start({
            onBatch: (b, heartbeat) => run.pipeline.handleBatch(b, heartbeat),
            onAssignment: (tps, epoch) => {
              logger.info({ partitions: tps.map((t) => t.partition) }, 'partitions assigned');
              run.pipeline.handleAssignment(tps, epoch);
            },
            onFatal: (err) => this.options.onFatal?.(err),
            onPositionReset: (tp, reason) => run.pipeline.doubt(tp.topic, tp.partition, reason),
            onTopicMissing: (reason) => run.pipeline.doubtAll(reason),
          }),
        );
        if (run.aborted) return; // stop() stops the consumer
        this.setPhase(run, { phase: 'consuming' });
        void this.brokerReport().then((r) => {
          if (r) logger.info({ broker: r.broker, kafka: r.line }, `Kafka broker runs Kafka ${r.line}`);
        });
        return;
      } catch (err) {
        if (run.aborted) return;
        const reason = errorMessage(err);
        // A broker line that dropped something kafkajs needs: say so, naming the line, once per attempt's
        // reason (setPhase logs a change only).
        const report = await untilAborted(run, this.brokerReport());
        if (report && report.missing.length > 0) {
          this.setPhase(run, { phase: 'kafka incompatible', reason: incompatibilityMessage(report) });
        } else {
          this.setPhase(
            run,
            kafkaErrorType(err) === 'UNKNOWN_TOPIC_OR_PARTITION'
              ? { phase: 'waiting for the topic', reason }
              : { phase: 'waiting for kafka', reason },
          );
        }
        await run.consumer.stop().catch(() => undefined);
        // In slices, so that stop() does not leave this loop asleep for up to 30 s.
        const until = Date.now() + retryDelayMs(attempt, STARTUP_RETRY_MS, STARTUP_RETRY_MAX_MS);
        while (!run.aborted && Date.now() < until) await sleep(Math.min(250, until - Date.now()));
      }
    }
  }

  /**
   * Leaves the group and joins again: the recovery of a stalled partition (kafkajs fetching nothing for
   * it: stale metadata after the topic changed, a fetch loop stuck). Every partition then resumes from
   * its fence. At most one at a time, and not more often than the stall bound.
   */
  private rejoin(run: Run, reason: 'stalled'): void {
    if (run.rejoining || run.aborted || this.state.name !== 'running' || this.state.run !== run) return;
    this.metrics.consumerRestarts.inc({ reason });
    this.setPhase(run, { phase: 'rejoining', reason });
    run.rejoining = (async () => {
      run.pipeline.handleAssignment([], 0); // revoked: buffers dropped, nothing of the old position kept
      await run.consumer
        .stop()
        .catch((err: unknown) => this.logger.warn({ err }, 'leaving the group failed'));
      await this.joinGroup(run);
    })().finally(() => {
      // The next rejoin no sooner than the stall bound: a partition needs that long to stall again.
      setTimeout(() => (run.rejoining = null), this.config.kafka.stallTimeoutMs).unref();
    });
  }

  /**
   * The periodic watch of the partitions owned: lag per partition, and what each partition's machine
   * compares (its log end, its fence as stored): stalls, a log end below the position, a fence moved
   * back by an operator's reset.
   */
  private async watch(run: Run): Promise<void> {
    if (run.startup.phase !== 'consuming') return;
    const owned = run.pipeline.assigned();
    if (owned.length === 0) {
      this.metrics.consumerLag.reset();
      return;
    }
    const { topic, groupId } = this.config.kafka;
    const [lags, fences] = await Promise.all([
      run.consumer.lag(),
      readFences(
        run.pool,
        this.config.db.schema,
        groupId,
        topic,
        owned.map((tp) => tp.partition),
      ),
    ]);
    const mine = new Set(owned.map((tp) => tp.partition));
    const seen = new Map<string, Observation>();
    this.metrics.consumerLag.reset();
    for (const l of lags) {
      if (!mine.has(l.partition)) continue;
      this.metrics.consumerLag.set({ partition: String(l.partition) }, lagOf(l));
      seen.set(tpKey(topic, l.partition), {
        highWatermark: l.highWatermark,
        fence: fences.get(l.partition)?.next ?? null,
      });
    }
    run.pipeline.observe(seen);
  }

  /** What the first reachable broker runs, and what kafkajs would miss there (null: none answered). */
  private brokerReport() {
    const { brokers } = this.config.kafka;
    return firstBrokerReport(brokers, kafkaSecurityOptions(this.config.kafka).ssl).catch(() => null);
  }

  /** One log line per change of start-up phase, not one per attempt. */
  private setPhase(run: Run, next: StartupPhase): void {
    const changed = next.phase !== run.startup.phase;
    run.startup = next;
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
    } else if (next.phase === 'rejoining') {
      this.logger.warn({ reason: next.reason }, 'leaving the consumer group and joining again');
    }
  }

  /**
   * Graceful stop, in this order: start-up told to give up and waited for → stop taking messages and
   * pause fetching → flush every buffer and commit its offsets (until the deadline) → stop the periodic
   * tasks → leave the group and disconnect Kafka → close the dead-letter producer → end the pool →
   * close HTTP → end the read pool. Resolves true when everything taken was durable and committed
   * before the deadline. Uncommitted messages are replayed by the next owner: late, never lost. Every
   * close is tried even when one fails; then stop() rejects, and a later stop() retries what is left.
   */
  stop(deadlineMs = Date.now() + this.config.shutdownTimeoutMs): Promise<boolean> {
    const s = this.state;
    if (s.name === 'stopping') return s.done;
    if (s.name === 'idle') {
      this.state = { name: 'stopped', failed: null };
      return Promise.resolve(true);
    }
    if (s.name === 'stopped') {
      if (!s.failed) return Promise.resolve(true);
      return this.beginStop(s.failed, null, deadlineMs);
    }
    return this.beginStop(s.run, s.name === 'starting' ? s.done : null, deadlineMs);
  }

  private beginStop(run: Run, starting: Promise<void> | null, deadlineMs: number): Promise<boolean> {
    const done = this.doStop(run, starting, deadlineMs);
    this.state = { name: 'stopping', run, done };
    return done;
  }

  private async doStop(run: Run, starting: Promise<void> | null, deadlineMs: number): Promise<boolean> {
    run.aborted = true;
    run.abort.abort();
    let drained = run.drained;
    let failure: unknown = null;
    try {
      if (starting) {
        // A connection attempt in flight is told to give up (kafkajs would retry it for a while);
        // start-up then ends at its next step. Waited for up to the deadline, however long that is.
        await run.consumer.stop().catch(() => undefined);
        // Start-up's own steps end at once; a connection attempt kafkajs keeps retrying is waited for
        // too (its timers must not outlive stop()), but a second is kept for the drain and the closes.
        const ended = await settledBy([starting, ...run.inFlight], deadlineMs - STOP_RESERVE_MS);
        if (!ended)
          this.logger.warn('start-up did not end by the shutdown deadline; closing its resources anyway');
      }
      if (drained === null) {
        drained = await run.pipeline.drain(deadlineMs);
        run.drained = drained;
        if (!drained) {
          this.logger.warn(
            { ...run.pipeline.status(), ...run.committer.pendingSummary() },
            'shutdown deadline reached (or writes failing) before every buffer was durable and committed; the rest will be replayed',
          );
        }
      }
    } catch (err) {
      failure = err;
    }
    try {
      await this.closeAll(run);
    } catch (err) {
      failure ??= err;
    }
    if (failure !== null) {
      this.state = { name: 'stopped', failed: run };
      this.logger.error({ err: failure }, 'stop failed; stop() again retries what is left');
      throw failure;
    }
    this.state = { name: 'stopped', failed: null };
    this.logger.info({ drained }, 'stopped');
    return drained ?? false;
  }

  /** Closes every resource of the run, each once, all of them even when one fails (then rejects). */
  private async closeAll(run: Run): Promise<void> {
    run.aborted = true;
    run.abort.abort();
    run.pipeline.close();
    for (const p of run.periodic) p.stop();
    run.periodic = [];
    run.startup = { phase: 'stopped' };
    const steps: [string, () => Promise<void> | undefined][] = [
      ['kafka', () => run.consumer.stop()],
      ['dead-letter producer', () => run.deadLetters.stop?.()],
      ['pool', () => run.pool.end()],
      ['http', () => run.http.close()],
      ['read pool', () => run.readPool?.end()],
    ];
    const errors: unknown[] = [];
    for (const [name, close] of steps) {
      if (run.closed.has(name)) continue;
      try {
        await close();
        run.closed.add(name);
      } catch (err) {
        errors.push(err);
        this.logger.warn({ err, resource: name }, 'closing failed');
      }
    }
    if (errors.length > 0) throw new AggregateError(errors, `${errors.length} resource(s) failed to close`);
  }

  liveness(): Record<string, CheckResult> {
    return { eventLoop: { ok: true, detail: 'responding' } };
  }

  /** /readyz of the current run. */
  readiness(): Promise<Record<string, CheckResult>> {
    const run = this.currentRun();
    if (!run) return Promise.resolve({ service: { ok: false, detail: this.state.name } });
    return run.readiness.evaluate();
  }

  private currentRun(): Run | null {
    const s = this.state;
    return s.name === 'idle' || s.name === 'stopped' ? null : s.run;
  }

  private kafkaCheck(run: Run): CheckResult {
    if (run.consumer.isJoined()) {
      const assigned = run.pipeline.status().assigned;
      return {
        ok: true,
        detail: `joined group ${this.config.kafka.groupId}, ${assigned} partition(s) assigned`,
      };
    }
    const s = run.startup;
    if (s.phase === 'stopped' || run.aborted) return { ok: false, detail: 'stopping' };
    const why =
      s.phase === 'waiting for the topic'
        ? `waiting for topic ${this.config.kafka.topic} to exist: ${s.reason}`
        : s.phase === 'waiting for kafka' || s.phase === 'kafka incompatible'
          ? `waiting for kafka: ${s.reason}`
          : s.phase === 'rejoining'
            ? `rejoining the group (${s.reason})`
            : s.phase;
    return { ok: false, detail: `not joined (${why})` };
  }

  private writesCheck(run: Run): CheckResult {
    const status = run.pipeline.status();
    if (status.stuck.length > 0) {
      return {
        ok: false,
        detail: `partition(s) ${status.stuck.map((s) => s.partition).join(', ')} failing past ${this.config.write.maxRetries} retries (${status.stuck[0]!.error ? publicDetail(status.stuck[0]!.error) : 'unknown error'})`,
      };
    }
    if (status.stalled.length > 0) {
      return {
        ok: false,
        detail: `partition(s) ${status.stalled.map((s) => s.partition).join(', ')} stalled: behind their log end with no progress for ${this.config.kafka.stallTimeoutMs} ms (rejoining the group to recover)`,
      };
    }
    return {
      ok: true,
      detail: `${status.depth} message(s) buffered, ${status.paused} partition(s) paused`,
    };
  }

  status() {
    const run = this.currentRun();
    return run
      ? run.pipeline.status()
      : { depth: 0, bytes: 0, assigned: 0, paused: 0, stuck: [], stalled: [] };
  }
}

/**
 * `p`, or a rejection as soon as the run is aborted: start-up never waits on a connection attempt that
 * stop() abandoned (kafkajs retries one for tens of seconds; the consumer gives it up by itself).
 */
function untilAborted<T>(run: Run, p: Promise<T>): Promise<T> {
  run.inFlight.add(p);
  void p.then(
    () => run.inFlight.delete(p),
    () => run.inFlight.delete(p),
  );
  if (run.aborted) return Promise.reject(new Error('start-up abandoned: stop() was called'));
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new Error('start-up abandoned: stop() was called'));
    run.abort.signal.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => run.abort.signal.removeEventListener('abort', onAbort));
  });
}

/** True once every promise has settled, false if the deadline comes first (its timer is cleared). */
async function settledBy(promises: Promise<unknown>[], deadlineMs: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), Math.max(0, deadlineMs - Date.now()));
    timer.unref();
  });
  try {
    return await Promise.race([Promise.allSettled(promises).then(() => true), late]);
  } finally {
    clearTimeout(timer);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)).unref());
}
