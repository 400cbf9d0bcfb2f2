/**
 * kafkaErrorType: the broker error code of a kafkajs error, read safely from any thrown value.
 */
import { kafkaErrorType } from '../../src/consumer/errors';

function rebalanceError(): Error {
  const err = new Error('The group is rebalancing, so a rejoin is needed');
  (err as Error & { cause: unknown }).cause = { type: 'REBALANCE_IN_PROGRESS', code: 27 };
  return err;
}

describe('kafkaErrorType', () => {
  test('cause.type (kafkajs) is preferred', () => {
    expect(kafkaErrorType(rebalanceError())).toBe('REBALANCE_IN_PROGRESS');
    expect(kafkaErrorType({ type: 'OUTER', cause: { type: 'NOT_COORDINATOR' } })).toBe('NOT_COORDINATOR');
  });

  test('falls back to the error’s own type', () => {
    expect(kafkaErrorType({ type: 'UNKNOWN_MEMBER_ID' })).toBe('UNKNOWN_MEMBER_ID');
    expect(kafkaErrorType({ type: 'ILLEGAL_GENERATION', cause: new Error('no type') })).toBe(
      'ILLEGAL_GENERATION',
    );
    expect(kafkaErrorType({ type: 'X', cause: 'a string cause' })).toBe('X');
  });

  test('null when there is no string type', () => {
    expect(kafkaErrorType(new Error('plain'))).toBeNull();
    expect(kafkaErrorType(null)).toBeNull();
    expect(kafkaErrorType(undefined)).toBeNull();
    expect(kafkaErrorType('REBALANCE_IN_PROGRESS')).toBeNull();
    expect(kafkaErrorType(42)).toBeNull();
    expect(kafkaErrorType({ type: 27 })).toBeNull();
    expect(kafkaErrorType({ cause: { type: 27 } })).toBeNull();
  });
});
