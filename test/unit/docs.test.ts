/**
 * The documentation cannot drift from the code. Every Markdown page (README.md, ARCHITECTURE.md,
 * docs/*.md, including pages other work adds there) is read as a newcomer would copy from it:
 *
 * - the generated references (docs/configuration.md from the config schema, docs/metrics.md from the
 *   metrics registry) equal what `npm run docs` writes, and every default they show parses back;
 * - every command of a fenced sh block is tried: a `bar-writer` command line is run through the CLI up
 *   to the point where it would read the configuration (its options and subcommand accepted), and its
 *   --help; `npm run X` names a script; `scripts/x.sh arg` an argument the script handles; `docker
 *   compose` a service or profile of docker-compose.yml; `curl` a port the service or compose serves
 *   and a route the HTTP server has; psql a table the migrations create;
 * - every `NAME=value` of a setting (in those blocks or inline) is accepted by the schema, and every
 *   variable named is one something reads; every metric named is registered;
 * - every relative link and anchor resolves; the CLI's usage lines, the reject reasons, the alerts, the
 *   partition's modes and the CLI's commands are all where the docs list them.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Registry } from 'prom-client';
import { parseAllDocuments } from 'yaml';
import { ROOT, renderedPages } from '../../scripts/docs';
import { main as cli, COMMANDS } from '../../src/cli/main';
import type { Io } from '../../src/cli/command';
import { ConfigError, loadConfig, settings } from '../../src/config';
import { REJECT_REASONS } from '../../src/contract/bar';
import { DATABASE_REJECTED } from '../../src/deadletter/records';
import { createMetrics } from '../../src/observe/metrics';

function read(rel: string): string {
  return fs.readFileSync(path.join(ROOT, rel), 'utf8');
}

function exists(rel: string): boolean {
  return fs.existsSync(path.join(ROOT, rel));
}

/** Pages written by other work that may be linked before they exist. */
const MAY_DANGLE = new Set<string>([]);

