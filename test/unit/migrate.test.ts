/**
 * The migration files and the splitter of no-transaction migrations (pure: no database).
 */
import { loadMigrations, splitSqlStatements } from '../../src/store/migrate';

describe('splitSqlStatements (no-transaction migrations)', () => {
  test('splits at semicolons outside strings, identifiers, dollar quotes and comments', () => {
    const sql = [
      "SELECT 'a;b', 'it''s;', E'x\\';y' AS \"c;d\";",
      "DO $$ BEGIN RAISE NOTICE ';'; END $$;",
      "DO $body$ BEGIN PERFORM '$$;'; END $body$;",
      '-- a comment; with a semicolon',
      '/* block; /* nested; */ still comment; */ SELECT $1, a$b$ FROM t;',
      ';; -- only comments and empty statements after this;',
      '/* ; */',
    ].join('\n');
    expect(splitSqlStatements(sql)).toEqual([
      "SELECT 'a;b', 'it''s;', E'x\\';y' AS \"c;d\"",
      "DO $$ BEGIN RAISE NOTICE ';'; END $$",
      "DO $body$ BEGIN PERFORM '$$;'; END $body$",
      '-- a comment; with a semicolon\n/* block; /* nested; */ still comment; */ SELECT $1, a$b$ FROM t',
    ]);
    expect(splitSqlStatements('SELECT 1')).toEqual(['SELECT 1']);
    expect(splitSqlStatements('  -- nothing\n')).toEqual([]);
  });

  test('refuses unterminated quotes and comments', () => {
    expect(() => splitSqlStatements("SELECT 'x")).toThrow(/unterminated string/);
    expect(() => splitSqlStatements('DO $$ BEGIN')).toThrow(/unterminated dollar-quoted string \$\$/);
    expect(() => splitSqlStatements('SELECT 1 /* /* */')).toThrow(/unterminated block comment/);
    expect(() => splitSqlStatements('SELECT "x')).toThrow(/unterminated quoted identifier/);
  });

  test('only 004 is marked no-transaction, and it is one statement', () => {
    const migrations = loadMigrations();
    expect(migrations.filter((m) => !m.transaction).map((m) => m.name)).toEqual([
      '004_continuous_aggregates',
    ]);
    const m = migrations.find((x) => !x.transaction)!;
    expect(splitSqlStatements(m.sql)).toHaveLength(1);
  });
});
