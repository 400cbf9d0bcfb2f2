/**
 * The suite's Kafka side: the producer of the produce track (resolves each message's partition and
 * record time at send time, keeps what it meant by id, pauses for operations that take the broker or
 * the topic away), of the bulk feed (derives its messages when it sends them, keeps when each send was
 * first tried) and exact read-backs of a topic's log and of the dead-letter topic. What the checker
 * takes as "produced" is what the read-back finds in the log, not what the producer believes it sent: a
 * send retried after a timeout may be in the log twice, a failed one not at all.
 */
import type { Admin, IHeaders, Kafka, KafkaMessage, Message, Producer } from 'kafkajs';
import { sleep } from '../support/common';
import { BulkColumns, bulkBar, bulkId, bulkIndexOf, bulkSymbol, bulkValueOf } from './bulk';
import {
  ID_HEADER,
  VERSION_TIME_HEADER,
  type BulkPlan,
  type BulkRecords,
  type DeadLetterSeen,
  type LogRecord,
  type MessageSpec,
  type ProduceEvent,
  type Sent,
} from './model';

const YEAR_MS = 365.25 * 86_400_000;

/** A key's partition among `n` (FNV-1a of the key): keys move when partitions are added. */
export function partitionOfKey(key: string, n: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h % n;
}

