/**
 * Deployment files stay consistent with the code: Dockerfile, docker-compose.yml, deploy/prometheus,
 * deploy/grafana and deploy/kubernetes. Every env variable they set must be one the config schema
 * reads, every metric they query must be one the service registers, every file they mount must
 * exist, and the shutdown budget must fit the orchestrators' grace periods.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Registry } from 'prom-client';
import { parseAllDocuments } from 'yaml';
import { ConfigError, loadConfig, settings, type Config } from '../../src/config';
import { createMetrics } from '../../src/observe/metrics';
import { MIGRATIONS_DIR } from '../../src/store/migrate';

const ROOT = path.resolve(__dirname, '..', '..');

type Obj = Record<string, unknown>;

function read(rel: string): string {
  return fs.readFileSync(path.join(ROOT, rel), 'utf8');
}

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function obj(v: unknown, where: string): Obj {
  if (!isObj(v)) throw new Error(`${where}: expected a mapping, got ${JSON.stringify(v)}`);
  return v;
}

function arr(v: unknown, where: string): unknown[] {
  if (!Array.isArray(v)) throw new Error(`${where}: expected a list, got ${JSON.stringify(v)}`);
  return v;
}

function str(v: unknown, where: string): string {
  if (typeof v !== 'string') throw new Error(`${where}: expected a string, got ${JSON.stringify(v)}`);
  return v;
}

/** Every document of a YAML file (merge keys on, as docker compose has them); syntax errors fail. */
function yamlDocs(rel: string): unknown[] {
  const docs = parseAllDocuments(read(rel), { merge: true, prettyErrors: true });
  const out: unknown[] = [];
  for (const doc of docs) {
    if (doc.errors.length > 0) throw new Error(`${rel}: ${doc.errors.map((e) => e.message).join('; ')}`);
    const js: unknown = doc.toJS();
    if (js !== null && js !== undefined) out.push(js);
  }
  return out;
}

function yamlDoc(rel: string): Obj {
  const docs = yamlDocs(rel);
  expect(docs).toHaveLength(1);
  return obj(docs[0], rel);
}

function walk(dir: string): string[] {
  return fs.readdirSync(path.join(ROOT, dir), { withFileTypes: true }).flatMap((e) => {
    const rel = path.posix.join(dir, e.name);
    return e.isDirectory() ? walk(rel) : [rel];
  });
}

/** Env variables the service reads: the schema's `env: 'NAME'` entries plus CONFIG_FILE. */
const CONFIG_ENV: ReadonlySet<string> = new Set([
  ...[...read('src/config/index.ts').matchAll(/env: '([A-Z_]+)'/g)].map((m) => m[1]!),
  'CONFIG_FILE',
]);

/** Env variables the demo producer reads (`env.NAME` in src/demo/producer.ts). */
const DEMO_ENV: ReadonlySet<string> = new Set(
  [...read('src/demo/producer.ts').matchAll(/\benv\.([A-Z_]+)/g)].map((m) => m[1]!),
);

function unknownNames(names: Iterable<string>, known: ReadonlySet<string>): string[] {
  return [...names].filter((n) => !known.has(n)).sort();
}

/** Validate with the service's own loader; a ConfigError fails with its full list of problems. */
function validConfig(env: Record<string, string>, where: string): Config {
  try {
    return loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) throw new Error(`${where}: ${err.message}`, { cause: err });
    throw err;
  }
}

/** Compose/Go-style durations: 40s, 1m30s, 500ms. */
function composeDurationMs(value: string): number {
  const parts = [...value.matchAll(/(\d+(?:\.\d+)?)(ms|us|s|m|h)/g)];
  if (parts.length === 0 || parts.map((p) => p[0]).join('') !== value) {
    throw new Error(`not a duration: ${value}`);
  }
  const unit: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  return parts.reduce((sum, p) => sum + Number(p[1]) * unit[p[2]!]!, 0);
}

/** main.ts exits on its own 2s after SHUTDOWN_TIMEOUT; a grace period must cover that too. */
const SHUTDOWN_BACKSTOP_MS = 2000;

// ---------------------------------------------------------------------------------------------
// docker-compose.yml

const compose = yamlDoc('docker-compose.yml');
const services = obj(compose.services, 'services');

function service(name: string): Obj {
  return obj(services[name], `services.${name}`);
}

/** ${VAR:-default} → default, ${VAR} → '' (the defaults are what a bare `docker compose up` uses). */
function interpolate(value: string): string {
  return value
    .replace(/\$\{[A-Za-z_][A-Za-z0-9_]*(?::?-([^}]*))?\}/g, (_m, dflt: string | undefined) => dflt ?? '')
    .replace(/\$\$/g, '$');
}

