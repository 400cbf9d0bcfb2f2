/**
 * Process entry point: `npm start` (node dist/main.js).
 *
 * Configuration is validated before anything connects (exit 2 with every problem listed). Signals:
 * the first SIGTERM/SIGINT drains gracefully within SHUTDOWN_TIMEOUT (exit 0 when everything taken
 * was written and committed, 1 otherwise); a second signal exits at once (130). A consumer crash that
 * kafkajs will not restart exits 1, for the orchestrator to restart us.
 */
import { ConfigError, loadConfig, redactedConfig, type Config } from './config';
import { registerCodecs } from './consumer/codecs';
import { createLogger } from './observe/logger';
import { Service } from './service';

function main(): void {
  let config: Config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`bar-writer: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const logger = createLogger(config.logLevel);

  const missing = registerCodecs().filter((c) => !c.ok);
  if (missing.length > 0) {
    logger.fatal(
      { codecs: missing },
      'compression codec(s) could not be loaded; refusing to start rather than crash on the first compressed batch (see docs/kafka.md "Compression")',
    );
    process.exit(3);
  }

  logger.info({ config: redactedConfig(config) }, 'starting bar-writer');
  let shuttingDown = false;
  const service = new Service(config, {
    logger,
    onFatal: (err) => {
      logger.fatal({ err }, 'kafka consumer stopped for good; exiting for a restart');
      void shutdown(1);
    },
  });

  async function shutdown(code: number): Promise<void> {
    if (shuttingDown) return;
    shuttingDown = true;
    const deadline = Date.now() + config.shutdownTimeoutMs;
    // Backstop: whatever hangs, the process is gone shortly after the deadline.
    setTimeout(() => {
      logger.error('shutdown deadline passed; exiting');
      process.exit(1);
    }, config.shutdownTimeoutMs + 2000).unref();
    const drained = await service.stop(deadline).catch((err: unknown) => {
      logger.error({ err }, 'shutdown failed');
      return false;
    });
    process.exit(code !== 0 ? code : drained ? 0 : 1);
  }

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.on(signal, () => {
      if (shuttingDown) {
        logger.warn({ signal }, 'second signal; exiting now (unflushed messages will be replayed)');
        process.exit(130);
      }
      logger.info({ signal, timeoutMs: config.shutdownTimeoutMs }, 'signal received; draining');
      void shutdown(0);
    });
  }
  process.on('unhandledRejection', (err) => {
    logger.error({ err }, 'unhandled rejection');
  });

  service.start().catch((err: unknown) => {
    logger.fatal({ err }, 'start-up failed');
    void shutdown(1);
  });
}

main();