const PAGES = [
  'README.md',
  'ARCHITECTURE.md',
  ...fs
    .readdirSync(path.join(ROOT, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => `docs/${f}`),
];

interface Block {
  page: string;
  line: number;
  lang: string;
  text: string;
}

function blocks(page: string): Block[] {
  const out: Block[] = [];
  const lines = read(page).split('\n');
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\w*)\s*$/.exec(lines[i]!);
    if (!open) continue;
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && !/^```\s*$/.test(lines[i]!); i++) body.push(lines[i]!);
    out.push({ page, line: start + 1, lang: open[1]!, text: body.join('\n') });
  }
  return out;
}

/** A page's text outside its fenced blocks. */
function prose(page: string): string {
  return read(page).replace(/^```\w*\s*\n[\s\S]*?^```\s*$/gm, '');
}

const ALL_BLOCKS = PAGES.flatMap(blocks);
const SH_BLOCKS = ALL_BLOCKS.filter((b) => b.lang === 'sh' || b.lang === 'bash');

const compose = parseAllDocuments(read('docker-compose.yml'), { merge: true })[0]!.toJS() as {
  services: Record<string, { profiles?: string[]; ports?: string[]; image?: string }>;
};

// ---------------------------------------------------------------------------------------------
// A small shell reader: words (quotes resolved), simple commands split at ; && || | &, comments.

function shellCommands(text: string): string[][] {
  const commands: string[][] = [];
  let words: string[] = [];
  let word: string | null = null;
  const end = () => {
    if (word !== null) words.push(word);
    word = null;
  };
  const src = text.replace(/\\\n/g, ' ');
  for (let i = 0; i < src.length; i++) {
    const c = src[i]!;
    if (c === "'") {
      const j = src.indexOf("'", i + 1);
      word = (word ?? '') + src.slice(i + 1, j);
      i = j;
    } else if (c === '"') {
      let s = '';
      for (i++; i < src.length && src[i] !== '"'; i++) s += src[i] === '\\' ? src[++i] : src[i];
      word = (word ?? '') + s;
    } else if (c === '#' && word === null) {
      while (i < src.length && src[i] !== '\n') i++;
      i--;
    } else if (c === ' ' || c === '\t') {
      end();
    } else if (c === '\n' || c === ';' || c === '|' || c === '&') {
      end();
      if (words.length > 0) commands.push(words);
      words = [];
      if ((c === '|' || c === '&') && src[i + 1] === c) i++;
    } else {
      word = (word ?? '') + c;
    }
  }
  end();
  if (words.length > 0) commands.push(words);
  return commands;
}

interface Command {
  where: string;
  env: [string, string][];
  argv: string[];
}

const COMMANDS_SHOWN: Command[] = SH_BLOCKS.flatMap((b) =>
  shellCommands(b.text).map((words) => {
    const env: [string, string][] = [];
    while (words.length > 0 && /^[A-Z_][A-Z0-9_]*=/.test(words[0]!)) {
      const [name, ...value] = words.shift()!.split('=');
      env.push([name!, value.join('=')]);
    }
    return { where: `${b.page}:${b.line}`, env, argv: words };
  }),
);

/** The argv of a `bar-writer` command line, however it is invoked; else null. */
function cliArgs(argv: string[]): string[] | null {
  if (argv[0] === 'bar-writer') return argv.slice(1);
  if (argv[0] === 'npx' && argv[1] === 'bar-writer') return argv.slice(2);
  if (argv[0] === 'node' && argv[1] === 'dist/cli/main.js') return argv.slice(2);
  return null;
}

// ---------------------------------------------------------------------------------------------
// Settings and the names the docs mention

const SETTINGS = settings();
const SETTING_ENV = new Set(SETTINGS.map((s) => s.env));

/** Every other variable something here reads: scripts, sources, tests, benchmarks, compose. */
const SOURCES = (() => {
  const texts: string[] = [read('docker-compose.yml')];
  const walk = (dir: string) => {
    for (const e of fs.readdirSync(path.join(ROOT, dir), { withFileTypes: true })) {
      const rel = path.posix.join(dir, e.name);
      if (e.isDirectory()) walk(rel);
      else if (/\.(ts|sh)$/.test(e.name)) texts.push(read(rel));
    }
  };
  for (const dir of ['src', 'scripts', 'test', 'bench']) walk(dir);
  return texts.join('\n');
})();
/** Read by tools outside the repository, not by its code. */
const FOREIGN_ENV = new Set(['CI', 'NODE_OPTIONS', 'PGPASSWORD', 'KAFKA_HEAP_OPTS']);

function knownVariable(name: string): boolean {
  return (
    SETTING_ENV.has(name) ||
    name === 'CONFIG_FILE' ||
    FOREIGN_ENV.has(name) ||
    new RegExp(`\\b${name}\\b`).test(SOURCES)
  );
}

function placeholder(value: string): boolean {
  return /[…<>$*]/.test(value) || value === '';
}

/** The problems the schema finds with these settings (and only with them), as its messages say. */
function refused(env: [string, string][]): string[] {
  const mine = env.filter(([name, value]) => SETTING_ENV.has(name) && !placeholder(value));
  if (mine.length === 0) return [];
  try {
    loadConfig(Object.fromEntries(mine));
    return [];
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    // A file a setting names is the deployment's, not the example's: only its value's form counts here.
    return err.problems.filter(
      (p) =>
        mine.some(([name]) => p.startsWith(`${name} (`)) &&
        !/cannot read the file|file does not exist/.test(p),
    );
  }
}

/** `NAME=value` written inline in the prose of a page. */
function inlineAssignments(page: string): [string, string][] {
  return [...prose(page).matchAll(/`([A-Z][A-Z0-9_]*)=([^`\s]*)`/g)].map((m) => [m[1]!, m[2]!]);
}

describe('generated references', () => {
  it('equal what `npm run docs` writes from the schema and the registry', async () => {
    for (const page of await renderedPages()) {
      if (page.committed !== page.expected) {
        throw new Error(
          `${page.file} differs from the code it documents: run \`npm run docs\` and commit the result`,
        );
      }
    }
  });

  it('show each default in a form the schema accepts back, equal to the default', () => {
    const defaults = loadConfig({});
    const flat = (c: unknown, prefix = ''): Map<string, unknown> => {
      const out = new Map<string, unknown>();
      for (const [k, v] of Object.entries(c as Record<string, unknown>)) {
        if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
          for (const [kk, vv] of flat(v, `${prefix}${k}.`)) out.set(kk, vv);
        } else out.set(prefix + k, v);
      }
      return out;
    };
    const before = flat(defaults);
    for (const s of SETTINGS) {
      const problems = refused([[s.env, s.default]]);
      expect({ setting: s.env, shown: s.default, problems }).toEqual({
        setting: s.env,
        shown: s.default,
        problems: [],
      });
      if (s.default === '') continue;
      const after = flat(loadConfig({ [s.env]: s.default }));
      expect({
        setting: s.env,
        same: [...after].every(([k, v]) => String(before.get(k)) === String(v)),
      }).toEqual({ setting: s.env, same: true });
    }
  });

  it('name every setting and every metric', async () => {
    const config = read('docs/configuration.md');
    for (const s of SETTINGS) expect(config).toContain(`| \`${s.env}\` |`);
    const registry = new Registry();
    createMetrics(registry, false);
    const metrics = read('docs/metrics.md');
    for (const m of await registry.getMetricsAsJSON()) expect(metrics).toContain(`| \`${m.name}\` |`);
  });
});

