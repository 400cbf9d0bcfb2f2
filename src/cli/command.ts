/**
 * What every operator command shares: argument parsing with clear usage errors, the service's own
 * configuration (the same env names; an invalid one exits 2 before anything connects), output, and
 * one exit-code table scripts can rely on:
 *
 *   0  done, everything as asked
 *   1  failed (a database or broker error, an unreadable file): one line on stderr says what
 *   2  invalid usage or configuration: nothing was done
 *   3  done, with a finding: rows rejected (backfill), a check failed (doctor), the group is active
 *      (offsets reset without --force)
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { ConfigError, loadConfig, type Config } from '../config';
import { errorMessage } from '../observe/logger';

export const EXIT = { ok: 0, failed: 1, usage: 2, finding: 3 } as const;

/** A usage mistake: printed with the command's help hint, exit 2. */
export class UsageError extends Error {}

export interface Io {
  out(line: string): void;
  err(line: string): void;
  /** stderr is a terminal (progress bars), else plain lines. */
  tty: boolean;
}

export const processIo: Io = {
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
  tty: Boolean(process.stderr.isTTY),
};

export interface Command {
  /** One line for the command list. */
  summary: string;
  /** The whole --help text. */
  help: string;
  run(args: string[], io: Io): Promise<number>;
}

type Options = NonNullable<ParseArgsConfig['options']>;

/** parseArgs, with unknown options and missing values as UsageErrors naming the option. */
export function parse<O extends Options>(args: string[], options: O) {
  try {
    return parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError(errorMessage(err).replace(/^TypeError \[\w+\]: /, ''));
  }
}

/** The configuration from the environment, or a ConfigError for the caller to report (exit 2). */
export function config(): Config {
  return loadConfig();
}

/** Runs a command body with the shared error handling: usage and config → 2, anything else → 1. */
export async function guarded(name: string, io: Io, body: () => Promise<number>): Promise<number> {
  try {
    return await body();
  } catch (err) {
    if (err instanceof UsageError) {
      io.err(`bar-writer ${name}: ${err.message} (see bar-writer ${name} --help)`);
      return EXIT.usage;
    }
    if (err instanceof ConfigError) {
      io.err(`bar-writer ${name}: ${err.message}`);
      return EXIT.usage;
    }
    io.err(`bar-writer ${name}: ${oneLine(err)}`);
    return EXIT.failed;
  }
}

/** An error as one line: its message, with its SQLSTATE or errno when it has one. */
export function oneLine(err: unknown): string {
  const message = errorMessage(err).replace(/\s*\n\s*/g, ' ');
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code && !message.includes(code) ? `${message} (${code})` : message;
}

/** A whole number option (`--batch 5000`), or a UsageError naming it. */
export function positiveInt(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!/^\d+$/.test(value) || Number(value) < 1)
    throw new UsageError(`--${name} must be a positive integer, got "${value}"`);
  return Number(value);
}

/** An ISO-8601 time with a zone or epoch milliseconds (`--since`), or a UsageError naming it. */
export function instant(name: string, value: string | undefined): number | null {
  if (value === undefined) return null;
  const ms = /^-?\d+$/.test(value) ? Number(value) : Date.parse(value);
  if (!Number.isFinite(ms) || (!/^-?\d+$/.test(value) && !/(Z|[+-]\d{2}:?\d{2})$/.test(value))) {
    throw new UsageError(
      `--${name} must be an ISO-8601 time with a zone or epoch milliseconds, got "${value}"`,
    );
  }
  return ms;
}