function composeEnv(name: string): Record<string, string> {
  const env = service(name).environment;
  const out: Record<string, string> = {};
  if (Array.isArray(env)) {
    for (const item of env) {
      const [k, ...v] = str(item, `services.${name}.environment`).split('=');
      out[k!] = interpolate(v.join('='));
    }
  } else if (env !== undefined) {
    for (const [k, v] of Object.entries(obj(env, `services.${name}.environment`))) {
      out[k] = interpolate(String(v ?? ''));
    }
  }
  return out;
}

interface Mount {
  service: string;
  source: string;
  target: string;
  bind: boolean;
}

function composeMounts(): Mount[] {
  const mounts: Mount[] = [];
  for (const [name, svc] of Object.entries(services)) {
    for (const v of (obj(svc, name).volumes as unknown[] | undefined) ?? []) {
      if (typeof v === 'string') {
        const [source, target] = v.split(':');
        mounts.push({
          service: name,
          source: source!,
          target: target!,
          bind: /^[./~]/.test(source!),
        });
      } else {
        const m = obj(v, `services.${name}.volumes`);
        mounts.push({
          service: name,
          source: str(m.source, `services.${name}.volumes.source`),
          target: str(m.target, `services.${name}.volumes.target`),
          bind: m.type === 'bind',
        });
      }
    }
  }
  return mounts;
}

/** The host file behind a container path, through the service's bind mounts (file or directory). */
function hostPathOf(serviceName: string, containerPath: string): string | undefined {
  for (const m of composeMounts()) {
    if (m.service !== serviceName || !m.bind) continue;
    if (containerPath === m.target) return path.resolve(ROOT, m.source);
    if (containerPath.startsWith(`${m.target}/`)) {
      return path.resolve(ROOT, m.source, containerPath.slice(m.target.length + 1));
    }
  }
  return undefined;
}

/** Partitions of each topic created by the kafka-init one-shot. */
function composeTopics(): Map<string, number> {
  const text = JSON.stringify(service('kafka-init').command ?? '');
  const topics = new Map<string, number>();
  for (const m of text.matchAll(/--topic (\S+) --partitions (\d+)/g)) topics.set(m[1]!, Number(m[2]));
  return topics;
}

/** The services that run bar-writer itself: the app image with the image's own command. */
function serviceMembers(): string[] {
  return Object.entries(services)
    .filter(
      ([name, svc]) => obj(svc, name).image === 'bar-writer:local' && obj(svc, name).command === undefined,
    )
    .map(([name]) => name);
}

/** `127.0.0.1:${VAR:-8080}:8080` → host 127.0.0.1, port '8080' (its default), container 8080. */
function publishedPorts(name: string): { host: string; port: string; container: number }[] {
  return ((service(name).ports as unknown[] | undefined) ?? []).map((p) => {
    const m = /^(\d+\.\d+\.\d+\.\d+):(.+):(\d+)$/.exec(str(p, `services.${name}.ports`));
    if (!m) throw new Error(`services.${name}.ports: ${String(p)} does not bind one address`);
    return { host: m[1]!, port: interpolate(m[2]!), container: Number(m[3]) };
  });
}

/** A `node dist/x.js` command must name a file tsc builds from src/x.ts (tsconfig.build: src → dist). */
function expectBuiltEntryPoint(command: unknown[], where: string): void {
  expect(command[0]).toBe('node');
  const script = str(
    command.slice(1).find((a) => !String(a).startsWith('--')),
    where,
  );
  const m = /^dist\/(.+)\.js$/.exec(script);
  if (!m) throw new Error(`${where}: ${script} is not a dist/*.js entry point`);
  if (!fs.existsSync(path.join(ROOT, 'src', `${m[1]}.ts`))) {
    throw new Error(`${where}: ${script} has no source src/${m[1]}.ts`);
  }
}

