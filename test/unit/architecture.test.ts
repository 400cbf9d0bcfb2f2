/**
 * The stage layout, checked: every import of src/ goes to the module's own folder or to a folder it
 * is allowed to call (a lower stage or a shared leaf). A stage importing from the stage that calls it
 * (batch from service, store from batch, …) fails here, naming the file and the import. And SQL lives
 * in store/: a string or template literal elsewhere in src/ that begins with a SQL verb fails here,
 * naming the file and the line.
 */
import fs from 'node:fs';
import path from 'node:path';
import ts from 'typescript';

const SRC = path.resolve(__dirname, '..', '..', 'src');

/**
 * Who may import whom. Leaves first: config, contract and observe import nothing of ours; the root
 * (service.ts, main.ts) wires everything. A folder always may import from itself.
 */
const ALLOWED: Record<string, readonly string[]> = {
  config: ['contract'],
  contract: [],
  observe: [],
  consumer: ['config', 'observe'],
  store: ['config', 'contract', 'observe'],
  deadletter: ['contract', 'consumer', 'observe'],
  offsets: ['consumer', 'observe'],
  batch: ['contract', 'consumer', 'deadletter', 'offsets', 'observe', 'store'],
  http: ['contract', 'observe'],
  cli: ['config', 'consumer', 'contract', 'deadletter', 'observe', 'offsets', 'store'],
  demo: ['config', 'consumer', 'contract'],
  '.': [
    'batch',
    'cli',
    'config',
    'consumer',
    'contract',
    'deadletter',
    'demo',
    'http',
    'observe',
    'offsets',
    'store',
  ],
};

function sources(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((d) => {
    const p = path.join(dir, d.name);
    if (d.isDirectory()) return sources(p);
    return d.name.endsWith('.ts') ? [p] : [];
  });
}

/** The folder of src/ a file (or an import of a folder's index, like '../config') belongs to. */
const folderOf = (file: string) => {
  const rel = path.relative(SRC, file);
  if (rel.includes(path.sep)) return rel.split(path.sep)[0]!;
  return fs.existsSync(file) && fs.statSync(file).isDirectory() ? rel : '.';
};

/** Statements begin so (upper case, after optional whitespace); a message or a name rarely does. */
const SQL_VERBS = [
  'SELECT',
  'INSERT',
  'UPDATE',
  'DELETE',
  'WITH',
  'BEGIN',
  'COMMIT',
  'ROLLBACK',
  'CREATE',
  'ALTER',
  'DROP',
  'CALL',
  'COPY',
  'SET',
  'TRUNCATE',
  'GRANT',
  'REVOKE',
  'COMMENT',
  'VACUUM',
  'ANALYZE',
  'SHOW', // doctor's `SHOW server_version` was one
];
const SQL_START = new RegExp(`^\\s*(?:${SQL_VERBS.join('|')})\\b`);

/**
 * The string and template literals of a source text that begin with a SQL verb, as `line: start`
 * (comments and identifiers are not literals; a template is judged by its text before the first `${`).
 */
