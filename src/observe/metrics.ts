/**
 * Prometheus metrics, built on a registry passed in (never the global one) so tests can run several
 * service instances in one process. Labels are bounded: error class, reject reason, partition number,
 * pool state; never a symbol.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface Metrics {
  registry: Registry;
  writeTotal: Counter;
  writeErrors: Counter<'class'>;
  writeLatency: Histogram;
  queueDepth: Gauge;
  batchSize: Histogram;
  barsConsumed: Counter;
  barsWritten: Counter;
  barsRejected: Counter<'reason'>;
  barsDeleted: Counter;
  barsDeadLettered: Counter;
  barsSkippedFenced: Counter;
  endToEndDelay: Histogram;
  consumerLag: Gauge<'partition'>;
  rebalances: Counter;
  pausedPartitions: Gauge;
  backpressureSeconds: Counter;
  assignedPartitions: Gauge;
  offsetCommits: Counter<'result'>;
  poolConnections: Gauge<'state'>;
  ready: Gauge;
  resumeSkippedOffsets: Counter;
  logReplaced: Counter;
  resumeRereadOffsets: Counter;
  retentionSkippedOffsets: Counter;
  positionDoubts: Counter<'reason'>;
  partitionStalled: Gauge<'partition'>;
  consumerRestarts: Counter<'reason'>;
  versionTimeBounded: Counter;
  partitionFailures: Gauge<'partition'>;
  barsWrittenCompressed: Counter;
  readPoolConnections: Gauge<'state'>;
  readTargetUp: Gauge;
  readTargetInRecovery: Gauge;
  readTargetReplayLag: Gauge;
  httpReads: Counter<'result'>;
  httpConnections: Gauge;
}

/** How a read API request ended (bar_writer_http_reads_total{result}). */
export const HTTP_READ_RESULTS = ['ok', 'bad_request', 'unauthorized', 'overloaded', 'failed'] as const;
export type HttpReadResult = (typeof HTTP_READ_RESULTS)[number];

