/**
 * The read API's optional bearer token (HTTP_READ_TOKEN). Compared in constant time: both sides are
 * hashed first, so neither the content nor the length of the token leaks through timing. The token is
 * never logged, and the header is not either.
 */
import { createHash, timingSafeEqual } from 'node:crypto';

const digest = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();

export class BearerToken {
  private readonly expected: Buffer;

  constructor(token: string) {
    if (token === '') throw new Error('a bearer token must not be empty');
    this.expected = digest(token);
  }

  /** Whether an Authorization header value carries the token ("Bearer <token>", scheme case-insensitive). */
  accepts(header: string | undefined): boolean {
    const m = /^Bearer +(\S+) *$/i.exec(header ?? '');
    // Hash something even when the header is malformed, so that path takes as long.
    return timingSafeEqual(digest(m?.[1] ?? ''), this.expected) && m !== null;
  }
}
