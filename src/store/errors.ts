/**
 * Database error classification, by data (SQLSTATE / errno), not by a class tree.
 *
 * - transient: the database or the network is away or busy; retry the same batch with backoff.
 * - data: the batch holds a row the database refuses (SQLSTATE classes 22 and 23); retrying the same
 *   rows cannot succeed, so the writer isolates them (bisection) and dead-letters them.
 * - fatal: anything else (missing table, permissions, syntax). Retrying keeps the data safe while an
 *   operator fixes it (run migrations, grant rights); the service reports not ready meanwhile.
 */
export const DB_ERROR_CLASSES = ['transient', 'data', 'fatal'] as const;
export type DbErrorClass = (typeof DB_ERROR_CLASSES)[number];

export interface ClassifiedDbError {
  class: DbErrorClass;
  /** SQLSTATE or errno, when known. */
  code: string | null;
  message: string;
}

const TRANSIENT_SQLSTATES = new Set([
  '40001', // serialization_failure
  '40P01', // deadlock_detected
  '55P03', // lock_not_available (lock_timeout)
  '57014', // query_canceled (statement_timeout)
  '57P01', // admin_shutdown
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now (starting up, recovery)
  '58000', // system_error
  '58030', // io_error
  'XX000', // internal_error: seen during failovers
]);

const TRANSIENT_ERRNOS = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ECONNABORTED',
]);

const TRANSIENT_MESSAGES = [
  /connection terminated/i,
  /timeout exceeded when trying to connect/i,
  /connection ended unexpectedly/i,
  /client has encountered a connection error/i,
  /cannot use a pool after calling end/i,
  /terminating connection/i,
  /the database system is (starting up|shutting down|in recovery mode)/i,
  /is not currently accepting connections/i, // 55000 while a database is closed to connections
];

function field(err: unknown, name: string): unknown {
  return typeof err === 'object' && err !== null ? (err as Record<string, unknown>)[name] : undefined;
}

export function classifyDbError(err: unknown): ClassifiedDbError {
  const code = field(err, 'code');
  const message = err instanceof Error ? err.message : String(err);
  const c = typeof code === 'string' ? code : null;
  if (c !== null) {
    if (TRANSIENT_SQLSTATES.has(c) || TRANSIENT_ERRNOS.has(c))
      return { class: 'transient', code: c, message };
    if (c.startsWith('08') || c.startsWith('53')) return { class: 'transient', code: c, message }; // connection, resources
    if (c.startsWith('22') || c.startsWith('23')) return { class: 'data', code: c, message };
  }
  if (/^Query read timeout$/.test(message)) {
    // pg's client-side query_timeout (./pool.ts): the server, or a pooler in front of it, did not answer.
    return { class: 'transient', code: c, message: 'no answer from the database within the query timeout' };
  }
  if (TRANSIENT_MESSAGES.some((re) => re.test(message))) return { class: 'transient', code: c, message };
  return { class: 'fatal', code: c, message };
}
