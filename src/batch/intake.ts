/**
 * Intake: a fetched message becomes a buffer entry. A valid bar becomes a bar entry; anything the
 * contract rejects becomes a rejected entry holding copies of its key, value and headers (the message
 * views the fetch buffer, which kafkajs reuses), and is counted and logged (rate-limited) here, once.
 */
import { decodeBar, type Rejection } from '../contract/bar';
import type { InboundMessage } from '../consumer/port';
import { RateLimiter, type Logger } from '../observe/logger';
import type { Metrics } from '../observe/metrics';
import type { Entry } from './buffer';

export class Intake {
  private readonly rejectLog = new RateLimiter(10, 10_000);

  constructor(private readonly deps: { metrics: Metrics; logger: Logger }) {}

  /** The entry for message `m` (at `offset`) of `topic`/`partition`, taken at `arrival` (ms). */
  entry(topic: string, partition: number, m: InboundMessage, offset: bigint, arrival: number): Entry {
    const messageTimeMs = Number(m.timestamp) || arrival;
    const decoded = decodeBar(m.value, arrival);
    if (decoded.ok) return { kind: 'bar', offset, bar: decoded.bar, messageTimeMs };
    this.noteRejection(topic, partition, m.offset, decoded.rejection);
    const headers: Record<string, Buffer> = {};
    for (const [k, v] of Object.entries(m.headers ?? {})) {
      if (v === undefined) continue;
      const first = Array.isArray(v) ? v[0] : v;
      if (first !== undefined) headers[k] = Buffer.from(first);
    }
    return {
      kind: 'rejected',
      offset,
      rejection: decoded.rejection,
      key: m.key ? Buffer.from(m.key) : null,
      value: m.value ? Buffer.from(m.value) : null,
      headers,
      messageTimeMs,
    };
  }

  private noteRejection(topic: string, partition: number, offset: string, r: Rejection): void {
    this.deps.metrics.barsRejected.inc({ reason: r.reason });
    const suppressed = this.rejectLog.take(r.reason);
    if (suppressed === null) return;
    this.deps.logger.warn(
      { topic, partition, offset, reason: r.reason, detail: r.detail, suppressed },
      'message rejected by the bar contract; skipped',
    );
  }
}