export function partitionFor(spec: MessageSpec, n: number): number {
  return spec.route.kind === 'slot' ? spec.route.slot % n : partitionOfKey(spec.key, n);
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

/**
 * The produce track's messages and the bulk feed go through two producers ("lanes"), each idempotent
 * with one request in flight: the two tracks send at once, and one idempotent kafkajs producer is not
 * made for concurrent sends.
 */
type Lane = 'main' | 'bulk';

export class NemesisProducer {
  readonly sent = new Map<string, Sent>();
  /** When each bulk event was first handed to the producer (epoch ms; NaN: never). */
  readonly bulkSentAt: Float64Array;
  bulkMessagesSent = 0;
  sendFailures = 0;
  private readonly producers = new Map<Lane, Producer>();
  private paused: Promise<void> | null = null;
  private resumeFn: (() => void) | null = null;
  private readonly inFlight = new Set<Promise<void>>();

  constructor(
    private readonly kafka: Kafka,
    private readonly topic: () => string,
    private readonly partitions: () => number,
    private readonly bulk: { seed: number; plan: BulkPlan } | null = null,
  ) {
    this.bulkSentAt = new Float64Array(bulk?.plan.events.length ?? 0).fill(NaN);
  }

  private async client(lane: Lane): Promise<Producer> {
    let p = this.producers.get(lane);
    if (!p) {
      p = this.kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
      await p.connect();
      this.producers.set(lane, p);
    }
    return p;
  }

  /** New producers from the next send on (a re-created topic knows nothing of the old one's sequences). */
  async renew(): Promise<void> {
    const ps = [...this.producers.values()];
    this.producers.clear();
    await Promise.all(ps.map((p) => p.disconnect().catch(() => undefined)));
  }

  /** Stops sending: resolves once the sends in flight (if any) are done. */
  async pause(): Promise<void> {
    if (!this.paused) this.paused = new Promise((r) => (this.resumeFn = r));
    await Promise.all([...this.inFlight]);
  }

  resume(): void {
    this.resumeFn?.();
    this.paused = null;
    this.resumeFn = null;
  }

  /** Sends one event's messages, retrying while the broker does not take them. */
  async send(ev: ProduceEvent): Promise<void> {
    await this.deliver('main', (n, now) =>
      ev.messages.map((spec) => {
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
      }),
    );
  }

  /**
   * Sends bulk event `i`: its bars derived now (key = symbol, the client's record time, the id header
   * only), the time of the first attempt kept. Resolves with the number of messages the broker took.
   */
  async sendBulk(i: number): Promise<number> {
    const { seed, plan } = this.bulk!;
    const ev = plan.events[i]!;
    const ok = await this.deliver('bulk', (n, now) => {
      if (Number.isNaN(this.bulkSentAt[i]!)) this.bulkSentAt[i] = now;
      const messages: Message[] = new Array(ev.count);
      for (let k = 0; k < ev.count; k++) {
        const g = ev.first + k;
        const key = bulkSymbol(g % plan.symbols);
        messages[k] = {
          key,
          value: bulkValueOf(bulkBar(seed, plan.symbols, g)),
          partition: partitionOfKey(key, n),
          headers: { [ID_HEADER]: bulkId(seed, g) },
        };
      }
      return messages;
    });
    if (!ok) return 0;
    this.bulkMessagesSent += ev.count;
    return ev.count;
  }

  /** Sends what `build` makes (at each attempt), retrying while the broker does not take it (30 times). */
  private async deliver(lane: Lane, build: (partitions: number, now: number) => Message[]): Promise<boolean> {
    for (let attempt = 1; ; attempt++) {
      while (this.paused) await this.paused;
      let done!: () => void;
      const flight = new Promise<void>((r) => (done = r));
      this.inFlight.add(flight);
      try {
        const messages = build(this.partitions(), Date.now());
        const producer = await this.client(lane);
        await producer.send({ topic: this.topic(), acks: -1, timeout: 10_000, messages });
        return true;
      } catch (err) {
        this.sendFailures++;
        if (attempt >= 30) {
          console.error(
            `nemesis: giving up on a produce event after ${attempt} attempts: ${(err as Error).message}`,
          );
          return false;
        }
        if (attempt % 5 === 0) await this.renewLane(lane);
        await sleep(500);
      } finally {
        this.inFlight.delete(flight);
        done();
      }
    }
  }

  private async renewLane(lane: Lane): Promise<void> {
    const p = this.producers.get(lane);
    this.producers.delete(lane);
    await p?.disconnect().catch(() => undefined);
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

/** The bulk feed a read-back recognizes (its seed and symbol count). */
export interface BulkKey {
  seed: number;
  symbols: number;
}

/**
 * A bulk record is kept as four numbers only when it is exactly what its id derives: the id of `bulk`'s
 * seed, no other header, the key and the value byte for byte (ASCII: one latin1 character per byte).
 */
function bulkIndexIfExact(bulk: BulkKey, m: KafkaMessage): number | null {
  const hs = m.headers;
  if (!hs) return null;
  const names = Object.keys(hs);
  const h = hs[ID_HEADER];
  if (names.length !== 1 || h === undefined || Array.isArray(h)) return null;
  const g = bulkIndexOf(bulk.seed, String(h));
  if (g === null || !m.value || !m.key) return null;
  const b = bulkBar(bulk.seed, bulk.symbols, g);
  if (m.key.toString('latin1') !== b.symbol) return null;
  const value = bulkValueOf(b);
  return m.value.length === value.length && m.value.toString('latin1') === value ? g : null;
}

/**
 * Every record of `topic` up to its log end as of the call (all partitions), read with a throw-away
 * consumer group; with `bulk`, the bulk feed's exact records as columns. Fails after `timeoutMs`
 * (default: 2 minutes and 1 more per 300,000 records).
 */
export async function readLog(
  kafka: Kafka,
  admin: Admin,
  topic: string,
  incarnation: number,
  options: { bulk?: BulkKey; timeoutMs?: number } = {},
): Promise<{ records: LogRecord[]; bulk?: BulkRecords }> {
  const ends = new Map((await admin.fetchTopicOffsets(topic)).map((o) => [o.partition, BigInt(o.high)]));
  const pending = new Set([...ends].filter(([, end]) => end > 0n).map(([p]) => p));
  const records = new Map<string, LogRecord>();
  const columns = options.bulk ? new BulkColumns() : null;
  if (pending.size === 0) return { records: [] };
  const total = Number([...ends.values()].reduce((a, b) => a + b, 0n));
  const timeoutMs = options.timeoutMs ?? 120_000 + total / 5;
  const groupId = `nemesis-readback-${Date.now().toString(36)}-${Math.floor(Math.random() * 1e9).toString(36)}`;
  const consumer = kafka.consumer({
    groupId,
    maxBytes: 16 * 1024 * 1024,
    maxBytesPerPartition: 4 * 1024 * 1024,
    sessionTimeout: 10_000,
  });
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
            const g = options.bulk ? bulkIndexIfExact(options.bulk, m) : null;
            if (g !== null) {
              // Duplicates (a batch fetched again) are dropped by `finish`.
              columns!.push(batch.partition, Number(offset), Number(m.timestamp), g);
              continue;
            }
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
  return {
    records: [...records.values()].sort(
      (a, b) => a.partition - b.partition || (a.offset < b.offset ? -1 : 1),
    ),
    ...(columns && columns.length > 0 ? { bulk: columns.finish() } : {}),
  };
}

/** The dead letters on `dlqTopic` (their source partition and offset, the original id header). */
export async function readDeadLetters(
  kafka: Kafka,
  admin: Admin,
  dlqTopic: string,
): Promise<DeadLetterSeen[]> {
  const { records } = await readLog(kafka, admin, dlqTopic, -1);
  return records.map((r) => ({
    id: r.id,
    sourcePartition: Number(r.headers['bar-writer.source.partition']),
    sourceOffset: BigInt(r.headers['bar-writer.source.offset'] ?? '-1'),
    reason: r.headers['bar-writer.reason'] ?? '?',
  }));
}