function sqlLiterals(fileName: string, text: string): string[] {
  const source = ts.createSourceFile(fileName, text, ts.ScriptTarget.Latest, true);
  const found: string[] = [];
  const visit = (node: ts.Node): void => {
    const literal =
      ts.isStringLiteral(node) || ts.isNoSubstitutionTemplateLiteral(node)
        ? node.text
        : ts.isTemplateExpression(node)
          ? node.head.text
          : null;
    if (literal !== null && SQL_START.test(literal)) {
      const line = source.getLineAndCharacterOfPosition(node.getStart(source)).line + 1;
      found.push(`${line}: ${literal.trim().split('\n')[0]!.slice(0, 60)}`);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

/** The holder's state (`state`, `current`) and the mode: what a write to a partition goes through. */
const PARTITION_STATE = ['state', 'current', 'mode'];

/**
 * Assignments to a partition's state fields outside partition.ts, as `line: text`: `x.mode = …`,
 * `x.mode.due = …`, compound assignments and increments included. The state is readonly to the type
 * checker too; this catches a cast or a new mutable field.
 */
function partitionWrites(fileName: string, text: string): string[] {
  const source = ts.createSourceFile(fileName, text, ts.ScriptTarget.Latest, true);
  const found: string[] = [];
  const touchesState = (e: ts.Expression): boolean =>
    ts.isPropertyAccessExpression(e) && (PARTITION_STATE.includes(e.name.text) || touchesState(e.expression));
  const visit = (node: ts.Node): void => {
    const target =
      ts.isBinaryExpression(node) &&
      node.operatorToken.kind >= ts.SyntaxKind.FirstAssignment &&
      node.operatorToken.kind <= ts.SyntaxKind.LastAssignment
        ? node.left
        : (ts.isPrefixUnaryExpression(node) || ts.isPostfixUnaryExpression(node)) &&
            (node.operator === ts.SyntaxKind.PlusPlusToken || node.operator === ts.SyntaxKind.MinusMinusToken)
          ? node.operand
          : null;
    if (target && touchesState(target)) {
      const line = source.getLineAndCharacterOfPosition(node.getStart(source)).line + 1;
      found.push(`${line}: ${node.getText(source).slice(0, 60)}`);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

describe('src/ layering', () => {
  const files = sources(SRC);

  test('every folder of src/ has a rule', () => {
    expect([...new Set(files.map(folderOf))].filter((f) => !(f in ALLOWED))).toEqual([]);
  });

  test('no module imports from a stage that calls it', () => {
    const violations: string[] = [];
    for (const file of files) {
      const from = folderOf(file);
      const text = fs.readFileSync(file, 'utf8');
      for (const m of text.matchAll(/^(?:import|export)[^;]*?from '(\.[^']+)'/gms)) {
        const target = folderOf(path.resolve(path.dirname(file), m[1]!));
        if (target !== from && !ALLOWED[from]!.includes(target)) {
          violations.push(`${path.relative(SRC, file)} imports ${m[1]} (${from} → ${target})`);
        }
      }
    }
    expect(violations).toEqual([]);
  });

  test("no partition state is written outside batch/partition.ts (the machine's step is its one writer)", () => {
    const violations: string[] = [];
    for (const file of files) {
      const rel = path.relative(SRC, file);
      if (rel === path.join('batch', 'partition.ts') || folderOf(file) !== 'batch') continue; // only batch/ holds partitions
      for (const hit of partitionWrites(rel, fs.readFileSync(file, 'utf8'))) violations.push(`${rel}:${hit}`);
    }
    expect(violations).toEqual([]);
    // The detector itself: it finds what it must.
    expect(
      partitionWrites(
        'x.ts',
        'p.mode = { name: "idle" }; q.state.next = 3n; r.mode.timer = null; s.state.attempts++;',
      ),
    ).toHaveLength(4);
  });

  test('no SQL outside store/: no string or template literal begins with a SQL verb', () => {
    const violations: string[] = [];
    for (const file of files) {
      if (folderOf(file) === 'store') continue;
      const rel = path.relative(SRC, file);
      for (const hit of sqlLiterals(rel, fs.readFileSync(file, 'utf8'))) violations.push(`${rel}:${hit}`);
    }
    expect(violations).toEqual([]);
  });

  test('the SQL check sees literals, not comments, names or other words', () => {
    const text = [
      "const a = 'SELECT 1';",
      'const b = `',
      '  INSERT INTO ${table} VALUES (1)`;',
      '// SELECT in a comment, and UPDATE in this one',
      "const c = ['selected', 'SETTINGS', 'Select', 'the SELECT', `${x}DELETE`];",
      'const d = sql`CALL refresh()`;',
      'const e = "COMMIT";',
    ].join('\n');
    expect(sqlLiterals('sample.ts', text)).toEqual([
      '1: SELECT 1',
      '2: INSERT INTO',
      '6: CALL refresh()',
      '7: COMMIT',
    ]);
  });

  test('the check sees imports: batch/pipeline.ts reaches store, offsets and consumer', () => {
    const text = fs.readFileSync(path.join(SRC, 'batch', 'pipeline.ts'), 'utf8');
    const targets = [...text.matchAll(/^(?:import|export)[^;]*?from '(\.[^']+)'/gms)].map((m) =>
      folderOf(path.resolve(path.join(SRC, 'batch'), m[1]!)),
    );
    expect(targets).toEqual(expect.arrayContaining(['store', 'offsets', 'consumer']));
  });
});
