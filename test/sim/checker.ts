/**
 * The simulation's checker, independent of the service's code: from what was produced and loaded, the
 * bars_1m that must result under the version rule of docs/contract.md, compared with what is stored.
 *
 * - A message's version is (revision, version time, origin): version time is its version-time header
 *   or its record time, unless that lies more than an hour ahead of when it was produced (the service
 *   receives it later still) or is negative: then the bar's close. The generator never produces a time
 *   near that bound, so classifying without the receipt time is exact. Origin: partition × 2^48 + offset.
 *   A backfilled row: (revision, its version time, its ordinal).
 * - MUST land: every valid message of the topic's current incarnation, every backfilled row.
 *   MAY land: valid messages of incarnations deleted before they were all written, and those below the
 *   point an operator moved a partition to (`offsets reset`: skipping them is the operator's choice).
 *   Never: invalid messages.
 * - Deletes (values DELETED_VALUES): a key's bar is stored exactly when the newest version that landed
 *   is a bar's (a delete wins a tie). So for each key: a stored row must be one of its bar candidates
 *   (MUST or MAY, exactly: values and version), at least as new as every MUST bar and newer than every
 *   MUST delete; no stored row is right only when no MUST bar exists or some delete (MUST or MAY) is at
 *   least as new as the newest MUST bar. So: nothing lost (a MUST key missing), nothing stale (an older
 *   version than a MUST candidate, a deleted bar back), nothing invented (a row from no candidate: an
 *   invalid message, or values mixed from two).
 */
import { compareVersions, DELETED_VALUES, type StoredRow, type Version } from './store';

export interface Produced {
  id: number;
  incarnation: number;
  partition: number;
  offset: bigint;
  valid: boolean;
  /** symbol|timestampMs */
  key: string;
  barStartMs: number;
  values: string;
  revision: number;
  recordTime: number;
  headerVersionTime: number | null;
  producedAt: number;
}

export interface Loaded {
  key: string;
  values: string;
  version: Version;
}

/** An operator's reset of one partition of one incarnation to `to`: what lies below is theirs to skip. */
export interface Reset {
  incarnation: number;
  partition: number;
  to: bigint;
}

export interface Verdict {
  lost: string[];
  stale: string[];
  invented: string[];
  mustKeys: number;
  stored: number;
}

const HOUR = 3_600_000;

export function versionOf(m: Produced): Version {
  const claimed = m.headerVersionTime ?? m.recordTime;
  const time = claimed >= 0 && claimed <= m.producedAt + HOUR ? claimed : m.barStartMs + 60_000;
  return [BigInt(m.revision), time, (BigInt(m.partition) << 48n) + m.offset];
}

export function check(
  produced: readonly Produced[],
  loaded: readonly Loaded[],
  incarnation: number,
  stored: ReadonlyMap<string, StoredRow>,
  resets: readonly Reset[] = [],
): Verdict {
  const skippable = (m: Produced) =>
    resets.some((r) => r.incarnation === m.incarnation && r.partition === m.partition && m.offset < r.to);
  interface Candidate {
    values: string;
    version: Version;
    must: boolean;
  }
  const candidates = new Map<string, Candidate[]>();
  const add = (key: string, c: Candidate) => {
    const list = candidates.get(key);
    if (list) list.push(c);
    else candidates.set(key, [c]);
  };
  for (const m of produced) {
    if (!m.valid) continue;
    add(m.key, {
      values: m.values,
      version: versionOf(m),
      must: m.incarnation === incarnation && !skippable(m),
    });
  }
  for (const l of loaded) add(l.key, { values: l.values, version: l.version, must: true });

  const lost: string[] = [];
  const stale: string[] = [];
  const invented: string[] = [];
  let mustKeys = 0;
  const newest = (cs: readonly Candidate[]) =>
    cs.reduce<Version | null>(
      (best, c) => (best === null || compareVersions(c.version, best) > 0 ? c.version : best),
      null,
    );
  for (const [key, list] of candidates) {
    const isDelete = (c: Candidate) => c.values === DELETED_VALUES;
    const newestMustBar = newest(list.filter((c) => c.must && !isDelete(c)));
    const newestMustDelete = newest(list.filter((c) => c.must && isDelete(c)));
    const newestDelete = newest(list.filter(isDelete));
    if (newestMustBar !== null) mustKeys++;
    const row = stored.get(key);
    if (!row) {
      if (
        newestMustBar !== null &&
        (newestDelete === null || compareVersions(newestDelete, newestMustBar) < 0)
      )
        lost.push(key);
      continue;
    }
    const match = list.find(
      (c) => !isDelete(c) && compareVersions(c.version, row.version) === 0 && c.values === row.values,
    );
    if (!match) {
      invented.push(`${key}: stored ${row.values} @ ${row.version.join('/')}`);
      continue;
    }
    if (newestMustBar !== null && compareVersions(row.version, newestMustBar) < 0) {
      stale.push(`${key}: stored @ ${row.version.join('/')}, newest @ ${newestMustBar.join('/')}`);
    }
    if (newestMustDelete !== null && compareVersions(row.version, newestMustDelete) <= 0) {
      stale.push(`${key}: stored @ ${row.version.join('/')}, deleted @ ${newestMustDelete.join('/')}`);
    }
  }
  for (const key of stored.keys()) if (!candidates.has(key)) invented.push(`${key}: from no valid message`);
  return { lost, stale, invented, mustKeys, stored: stored.size };
}
