/**
 * Intake: a fetched message becomes a buffer entry. A valid bar becomes a bar entry (its numbers packed
 * in the partition's BarSlabs, its value's bytes copied into its SourceArena); anything the contract
 * rejects becomes a rejected entry holding copies of its key, value and headers (the message views the
 * fetch buffer, which kafkajs reuses), and is counted and logged (rate-limited) here, once.
 */
import type { ExtraColumn } from '../contract/extras';
import { BarDecoder, MIN_TIMESTAMP_MS, type Rejection } from '../contract/bar';
import { boundedVersionTime, headerVersionTime } from '../contract/version';
import type { InboundMessage } from '../consumer/port';
import { RateLimiter, type Logger } from '../observe/logger';
import type { Metrics } from '../observe/metrics';
import { recordTime } from '../consumer/recordTime';
import type { Entry, EntryStores } from './buffer';

/** BARS_VERSION_MAX_FUTURE's default: Kafka 4's broker refuses record timestamps further ahead too. */
export const DEFAULT_VERSION_MAX_FUTURE_MS = 3_600_000;

export class Intake {
  /** The decoder and its caches (the last timestamp text, the scan record): this intake's own. */
  private readonly decoder: BarDecoder;
  private readonly rejectLog = new RateLimiter(10, 10_000);
  private readonly boundedLog = new RateLimiter(10, 10_000);

  constructor(
    private readonly deps: {
      metrics: Metrics;
      logger: Logger;
      /** BARS_MIN_TIMESTAMP: the earliest bar start accepted. */
      minTimestampMs?: number;
      /** BARS_VERSION_MAX_FUTURE: a version time further ahead of receipt is bounded (../contract/version.ts). */
      versionMaxFutureMs?: number;
      /** BARS_EXTRA_COLUMNS: read from every message (../contract/extras.ts). */
      extraColumns?: readonly ExtraColumn[];
    },
  ) {
    this.decoder = new BarDecoder(deps.extraColumns ?? []);
  }

  /**
   * The entry for message `m` (at `offset`) of `topic`/`partition`, taken at `arrival` (ms); a bar's
   * numbers and value bytes go into the partition's `stores`.
   */
  entry(
    topic: string,
    partition: number,
    m: InboundMessage,
    offset: bigint,
    arrival: number,
    stores: EntryStores,
  ): Entry {
    const messageTimeMs = recordTime(m);
    const decoded = this.decoder.decode(m.value, arrival, this.deps.minTimestampMs ?? MIN_TIMESTAMP_MS);
    if (decoded.ok) {
      const bar = decoded.bar;
      const value = m.value!;
      const { sources, bars } = stores;
      const claimed = headerVersionTime(m.headers) ?? messageTimeMs;
      const versionMs = boundedVersionTime(
        claimed,
        arrival,
        bar.timestampMs,
        this.deps.versionMaxFutureMs ?? DEFAULT_VERSION_MAX_FUTURE_MS,
      );
      if (versionMs !== claimed) this.noteBounded(topic, partition, m.offset, claimed, versionMs);
      const at = bars.pack(bar, messageTimeMs, versionMs);
      const sourceStart = sources.store(value);
      return {
        kind: 'bar',
        offset,
        symbol: bar.symbol,
        extras: bar.extras ?? null,
        values: bars.values,
        at,
        sourceBytes: sources.slab,
        sourceStart,
        sourceEnd: sourceStart + value.length,
        key: m.key === null ? null : sameBytes(m.key, bar.symbol) ? undefined : Buffer.from(m.key),
        headers: copyHeaders(m.headers),
      };
    }
    this.noteRejection(topic, partition, m.offset, decoded.rejection);
    return {
      kind: 'rejected',
      offset,
      rejection: decoded.rejection,
      key: m.key ? Buffer.from(m.key) : null,
      value: m.value ? Buffer.from(m.value) : null,
      headers: copyHeaders(m.headers) ?? {},
      messageTimeMs,
    };
  }

  private noteBounded(topic: string, partition: number, offset: string, claimed: number, used: number): void {
    this.deps.metrics.versionTimeBounded.inc();
    const suppressed = this.boundedLog.take('bounded');
    if (suppressed === null) return;
    this.deps.logger.warn(
      { topic, partition, offset, claimedMs: claimed, versionMs: used, suppressed },
      "a message's version time is further ahead than BARS_VERSION_MAX_FUTURE (or negative): the bar is versioned at its close instead",
    );
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

/** A key that spells the symbol (the recommended keying) need not be kept: the symbol gives it back. */
function sameBytes(key: Buffer, symbol: string): boolean {
  if (key.length !== symbol.length) return false;
  for (let i = 0; i < key.length; i++) if (key[i] !== symbol.charCodeAt(i)) return false;
  return true;
}

/** Copies of every header value, repeated headers kept in order; null when the message has none. */
function copyHeaders(headers: InboundMessage['headers'] | undefined): Record<string, Buffer[]> | null {
  let out: Record<string, Buffer[]> | null = null;
  for (const k in headers) {
    const v = headers[k];
    if (v === undefined) continue;
    out ??= {};
    out[k] = (Array.isArray(v) ? v : [v]).map((x) => Buffer.from(x));
  }
  return out;
}
