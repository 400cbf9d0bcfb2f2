/**
 * TLS to PostgreSQL (DB_SSL_MODE disable / require / verify-full with DB_SSL_ROOT_CERT) against a
 * temporary PostgreSQL 15 cluster of this test's own, with ssl=on and a pg_hba.conf that rejects
 * unencrypted connections (the machine's cluster has ssl=off).
 *
 * A throwaway CA signs the server certificate (CN=localhost, subjectAltName DNS:localhost and
 * IP:127.0.0.1); a second, unrelated CA must not be accepted. The cluster also listens on 127.0.0.2,
 * an address the certificate does not name, to check that verify-full verifies the host and not only
 * the chain. The cluster and its directory are removed in afterAll, also when a test fails.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { loadConfig } from '../../src/config';
import { createPool } from '../../src/store/pool';
import { run, TempCluster } from '../support/cluster';
import { runCli } from '../support/harness';

const PG_BIN = process.env.TEST_PG_BIN ?? '/usr/lib/postgresql/15/bin';
const SECRET = `some-secret-${crypto.randomBytes(4).toString('hex')}`;
const SCHEMA = 'bw_tls';
/** 127.0.0.0/8 is all loopback on Linux: a second address the server certificate does not name. */
const UNNAMED_IP = '127.0.0.2';
const testIfLinux = process.platform === 'linux' ? test : test.skip;

let cluster: TempCluster | null = null;
let caFile = '';
let otherCaFile = '';

