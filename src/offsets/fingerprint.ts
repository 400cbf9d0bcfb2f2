/**
 * The identity of a message in a partition's log, as the fence records it for the last message it
 * covers: "<offset>:<record timestamp ms>:<hash of the value>". A different log under the same topic
 * name (deleted and created again, or truncated and written again) has, at the same offset, another
 * message: another timestamp or another value.
 */
import crypto from 'node:crypto';
import type { InboundMessage } from '../consumer/port';
import { recordTime } from '../consumer/recordTime';

export function fingerprint(
  offset: bigint,
  recordTimeMs: number,
  value: Buffer | Uint8Array | string | null,
): string {
  const hash = crypto.createHash('sha256');
  if (value === null) hash.update('\u0000null');
  else hash.update(value);
  return `${offset}:${recordTimeMs}:${hash.digest('base64url').slice(0, 22)}`;
}

/** The fingerprint of a fetched message. */
export function messageFingerprint(m: Pick<InboundMessage, 'offset' | 'timestamp' | 'value'>): string {
  return fingerprint(BigInt(m.offset), recordTime(m), m.value);
}
