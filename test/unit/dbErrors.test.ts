import { classifyDbError } from '../../src/store/errors';

const pgError = (code: string, message: string) => Object.assign(new Error(message), { code });

describe('classifyDbError', () => {
  test.each([
    ['lock_timeout', pgError('55P03', 'canceling statement due to lock timeout'), 'transient'],
    ['statement_timeout', pgError('57014', 'canceling statement due to statement timeout'), 'transient'],
    [
      'a connection class error (PgBouncer query_wait_timeout)',
      pgError('08P01', 'query_wait_timeout'),
      'transient',
    ],
    ['out of resources', pgError('53300', 'too many connections for role "w"'), 'transient'],
    ['connection refused', pgError('ECONNREFUSED', 'connect ECONNREFUSED 127.0.0.1:5432'), 'transient'],
    ['a terminated connection', new Error('Connection terminated unexpectedly'), 'transient'],
    [
      'a database closed to connections',
      pgError('55000', 'database "x" is not currently accepting connections'),
      'transient',
    ],
    ['bad data', pgError('22P02', 'invalid input syntax'), 'data'],
    ['a constraint', pgError('23514', 'new row violates check constraint'), 'data'],
    ['a missing table', pgError('42P01', 'relation "bars_1m" does not exist'), 'fatal'],
    ['a missing privilege', pgError('42501', 'permission denied for table bars_1m'), 'fatal'],
  ])('%s → %s', (_what, err, cls) => {
    expect(classifyDbError(err).class).toBe(cls);
  });

  test("pg's client-side query timeout is transient, with a message that says what happened", () => {
    expect(classifyDbError(new Error('Query read timeout'))).toEqual({
      class: 'transient',
      code: null,
      message: 'no answer from the database within the query timeout',
    });
  });
});
