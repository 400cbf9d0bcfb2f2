/**
 * A bar as the read API answers it (docs/reads.md, the OpenAPI document's `Bar`), in the form the store
 * hands it over: its key, for paging and for `missing`, and its values already written as JSON members
 * by PostgreSQL (src/store/readBars.ts), in the API's order — `open`, `high`, `low`, `close`, `volume`,
 * `vwap`, `trade_count`, then the extra columns (BARS_EXTRA_COLUMNS) by name on a minute bar.
 *
 * Why the values come as text: a page of 5,000 bars as ten fields each cost the API more than the query
 * (parsing 50,000 fields into numbers, then writing them back as JSON); PostgreSQL writes the same
 * numbers (their shortest exact form, as JSON.stringify writes them) in the query for a few ms more.
 */
export interface ReadBar {
  symbol: string;
  /** The bar's start (an aggregated bar's bucket start), epoch milliseconds. */
  timestampMs: number;
  /** The JSON members of its values, `"open":1.5,…,"trade_count":null`, never empty. */
  values: string;
}
