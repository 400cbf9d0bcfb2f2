/**
 * The dead-letter topic: every message bar-writer will not write (rejected by the contract, or refused
 * by the database) goes there with its original key, value and headers, plus headers saying why and
 * where it came from. A dead letter is sent before its offset is committed; if it cannot be sent, the
 * flush fails and is retried, so nothing vanishes.
 */
import type { Kafka, Producer } from 'kafkajs';
import type { RejectedEntry } from '../batch/buffer';

export const DLQ_HEADERS = {
  reason: 'bar-writer.reason',
  detail: 'bar-writer.detail',
  stage: 'bar-writer.stage',
  sqlstate: 'bar-writer.sqlstate',
  topic: 'bar-writer.source.topic',
  partition: 'bar-writer.source.partition',
  offset: 'bar-writer.source.offset',
  timestamp: 'bar-writer.source.timestamp',
  /** Set (to the original size in bytes) when the value was too large for the dead-letter topic. */
  valueDropped: 'bar-writer.value-dropped-bytes',
} as const;

const CHUNK_BYTES = 512 * 1024;

function recordBytes(r: {
  key: Buffer | null;
  value: Buffer | null;
  headers: Record<string, Buffer | string>;
}): number {
  let n = 64 + (r.key?.length ?? 0) + (r.value?.length ?? 0);
  for (const [k, v] of Object.entries(r.headers)) n += k.length + v.length + 8;
  return n;
}

function errorType(err: unknown): string | null {
  const t = typeof err === 'object' && err !== null ? (err as { type?: unknown }).type : undefined;
  return typeof t === 'string' ? t : null;
}

export interface DeadLetterSink {
  /** False when dead letters are only counted and logged (no topic configured). */
  readonly enabled: boolean;
  send(sourceTopic: string, sourcePartition: number, entries: readonly RejectedEntry[]): Promise<void>;
}

/** Builds the dead-letter record of a rejected entry (pure; exported for tests). */
export function deadLetterRecord(sourceTopic: string, sourcePartition: number, e: RejectedEntry) {
  const headers: Record<string, Buffer | string> = { ...e.headers };
  headers[DLQ_HEADERS.reason] = e.rejection.reason;
  headers[DLQ_HEADERS.detail] = e.rejection.detail;
  headers[DLQ_HEADERS.stage] = e.rejection.reason.startsWith('database_') ? 'database' : 'contract';
  if (e.sqlstate) headers[DLQ_HEADERS.sqlstate] = e.sqlstate;
  headers[DLQ_HEADERS.topic] = sourceTopic;
  headers[DLQ_HEADERS.partition] = String(sourcePartition);
  headers[DLQ_HEADERS.offset] = e.offset.toString();
  headers[DLQ_HEADERS.timestamp] = String(e.messageTimeMs);
  return { key: e.key, value: e.value, headers };
}

export class KafkaDeadLetterSink implements DeadLetterSink {
  readonly enabled = true;
  private readonly producer: Producer;
  private connected: Promise<void> | null = null;

  constructor(
    kafka: Kafka,
    private readonly topic: string,
    private readonly timeoutMs = 10_000,
  ) {
    // Idempotent (no duplicates from producer retries) with bounded retries: the flush retries the rest.
    this.producer = kafka.producer({
      idempotent: true,
      maxInFlightRequests: 1,
      retry: { retries: 3, maxRetryTime: 2000 },
    });
  }

  async send(sourceTopic: string, sourcePartition: number, entries: readonly RejectedEntry[]): Promise<void> {
    if (entries.length === 0) return;
    if (!this.connected) {
      this.connected = this.producer.connect().catch((err: unknown) => {
        this.connected = null;
        throw err;
      });
    }
    await withTimeout(this.connected, this.timeoutMs, 'dead-letter producer connect');
    // One request per ~512 KiB: the broker limits a record batch (message.max.bytes, 1 MiB by default),
    // and a rejected message may itself be large.
    let chunk: ReturnType<typeof deadLetterRecord>[] = [];
    let bytes = 0;
    for (const e of entries) {
      const record = deadLetterRecord(sourceTopic, sourcePartition, e);
      const size = recordBytes(record);
      if (chunk.length > 0 && bytes + size > CHUNK_BYTES) {
        await this.sendChunk(chunk);
        chunk = [];
        bytes = 0;
      }
      chunk.push(record);
      bytes += size;
    }
    await this.sendChunk(chunk);
  }

  private async sendChunk(records: ReturnType<typeof deadLetterRecord>[]): Promise<void> {
    const send = (messages: typeof records) =>
      withTimeout(
        this.producer.send({ topic: this.topic, acks: -1, messages }),
        this.timeoutMs,
        `dead-letter send to ${this.topic}`,
      );
    try {
      await send(records);
    } catch (err) {
      if (records.length !== 1 || errorType(err) !== 'MESSAGE_TOO_LARGE') throw err;
      // Too large for the dead-letter topic even alone: keep the record (reason, origin, headers) and say
      // how big the value was, rather than block the partition forever.
      const r = records[0]!;
      const size = r.value?.length ?? 0;
      await send([
        { ...r, value: null, headers: { ...r.headers, [DLQ_HEADERS.valueDropped]: String(size) } },
      ]);
    }
  }

  async stop(): Promise<void> {
    if (this.connected) await this.producer.disconnect().catch(() => undefined);
    this.connected = null;
  }
}

/** Counts and logs only: used when KAFKA_DLQ_TOPIC is empty. */
export class NoDeadLetterSink implements DeadLetterSink {
  readonly enabled = false;
  async send(): Promise<void> {}
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(Object.assign(new Error(`${what} timed out after ${ms} ms`), { code: 'ETIMEDOUT' })),
      ms,
    );
    timer.unref();
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}
