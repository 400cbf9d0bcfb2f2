/**
 * The Prometheus configuration the test suite runs (scripts/prometheus.sh writes it with this), made
 * from the shipped deploy/prometheus/prometheus.yml: the same rule files (deploy/prometheus/alerts.yml),
 * the same bar-writer job (name, metrics path, everything but how targets are found), with the
 * targets read from a file the tests write (file_sd) and a 1 s scrape and evaluation interval, so a test
 * sees in seconds what production sees in minutes.
 *
 *   node --import tsx test/support/prometheusConfig.ts <targets-file> > prometheus.yml
 */
import fs from 'node:fs';
import path from 'node:path';
import { parse, stringify } from 'yaml';

const REPO = path.resolve(__dirname, '..', '..');
export const DEPLOY_CONFIG = path.join(REPO, 'deploy', 'prometheus', 'prometheus.yml');
export const ALERTS = path.join(REPO, 'deploy', 'prometheus', 'alerts.yml');
export const JOB = 'bar-writer';

interface ScrapeConfig {
  job_name: string;
  [key: string]: unknown;
}

export function testPrometheusConfig(targetsFile: string, intervalS = 1): string {
  const deploy = parse(fs.readFileSync(DEPLOY_CONFIG, 'utf8')) as {
    rule_files: string[];
    scrape_configs: ScrapeConfig[];
  };
  const job = deploy.scrape_configs.find((c) => c.job_name === JOB);
  if (!job) throw new Error(`${DEPLOY_CONFIG} has no job ${JOB}`);
  // Everything of the shipped job but its service discovery (compose DNS).
  const kept = Object.fromEntries(
    Object.entries(job).filter(([k]) => k !== 'dns_sd_configs' && k !== 'static_configs'),
  );
  return stringify({
    global: {
      scrape_interval: `${intervalS}s`,
      evaluation_interval: `${intervalS}s`,
      scrape_timeout: `${intervalS}s`,
    },
    rule_files: deploy.rule_files.map((f) => path.join(path.dirname(ALERTS), path.basename(f))),
    scrape_configs: [{ ...kept, file_sd_configs: [{ files: [targetsFile], refresh_interval: '1s' }] }],
  });
}

if (require.main === module) {
  const targets = process.argv[2];
  if (!targets) {
    console.error('usage: prometheusConfig.ts <targets-file>');
    process.exit(2);
  }
  process.stdout.write(testPrometheusConfig(path.resolve(targets)));
}