export function createMetrics(registry: Registry = new Registry(), withDefaults = true): Metrics {
  if (withDefaults) collectDefaultMetrics({ register: registry });
  const r = [registry];
  return {
    registry,
    writeTotal: new Counter({
      name: 'timescale_write_total',
      help: 'Committed write transactions (one per flush)',
      registers: r,
    }),
    writeErrors: new Counter({
      name: 'timescale_write_errors_total',
      help: 'Failed write attempts by error class (transient, data, fatal)',
      labelNames: ['class'],
      registers: r,
    }),
    writeLatency: new Histogram({
      name: 'timescale_write_latency_seconds',
      help: 'One flush from start to commit',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: r,
    }),
    queueDepth: new Gauge({
      name: 'timescale_write_queue_depth',
      help: 'Messages buffered across all partitions',
      registers: r,
    }),
    batchSize: new Histogram({
      name: 'timescale_write_batch_size',
      help: 'Bars per flush (one transaction: every partition it wrote)',
      buckets: [1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000],
      registers: r,
    }),
    barsConsumed: new Counter({
      name: 'bars_consumed_total',
      help: 'Messages taken from Kafka into the buffers',
      registers: r,
    }),
    barsWritten: new Counter({
      name: 'bars_written_total',
      help: 'Bars in committed write transactions',
      registers: r,
    }),
    barsRejected: new Counter({
      name: 'bars_rejected_total',
      help: 'Messages rejected by the contract, by reason',
      labelNames: ['reason'],
      registers: r,
    }),
    barsDeleted: new Counter({
      name: 'bars_deleted_total',
      help: 'Rows of bars_1m removed by delete messages ("deleted": true) at least as new as the stored bar',
      registers: r,
    }),
    barsDeadLettered: new Counter({
      name: 'bars_dead_lettered_total',
      help: 'Messages written to the dead-letter topic (0 when KAFKA_DLQ_TOPIC is empty)',
      registers: r,
    }),
    barsSkippedFenced: new Counter({
      name: 'bars_skipped_already_written_total',
      help: 'Messages skipped because the database had already recorded their offset (replays)',
      registers: r,
    }),
    endToEndDelay: new Histogram({
      name: 'bars_end_to_end_delay_seconds',
      help: 'Kafka message timestamp to database commit',
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300],
      registers: r,
    }),
    consumerLag: new Gauge({
      name: 'kafka_consumer_lag',
      help: 'High watermark minus committed offset, per partition owned by this instance',
      labelNames: ['partition'],
      registers: r,
    }),
    rebalances: new Counter({
      name: 'kafka_rebalances_total',
      help: 'Group joins (each rebalance)',
      registers: r,
    }),
    pausedPartitions: new Gauge({
      name: 'kafka_paused_partitions',
      help: 'Partitions paused for backpressure',
      registers: r,
    }),
    backpressureSeconds: new Counter({
      name: 'kafka_fetch_backpressure_seconds_total',
      help: 'Seconds the fetch loop waited for room in full buffers (before pausing partitions)',
      registers: r,
    }),
    assignedPartitions: new Gauge({
      name: 'kafka_assigned_partitions',
      help: 'Partitions assigned to this instance',
      registers: r,
    }),
    offsetCommits: new Counter({
      name: 'kafka_offset_commits_total',
      help: 'Offset commits after durable writes, by result',
      labelNames: ['result'],
      registers: r,
    }),
    poolConnections: new Gauge({
      name: 'db_pool_connections',
      help: 'PostgreSQL pool connections by state (total, idle, waiting)',
      labelNames: ['state'],
      registers: r,
    }),
    ready: new Gauge({ name: 'bar_writer_ready', help: '1 when /readyz answers ready', registers: r }),
    resumeSkippedOffsets: new Counter({
      name: 'kafka_resume_skipped_offsets_total',
      help: 'Offsets not fetched again at assignment because the database fence was ahead of the committed offset (written before a commit was lost)',
      registers: r,
    }),
    logReplaced: new Counter({
      name: 'kafka_log_replaced_total',
      help: 'Partitions found, at assignment, with another log than the one their fence was written against (topic re-created or log truncated); consumed from the committed offset or the start policy',
      registers: r,
    }),
    resumeRereadOffsets: new Counter({
      name: 'kafka_resume_reread_offsets_total',
      help: 'Offsets read again at a resume because the committed offset was ahead of the database fence (the fence wins: another deployment sharing the group id, or an offsets reset made with Kafka tools alone)',
      registers: r,
    }),
    retentionSkippedOffsets: new Counter({
      name: 'kafka_retention_skipped_offsets_total',
      help: 'Offsets deleted by retention before they were written (the position was below the log start at a resume)',
      registers: r,
    }),
    positionDoubts: new Counter({
      name: 'kafka_position_doubts_total',
      help: "Signs that a partition's position does not belong to its log (offset out of range, offsets going backwards, a log end below the position, the fence moved back), each followed by the resume check",
      labelNames: ['reason'],
      registers: r,
    }),
    partitionStalled: new Gauge({
      name: 'kafka_partition_stalled',
      help: 'Per partition owned by this instance: 1 while it is behind its log end with nothing fetched and nothing written for longer than KAFKA_STALL_TIMEOUT',
      labelNames: ['partition'],
      registers: r,
    }),
    consumerRestarts: new Counter({
      name: 'kafka_consumer_restarts_total',
      help: 'Times the service left the group and joined again by itself, by reason (stalled: a partition made no progress)',
      labelNames: ['reason'],
      registers: r,
    }),
    versionTimeBounded: new Counter({
      name: 'bars_version_time_bounded_total',
      help: "Bars whose Kafka record timestamp was unusable as a version (more than BARS_VERSION_MAX_FUTURE ahead of receipt, or negative): versioned at their bar's close instead",
      registers: r,
    }),
    partitionFailures: new Gauge({
      name: 'timescale_write_partition_failures',
      help: 'Consecutive failed write attempts of the current batch, per partition owned by this instance (0: writing fine)',
      labelNames: ['partition'],
      registers: r,
    }),
    barsWrittenCompressed: new Counter({
      name: 'bars_written_compressed_total',
      help: 'Bars upserted into TimescaleDB chunks that were compressed (late corrections: slower writes)',
      registers: r,
    }),
    readPoolConnections: new Gauge({
      name: 'db_read_pool_connections',
      help: "The read API's PostgreSQL pool connections by state (total, idle, waiting)",
      labelNames: ['state'],
      registers: r,
    }),
    readTargetUp: new Gauge({
      name: 'db_read_target_up',
      help: "With DB_READ_HOST/DB_READ_PORT another server than the writer's (a replica): 1 when it answers the readiness check, 0 when not",
      registers: r,
    }),
    readTargetInRecovery: new Gauge({
      name: 'db_read_target_in_recovery',
      help: "The read API's own server is in recovery (a hot standby): 1, else 0; last seen while reachable",
      registers: r,
    }),
    readTargetReplayLag: new Gauge({
      name: 'db_read_target_replay_lag_seconds',
      help: "Replay lag of the read API's hot standby: 0 when it replayed all the WAL it received, else the age of the last transaction it replayed; last seen while reachable",
      registers: r,
    }),
    httpReads: new Counter({
      name: 'bar_writer_http_reads_total',
      help: 'Read API requests (/v1/*) by result: ok, bad_request, unauthorized, overloaded (503, reads or answer memory saturated), failed (database)',
      labelNames: ['result'],
      registers: r,
    }),
    httpConnections: new Gauge({
      name: 'bar_writer_http_connections',
      help: 'Open HTTP connections (HTTP_MAX_CONNECTIONS at most)',
      registers: r,
    }),
  };
}

/**
 * Creates the series of a labeled counter for every known label value, at 0: a counter that appears
 * only at its first increment has no rate() or increase() for it, and alerts miss the first errors.
 */
export function zeroLabels<L extends string>(counter: Counter<L>, label: L, values: readonly string[]): void {
  for (const v of values) counter.inc({ [label]: v } as Partial<Record<L, string>>, 0);
}