describe('docker-compose.yml', () => {
  it('mounts only files that exist and declares its named volumes', () => {
    const declared = new Set(Object.keys(obj(compose.volumes ?? {}, 'volumes')));
    const mounts = composeMounts();
    expect(mounts.length).toBeGreaterThan(0);
    for (const m of mounts) {
      if (m.bind) {
        if (!fs.existsSync(path.resolve(ROOT, m.source))) {
          throw new Error(`services.${m.service}: mounted ${m.source} does not exist`);
        }
      } else if (!declared.has(m.source)) {
        throw new Error(`services.${m.service}: volume ${m.source} is not declared under volumes:`);
      }
    }
  });

  it('builds from contexts and Dockerfiles that exist', () => {
    let builds = 0;
    for (const [name, svc] of Object.entries(services)) {
      const build = obj(svc, name).build;
      if (build === undefined) continue;
      builds++;
      const b = typeof build === 'string' ? { context: build } : obj(build, `services.${name}.build`);
      const context = path.resolve(ROOT, str(b.context ?? '.', `services.${name}.build.context`));
      const dockerfile = path.resolve(context, str(b.dockerfile ?? 'Dockerfile', `services.${name}.build`));
      expect(fs.statSync(context).isDirectory()).toBe(true);
      if (!fs.existsSync(dockerfile)) throw new Error(`services.${name}: ${dockerfile} does not exist`);
    }
    expect(builds).toBeGreaterThanOrEqual(3); // migrate, bar-writer, demo-producer
  });

  it('sets only env variables the config schema reads, for bar-writer and migrate', () => {
    expect(CONFIG_ENV.size).toBeGreaterThan(30);
    expect(CONFIG_ENV.has('DB_HOST')).toBe(true);
    for (const name of [...serviceMembers(), 'migrate']) {
      const env = composeEnv(name);
      expect(Object.keys(env).length).toBeGreaterThan(0);
      expect({ service: name, unknown: unknownNames(Object.keys(env), CONFIG_ENV) }).toEqual({
        service: name,
        unknown: [],
      });
      validConfig(env, `services.${name}.environment`);
    }
  });

  it('sets only env variables the demo producer reads', () => {
    expect(DEMO_ENV.has('KAFKA_BROKERS')).toBe(true);
    expect(unknownNames(Object.keys(composeEnv('demo-producer')), DEMO_ENV)).toEqual([]);
  });

  it('runs the service, the migrations and the demo from built entry points', () => {
    for (const name of ['migrate', 'demo-producer']) {
      expectBuiltEntryPoint(arr(service(name).command, name), `services.${name}.command`);
    }
  });

  it('creates the topics the service uses (auto-creation is off)', () => {
    const topics = composeTopics();
    const env = validConfig(composeEnv('bar-writer'), 'services.bar-writer.environment');
    expect(topics.has(env.kafka.topic)).toBe(true);
    expect(topics.has(env.kafka.dlqTopic)).toBe(true);
  });

  it('runs bar-writer members each on its own host port, the HTTP_PORT of its env, with a grace period', () => {
    const members = serviceMembers();
    expect(members).toEqual(['bar-writer', 'bar-writer-2']);
    const hostPorts: string[] = [];
    for (const name of members) {
      const svc = service(name);
      const config = validConfig(composeEnv(name), `services.${name}.environment`);
      // One host port serves one container: a member is never replicated.
      expect({ name, replicas: obj(svc.deploy ?? {}, 'deploy').replicas ?? 1 }).toEqual({
        name,
        replicas: 1,
      });
      const ports = publishedPorts(name);
      expect(ports).toHaveLength(1);
      expect({ name, host: ports[0]!.host, container: ports[0]!.container }).toEqual({
        name,
        host: '127.0.0.1',
        container: config.http.port,
      });
      hostPorts.push(ports[0]!.port);
      const grace = composeDurationMs(str(svc.stop_grace_period, `services.${name}.stop_grace_period`));
      expect(grace).toBeGreaterThan(config.shutdownTimeoutMs + SHUTDOWN_BACKSTOP_MS);
    }
    expect(new Set(hostPorts).size).toBe(hostPorts.length);
  });

  it('lists in its header every port it publishes, with the service', () => {
    const header = read('docker-compose.yml')
      .split('\n')
      .filter((l) => l.startsWith('#'))
      .join('\n');
    let published = 0;
    for (const name of Object.keys(services)) {
      for (const p of publishedPorts(name)) {
        published++;
        const line = new RegExp(`^#\\s+${name}\\s+(?:https?://)?127\\.0\\.0\\.1:${p.port}\\b`, 'm');
        expect({ name, port: p.port, inHeader: line.test(header) }).toEqual({
          name,
          port: p.port,
          inHeader: true,
        });
      }
    }
    expect(published).toBeGreaterThanOrEqual(5);
  });
});

// ---------------------------------------------------------------------------------------------
// Every YAML and JSON file under deploy/

const DEPLOY_YAML = walk('deploy').filter((f) => /\.ya?ml$/.test(f));
const DASHBOARD_FILE = 'deploy/grafana/dashboards/bar-writer.json';

