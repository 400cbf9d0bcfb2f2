/**
 * The Kafka consumer as bar-writer sees it: a small port of our own, so the batching and offset logic
 * is tested without a broker, and the client library (kafkajs today) could be replaced.
 */
export interface TopicPartition {
  topic: string;
  partition: number;
}

export interface InboundMessage {
  /** int64 as a decimal string, as Kafka clients give it. */
  offset: string;
  key: Buffer | null;
  /** May be a view into a fetch buffer: decode or copy, never keep. */
  value: Buffer | null;
  headers: Record<string, Buffer | string | (Buffer | string)[] | undefined>;
  /** Message timestamp in epoch milliseconds, as a decimal string. */
  timestamp: string;
}

export interface InboundBatch {
  topic: string;
  partition: number;
  /** Offset after the last message in the partition's log when this batch was fetched. */
  highWatermark: string;
  messages: InboundMessage[];
}

export interface ConsumerHandlers {
  /**
   * Takes a fetched batch into the buffers and resolves to the offset of the last message it took
   * (the adapter marks everything up to it as processed), or null if it took none. Never rejects.
   * It returns at once unless the buffers are full; then it may wait, for a bounded time, for room,
   * calling `heartbeat` at least every few hundred ms. The fetch loop (every partition's) waits for it.
   */
  onBatch(batch: InboundBatch, heartbeat: () => Promise<void>): Promise<string | null>;
  /**
   * Called synchronously after every group join with this member's full new assignment. `epoch`
   * counts the joins of this consumer: a commit carries the epoch it was made under (see commit).
   */
  onAssignment(assigned: TopicPartition[], epoch: number): void;
  /** The client gave up (it will not restart by itself). */
  onFatal(err: Error): void;
  /**
   * The client moved a partition's fetch position by itself (an out-of-range answer: the log was
   * truncated, deleted and created again, or retention passed the position): where it goes on may not
   * be where the partition resumes.
   */
  onPositionReset?(tp: TopicPartition, reason: string): void;
  /**
   * A broker said it does not host the topic (deleted, perhaps created again): every partition's
   * position may belong to another log.
   */
  onTopicMissing?(reason: string): void;
}

export interface OffsetToCommit extends TopicPartition {
  /** The next offset to read: last processed + 1. */
  offset: string;
}

export interface LogOffsets {
  /** The first offset still in the log (retention moves it). */
  low: bigint;
  /** The offset after the last message (the high watermark). */
  high: bigint;
}

export interface PartitionLag {
  partition: number;
  lowWatermark: bigint;
  highWatermark: bigint;
  committed: bigint | null;
}

export interface ConsumerPort {
  /** Connects, joins the group and starts fetching; resolves once running. */
  start(handlers: ConsumerHandlers): Promise<void>;
  pause(partitions: TopicPartition[]): void;
  resume(partitions: TopicPartition[]): void;
  /**
   * Commits offsets, made under join `epoch`. Rejects (and commits nothing) unless the consumer is
   * running in that same epoch from before the request until after it: a commit kafkajs would skip
   * silently (the consumer stopping or restarting) or one that could land in a later generation, for
   * partitions this member may no longer own, is refused instead. A rejected commit stays pending.
   */
  commit(offsets: OffsetToCommit[], epoch: number): Promise<void>;
  /** Fetch this partition from `offset` next (takes effect before its next batch). */
  seek(partition: TopicPartition, offset: string): void;
  /** The group's committed offsets (null: none) of some partitions. */
  committedOffsets(topic: string, partitions: number[]): Promise<Map<number, bigint | null>>;
  /** High watermark and committed offset per partition of the topic. */
  lag(): Promise<PartitionLag[]>;
  /** The log's start and end per partition of `topic`. */
  logOffsets(topic: string): Promise<Map<number, LogOffsets>>;
  /** True between a group join and the next rebalance or stop. */
  isJoined(): boolean;
  /** Leaves the group and disconnects. Never call from inside onBatch. */
  stop(): Promise<void>;
}

/** A commit refused because the consumer was not joined in the epoch it was made under. */
export class StaleCommitError extends Error {
  constructor(when: 'before' | 'during') {
    super(
      when === 'before'
        ? 'not committed: the consumer is not joined in the generation the offset was made under'
        : 'not counted as committed: the consumer left or rejoined the group while the commit was in flight',
    );
    this.name = 'StaleCommitError';
  }
}
