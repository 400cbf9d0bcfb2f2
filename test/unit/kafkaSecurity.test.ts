import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { kafkaSecurityOptions, type KafkaSecurity } from '../../src/consumer/kafkajs';

const none: KafkaSecurity = {
  ssl: false,
  sslCaFile: '',
  sslCertFile: '',
  sslKeyFile: '',
  sslRejectUnauthorized: true,
  saslMechanism: 'none',
  saslUsername: '',
  saslPassword: '',
};

describe('kafkaSecurityOptions', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bw-kafka-sec-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = (name: string, text: string) => {
    const p = path.join(dir, name);
    fs.writeFileSync(p, text);
    return p;
  };

  test('plaintext: no TLS, no SASL', () => {
    expect(kafkaSecurityOptions(none)).toEqual({ ssl: false });
  });

  test('TLS with a CA and a client certificate, read from files', () => {
    const opts = kafkaSecurityOptions({
      ...none,
      ssl: true,
      sslCaFile: file('ca.pem', 'CA'),
      sslCertFile: file('cert.pem', 'CERT'),
      sslKeyFile: file('key.pem', 'KEY'),
    });
    expect(opts).toEqual({ ssl: { rejectUnauthorized: true, ca: ['CA'], cert: 'CERT', key: 'KEY' } });
  });

  test.each(['plain', 'scram-sha-256', 'scram-sha-512'] as const)('SASL %s over TLS', (mechanism) => {
    const opts = kafkaSecurityOptions({
      ...none,
      ssl: true,
      saslMechanism: mechanism,
      saslUsername: 'u',
      saslPassword: 'p',
    });
    expect(opts).toEqual({
      ssl: { rejectUnauthorized: true },
      sasl: { mechanism, username: 'u', password: 'p' },
    });
  });
});