describe('deploy/', () => {
  it.each(DEPLOY_YAML)('%s parses', (file) => {
    expect(yamlDocs(file).length).toBeGreaterThan(0);
  });

  it('has the expected files', () => {
    expect(DEPLOY_YAML).toEqual(
      expect.arrayContaining([
        'deploy/prometheus/prometheus.yml',
        'deploy/prometheus/alerts.test.yml',
        'deploy/prometheus/alerts.yml',
        'deploy/grafana/provisioning/datasources/prometheus.yml',
        'deploy/grafana/provisioning/dashboards/dashboards.yml',
        'deploy/kubernetes/deployment.yaml',
        'deploy/kubernetes/configmap.yaml',
        'deploy/kubernetes/secret.yaml',
        'deploy/kubernetes/service.yaml',
        'deploy/kubernetes/podmonitor.yaml',
        'deploy/kubernetes/prometheusrule.yaml',
        'deploy/kubernetes/pdb.yaml',
        'deploy/kubernetes/keda-scaledobject.yaml',
        'deploy/kubernetes/migrate-job.yaml',
      ]),
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Metric names

const METRIC_REF_RE = /\b(?:bars_|timescale_|kafka_|db_pool_|bar_writer_|process_|nodejs_)[a-z0-9_]+\b/g;

async function registeredMetricNames(): Promise<Set<string>> {
  const registry = new Registry();
  createMetrics(registry);
  const names = new Set<string>();
  for (const m of await registry.getMetricsAsJSON()) {
    names.add(m.name);
    const type = String(m.type);
    if (type === 'histogram' || type === 'summary') {
      for (const suffix of ['_bucket', '_sum', '_count']) names.add(m.name + suffix);
    }
  }
  registry.clear();
  return names;
}

function metricRefs(rel: string): string[] {
  return [...new Set(read(rel).match(METRIC_REF_RE) ?? [])].sort();
}

const alerts = yamlDoc('deploy/prometheus/alerts.yml');
const dashboard = obj(JSON.parse(read(DASHBOARD_FILE)), DASHBOARD_FILE);

function alertRules(groups: unknown, where: string): Obj[] {
  return arr(groups, where).flatMap((g, i) =>
    arr(obj(g, `${where}[${i}]`).rules, `${where}[${i}].rules`).map((r) => obj(r, `${where}[${i}].rules`)),
  );
}

describe('metric names', () => {
  let known: Set<string>;
  beforeAll(async () => {
    known = await registeredMetricNames();
  });

  it('registers the names the deploy files rely on', () => {
    for (const name of [
      'bars_written_total',
      'timescale_write_latency_seconds_bucket',
      'kafka_consumer_lag',
    ]) {
      expect(known.has(name)).toBe(true);
    }
    expect(known.has('process_resident_memory_bytes')).toBe(true); // prom-client defaults are on
  });

  it.each(['deploy/prometheus/alerts.yml', 'deploy/kubernetes/prometheusrule.yaml', DASHBOARD_FILE])(
    '%s references only registered metrics',
    (file) => {
      const refs = metricRefs(file);
      expect(refs.length).toBeGreaterThan(0);
      expect({ file, unknown: refs.filter((r) => !known.has(r)) }).toEqual({ file, unknown: [] });
    },
  );
});

// ---------------------------------------------------------------------------------------------
// Prometheus

describe('deploy/prometheus', () => {
  const prom = yamlDoc('deploy/prometheus/prometheus.yml');

  it('loads rule files that compose mounts from files that exist', () => {
    const ruleFiles = arr(prom.rule_files, 'rule_files');
    expect(ruleFiles.length).toBeGreaterThan(0);
    for (const f of ruleFiles) {
      const host = hostPathOf('prometheus', str(f, 'rule_files'));
      if (!host || !fs.existsSync(host)) throw new Error(`rule file ${String(f)} is not mounted from a file`);
    }
    expect(hostPathOf('prometheus', '/etc/prometheus/prometheus.yml')).toBe(
      path.join(ROOT, 'deploy/prometheus/prometheus.yml'),
    );
  });

  it('scrapes every bar-writer replica by compose DNS on the service HTTP port', () => {
    const job = arr(prom.scrape_configs, 'scrape_configs')
      .map((j) => obj(j, 'scrape_configs'))
      .find((j) => j.job_name === 'bar-writer');
    if (!job) throw new Error('no scrape job "bar-writer"');
    const sd = obj(arr(job.dns_sd_configs, 'dns_sd_configs')[0], 'dns_sd_configs[0]');
    expect(sd.type).toBe('A');
    const names = arr(sd.names, 'dns_sd_configs[0].names');
    expect(names).toEqual(serviceMembers());
    const config = validConfig(composeEnv('bar-writer'), 'services.bar-writer.environment');
    expect(sd.port).toBe(config.http.port);
  });

  it('defines the bar-writer alerts, each with a summary and a description', () => {
    const rules = alertRules(alerts.groups, 'groups');
    const names = rules.map((r) => r.alert);
    expect(names).toEqual(
      expect.arrayContaining([
        'BarWriterLagGrowing',
        'BarWriterNoWrites',
        'BarWriterWriteErrors',
        'BarWriterDeadLetters',
        'BarWriterNotReady',
      ]),
    );
    expect(new Set(names).size).toBe(names.length);
    for (const r of rules) {
      expect(typeof r.expr).toBe('string');
      const annotations = obj(r.annotations, `${String(r.alert)}.annotations`);
      expect(typeof annotations.summary).toBe('string');
      expect(typeof annotations.description).toBe('string');
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Grafana

describe('deploy/grafana', () => {
  const datasource = obj(
    arr(yamlDoc('deploy/grafana/provisioning/datasources/prometheus.yml').datasources, 'datasources')[0],
    'datasources[0]',
  );
  const panels = arr(dashboard.panels, 'panels').map((p, i) => obj(p, `panels[${i}]`));

  it('provisions the datasource the dashboard names', () => {
    expect(datasource.uid).toBe('prometheus');
    expect(datasource.type).toBe('prometheus');
    expect(dashboard.schemaVersion).toBe(39);
    for (const p of panels) {
      expect({ panel: p.title, ds: p.datasource }).toEqual({
        panel: p.title,
        ds: { type: 'prometheus', uid: datasource.uid },
      });
      for (const t of arr(p.targets, `${String(p.title)}.targets`)) {
        expect(obj(t, 'target').datasource).toEqual({ type: 'prometheus', uid: datasource.uid });
        expect(str(obj(t, 'target').expr, `${String(p.title)}.expr`).length).toBeGreaterThan(0);
      }
    }
  });

  it('has unique panel ids and the required panels', () => {
    const ids = panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    const exprs = panels
      .flatMap((p) => arr(p.targets, 'targets').map((t) => String(obj(t, 'target').expr)))
      .join('\n');
    for (const metric of [
      'bars_written_total',
      'bars_consumed_total',
      'timescale_write_latency_seconds_bucket',
      'timescale_write_batch_size_bucket',
      'timescale_write_queue_depth',
      'kafka_consumer_lag',
      'bars_end_to_end_delay_seconds_bucket',
      'bars_rejected_total',
      'bars_dead_lettered_total',
      'db_pool_connections',
      'kafka_paused_partitions',
      'bar_writer_ready',
    ]) {
      expect(exprs).toContain(metric);
    }
  });

  it('loads dashboards from the directory compose mounts', () => {
    const provider = obj(
      arr(yamlDoc('deploy/grafana/provisioning/dashboards/dashboards.yml').providers, 'providers')[0],
      'providers[0]',
    );
    const dir = str(obj(provider.options, 'providers[0].options').path, 'providers[0].options.path');
    expect(hostPathOf('grafana', dir)).toBe(path.join(ROOT, 'deploy/grafana/dashboards'));
    expect(hostPathOf('grafana', '/etc/grafana/provisioning')).toBe(
      path.join(ROOT, 'deploy/grafana/provisioning'),
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Dockerfile

interface Instruction {
  op: string;
  args: string;
}

function dockerfileStages(): { from: string; name: string | undefined; instructions: Instruction[] }[] {
  const lines = read('Dockerfile')
    .split('\n')
    .filter((l) => !/^\s*#/.test(l))
    .join('\n')
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '');
  const stages: { from: string; name: string | undefined; instructions: Instruction[] }[] = [];
  for (const line of lines) {
    const m = /^(\w+)\s+([\s\S]*)$/.exec(line);
    if (!m) continue;
    const op = m[1]!.toUpperCase();
    const args = m[2]!.trim();
    if (op === 'FROM') {
      const f = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args);
      stages.push({ from: f![1]!, name: f![2], instructions: [] });
    } else if (stages.length > 0) {
      stages[stages.length - 1]!.instructions.push({ op, args });
    }
  }
  return stages;
}

/** COPY [--from=x] [--chown=..] src... dest → { from, sources, dest } */
function parseCopy(args: string): { from: string | undefined; sources: string[]; dest: string } {
  const words = args.split(/\s+/);
  const flags = words.filter((w) => w.startsWith('--'));
  const rest = words.filter((w) => !w.startsWith('--'));
  const from = flags.find((f) => f.startsWith('--from='))?.slice('--from='.length);
  return { from, sources: rest.slice(0, -1), dest: rest[rest.length - 1]! };
}

function dockerignored(rel: string): boolean {
  const patterns = read('.dockerignore')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#') && !l.startsWith('!'));
  const target = rel.replace(/^\.\//, '').replace(/\/$/, '');
  return patterns.some((p) => {
    const re = new RegExp(
      `^${p
        .replace(/^\//, '')
        .replace(/\/$/, '')
        .replace(/[.+^${}()|[\]\\]/g, '\\$&')
        .replace(/\*\*/g, '<<globstar>>')
        .replace(/\*/g, '[^/]*')
        .replace(/\?/g, '[^/]')
        .replace(/<<globstar>>/g, '.*')}(/.*)?$`,
    );
    return re.test(target);
  });
}

describe('Dockerfile', () => {
  const stages = dockerfileStages();
  const runtime = stages[stages.length - 1]!;
  const ops = (op: string) => runtime.instructions.filter((i) => i.op === op);
  const workdir = ops('WORKDIR').pop()?.args ?? '/';

  it('is multi-stage and runs as a non-root user', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    const user = ops('USER').pop()?.args;
    expect(user).toBeDefined();
    expect(['root', '0', 'root:root', '0:0']).not.toContain(user);
  });

  it('has a HEALTHCHECK on /healthz, NODE_ENV=production and EXPOSEs the HTTP port', () => {
    const hc = ops('HEALTHCHECK').pop()?.args ?? '';
    expect(hc).toMatch(/\bCMD\b/);
    expect(hc).toContain('/healthz');
    expect(ops('ENV').map((i) => i.args)).toContainEqual(expect.stringMatching(/\bNODE_ENV=production\b/));
    const port = validConfig({}, 'schema defaults').http.port;
    expect(ops('EXPOSE').flatMap((i) => i.args.split(/\s+/))).toContain(String(port));
  });

  it('starts node directly with an exec-form CMD', () => {
    const cmd = ops('CMD').pop()?.args ?? '';
    expect(cmd.startsWith('[')).toBe(true);
    const argv = arr(JSON.parse(cmd), 'CMD');
    expectBuiltEntryPoint(argv, 'CMD');
    // The image runs what `npm start` runs: the same node flags, then package.json's main.
    const pkg = JSON.parse(read('package.json')) as { main: string; scripts: { start: string } };
    expect(argv.join(' ')).toBe(pkg.scripts.start);
    expect(argv[argv.length - 1]).toBe(pkg.main);
    expect(ops('ENTRYPOINT')).toHaveLength(0);
  });

  it('ships dist, production node_modules from a same-base build stage, and the migrations', () => {
    const copies = ops('COPY').map((i) => parseCopy(i.args));
    const destOf = (c: { dest: string }) => path.posix.resolve(workdir, c.dest);
    const nodeModules = copies.find((c) => destOf(c) === path.posix.join(workdir, 'node_modules'));
    expect(nodeModules?.from).toBeDefined();
    const buildStage = stages.find((s) => s.name === nodeModules!.from);
    expect(buildStage?.from).toBe(runtime.from); // the native addon's ABI matches the runtime
    const buildRuns = buildStage!.instructions.filter((i) => i.op === 'RUN').map((i) => i.args);
    expect(buildRuns.join('\n')).toMatch(/npm ci\b/);
    expect(buildRuns.join('\n')).toMatch(/npm run build\b/);
    expect(buildRuns.join('\n')).toMatch(/npm prune --omit=dev|npm ci --omit=dev/);

    const copied = copies.map(destOf);
    expect(copied).toContain(path.posix.join(workdir, 'dist'));
    // migrate.ts reads <module dir>/../../migrations; in the image the module is dist/store/.
    const rel = path
      .relative(path.join(ROOT, 'src', 'store'), MIGRATIONS_DIR)
      .split(path.sep)
      .join('/');
    expect(copied).toContain(path.posix.resolve(workdir, 'dist', 'store', rel));
  });

  it('copies from the build context only files that exist and .dockerignore keeps', () => {
    for (const stage of stages) {
      for (const c of stage.instructions.filter((i) => i.op === 'COPY').map((i) => parseCopy(i.args))) {
        if (c.from) continue;
        for (const src of c.sources) {
          if (!fs.existsSync(path.join(ROOT, src))) throw new Error(`COPY ${src}: does not exist`);
          if (dockerignored(src)) throw new Error(`COPY ${src}: excluded by .dockerignore`);
        }
      }
    }
    for (const excluded of ['node_modules', 'dist', '.git', '.kafka']) {
      expect(dockerignored(excluded)).toBe(true);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Kubernetes

const K8S_FILES = walk('deploy/kubernetes').filter((f) => /\.ya?ml$/.test(f));
const k8s = K8S_FILES.flatMap((f) => yamlDocs(f).map((d) => ({ file: f, doc: obj(d, f) })));

function k8sObject(kind: string, name: string): Obj {
  const found = k8s.find(
    (o) => o.doc.kind === kind && obj(o.doc.metadata, `${o.file} metadata`).name === name,
  );
  if (!found) throw new Error(`no ${kind} ${name} in deploy/kubernetes`);
  return found.doc;
}

function k8sOfKind(kind: string): Obj[] {
  return k8s.filter((o) => o.doc.kind === kind).map((o) => o.doc);
}

function podSpec(workload: Obj): Obj {
  return obj(obj(obj(workload.spec, 'spec').template, 'template').spec, 'template.spec');
}

function podLabels(workload: Obj): Obj {
  return obj(obj(obj(obj(workload.spec, 'spec').template, 'template').metadata, 'metadata').labels, 'labels');
}

function containers(workload: Obj): Obj[] {
  return arr(podSpec(workload).containers, 'containers').map((c) => obj(c, 'container'));
}

function stringMap(o: Obj, where: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(o)) out[k] = str(v, `${where}.${k}`); // Kubernetes wants strings
  return out;
}

function secretData(secret: Obj, where: string): Record<string, string> {
  const out = stringMap(obj(secret.stringData ?? {}, `${where}.stringData`), `${where}.stringData`);
  for (const [k, v] of Object.entries(obj(secret.data ?? {}, `${where}.data`))) {
    out[k] = Buffer.from(str(v, `${where}.data.${k}`), 'base64').toString('utf8');
  }
  return out;
}

const configMap = stringMap(
  obj(k8sObject('ConfigMap', 'bar-writer').data, 'ConfigMap.data'),
  'ConfigMap.data',
);
const deployment = k8sObject('Deployment', 'bar-writer');
const writer = containers(deployment)[0]!;

function matchesLabels(selector: unknown, labels: Obj): boolean {
  const wanted = obj(obj(selector, 'selector').matchLabels ?? selector, 'matchLabels');
  return Object.entries(wanted).every(([k, v]) => labels[k] === v);
}

describe('deploy/kubernetes', () => {
  it('sets only env variables the config schema reads (ConfigMap, Secrets, container env)', () => {
    const names = new Set(Object.keys(configMap));
    for (const secret of k8sOfKind('Secret')) {
      for (const k of Object.keys(secretData(secret, 'Secret'))) names.add(k);
    }
    for (const w of [...k8sOfKind('Deployment'), ...k8sOfKind('Job')]) {
      for (const c of containers(w)) {
        for (const e of (c.env as unknown[] | undefined) ?? [])
          names.add(str(obj(e, 'env').name, 'env.name'));
      }
    }
    expect(unknownNames(names, CONFIG_ENV)).toEqual([]);
  });

  it('configures every schema variable, with values the service accepts', () => {
    const secret = secretData(k8sObject('Secret', 'bar-writer-db'), 'Secret bar-writer-db');
    const configured = new Set([...Object.keys(configMap), ...Object.keys(secret)]);
    const missing = [...CONFIG_ENV].filter((n) => n !== 'CONFIG_FILE' && !configured.has(n)).sort();
    expect(missing).toEqual([]);
    expect(Object.keys(configMap)).not.toContain('DB_PASSWORD'); // secrets stay out of the ConfigMap
    validConfig({ ...configMap, ...secret }, 'ConfigMap bar-writer + Secret bar-writer-db');
  });

  it('sets every variable not marked CHOOSE to the schema default', () => {
    const text = read('deploy/kubernetes/configmap.yaml');
    const chosen = new Set([...text.matchAll(/^\s+([A-Z][A-Z0-9_]*):.*#.*\bCHOOSE\b/gm)].map((m) => m[1]!));
    expect(chosen.size).toBeGreaterThan(3);
    const differing: string[] = [];
    for (const s of settings()) {
      const value = configMap[s.env];
      if (value === undefined || chosen.has(s.env)) continue;
      // Compared as the service reads them: 744h and 31d are the same setting.
      const asRead = (v: string) => JSON.stringify(validConfig({ [s.env]: v }, `ConfigMap ${s.env}`));
      if (asRead(value) !== asRead(s.default))
        differing.push(`${s.env}: ${value} (the default is ${s.default})`);
    }
    expect(differing).toEqual([]);
  });

  it('references ConfigMaps and Secrets (and keys) that exist', () => {
    for (const w of [...k8sOfKind('Deployment'), ...k8sOfKind('Job')]) {
      for (const c of containers(w)) {
        for (const ref of (c.envFrom as unknown[] | undefined) ?? []) {
          const r = obj(ref, 'envFrom');
          if (r.configMapRef) k8sObject('ConfigMap', str(obj(r.configMapRef, 'ref').name, 'name'));
          if (r.secretRef) k8sObject('Secret', str(obj(r.secretRef, 'ref').name, 'name'));
        }
        for (const e of (c.env as unknown[] | undefined) ?? []) {
          const from = obj(e, 'env').valueFrom;
          if (!from) continue;
          const key = obj(obj(from, 'valueFrom').secretKeyRef, 'secretKeyRef');
          const secret = k8sObject('Secret', str(key.name, 'secretKeyRef.name'));
          expect(Object.keys(secretData(secret, 'Secret'))).toContain(key.key);
        }
      }
    }
  });

  it('gives the pod a termination grace period above SHUTDOWN_TIMEOUT', () => {
    const config = validConfig(configMap, 'ConfigMap bar-writer');
    const grace = podSpec(deployment).terminationGracePeriodSeconds;
    expect(typeof grace).toBe('number');
    expect((grace as number) * 1000).toBeGreaterThan(config.shutdownTimeoutMs + SHUTDOWN_BACKSTOP_MS);
  });

  it('probes routes the HTTP server serves, on the configured port', () => {
    const server = read('src/http/server.ts');
    const port = arr(writer.ports, 'ports')
      .map((p) => obj(p, 'port'))
      .find((p) => p.name === 'http');
    expect(port?.containerPort).toBe(validConfig(configMap, 'ConfigMap').http.port);
    const probes = ['startupProbe', 'livenessProbe', 'readinessProbe'].map((p) =>
      obj(obj(writer[p], p).httpGet, `${p}.httpGet`),
    );
    expect(probes.map((p) => p.path)).toEqual(['/healthz', '/healthz', '/readyz']);
    for (const p of probes) {
      expect(p.port).toBe('http');
      expect(server).toContain(`'${String(p.path)}'`);
    }
  });

  it('runs every container non-root with a read-only root filesystem', () => {
    for (const w of [...k8sOfKind('Deployment'), ...k8sOfKind('Job')]) {
      const pod = obj(podSpec(w).securityContext, 'pod securityContext');
      expect(pod.runAsNonRoot).toBe(true);
      expect(pod.runAsUser).toBeGreaterThan(0);
      for (const c of containers(w)) {
        const sc = obj(c.securityContext, `${String(c.name)}.securityContext`);
        expect(sc.readOnlyRootFilesystem).toBe(true);
        expect(sc.allowPrivilegeEscalation).toBe(false);
      }
    }
  });

  it('selects the Deployment pods from the Service, PodMonitor and PDB, and not the Job pods', () => {
    const labels = podLabels(deployment);
    expect(matchesLabels(obj(k8sObject('Service', 'bar-writer').spec, 'spec').selector, labels)).toBe(true);
    const podMonitor = obj(k8sObject('PodMonitor', 'bar-writer').spec, 'spec');
    expect(matchesLabels(podMonitor.selector, labels)).toBe(true);
    const endpoint = obj(arr(podMonitor.podMetricsEndpoints, 'podMetricsEndpoints')[0], 'endpoint');
    expect(endpoint.path).toBe('/metrics');
    expect(arr(writer.ports, 'ports').map((p) => obj(p, 'port').name)).toContain(endpoint.port);
    expect(
      matchesLabels(obj(k8sObject('PodDisruptionBudget', 'bar-writer').spec, 'spec').selector, labels),
    ).toBe(true);
    const job = k8sObject('Job', 'bar-writer-migrate');
    expect(matchesLabels(obj(k8sObject('Service', 'bar-writer').spec, 'spec').selector, podLabels(job))).toBe(
      false,
    );
  });

  it('runs the migrations and the service from built entry points', () => {
    const job = containers(k8sObject('Job', 'bar-writer-migrate'))[0]!;
    expectBuiltEntryPoint(arr(job.command, 'Job command'), 'Job bar-writer-migrate command');
    expect(writer.command).toBeUndefined(); // the image's CMD: node --single-threaded-gc dist/main.js
  });

  it('carries the same alerts as deploy/prometheus/alerts.yml', () => {
    const rule = obj(k8sObject('PrometheusRule', 'bar-writer').spec, 'spec');
    expect(rule.groups).toEqual(alerts.groups);
  });

  it('scales on the service consumer group and topic, never above its partition count', () => {
    const so = obj(k8sObject('ScaledObject', 'bar-writer').spec, 'spec');
    expect(obj(so.scaleTargetRef, 'scaleTargetRef').name).toBe('bar-writer');
    const trigger = obj(arr(so.triggers, 'triggers')[0], 'trigger');
    expect(trigger.type).toBe('kafka');
    const meta = obj(trigger.metadata, 'trigger.metadata');
    const config = validConfig(configMap, 'ConfigMap');
    expect(meta.consumerGroup).toBe(config.kafka.groupId);
    expect(meta.topic).toBe(config.kafka.topic);
    expect(meta.lagThreshold).toBe('10000');
    expect(typeof meta.bootstrapServers).toBe('string');
    const partitions = composeTopics().get(config.kafka.topic);
    expect(partitions).toBeDefined();
    expect(so.maxReplicaCount).toBeLessThanOrEqual(partitions!);
    expect(so.minReplicaCount).toBeGreaterThanOrEqual(1);
  });
});
