/**
 * A message's Kafka record timestamp in epoch ms (0 when it has none), as the fence's fingerprint and a
 * bar's version read it.
 */
import type { InboundMessage } from './port';

export function recordTime(m: Pick<InboundMessage, 'timestamp'>): number {
  const s = m.timestamp;
  // Per message: a decimal string of up to 15 digits (epoch ms has 13) is read digit by digit, exactly
  // as Number() reads it, without the general number parser; anything else goes through Number().
  if (typeof s === 'string' && s.length > 0 && s.length <= 15) {
    let v = 0;
    for (let i = 0; i < s.length; i++) {
      const d = s.charCodeAt(i) - 0x30;
      if (d < 0 || d > 9) return Number(s) || 0;
      v = v * 10 + d;
    }
    return v;
  }
  return Number(s) || 0;
}
