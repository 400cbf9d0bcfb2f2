/**
 * ISO-8601 date-times with a zone, read by hand into epoch milliseconds: the calendar arithmetic of
 * ECMAScript's MakeDay/MakeTime, without a Date object or a regular expression (the contract reads one
 * per message). `isoToMs` is a pure function; `IsoTimeCache` is the one piece of state, and whoever
 * creates one owns it. What the contract accepts (the range of bar starts, epoch milliseconds as JSON
 * numbers) and how a refusal is worded are in bar.ts.
 */

/** Why a text is not an ISO-8601 date-time with a zone: bar.ts words the rejection. */
export type IsoError =
  /** Not of the form at all. */
  | 'syntax'
  /** Of the form, but no such date or time of day (2026-02-30, 24:00). */
  | 'invalid_date_time'
  /** A zone offset beyond ±23:59. */
  | 'invalid_offset'
  /** A fraction of a second finer than a millisecond that is not zero. */
  | 'sub_millisecond';

/** The value of the ASCII digit at `i`, or -1 if there is none (NaN past the end compares false). */
function digitAt(s: string, i: number): number {
  const d = s.charCodeAt(i) - 0x30;
  return d >= 0 && d <= 9 ? d : -1;
}

/** The two-digit number at `i`, or -1. */
function twoDigitsAt(s: string, i: number): number {
  const a = digitAt(s, i);
  const b = digitAt(s, i + 1);
  return a < 0 || b < 0 ? -1 : a * 10 + b;
}

/**
 * An ISO-8601 date-time with a zone: 2026-11-24T14:31:00Z, 2026-11-24T14:31Z, 2026-11-24T09:31:00.000-05:00,
 * +0530. Exactly the strings the regular expression
 *   /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(Z|z|([+-])(\d{2}):?(\d{2}))$/
 * matches (digits are ASCII 0-9), read left to right without backtracking: no optional part can start
 * with what follows it. Returns epoch ms (any year 0000-9999: no range check), or why not.
 */
export function isoToMs(v: string): number | IsoError {
  const n = v.length;
  // Shortest 2026-11-24T14:31Z (17), longest 2026-11-24T14:31:00.123456789+05:30 (35).
  if (n < 17 || n > 35) return 'syntax';
  const y0 = digitAt(v, 0);
  const y1 = digitAt(v, 1);
  const y2 = digitAt(v, 2);
  const y3 = digitAt(v, 3);
  const month = twoDigitsAt(v, 5);
  const day = twoDigitsAt(v, 8);
  const hour = twoDigitsAt(v, 11);
  const minute = twoDigitsAt(v, 14);
  if (
    y0 < 0 ||
    y1 < 0 ||
    y2 < 0 ||
    y3 < 0 ||
    v.charCodeAt(4) !== 0x2d /* - */ ||
    month < 0 ||
    v.charCodeAt(7) !== 0x2d /* - */ ||
    day < 0 ||
    v.charCodeAt(10) !== 0x54 /* T */ ||
    hour < 0 ||
    v.charCodeAt(13) !== 0x3a /* : */ ||
    minute < 0
  ) {
    return 'syntax';
  }
  let p = 16;
  let second = 0;
  let fracStart = -1;
  let fracEnd = -1;
  if (v.charCodeAt(p) === 0x3a /* : */) {
    second = twoDigitsAt(v, p + 1);
    if (second < 0) return 'syntax';
    p += 3;
    if (v.charCodeAt(p) === 0x2e /* . */) {
      fracStart = ++p;
      while (p < n && digitAt(v, p) >= 0) p++;
      fracEnd = p;
      if (fracEnd === fracStart || fracEnd - fracStart > 9) return 'syntax';
    }
  }
  const z = v.charCodeAt(p);
  let sign = 0;
  let offH = 0;
  let offM = 0;
  if (z === 0x5a /* Z */ || z === 0x7a /* z */) {
    if (p + 1 !== n) return 'syntax';
  } else if (z === 0x2b /* + */ || z === 0x2d /* - */) {
    sign = z === 0x2d ? -1 : 1;
    offH = twoDigitsAt(v, p + 1);
    let q = p + 3;
    if (v.charCodeAt(q) === 0x3a /* : */) q++;
    offM = twoDigitsAt(v, q);
    if (offH < 0 || offM < 0 || q + 2 !== n) return 'syntax';
  } else {
    return 'syntax';
  }

  const year = y0 * 1000 + y1 * 100 + y2 * 10 + y3;
  if (
    month < 1 ||
    month > 12 ||
    day < 1 ||
    day > daysInMonth(year, month) ||
    hour > 23 ||
    minute > 59 ||
    second > 59
  ) {
    return 'invalid_date_time';
  }
  let offsetMin = 0;
  if (sign !== 0) {
    if (offH > 23 || offM > 59) return 'invalid_offset';
    offsetMin = sign * (offH * 60 + offM);
  }
  // Sub-millisecond digits must be zero: a bar start is never between milliseconds.
  let fracMs = 0;
  if (fracStart >= 0) {
    for (let i = fracStart + 3; i < fracEnd; i++) {
      if (v.charCodeAt(i) !== 0x30 /* 0 */) return 'sub_millisecond';
    }
    for (let i = fracStart, scale = 100; i < fracStart + 3; i++, scale /= 10) {
      if (i < fracEnd) fracMs += digitAt(v, i) * scale;
    }
  }
  // Exact integer arithmetic (ECMAScript's MakeDay/MakeTime, no Date object); years 0-99 are years 0-99.
  const days =
    dayFromYear(year) + DAYS_BEFORE_MONTH[month - 1]! + (month > 2 && isLeap(year) ? 1 : 0) + day - 1;
  return days * 86_400_000 + hour * 3_600_000 + minute * 60_000 + second * 1000 + fracMs - offsetMin * 60_000;
}

const DAYS_BEFORE_MONTH = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

function isLeap(year: number): boolean {
  return year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
}

/** Days from 1970-01-01 to January 1st of `year` (proleptic Gregorian; ECMAScript's DayFromYear). */
function dayFromYear(year: number): number {
  return (
    365 * (year - 1970) +
    Math.floor((year - 1969) / 4) -
    Math.floor((year - 1901) / 100) +
    Math.floor((year - 1601) / 400)
  );
}

/**
 * Length of `month` (1-12) in `year`. Kept as the Date.UTC(year, month, 0) it replaced computed it,
 * which reads years 0-99 as 1900-1999: February of year 0 has 28 days here (1900 is not a leap year).
 */
function daysInMonth(year: number, month: number): number {
  if (month !== 2) return DAYS_IN_MONTH[month - 1]!;
  return isLeap(year < 100 ? year + 1900 : year) ? 29 : 28;
}

/**
 * isoToMs with a memory of one: the last text it read successfully and its epoch ms. The bars of a
 * partition come minute by minute, so consecutive messages mostly spell the same minute, and a string
 * comparison replaces the parse. Mutable state: one per decoder (bar.ts `BarDecoder`), used by one
 * decode at a time.
 */
export class IsoTimeCache {
  private lastText = '';
  private lastMs = 0;

  toMs(text: string): number | IsoError {
    if (text === this.lastText) return this.lastMs;
    const ms = isoToMs(text);
    if (typeof ms === 'number') {
      this.lastText = text;
      this.lastMs = ms;
    }
    return ms;
  }
}
