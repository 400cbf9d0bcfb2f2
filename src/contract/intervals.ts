/**
 * The bar intervals the read API serves (docs/reads.md): minute bars, and the widths of the continuous
 * aggregates bars_5m, bars_1h and bars_1d (or, on plain PostgreSQL, the same buckets computed from the
 * minute bars). 1h and 1d buckets are in BARS_DB_AGGREGATE_TIMEZONE.
 */
export const INTERVALS = ['1m', '5m', '1h', '1d'] as const;
export type Interval = (typeof INTERVALS)[number];

/** Each interval's nominal width in minutes (a day in a zone with DST may be 23 or 25 hours). */
export const INTERVAL_MINUTES: Record<Interval, number> = { '1m': 1, '5m': 5, '1h': 60, '1d': 1440 };
