/**
 * The suite's Kafka side: the producer of the produce track (resolves each message's partition and
 * record time at send time, keeps what it meant by id, pauses for operations that take the broker or
 * the topic away) and exact read-backs of a topic's log and of the dead-letter topic. What the checker
 * takes as "produced" is what the read-back finds in the log, not what the producer believes it sent: a
 * send retried after a timeout may be in the log twice, a failed one not at all.
 */
import type { Admin, IHeaders, Kafka, Producer } from 'kafkajs';
import { sleep } from '../support/common';
import {
  ID_HEADER,
  VERSION_TIME_HEADER,
  type DeadLetterSeen,
  type LogRecord,
  type MessageSpec,
  type ProduceEvent,
  type Sent,
} from './model';

const YEAR_MS = 365.25 * 86_400_000;

/** A key's partition among `n` (FNV-1a of the key): keys move when partitions are added. */
export function partitionFor(spec: MessageSpec, n: number): number {
  if (spec.route.kind === 'slot') return spec.route.slot % n;
  let h = 0x811c9dc5;
  for (let i = 0; i < spec.key.length; i++) {
    h ^= spec.key.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h % n;
}

function recordTime(spec: MessageSpec, now: number): string | undefined {
  switch (spec.time.kind) {
    case 'client':
      return undefined;
    case 'rel':
      return String(now + spec.time.ms);
    case 'years':
      return String(Math.round(now + spec.time.years * YEAR_MS));
    case 'micros':
      return String(now * 1000);
  }
}

export class NemesisProducer {
  readonly sent = new Map<string, Sent>();
  sendFailures = 0;
  private producer: Producer | null = null;
  private paused: Promise<void> | null = null;
  private resumeFn: (() => void) | null = null;
  private inFlight: Promise<void> = Promise.resolve();

  constructor(
    private readonly kafka: Kafka,
    private readonly topic: () => string,
    private readonly partitions: () => number,
  ) {}

  private async client(): Promise<Producer> {
    if (!this.producer) {
      const p = this.kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
      await p.connect();
      this.producer = p;
    }
    return this.producer;
  }

  /** A new producer from the next send on (a re-created topic knows nothing of the old one's sequences). */
  async renew(): Promise<void> {
    const p = this.producer;
    this.producer = null;
    await p?.disconnect().catch(() => undefined);
  }

  /** Stops sending: resolves once the send in flight (if any) is done. */
  async pause(): Promise<void> {
    if (!this.paused) this.paused = new Promise((r) => (this.resumeFn = r));
    await this.inFlight;
  }

  resume(): void {
    this.resumeFn?.();
    this.paused = null;
    this.resumeFn = null;
  }

  /** Sends one event's messages, retrying while the broker does not take them. */
  async send(ev: ProduceEvent): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      while (this.paused) await this.paused;
      let done!: () => void;
      this.inFlight = new Promise((r) => (done = r));
      try {
        const n = this.partitions();
        const now = Date.now();
        const messages = ev.messages.map((spec) => {
          if (!this.sent.has(spec.id)) this.sent.set(spec.id, { spec, sentAtMs: now });
          const headers: IHeaders = { [ID_HEADER]: spec.id };
          if (spec.versionHeader) {
            headers[VERSION_TIME_HEADER] =
              'relMs' in spec.versionHeader
                ? String(now + spec.versionHeader.relMs)
                : String(Math.round(now + spec.versionHeader.years * YEAR_MS));
          }
          const timestamp = recordTime(spec, now);
          return {
            key: spec.key,
            value: spec.value,
            partition: partitionFor(spec, n),
            headers,
            ...(timestamp === undefined ? {} : { timestamp }),
          };
        });
        const producer = await this.client();
        await producer.send({ topic: this.topic(), acks: -1, timeout: 10_000, messages });
        return;
      } catch (err) {
        this.sendFailures++;
        if (attempt >= 30) {
          console.error(
            `nemesis: giving up on a produce event after ${attempt} attempts: ${(err as Error).message}`,
          );
          return;
        }
        if (attempt % 5 === 0) await this.renew();
        await sleep(500);
      } finally {
        done();
      }
    }
  }

  async close(): Promise<void> {
    this.resume();
    await this.renew();
  }
}

const headerText = (headers: IHeaders | undefined): Record<string, string> => {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers ?? {})) {
    if (v === undefined) continue;
    out[k] = (Array.isArray(v) ? v : [v]).map(String).join(',');
  }
  return out;
};

/**
 * Every record of `topic` up to its log end as of the call (all partitions), read with a throw-away
 * consumer group. Fails after `timeoutMs`.
 */
export async function readLog(
  kafka: Kafka,
  admin: Admin,
  topic: string,
  incarnation: number,
  timeoutMs = 120_000,
): Promise<LogRecord[]> {
  const ends = new Map((await admin.fetchTopicOffsets(topic)).map((o) => [o.partition, BigInt(o.high)]));
  const pending = new Set([...ends].filter(([, end]) => end > 0n).map(([p]) => p));
  const records = new Map<string, LogRecord>();
  if (pending.size === 0) return [];
  const groupId = `nemesis-readback-${Date.now().toString(36)}-${Math.floor(Math.random() * 1e9).toString(36)}`;
  const consumer = kafka.consumer({ groupId, maxBytes: 16 * 1024 * 1024, sessionTimeout: 10_000 });
  try {
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(
            new Error(`read-back of ${topic} timed out with partitions ${[...pending].join(',')} unfinished`),
          ),
        timeoutMs,
      );
      consumer.on(consumer.events.CRASH, (e) => {
        clearTimeout(timer);
        reject(e.payload.error);
      });
      void consumer.run({
        autoCommit: false,
        eachBatch: async ({ batch }) => {
          const end = ends.get(batch.partition) ?? 0n;
          for (const m of batch.messages) {
            const offset = BigInt(m.offset);
            if (offset >= end) continue;
            const headers = headerText(m.headers);
            records.set(`${batch.partition}:${offset}`, {
              incarnation,
              partition: batch.partition,
              offset,
              timestampMs: Number(m.timestamp),
              value: m.value ? Buffer.from(m.value) : null,
              headers,
              id: headers[ID_HEADER] ?? null,
            });
          }
          const last = batch.messages.at(-1);
          if (last && BigInt(last.offset) + 1n >= end) {
            pending.delete(batch.partition);
            if (pending.size === 0) {
              clearTimeout(timer);
              resolve();
            }
          }
        },
      });
    });
  } finally {
    await consumer.disconnect().catch(() => undefined);
    await admin.deleteGroups([groupId]).catch(() => undefined);
  }
  return [...records.values()].sort((a, b) => a.partition - b.partition || (a.offset < b.offset ? -1 : 1));
}

/** The dead letters on `dlqTopic` (their source partition and offset, the original id header). */
export async function readDeadLetters(
  kafka: Kafka,
  admin: Admin,
  dlqTopic: string,
): Promise<DeadLetterSeen[]> {
  const records = await readLog(kafka, admin, dlqTopic, -1);
  return records.map((r) => ({
    id: r.id,
    sourcePartition: Number(r.headers['bar-writer.source.partition']),
    sourceOffset: BigInt(r.headers['bar-writer.source.offset'] ?? '-1'),
    reason: r.headers['bar-writer.reason'] ?? '?',
  }));
}
