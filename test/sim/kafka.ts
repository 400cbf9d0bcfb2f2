/**
 * Kafka as the simulation needs it, modelled on what kafkajs 2.2.4 does (../../../shared/notes/kafkajs.md):
 * a topic of partition logs (deleted and re-created: a new incarnation; partitions added), a consumer
 * group whose coordinator assigns partitions round-robin to live members, and members whose fetch loop
 * awaits the batch handler, fetch again from the group's committed offset after every rejoin, apply
 * seeks before the next fetch, skip paused partitions, answer an out-of-range position by reporting it
 * (kafkajs only logs it) and resetting to the default offset (and committing -2), and refuse a commit
 * made under another join epoch.
 */
import {
  StaleCommitError,
  type ConsumerHandlers,
  type InboundMessage,
  type OffsetToCommit,
  type TopicPartition,
} from '../../src/consumer/port';
import type { Scope, SimClock } from './clock';

export interface SimMessage {
  offset: bigint;
  key: string | null;
  value: Buffer;
  /** Record timestamp (CreateTime), ms. */
  timestamp: number;
  headers: Record<string, string>;
  /** Which produced message this is (the checker's id). */
  id: number;
}

interface Log {
  start: bigint;
  messages: SimMessage[];
}

export class SimTopic {
  readonly partitions: Log[] = [];
  constructor(
    readonly name: string,
    readonly incarnation: number,
    count: number,
  ) {
    for (let i = 0; i < count; i++) this.partitions.push({ start: 0n, messages: [] });
  }

  end(p: number): bigint {
    const log = this.partitions[p]!;
    return log.start + BigInt(log.messages.length);
  }

  at(p: number, offset: bigint): SimMessage | undefined {
    const log = this.partitions[p]!;
    return log.messages[Number(offset - log.start)];
  }
}

export class SimKafka {
  topic: SimTopic | null;
  private incarnations = 0;
  /** The group's committed offsets of the current incarnation (-2: kafkajs's reset). */
  readonly committed = new Map<number, bigint>();
  readonly members: SimMember[] = [];
  private generation = 0;
  /** Called with every commit a member makes: the checker's "never before durable" invariant. */
  onCommit: (partition: number, offset: bigint) => void = () => undefined;

  constructor(
    readonly topicName: string,
    partitions: number,
    readonly fromBeginning = true,
  ) {
    this.topic = new SimTopic(topicName, this.incarnations++, partitions);
  }

  get incarnation(): number {
    return this.topic?.incarnation ?? -1;
  }

  produce(partition: number, m: Omit<SimMessage, 'offset'>): bigint | null {
    const t = this.topic;
    if (!t || partition >= t.partitions.length) return null;
    const offset = t.end(partition);
    t.partitions[partition]!.messages.push({ ...m, offset });
    return offset;
  }

  deleteTopic(): void {
    this.topic = null;
    this.committed.clear(); // the coordinator drops a deleted topic's offsets
  }

  /**
   * The topic exists again. With `rejoin` the members noticed the deletion (kafkajs refreshes its
   * metadata and rejoins on an unknown topic); without, they fetch on from their old positions in the
   * new log (out of range, or silently within it if it grew past them: only the fence's fingerprint
   * tells).
   */
  createTopic(partitions: number, rejoin = true): void {
    this.topic = new SimTopic(this.topicName, this.incarnations++, partitions);
    // Another partition count than the group's last assignment saw is always noticed (kafkajs: "Topic
    // has been updated", a rejoin).
    if (rejoin || partitions !== this.assignedCount) this.rebalance();
    else for (const m of this.members) m.topicChanged(partitions);
  }

  /** The partition count the last rebalance assigned. */
  private assignedCount = 0;

  addPartitions(count: number): void {
    if (!this.topic) return;
    for (let i = 0; i < count; i++) this.topic.partitions.push({ start: 0n, messages: [] });
    this.rebalance();
  }

  /** The coordinator: partitions round-robin over the live members, every member told (a new epoch). */
  rebalance(): void {
    this.generation++;
    const live = this.members.filter((m) => m.inGroup);
    const count = this.topic?.partitions.length ?? 0;
    this.assignedCount = count;
    const lists: TopicPartition[][] = live.map(() => []);
    for (let p = 0; p < count; p++)
      lists[p % Math.max(1, live.length)]?.push({ topic: this.topicName, partition: p });
    live.forEach((m, i) => m.assign(lists[i]!));
  }

  logOffsets(): Map<number, { low: bigint; high: bigint }> {
    const t = this.topic;
    if (!t) throw new Error('UNKNOWN_TOPIC_OR_PARTITION');
    return new Map(t.partitions.map((l, p) => [p, { low: l.start, high: t.end(p) }]));
  }

  /** As KafkajsConsumer.committedOffsets: negative (none, or kafkajs's special offsets) is null. */
  committedOffsets(partitions: readonly number[]): Map<number, bigint | null> {
    return new Map(
      partitions.map((p) => {
        const c = this.committed.get(p);
        return [p, c === undefined || c < 0n ? null : c];
      }),
    );
  }

  join(member: SimMember): void {
    if (!this.members.includes(member)) this.members.push(member);
    member.inGroup = true;
    this.rebalance();
  }

  /** A member left (graceful) or its session expired (crash): the others get its partitions. */
  leave(member: SimMember): void {
    member.inGroup = false;
    member.dropAssignment();
    this.rebalance();
  }

  commit(partition: number, offset: bigint): void {
    this.onCommit(partition, offset);
    this.committed.set(partition, offset);
  }
}

