/**
 * Dead letters: what a message bar-writer will not write carries to the dead-letter topic, and the
 * record built from it. Everything here is pure.
 *
 * A dead letter keeps the original key, value and headers (copies: the consumer's buffers are reused)
 * and adds headers saying why and where it came from.
 */
import { REJECT_REASONS, type RejectReason } from '../contract/bar';
import { messageTimeOf, type PackedBar } from '../contract/packedBar';

/**
 * A write outcome, not a contract rule: the database refused a row that passed the contract (SQLSTATE
 * class 22/23), isolated by bisection. Dashboards and alerts read it as bars_rejected_total's `reason`.
 */
export const DATABASE_REJECTED = 'database_rejected';

/** Why a message is not written: a rule of the contract, or the database's refusal of its row. */
export type NotWrittenReason = RejectReason | typeof DATABASE_REJECTED;

/** Every NotWrittenReason: the values of bars_rejected_total's `reason` label, each zeroed at start. */
export const NOT_WRITTEN_REASONS: readonly NotWrittenReason[] = [...REJECT_REASONS, DATABASE_REJECTED];

/** A message that will not be written, with what it needs to become a dead letter. */
export interface RejectedMessage {
  offset: bigint;
  rejection: { reason: NotWrittenReason; detail: string };
  key: Buffer | null;
  value: Buffer | null;
  /** Every header of the message, each with all its values in order (a header may repeat). */
  headers: Record<string, Buffer[]>;
  /** Kafka message timestamp (ms). */
  messageTimeMs: number;
  /** Set when the database refused the row (reason DATABASE_REJECTED). */
  sqlstate?: string;
}

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
  /** Set when, without its value, the record was still too large: its key and own headers dropped too. */
  keyDropped: 'bar-writer.key-dropped-bytes',
  headersDropped: 'bar-writer.headers-dropped-bytes',
} as const;

export interface DeadLetterRecord {
  key: Buffer | null;
  value: Buffer | null;
  /** A repeated header goes out as an array: kafkajs writes one header per value. */
  headers: Record<string, Buffer | string | Buffer[]>;
}

/** The record of a rejected message on the dead-letter topic. */
export function deadLetterRecord(
  sourceTopic: string,
  sourcePartition: number,
  m: RejectedMessage,
): DeadLetterRecord {
  const headers: DeadLetterRecord['headers'] = {};
  for (const [k, vs] of Object.entries(m.headers)) headers[k] = vs.length === 1 ? vs[0]! : vs;
  headers[DLQ_HEADERS.reason] = m.rejection.reason;
  headers[DLQ_HEADERS.detail] = m.rejection.detail;
  headers[DLQ_HEADERS.stage] = m.rejection.reason === DATABASE_REJECTED ? 'database' : 'contract';
  if (m.sqlstate) headers[DLQ_HEADERS.sqlstate] = m.sqlstate;
  headers[DLQ_HEADERS.topic] = sourceTopic;
  headers[DLQ_HEADERS.partition] = String(sourcePartition);
  headers[DLQ_HEADERS.offset] = m.offset.toString();
  headers[DLQ_HEADERS.timestamp] = String(m.messageTimeMs);
  return { key: m.key, value: m.value, headers };
}

/** Approximate bytes of a record on the wire (for chunking sends below the broker's batch limit). */
export function recordBytes(r: DeadLetterRecord): number {
  let n = 64 + (r.key?.length ?? 0) + (r.value?.length ?? 0);
  for (const [k, v] of Object.entries(r.headers)) {
    if (Array.isArray(v)) for (const x of v) n += k.length + x.length + 8;
    else n += k.length + v.length + 8;
  }
  return n;
}

/** What a decoded bar keeps of its message (batch/buffer.ts BarEntry); its record time is packed. */
export interface BarSource extends PackedBar {
  offset: bigint;
  /** The value's bytes: `sourceBytes` from `sourceStart` to `sourceEnd`. */
  sourceBytes: Buffer;
  sourceStart: number;
  sourceEnd: number;
  key: Buffer | null | undefined;
  headers: Record<string, Buffer[]> | null;
}

/**
 * The dead letter of a bar the database refused (SQLSTATE `error.code`, isolated by bisection): the
 * original message (its value's bytes, its key, every header) with why.
 */
export function refusedBar(bar: BarSource, error: { message: string; code: string | null }): RejectedMessage {
  return {
    offset: bar.offset,
    rejection: { reason: DATABASE_REJECTED, detail: `the database refused the row: ${error.message}` },
    key: bar.key === undefined ? Buffer.from(bar.symbol, 'latin1') : bar.key,
    value: bar.sourceBytes.subarray(bar.sourceStart, bar.sourceEnd),
    headers: bar.headers ?? {},
    messageTimeMs: messageTimeOf(bar),
    ...(error.code ? { sqlstate: error.code } : {}),
  };
}