function makeCerts(dir: string): void {
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  const caExt = [
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
  ];
  for (const ca of ['ca', 'other-ca']) {
    run(
      'openssl',
      [
        'req',
        '-x509',
        ...ec,
        '-keyout',
        `${ca}.key`,
        '-out',
        `${ca}.crt`,
        '-days',
        '2',
        '-subj',
        `/CN=bw-test-${ca}`,
        ...caExt,
      ],
      dir,
    );
  }
  run(
    'openssl',
    ['req', '-new', ...ec, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost'],
    dir,
  );
  fs.writeFileSync(
    path.join(dir, 'server.ext'),
    [
      'basicConstraints=critical,CA:FALSE',
      'keyUsage=critical,digitalSignature,keyEncipherment',
      'extendedKeyUsage=serverAuth',
      'subjectAltName=DNS:localhost,IP:127.0.0.1',
      '',
    ].join('\n'),
  );
  run(
    'openssl',
    [
      'x509',
      '-req',
      '-in',
      'server.csr',
      '-CA',
      'ca.crt',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-out',
      'server.crt',
      '-days',
      '2',
      '-extfile',
      'server.ext',
    ],
    dir,
  );
  fs.chmodSync(path.join(dir, 'server.key'), 0o600);
}

async function startCluster(): Promise<TempCluster> {
  const hosts = process.platform === 'linux' ? ['127.0.0.1', UNNAMED_IP] : ['127.0.0.1'];
  cluster = new TempCluster({
    bin: PG_BIN,
    hosts,
    prepare: (dir) => {
      makeCerts(dir);
      caFile = path.join(dir, 'ca.crt');
      otherCaFile = path.join(dir, 'other-ca.crt');
    },
    conf: (dir) => [
      'ssl = on',
      `ssl_cert_file = '${path.join(dir, 'server.crt')}'`,
      `ssl_key_file = '${path.join(dir, 'server.key')}'`,
    ],
    hba: [
      'local all all trust',
      'hostssl all all 127.0.0.1/32 trust',
      `hostssl all all ${UNNAMED_IP}/32 trust`,
      'hostnossl all all 127.0.0.1/32 reject',
    ],
  });
  return cluster.start();
}

function env(extra: Record<string, string>): Record<string, string> {
  return {
    DB_HOST: '127.0.0.1',
    DB_PORT: String(cluster!.port),
    DB_USER: 'postgres',
    DB_NAME: 'postgres',
    DB_SCHEMA: SCHEMA,
    DB_PASSWORD: SECRET, // trust auth never asks for it; it must never be printed either
    LOG_LEVEL: 'silent',
    ...extra,
  };
}

/** Connects with the service's own pool (createPool) and asks the server whether the session is TLS. */
async function sslOfSession(extra: Record<string, string>): Promise<{ ssl: boolean; version: string }> {
  const pool = createPool({ ...loadConfig(env(extra)).db, maxConnections: 1, maxIdleConnections: 1 });
  try {
    const r = await pool.query<{ ssl: boolean; version: string }>(
      'SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()',
    );
    return r.rows[0]!;
  } finally {
    await pool.end();
  }
}

async function connectError(extra: Record<string, string>): Promise<Error> {
  const err = await sslOfSession(extra).then(
    () => null,
    (e: unknown) => e as Error,
  );
  if (!err) throw new Error(`connected with ${JSON.stringify(extra)}, expected a failure`);
  return err;
}

/** `node dist/cli/migrate.js` as operators run it, with only the given environment. */
const migrateCli = (extra: Record<string, string>) => runCli('dist/cli/migrate.js', [], env(extra));

describe('TLS to PostgreSQL (own ssl=on cluster)', () => {
  beforeAll(async () => {
    await startCluster();
  }, 60_000);

  afterAll(() => {
    cluster?.stop();
    cluster = null;
  }, 30_000);

  test('require: the migrate CLI applies the migrations over TLS; the pool session is encrypted', async () => {
    const first = await migrateCli({ DB_SSL_MODE: 'require' });
    expect(first).toMatchObject({ code: 0 });
    expect(first.output).toMatch(
      /migrate: [1-9]\d* applied, 0 already applied \(database postgres, schema bw_tls\)/,
    );
    expect(first.output).not.toContain(SECRET);
    const again = await migrateCli({ DB_SSL_MODE: 'require' });
    expect(again).toMatchObject({ code: 0 });
    expect(again.output).toMatch(/migrate: 0 applied, [1-9]\d* already applied/);

    const pool = createPool(loadConfig(env({ DB_SSL_MODE: 'require' })).db);
    try {
      const t = await pool.query<{ t: string | null }>(`SELECT to_regclass('${SCHEMA}.bars_1m')::text AS t`);
      expect(t.rows).toEqual([{ t: `${SCHEMA}.bars_1m` }]);
    } finally {
      await pool.end();
    }
    // require does not verify the certificate: even a CA that did not sign it is not consulted.
    expect(await sslOfSession({ DB_SSL_MODE: 'require' })).toEqual({
      ssl: true,
      version: expect.stringMatching(/^TLSv1\.[23]$/),
    });
  });

  test('verify-full with the CA that signed the certificate, host localhost: encrypted', async () => {
    const s = await sslOfSession({
      DB_SSL_MODE: 'verify-full',
      DB_SSL_ROOT_CERT: caFile,
      DB_HOST: 'localhost',
    });
    expect(s.ssl).toBe(true);
  });

  test('verify-full with the CA, host 127.0.0.1 (an IP subjectAltName of the certificate): encrypted', async () => {
    const s = await sslOfSession({
      DB_SSL_MODE: 'verify-full',
      DB_SSL_ROOT_CERT: caFile,
      DB_HOST: '127.0.0.1',
    });
    expect(s.ssl).toBe(true);
  });

  test('verify-full with an unrelated CA, or with only the system CAs: certificate error', async () => {
    const other = await connectError({
      DB_SSL_MODE: 'verify-full',
      DB_SSL_ROOT_CERT: otherCaFile,
      DB_HOST: 'localhost',
    });
    expect(other.message).toMatch(/self.signed|unable to verify|certificate/i);
    const system = await connectError({ DB_SSL_MODE: 'verify-full', DB_HOST: 'localhost' });
    expect(system.message).toMatch(/self.signed|unable to verify|certificate/i);
  });

  testIfLinux('verify-full to an address the certificate does not name: hostname mismatch', async () => {
    // The chain is valid (right CA) and the server is the same one: only the host check can refuse it.
    const err = await connectError({
      DB_SSL_MODE: 'verify-full',
      DB_SSL_ROOT_CERT: caFile,
      DB_HOST: UNNAMED_IP,
    });
    expect(err.message).toMatch(/does not match certificate|altnames/i);
    expect(err.message).toContain(UNNAMED_IP);
    // require still connects there (no verification), which shows the server itself accepts it.
    expect((await sslOfSession({ DB_SSL_MODE: 'require', DB_HOST: UNNAMED_IP })).ssl).toBe(true);
  });

  test('disable against a server that rejects unencrypted connections: pg_hba error', async () => {
    const err = await connectError({ DB_SSL_MODE: 'disable' });
    expect(err.message).toMatch(/pg_hba\.conf rejects connection .*no encryption/);
  });

  test('the migrate CLI fails with exit 1 on a wrong TLS setup and never prints the password', async () => {
    const cases: [Record<string, string>, RegExp][] = [
      [{ DB_SSL_MODE: 'disable' }, /pg_hba\.conf rejects connection .*no encryption/],
      [
        { DB_SSL_MODE: 'verify-full', DB_SSL_ROOT_CERT: otherCaFile, DB_HOST: 'localhost' },
        /self.signed|unable to verify|certificate/i,
      ],
      [
        { DB_SSL_MODE: 'verify-full', DB_SSL_ROOT_CERT: caFile, DB_HOST: UNNAMED_IP },
        /does not match certificate|altnames/i,
      ],
    ];
    for (const [extra, message] of process.platform === 'linux' ? cases : cases.slice(0, 2)) {
      const r = await migrateCli(extra);
      expect({ extra, code: r.code }).toEqual({ extra, code: 1 });
      expect(r.output).toMatch(message);
      expect(r.output).not.toContain(SECRET);
      expect(r.output).not.toContain('some-secret');
    }
    // A root certificate that does not exist is a configuration error (exit 2), before connecting.
    const missing = await migrateCli({
      DB_SSL_MODE: 'verify-full',
      DB_SSL_ROOT_CERT: path.join(cluster!.dir, 'nope.crt'),
    });
    expect(missing.code).toBe(2);
    expect(missing.output).toContain('DB_SSL_ROOT_CERT (db.sslRootCert): file does not exist');
    expect(missing.output).not.toContain('some-secret');
  });
});
