/** A benchmark's cleanup (on normal end, on failure, on SIGINT/SIGTERM) and its main() runner. */
import { log } from './report';

/**
 * Cleanup steps run in reverse order of registration, once, on normal end, on failure and on
 * SIGINT/SIGTERM (the benchmark then exits 130).
 */
export class Cleanup {
  private readonly steps: { what: string; fn: () => Promise<unknown> }[] = [];
  private running: Promise<void> | null = null;
  /** Set by SIGINT/SIGTERM: a Ctrl-C also reached the service child (same process group). */
  interrupted = false;

  constructor() {
    for (const signal of ['SIGINT', 'SIGTERM'] as const) {
      process.once(signal, () => {
        this.interrupted = true;
        log(`${signal}: cleaning up`);
        void this.run().finally(() => process.exit(130));
      });
    }
  }

  add(what: string, fn: () => Promise<unknown>): void {
    this.steps.push({ what, fn });
  }

  run(): Promise<void> {
    this.running ??= (async () => {
      for (const step of this.steps.reverse()) {
        try {
          await step.fn();
        } catch (err) {
          log(`cleanup "${step.what}" failed: ${(err as Error).message}`);
        }
      }
      this.steps.length = 0;
    })();
    return this.running;
  }
}

/** Runs `main` with a Cleanup; cleans up whatever happens and sets the exit code. */
export function runMain(name: string, main: (cleanup: Cleanup) => Promise<void>): void {
  const cleanup = new Cleanup();
  main(cleanup)
    .then(
      () => cleanup.run(),
      async (err: unknown) => {
        log(`${name} failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
        process.exitCode = 1;
        await cleanup.run();
      },
    )
    .finally(() => {
      // Anything left (sockets of a client that failed to disconnect) must not keep us alive.
      setTimeout(() => process.exit(), 200).unref();
    });
}