/** One service instance's consumer, as the pipeline and the committer see it. */
export class SimMember {
  inGroup = false;
  private assignment: TopicPartition[] = [];
  private epoch = 0;
  private joined = false;
  private positions = new Map<number, bigint | null>();
  private readonly paused = new Set<number>();
  private readonly seeks = new Map<number, bigint>();
  private handlers: ConsumerHandlers | null = null;
  private running = false;
  /** Fetches so far (progress, for the stall bound of the checker). */
  fetches = 0;

  constructor(
    private readonly kafka: SimKafka,
    private readonly clock: SimClock,
    readonly scope: Scope,
    private readonly settings: {
      fetchMs: number;
      maxBatch: number;
      random: () => number;
      /** kafkajs reports an out-of-range reset only in its log: heard with this probability. */
      outOfRangeHeard: number;
    },
  ) {}

  start(handlers: ConsumerHandlers): void {
    this.handlers = handlers;
    this.running = true;
    this.kafka.join(this);
    void this.loop();
  }

  /** Graceful: leaves the group (the others rebalance at once). */
  stop(): void {
    this.running = false;
    this.joined = false;
    if (this.inGroup) this.kafka.leave(this);
  }

  assign(list: TopicPartition[]): void {
    this.assignment = list;
    this.epoch++;
    this.joined = true;
    this.positions = new Map(list.map((tp) => [tp.partition, null])); // fetch again from committed
    this.handlers?.onAssignment(list, this.epoch);
  }

  dropAssignment(): void {
    this.assignment = [];
    this.joined = false;
  }

  /** The topic came back without a rejoin: partitions it no longer has are not fetched. */
  topicChanged(partitions: number): void {
    for (const p of [...this.positions.keys()]) if (p >= partitions) this.positions.delete(p);
  }

  pause(tps: TopicPartition[]): void {
    for (const tp of tps) this.paused.add(tp.partition);
  }

  resume(tps: TopicPartition[]): void {
    for (const tp of tps) this.paused.delete(tp.partition);
  }

  seek(tp: TopicPartition, offset: string): void {
    if (this.assignment.some((a) => a.partition === tp.partition))
      this.seeks.set(tp.partition, BigInt(offset));
  }

  async commit(offsets: OffsetToCommit[], epoch: number): Promise<void> {
    if (!this.joined || epoch !== this.epoch || this.scope.dead) throw new StaleCommitError('before');
    await this.clock.sleep(1, this.scope);
    if (!this.joined || epoch !== this.epoch) throw new StaleCommitError('during');
    for (const o of offsets) this.kafka.commit(o.partition, BigInt(o.offset));
  }

  private async loop(): Promise<void> {
    while (this.running && !this.scope.dead) {
      await this.fetchOnce();
      await this.clock.sleep(this.settings.fetchMs, this.scope);
    }
  }

  private async fetchOnce(): Promise<void> {
    const t = this.kafka.topic;
    if (this.joined && !t && this.assignment.length > 0) {
      // A fetch for a deleted topic: UNKNOWN_TOPIC_OR_PARTITION, which kafkajs logs (and then carries on
      // at its old positions once the topic is back, unless it rejoins).
      this.handlers?.onTopicMissing?.('a broker does not host the topic (deleted, perhaps created again)');
      return;
    }
    if (!this.joined || !t || !this.handlers) return;
    const epoch = this.epoch;
    for (const tp of [...this.assignment]) {
      const p = tp.partition;
      if (this.paused.has(p) || p >= t.partitions.length || !this.positions.has(p)) continue;
      const seek = this.seeks.get(p);
      if (seek !== undefined) {
        this.seeks.delete(p);
        this.positions.set(p, seek);
      }
      let position = this.positions.get(p) ?? null;
      if (position === null) {
        const c = this.kafka.committed.get(p);
        position =
          c !== undefined && c >= 0n ? c : this.kafka.fromBeginning ? t.partitions[p]!.start : t.end(p);
      }
      if (position < t.partitions[p]!.start || position > t.end(p)) {
        // kafkajs: "Offset out of range, resetting to default offset" (logged), commits -2, fetches
        // from the default offset.
        if (this.settings.random() < this.settings.outOfRangeHeard) {
          this.handlers.onPositionReset?.(tp, 'offset out of range (kafkajs reset the position)');
        }
        this.kafka.committed.set(p, -2n);
        position = this.kafka.fromBeginning ? t.partitions[p]!.start : t.end(p);
      }
      this.positions.set(p, position);
      const n = 1 + Math.floor(this.settings.random() * this.settings.maxBatch);
      const messages: InboundMessage[] = [];
      for (let o = position; o < t.end(p) && messages.length < n; o++) {
        const m = t.at(p, o)!;
        messages.push({
          offset: m.offset.toString(),
          key: m.key === null ? null : Buffer.from(m.key),
          value: m.value,
          headers: { ...m.headers },
          timestamp: String(m.timestamp),
        });
      }
      if (messages.length === 0) continue;
      this.fetches++;
      const taken = await this.handlers.onBatch(
        { topic: tp.topic, partition: p, highWatermark: t.end(p).toString(), messages },
        async () => undefined,
      );
      if (this.epoch !== epoch || this.scope.dead || this.kafka.topic !== t) return; // stale
      if (taken !== null) this.positions.set(p, BigInt(taken) + 1n);
    }
  }

  isJoined(): boolean {
    return this.joined;
  }

  assigned(): TopicPartition[] {
    return this.assignment;
  }
}
