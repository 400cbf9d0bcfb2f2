/**
 * kafkajs errors, read safely: the broker's error code of a failed request (UNKNOWN_TOPIC_OR_PARTITION,
 * REBALANCE_IN_PROGRESS, MESSAGE_TOO_LARGE, …) is in `type`, or in `cause.type` when kafkajs wrapped it
 * (a commit, a retried request). Foreign errors have neither: null.
 */
function typeOf(e: unknown): unknown {
  return typeof e === 'object' && e !== null ? (e as Record<string, unknown>).type : undefined;
}

/** The broker's error code of `err`: its cause's (the innermost kafkajs gives) first, else its own. */
export function kafkaErrorType(err: unknown): string | null {
  const cause = typeof err === 'object' && err !== null ? (err as Record<string, unknown>).cause : undefined;
  const inner = typeOf(cause);
  if (typeof inner === 'string') return inner;
  const own = typeOf(err);
  return typeof own === 'string' ? own : null;
}
