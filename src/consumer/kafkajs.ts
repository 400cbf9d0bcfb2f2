/**
 * The ConsumerPort on kafkajs 2.2.4 (see ../shared notes and docs/kafka.md "Kafka client and brokers" for the behaviour
 * this relies on): eachBatch with autoCommit and auto-resolve off; the handler only buffers and
 * returns; commits are explicit, for durable offsets only; the assignment comes from GROUP_JOIN.
 */
import fs from 'node:fs';
import {
  Kafka,
  logLevel,
  type Admin,
  type Consumer,
  type KafkaConfig,
  type LogEntry,
  type SASLOptions,
} from 'kafkajs';
import type { Config } from '../config';
import type { Logger } from '../observe/logger';
import {
  StaleCommitError,
  type ConsumerHandlers,
  type ConsumerPort,
  type InboundMessage,
  type LogOffsets,
  type OffsetToCommit,
  type PartitionLag,
  type TopicPartition,
} from './port';
import { registerCodecs } from './codecs';

export interface KafkaSettings {
  brokers: string[];
  clientId: string;
  groupId: string;
  topic: string;
  sessionTimeoutMs: number;
  fromBeginning: boolean;
  maxBytesPerPartition: number;
  maxBytes: number;
  maxWaitMs: number;
  /** How often kafkajs refreshes topic metadata: partitions added to the topic are seen this soon. */
  metadataMaxAgeMs: number;
}

/**
 * What kafkajs says only in its log, and the consumer must know:
 * - it reset a partition's fetch position after an out-of-range answer ("Offset out of range,
 *   resetting to default offset", consumerGroup.js recoverFromOffsetOutOfRange), then fetches from
 *   its default offset without telling the handler;
 * - a broker answered a fetch or a metadata request for our topic with UNKNOWN_TOPIC_OR_PARTITION
 *   ("This server does not host this topic-partition"): the topic may have been deleted, and if it is
 *   created again kafkajs may go on fetching at the old positions in the new log (no rejoin, no
 *   out-of-range answer once the new log has grown past them): every partition checks its position.
 * The consumer listens here.
 */
export class KafkaSignals {
  private outOfRange: ((tp: TopicPartition) => void) | null = null;
  private topicMissing: (() => void) | null = null;

  onOutOfRange(listener: (tp: TopicPartition) => void): void {
    this.outOfRange = listener;
  }

  onTopicMissing(listener: () => void): void {
    this.topicMissing = listener;
  }

  /** Reads one kafkajs log line. */
  heard(message: string, extra: Record<string, unknown>): void {
    if (message === OUT_OF_RANGE_RESET) {
      const { topic, partition } = extra;
      if (typeof topic === 'string' && typeof partition === 'number') this.outOfRange?.({ topic, partition });
    } else if (extra.error === UNKNOWN_TOPIC && /^Response (Fetch|Metadata|ListOffsets)\(/.test(message)) {
      this.topicMissing?.();
    }
  }
}

const OUT_OF_RANGE_RESET = 'Offset out of range, resetting to default offset';
/** kafkajs's message for UNKNOWN_TOPIC_OR_PARTITION (protocol/error.js). */
const UNKNOWN_TOPIC = 'This server does not host this topic-partition';

/** Routes kafkajs's own log lines into our pino logger (and the ones that signal something, to `signals`). */
export function kafkaLogCreator(logger: Logger, signals?: KafkaSignals): KafkaConfig['logCreator'] {
  const child = logger.child({ component: 'kafkajs' });
  return () =>
    ({ level, log }: LogEntry) => {
      const { message, timestamp: _t, logger: _l, ...extra } = log;
      void _t;
      void _l;
      signals?.heard(message, extra);
      if (level === logLevel.ERROR) child.error(extra, message);
      else if (level === logLevel.WARN) child.warn(extra, message);
      else if (level === logLevel.INFO) child.debug(extra, message);
      else child.trace(extra, message);
    };
}

export type KafkaSecurity = Pick<
  Config['kafka'],
  | 'ssl'
  | 'sslCaFile'
  | 'sslCertFile'
  | 'sslKeyFile'
  | 'sslRejectUnauthorized'
  | 'saslMechanism'
  | 'saslUsername'
  | 'saslPassword'
>;

/** The TLS and SASL part of the kafkajs client options (files read once, at start-up). */
export function kafkaSecurityOptions(s: KafkaSecurity): Pick<KafkaConfig, 'ssl' | 'sasl'> {
  const read = (f: string) => fs.readFileSync(f, 'utf8');
  const ssl: KafkaConfig['ssl'] = s.ssl
    ? {
        rejectUnauthorized: s.sslRejectUnauthorized,
        ...(s.sslCaFile ? { ca: [read(s.sslCaFile)] } : {}),
        ...(s.sslCertFile ? { cert: read(s.sslCertFile) } : {}),
        ...(s.sslKeyFile ? { key: read(s.sslKeyFile) } : {}),
      }
    : false;
  if (s.saslMechanism === 'none') return { ssl };
  return {
    ssl,
    sasl: { mechanism: s.saslMechanism, username: s.saslUsername, password: s.saslPassword } as SASLOptions,
  };
}

export function createKafka(
  settings: Pick<KafkaSettings, 'brokers' | 'clientId'> & Partial<KafkaSecurity>,
  logger: Logger,
  signals?: KafkaSignals,
): Kafka {
  registerCodecs();
  return new Kafka({
    clientId: settings.clientId,
    brokers: settings.brokers,
    ...(settings.saslMechanism !== undefined ? kafkaSecurityOptions(settings as KafkaSecurity) : {}),
    logLevel: logLevel.INFO,
    logCreator: kafkaLogCreator(logger, signals),
    connectionTimeout: 3000,
    // Capped: the service's own start-up loop retries forever with backoff and reports why.
    retry: { initialRetryTime: 300, maxRetryTime: 10_000, retries: 5 },
  });
}

export class KafkajsConsumer implements ConsumerPort {
  private readonly consumer: Consumer;
  private readonly admin: Admin;
  private joined = false;
  /** Joins so far: a commit is sent only within the epoch it was made under (see commit). */
  private epoch = 0;
  private adminConnected = false;