describe('commands the docs show', () => {
  const saved: Record<string, string | undefined> = {};
  // Settings nothing can connect with: a command that gets as far as reading them stops there (exit 2).
  const UNUSABLE = { DB_PORT: 'docs-check', KAFKA_BROKERS: 'docs-check' };
  beforeAll(() => {
    for (const [k, v] of Object.entries(UNUSABLE)) {
      saved[k] = process.env[k];
      process.env[k] = v;
    }
  });
  afterAll(() => {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });

  async function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
    const out: string[] = [];
    const err: string[] = [];
    const io: Io = { out: (l) => out.push(l), err: (l) => err.push(l), tty: false };
    const code = await cli(args, io);
    return { code, out: out.join('\n'), err: err.join('\n') };
  }

  const cliLines = COMMANDS_SHOWN.filter((c) => cliArgs(c.argv) !== null);

  it('include bar-writer commands', () => {
    expect(cliLines.length).toBeGreaterThanOrEqual(5);
  });

  it.each(cliLines.map((c) => [c.where, c.argv.join(' '), c] as const))(
    '%s: %s parses',
    async (_where, _line, c) => {
      const args = cliArgs(c.argv)!;
      const wantsHelp = args.some((a) => a === '--help' || a === '-h') || args.length === 0;
      const result = await run(args);
      if (wantsHelp) {
        expect({ line: c.argv.join(' '), code: result.code }).toEqual({ line: c.argv.join(' '), code: 0 });
        return;
      }
      // Past the arguments, the command read the configuration, found it unusable, and stopped: exit 2
      // naming the setting, not a usage error.
      expect({ line: c.argv.join(' '), code: result.code, err: result.err }).toEqual({
        line: c.argv.join(' '),
        code: 2,
        err: expect.stringContaining('invalid configuration') as unknown as string,
      });
      // The command's --help (the subcommand's own, where it has them) names every option used.
      const help = await run([
        ...args.slice(0, args[0] === 'dlq' || args[0] === 'offsets' ? 2 : 1),
        '--help',
      ]);
      expect(help.code).toBe(0);
      for (const option of args.filter((a) => a.startsWith('--')).map((a) => a.split('=')[0]!)) {
        expect({ line: c.argv.join(' '), option, inHelp: help.out.includes(option) }).toEqual({
          line: c.argv.join(' '),
          option,
          inHelp: true,
        });
      }
    },
  );

  it('name npm scripts that exist', () => {
    const scripts = (JSON.parse(read('package.json')) as { scripts: Record<string, string> }).scripts;
    for (const c of COMMANDS_SHOWN.filter((x) => x.argv[0] === 'npm')) {
      const [, verb, ...rest] = c.argv;
      const name = verb === 'run' ? rest.find((w) => !w.startsWith('-')) : verb;
      if (verb === 'ci' || verb === 'install') continue;
      expect({ where: c.where, script: name, exists: name !== undefined && name in scripts }).toEqual({
        where: c.where,
        script: name,
        exists: true,
      });
    }
  });

  it('run scripts/ with arguments they handle', () => {
    const calls = COMMANDS_SHOWN.filter((c) => /^(bash )?scripts\//.test(c.argv.join(' ')));
    expect(calls.length).toBeGreaterThan(0);
    for (const c of calls) {
      const argv = c.argv[0] === 'bash' ? c.argv.slice(1) : c.argv;
      const script = argv[0]!;
      expect({ where: c.where, script, exists: exists(script) }).toEqual({
        where: c.where,
        script,
        exists: true,
      });
      const text = read(script);
      for (const arg of argv.slice(1).filter((a) => !placeholder(a))) {
        const handled = new RegExp(
          `(^|[^\\w-])${arg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}([^\\w-]|$)`,
          'm',
        );
        expect({ where: c.where, script, arg, handled: handled.test(text) }).toEqual({
          where: c.where,
          script,
          arg,
          handled: true,
        });
      }
    }
  });

  it('name compose services and profiles that exist', () => {
    const services = Object.keys(compose.services);
    const profiles = new Set(Object.values(compose.services).flatMap((s) => s.profiles ?? []));
    const calls = COMMANDS_SHOWN.filter((c) => c.argv[0] === 'docker' && c.argv[1] === 'compose');
    expect(calls.length).toBeGreaterThan(0);
    for (const c of calls) {
      const args = c.argv.slice(2);
      const profileAt = args.indexOf('--profile');
      if (profileAt >= 0) expect(profiles).toContain(args[profileAt + 1]);
      const rest = profileAt >= 0 ? args.filter((_, i) => i !== profileAt && i !== profileAt + 1) : args;
      const [verb, ...operands] = rest;
      const positionals = operands.filter((a) => !a.startsWith('-'));
      // exec and run take one service, then the command to run in it; the others take services only.
      const named = verb === 'exec' || verb === 'run' ? positionals.slice(0, 1) : positionals;
      for (const s of named)
        expect({ where: c.where, service: s, known: services.includes(s) }).toEqual({
          where: c.where,
          service: s,
          known: true,
        });
    }
  });

  it('curl ports the service or compose serves, on routes the server has', () => {
    const ports = new Set([
      String(loadConfig({}).http.port),
      ...Object.values(compose.services)
        .filter((s) => s.image === 'bar-writer:local')
        .flatMap((s) => s.ports ?? [])
        .map((p) => /:\$\{\w+:-(\d+)\}:|:(\d+):/.exec(p))
        .map((m) => m?.[1] ?? m?.[2] ?? ''),
    ]);
    const server = fs
      .readdirSync(path.join(ROOT, 'src/http'))
      .map((f) => read(`src/http/${f}`))
      .join('\n');
    const calls = COMMANDS_SHOWN.filter((c) => c.argv[0] === 'curl');
    expect(calls.length).toBeGreaterThan(0);
    for (const c of calls) {
      const url = c.argv.find((a) => /^https?:\/\//.test(a));
      if (!url || placeholder(url)) continue;
      const u = new URL(url);
      const first = `/${u.pathname.split('/')[1]}`;
      expect({ where: c.where, url, port: ports.has(u.port), route: server.includes(first) }).toEqual({
        where: c.where,
        url,
        port: true,
        route: true,
      });
    }
  });

  it('query tables and views the migrations create', () => {
    const migrations = fs
      .readdirSync(path.join(ROOT, 'migrations'))
      .map((f) => read(`migrations/${f}`))
      .join('\n');
    const sql = [
      ...COMMANDS_SHOWN.flatMap((c) => c.argv.filter((_a, i) => c.argv[i - 1] === '-c')),
      ...ALL_BLOCKS.filter((b) => b.lang === 'sql').map((b) => b.text),
    ];
    expect(sql.length).toBeGreaterThan(0);
    for (const text of sql) {
      for (const m of text.matchAll(/\b(?:FROM|JOIN)\s+(?:[\w"]+\.)?"?(\w+)"?/gi)) {
        const name = m[1]!;
        if (!/^bars?_/.test(name)) continue; // catalogs (timescaledb_information, pg_*) are not ours
        expect({ sql: text, table: name, created: new RegExp(`\\b${name}\\b`).test(migrations) }).toEqual({
          sql: text,
          table: name,
          created: true,
        });
      }
    }
  });

  it('set only variables something reads, with values the schema accepts', () => {
    const assignments = [
      ...COMMANDS_SHOWN.map((c) => ({ where: c.where, env: c.env })),
      ...PAGES.flatMap((p) => inlineAssignments(p).map((a) => ({ where: p, env: [a] }))),
    ].filter((a) => a.env.length > 0);
    expect(assignments.length).toBeGreaterThan(5);
    for (const a of assignments) {
      const unknown = a.env.map(([n]) => n).filter((n) => !knownVariable(n));
      expect({ where: a.where, unknown, refused: refused(a.env) }).toEqual({
        where: a.where,
        unknown: [],
        refused: [],
      });
    }
  });
});

describe('names the docs mention', () => {
  it('are variables something reads', () => {
    for (const page of PAGES) {
      const names = new Set(
        [
          ...read(page).matchAll(
            /\b((?:DB|BARS|KAFKA|HTTP|LOG|SHUTDOWN|CONFIG|TEST|DEMO|TSDB|BENCH)_[A-Z0-9_]*[A-Z0-9])\b(?!_)/g,
          ),
        ].map((m) => m[1]!),
      );
      expect({ page, unknown: [...names].filter((n) => !knownVariable(n)) }).toEqual({ page, unknown: [] });
    }
  });

  it('are metrics the service registers', async () => {
    const registry = new Registry();
    createMetrics(registry);
    const known = new Set<string>();
    for (const m of await registry.getMetricsAsJSON()) {
      known.add(m.name);
      for (const suffix of ['_bucket', '_sum', '_count']) known.add(m.name + suffix);
    }
    registry.clear();
    const migrations = fs
      .readdirSync(path.join(ROOT, 'migrations'))
      .map((f) => read(`migrations/${f}`))
      .join('\n');
    for (const page of PAGES) {
      const mentioned = [
        ...read(page).matchAll(/\b((?:bars|timescale|kafka|db|bar_writer)_[a-z0-9_]+)(?=\{|`|\))/g),
      ].map((m) => m[1]!);
      // Tables, views and roles of the migrations share the prefixes.
      const unknown = [...new Set(mentioned)].filter(
        (n) => !known.has(n) && !new RegExp(`\\b${n}\\b`).test(migrations),
      );
      expect({ page, unknown }).toEqual({ page, unknown: [] });
    }
  });

  it('include every reject reason, and no other, in the contract', () => {
    const text = read('docs/contract.md');
    const listed = /Reasons: ([\s\S]*?)\n\n/.exec(text)?.[1] ?? '';
    const reasons = [...listed.matchAll(/`([a-z_0-9]+)`/g)].map((m) => m[1]!);
    expect(new Set(reasons)).toEqual(new Set([...REJECT_REASONS, DATABASE_REJECTED]));
  });

  it('give every alert its runbook section, and no section without an alert', () => {
    const alerts = [...read('deploy/prometheus/alerts.yml').matchAll(/- alert: (\w+)/g)].map((m) => m[1]!);
    const sections = [...read('docs/runbook.md').matchAll(/^## (\w+) \(/gm)].map((m) => m[1]!);
    expect(sections.sort()).toEqual(alerts.sort());
  });

  it('list the CLI usage lines as --help prints them, every one', async () => {
    const usage = (help: string) =>
      (/^Usage: ([\s\S]*?)\n\n/.exec(help)?.[1] ?? '')
        .replace(/\s+/g, ' ')
        .split(/ (?=bar-writer )/)
        .map((l) => l.trim());
    const fromHelp = Object.values(COMMANDS).flatMap((c) => usage(c.help));
    const documented = ALL_BLOCKS.filter((b) => b.lang === 'text')
      .flatMap((b) => b.text.split('\n'))
      .filter((l) => l.startsWith('bar-writer '))
      .map((l) => l.replace(/\s+/g, ' ').trim());
    expect(fromHelp.length).toBeGreaterThanOrEqual(Object.keys(COMMANDS).length);
    expect(new Set(documented)).toEqual(new Set(fromHelp));
  });

  it('in ARCHITECTURE.md: every CLI command and every mode of the partition machine', () => {
    const arch = read('ARCHITECTURE.md');
    const cliRow = arch.split('\n').find((l) => l.startsWith('| `cli/`')) ?? '';
    for (const name of Object.keys(COMMANDS))
      expect({ name, listed: cliRow.includes(name) }).toEqual({ name, listed: true });
    const modeType = /export type Mode =([\s\S]*?);\n/.exec(read('src/batch/partition.ts'))?.[1] ?? '';
    const modes = [...modeType.matchAll(/name: '(\w+)'/g)].map((m) => m[1]!);
    expect(modes.length).toBeGreaterThanOrEqual(9);
    const diagram = /## One partition, one state machine[\s\S]*?```\n([\s\S]*?)```/.exec(arch)?.[1] ?? '';
    for (const mode of modes) {
      expect({ mode, inDiagram: new RegExp(`\\b${mode}\\b`).test(diagram) }).toEqual({
        mode,
        inDiagram: true,
      });
    }
  });

  it('start the service as `npm start` does', () => {
    const pkg = JSON.parse(read('package.json')) as { scripts: { start: string } };
    const flags = (s: string) => s.match(/--[\w-]+/g) ?? [];
    const files = [
      ...PAGES,
      'Dockerfile',
      'docker-compose.yml',
      ...fs.readdirSync(path.join(ROOT, 'deploy/kubernetes')).map((f) => `deploy/kubernetes/${f}`),
    ];
    for (const file of files) {
      for (const m of read(file).matchAll(/\bnode((?:[\s",[\]]+--[\w-]+)*)[\s",[\]]+dist\/main\.js/g)) {
        expect({ file, mention: m[0], flags: flags(m[1]!) }).toEqual({
          file,
          mention: m[0],
          flags: flags(pkg.scripts.start),
        });
      }
    }
  });
});

describe('links', () => {
  /** GitHub's anchor for a heading. */
  const slug = (heading: string) =>
    heading
      .trim()
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .replace(/\s/g, '-');
  const anchors = (page: string) =>
    new Set([...prose(page).matchAll(/^#{1,6} (.+)$/gm)].map((m) => slug(m[1]!.replace(/`/g, ''))));

  it.each(PAGES)('%s: relative links and anchors resolve', (page) => {
    for (const m of prose(page).matchAll(/\]\(([^)\s]+)\)/g)) {
      const target = m[1]!;
      if (/^[a-z]+:/.test(target)) continue;
      const [file, anchor] = target.split('#');
      const rel = file ? path.posix.normalize(path.posix.join(path.posix.dirname(page), file)) : page;
      if (MAY_DANGLE.has(rel) && !exists(rel)) continue;
      expect({ page, target, exists: exists(rel) }).toEqual({ page, target, exists: true });
      if (anchor)
        expect({ page, target, anchor: anchors(rel).has(anchor) }).toEqual({ page, target, anchor: true });
    }
  });

  it('from the code: a section named beside its page exists', () => {
    const refs = [...SOURCES.matchAll(/\b(README|ARCHITECTURE|docs\/[\w-]+)(?:\.md)?,? "([^"]+)"/g)];
    expect(refs.length).toBeGreaterThan(3);
    for (const [ref, page, section] of refs) {
      const rel =
        page!.startsWith('docs/') || page === 'README' || page === 'ARCHITECTURE' ? `${page}.md` : page!;
      const headings = [...read(rel).matchAll(/^#{1,6} (.+)$/gm)].map((h) => h[1]!.trim());
      expect({ ref, found: headings.includes(section!) }).toEqual({ ref, found: true });
    }
  });
});

describe('README', () => {
  const readme = read('README.md');

  it('reads in five minutes: under 200 lines', () => {
    expect(readme.split('\n').length).toBeLessThan(200);
  });

  it('names the test command CI runs, and the demo', () => {
    const two = SH_BLOCKS.find((b) => b.page === 'README.md')!;
    const [demo, test] = shellCommands(two.text);
    expect(demo).toEqual(['scripts/demo.sh']);
    expect(test).toEqual(['scripts/test.sh']);
    expect(read('.ci/run')).toMatch(/^exec scripts\/test\.sh$/m);
  });

  it('links every page of docs/', () => {
    for (const page of PAGES.filter((p) => p.startsWith('docs/'))) expect(readme).toContain(`](${page})`);
  });

  it('shows the ports compose publishes for bar-writer', () => {
    const hostPorts = Object.values(compose.services)
      .filter((s) => s.image === 'bar-writer:local')
      .flatMap((s) => s.ports ?? [])
      .map((p) => /:\$\{\w+:-(\d+)\}:/.exec(p)?.[1]);
    expect(hostPorts.length).toBeGreaterThanOrEqual(1);
    for (const port of hostPorts) expect(readme).toContain(`http://127.0.0.1:${port}`);
  });
});
