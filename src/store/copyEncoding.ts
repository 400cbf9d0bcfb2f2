/**
 * Encoding of bars as PostgreSQL COPY text format rows (tab-separated, \N for NULL, backslash escapes).
 *
 * Numbers use JavaScript's shortest round-trip form (e.g. 0.1, 1e-7, 1.5e+300), which float8in parses to
 * the same double; volumes are safe integers. Timestamps are ISO-8601 UTC with an explicit Z, so the
 * session TimeZone cannot change them.
 */
import type { Bar } from '../contract/bar';

/** Escapes a text field for COPY text format: backslash, and the delimiter/row characters. */
export function escapeCopyText(s: string): string {
  // Fast path: the contract allows printable ASCII symbols, of which only backslash needs escaping.
  if (!/[\\\t\n\r\v\f\b]/.test(s)) return s;
  let out = '';
  for (const ch of s) {
    switch (ch) {
      case '\\':
        out += '\\\\';
        break;
      case '\t':
        out += '\\t';
        break;
      case '\n':
        out += '\\n';
        break;
      case '\r':
        out += '\\r';
        break;
      case '\v':
        out += '\\v';
        break;
      case '\f':
        out += '\\f';
        break;
      case '\b':
        out += '\\b';
        break;
      default:
        out += ch;
    }
  }
  return out;
}

// Bars of one flush share a handful of minutes (a live burst: one), so formatting each timestamp once
// per minute instead of once per bar saves a Date allocation and toISOString() per row.
const isoCache = new Map<number, string>();
const ISO_CACHE_MAX = 4096;

function isoMinute(ms: number): string {
  let s = isoCache.get(ms);
  if (s === undefined) {
    if (isoCache.size >= ISO_CACHE_MAX) isoCache.clear();
    s = new Date(ms).toISOString();
    isoCache.set(ms, s);
  }
  return s;
}

function num(n: number): string {
  if (!Number.isFinite(n)) throw new RangeError(`non-finite number ${n} cannot be written`);
  return String(n);
}

/** One COPY row: seq, symbol, timestamp, open, high, low, close, volume, vwap. */
export function encodeCopyRow(seq: number, bar: Bar): string {
  return (
    seq +
    '\t' +
    escapeCopyText(bar.symbol) +
    '\t' +
    isoMinute(bar.timestampMs) +
    '\t' +
    num(bar.open) +
    '\t' +
    num(bar.high) +
    '\t' +
    num(bar.low) +
    '\t' +
    num(bar.close) +
    '\t' +
    String(bar.volume) +
    '\t' +
    (bar.vwap === null ? '\\N' : num(bar.vwap)) +
    '\n'
  );
}

/** The whole COPY payload for a batch; `seq` is the bar's position (offset order) within the batch. */
export function encodeCopyRows(bars: readonly Bar[]): string {
  const parts = new Array<string>(bars.length);
  for (let i = 0; i < bars.length; i++) parts[i] = encodeCopyRow(i, bars[i]!);
  return parts.join('');
}