  constructor(
    kafka: Kafka,
    private readonly settings: KafkaSettings,
    private readonly logger: Logger,
    private readonly signals?: KafkaSignals,
  ) {
    this.consumer = kafka.consumer({
      groupId: settings.groupId,
      sessionTimeout: settings.sessionTimeoutMs,
      heartbeatInterval: Math.max(500, Math.floor(settings.sessionTimeoutMs / 10)),
      rebalanceTimeout: Math.max(60_000, settings.sessionTimeoutMs * 2),
      maxBytesPerPartition: settings.maxBytesPerPartition,
      maxBytes: settings.maxBytes,
      maxWaitTimeInMs: settings.maxWaitMs,
      // New partitions of the topic are found at the next metadata refresh, which then rebalances the
      // group: kafkajs's default (5 minutes) left a share of the symbols without bars for that long.
      metadataMaxAge: settings.metadataMaxAgeMs,
      allowAutoTopicCreation: false,
      retry: { initialRetryTime: 300, maxRetryTime: 10_000, retries: 8 },
    });
    this.admin = kafka.admin();
  }

  private listening = false;
  /** Counts start() and stop() calls: a start overtaken by a stop (or a later start) gives up. */
  private attempt = 0;

  async start(handlers: ConsumerHandlers): Promise<void> {
    const { consumer, settings } = this;
    const mine = ++this.attempt;
    // kafkajs keeps retrying a connection for a while after disconnect(): a start that a stop
    // overtook must not go on to subscribe and run once the connection finally succeeds.
    const overtaken = async () => {
      if (this.attempt === mine) return;
      await consumer.disconnect().catch(() => undefined);
      throw new Error('consumer start abandoned: stop() was called');
    };
    if (!this.listening) this.listen(handlers);
    await consumer.connect();
    await overtaken();
    await consumer.subscribe({ topic: settings.topic, fromBeginning: settings.fromBeginning });
    await overtaken();
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: 1,
      eachBatch: async ({ batch, resolveOffset, heartbeat, isRunning, isStale }) => {
        if (!isRunning() || isStale()) return;
        let accepted: string | null = null;
        try {
          accepted = await handlers.onBatch(
            {
              topic: batch.topic,
              partition: batch.partition,
              highWatermark: batch.highWatermark,
              messages: batch.messages as InboundMessage[],
            },
            heartbeat,
          );
        } catch (err) {
          // The handler is written not to throw; if it does, take nothing (the batch is fetched again).
          this.logger.error({ err, topic: batch.topic, partition: batch.partition }, 'batch handler failed');
        }
        if (accepted !== null) resolveOffset(accepted);
      },
    });
  }

  /** Event listeners, registered once: start() may be called again after a failed attempt. */
  private listen(handlers: ConsumerHandlers): void {
    this.listening = true;
    const { consumer, settings } = this;
    this.signals?.onOutOfRange((tp) => {
      if (tp.topic === settings.topic)
        handlers.onPositionReset?.(tp, 'offset out of range (kafkajs reset the position)');
    });
    this.signals?.onTopicMissing(() =>
      handlers.onTopicMissing?.('a broker does not host the topic (deleted, perhaps created again)'),
    );
    const { GROUP_JOIN, CRASH, REBALANCING, STOP, DISCONNECT } = consumer.events;
    consumer.on(GROUP_JOIN, (e) => {
      this.joined = true;
      this.epoch++;
      const partitions = e.payload.memberAssignment[settings.topic] ?? [];
      handlers.onAssignment(
        partitions.map((partition) => ({ topic: settings.topic, partition })),
        this.epoch,
      );
    });
    consumer.on(REBALANCING, () => {
      this.joined = false;
    });
    consumer.on(STOP, () => {
      this.joined = false;
    });
    consumer.on(DISCONNECT, () => {
      this.joined = false;
    });
    consumer.on(CRASH, (e) => {
      this.joined = false;
      const { error, restart } = e.payload;
      this.logger.error({ err: error, restart }, 'kafka consumer crashed');
      if (!restart) handlers.onFatal(error);
    });
  }

  pause(partitions: TopicPartition[]): void {
    this.each(partitions, (topic, ps) => this.consumer.pause([{ topic, partitions: ps }]));
  }

  resume(partitions: TopicPartition[]): void {
    this.each(partitions, (topic, ps) => this.consumer.resume([{ topic, partitions: ps }]));
  }

  private each(partitions: TopicPartition[], fn: (topic: string, ps: number[]) => void): void {
    if (partitions.length === 0) return;
    const byTopic = new Map<string, number[]>();
    for (const tp of partitions) byTopic.set(tp.topic, [...(byTopic.get(tp.topic) ?? []), tp.partition]);
    for (const [topic, ps] of byTopic) {
      try {
        fn(topic, ps);
      } catch (err) {
        // pause/resume throw while the consumer is not running; the next assignment recomputes them.
        this.logger.debug({ err, topic, partitions: ps }, 'pause/resume skipped');
      }
    }
  }

  /**
   * kafkajs's commitOffsets returns without committing anything while its runner is not running
   * (stopping, restarting after a crash), and a commit of a member that rejoined meanwhile carries the
   * new generation, for partitions it may no longer own. So a commit goes out only while joined in the
   * epoch it was made under, and counts as done only if that still holds when kafkajs answers;
   * otherwise it is refused and stays pending with the committer.
   */
  async commit(offsets: OffsetToCommit[], epoch: number): Promise<void> {
    if (offsets.length === 0) return;
    if (!this.joined || epoch !== this.epoch) throw new StaleCommitError('before');
    await this.consumer.commitOffsets(offsets);
    if (!this.joined || epoch !== this.epoch) throw new StaleCommitError('during');
  }

  seek(tp: TopicPartition, offset: string): void {
    this.consumer.seek({ topic: tp.topic, partition: tp.partition, offset });
  }

  private async connectedAdmin(): Promise<Admin> {
    if (!this.adminConnected) {
      await this.admin.connect();
      // Loads the broker list: without it a fresh admin client's first group request fails inside
      // kafkajs ("no brokers in the pool") and is retried after the 300 ms backoff; that delayed
      // every start-up, whose partitions stay paused until the committed offsets are read.
      await this.admin.describeCluster();
      this.adminConnected = true;
    }
    return this.admin;
  }

  async committedOffsets(topic: string, partitions: number[]): Promise<Map<number, bigint | null>> {
    const admin = await this.connectedAdmin();
    const res = await admin.fetchOffsets({ groupId: this.settings.groupId, topics: [topic] });
    const wanted = new Set(partitions);
    const out = new Map<number, bigint | null>();
    for (const t of res) {
      for (const p of t.partitions) if (wanted.has(p.partition)) out.set(p.partition, committedOf(p.offset));
    }
    return out;
  }

  async logOffsets(topic: string): Promise<Map<number, LogOffsets>> {
    const admin = await this.connectedAdmin();
    const ends = await admin.fetchTopicOffsets(topic);
    return new Map(ends.map((e) => [e.partition, { low: BigInt(e.low), high: BigInt(e.high) }]));
  }

  async lag(): Promise<PartitionLag[]> {
    await this.connectedAdmin();
    const { topic, groupId } = this.settings;
    const [ends, groupOffsets] = await Promise.all([
      this.admin.fetchTopicOffsets(topic),
      this.admin.fetchOffsets({ groupId, topics: [topic] }),
    ]);
    const committed = new Map<number, bigint | null>();
    for (const t of groupOffsets) {
      for (const p of t.partitions) committed.set(p.partition, committedOf(p.offset));
    }
    return ends.map((e) => ({
      partition: e.partition,
      lowWatermark: BigInt(e.low),
      highWatermark: BigInt(e.high),
      committed: committed.get(e.partition) ?? null,
    }));
  }

  isJoined(): boolean {
    return this.joined;
  }

  async stop(): Promise<void> {
    this.attempt++;
    this.joined = false;
    await this.consumer.disconnect();
    if (this.adminConnected) {
      this.adminConnected = false;
      await this.admin.disconnect().catch(() => undefined);
    }
  }
}

/**
 * A committed offset as the group coordinator returns it: -1 for none, and kafkajs itself commits its
 * special offsets (-1 latest, -2 earliest) when it resets a position: none of them is a position.
 */
export function committedOf(offset: string): bigint | null {
  const o = BigInt(offset);
  return o < 0n ? null : o;
}
