/**
 * The time part of a bar's version (docs/contract.md "Which version wins"): a bar's version is
 * (revision, version time, origin), compared in that order; a stored bar is replaced only by a strictly
 * newer one (../store/writeSql.ts). The version time is the Kafka record timestamp of its message, with
 * two exceptions:
 *
 * - a `bar-writer.version-time` header (decimal epoch ms) names it instead: `bar-writer dlq replay`
 *   sets it to the original message's version time, so a replayed bar is no newer than it was, even on
 *   a topic whose record timestamps are the broker's (LogAppendTime); any producer may set it;
 * - a time no clock should give is not a version: more than `maxFutureMs` (BARS_VERSION_MAX_FUTURE)
 *   ahead of the moment the service received the message (a timestamp in microseconds, a clock years
 *   ahead), or negative. Such a time would pin the row against every later correction; the bar is
 *   versioned at its close (its start + 1 minute) instead, the earliest a finalized bar exists, and
 *   counted (bars_version_time_bounded_total). That also keeps the stored time within PostgreSQL's range.
 */
export const VERSION_TIME_HEADER = 'bar-writer.version-time';

/** A minute bar closes this long after its start. */
const BAR_MS = 60_000;

/**
 * The version time of a bar that starts at `barStartMs`, whose message claims `claimedMs` (its record
 * timestamp or its version-time header), received at `receivedMs`.
 */
export function boundedVersionTime(
  claimedMs: number,
  receivedMs: number,
  barStartMs: number,
  maxFutureMs: number,
): number {
  if (claimedMs >= 0 && claimedMs <= receivedMs + maxFutureMs) return claimedMs;
  return barStartMs + BAR_MS;
}

/** The version time a message's header names (a non-negative decimal integer), or null. */
export function headerVersionTime(
  headers: Readonly<Record<string, Buffer | string | (Buffer | string)[] | undefined>> | undefined,
): number | null {
  const h = headers?.[VERSION_TIME_HEADER];
  if (h === undefined) return null;
  const first = Array.isArray(h) ? h[0] : h;
  if (first === undefined) return null;
  const text = typeof first === 'string' ? first : first.toString('latin1');
  if (!/^\d{1,16}$/.test(text)) return null;
  return Number(text);
}
