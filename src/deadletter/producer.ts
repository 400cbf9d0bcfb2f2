/**
 * The dead-letter topic: every message bar-writer will not write (rejected by the contract, or refused
 * by the database) goes there (records: ./records.ts). A dead letter is sent before its offset is
 * committed; if it cannot be sent, the flush fails and is retried, so nothing vanishes.
 */
import type { Kafka, Producer } from 'kafkajs';
import { kafkaErrorType } from '../consumer/errors';
import {
  DLQ_HEADERS,
  deadLetterRecord,
  recordBytes,
  type DeadLetterRecord,
  type RejectedMessage,
} from './records';

export { DLQ_HEADERS };

const CHUNK_BYTES = 512 * 1024;

/** Ways to make a dead letter smaller, in order: what is dropped is said by a header with its size. */
const SHRINKS: ((r: DeadLetterRecord) => DeadLetterRecord)[] = [
  (r) => ({
    ...r,
    value: null,
    headers: { ...r.headers, [DLQ_HEADERS.valueDropped]: String(r.value?.length ?? 0) },
  }),
  (r) => {
    const own = Object.entries(r.headers).filter(([k]) => !k.startsWith('bar-writer.'));
    const ownBytes = own.reduce(
      (n, [k, v]) => n + k.length + (Array.isArray(v) ? v.reduce((m, x) => m + x.length, 0) : v.length),
      0,
    );
    const kept = Object.fromEntries(Object.entries(r.headers).filter(([k]) => k.startsWith('bar-writer.')));
    return {
      ...r,
      key: null,
      headers: {
        ...kept,
        [DLQ_HEADERS.keyDropped]: String(r.key?.length ?? 0),
        [DLQ_HEADERS.headersDropped]: String(ownBytes),
      },
    };
  },
];

export interface DeadLetterSink {
  /** False when dead letters are only counted and logged (no topic configured). */
  readonly enabled: boolean;
  send(sourceTopic: string, sourcePartition: number, messages: readonly RejectedMessage[]): Promise<void>;
  stop?(): Promise<void>;
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

  async send(
    sourceTopic: string,
    sourcePartition: number,
    messages: readonly RejectedMessage[],
  ): Promise<void> {
    if (messages.length === 0) return;
    if (!this.connected) {
      this.connected = this.producer.connect().catch((err: unknown) => {
        this.connected = null;
        throw err;
      });
    }
    await withTimeout(this.connected, this.timeoutMs, 'dead-letter producer connect');
    // One request per ~512 KiB: the broker limits a record batch (message.max.bytes, 1 MiB by default),
    // and a rejected message may itself be large.
    let chunk: DeadLetterRecord[] = [];
    let bytes = 0;
    for (const m of messages) {
      const record = deadLetterRecord(sourceTopic, sourcePartition, m);
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

  private async sendChunk(records: DeadLetterRecord[]): Promise<void> {
    const send = (messages: DeadLetterRecord[]) =>
      withTimeout(
        this.producer.send({ topic: this.topic, acks: -1, messages }),
        this.timeoutMs,
        `dead-letter send to ${this.topic}`,
      );
    try {
      await send(records);
      return;
    } catch (err) {
      if (kafkaErrorType(err) !== 'MESSAGE_TOO_LARGE') throw err;
    }
    // Too large for the dead-letter topic (its max.message.bytes): each record alone, and one that is
    // too large even alone loses what makes it so, step by step, rather than block the partition
    // forever: its value, then its key and its own headers (bar-writer.* kept: reason, detail, origin),
    // each said by a header with the size dropped.
    for (const r of records) {
      let attempt: DeadLetterRecord = r;
      let sent = false;
      for (const shrink of SHRINKS) {
        try {
          await send([attempt]);
          sent = true;
          break;
        } catch (err) {
          if (kafkaErrorType(err) !== 'MESSAGE_TOO_LARGE') throw err;
          attempt = shrink(attempt);
        }
      }
      if (!sent) await send([attempt]); // the smallest form: its error, if any, fails the flush
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
