#!/usr/bin/env node
/**
 * `bar-writer <command>`: the operator CLI (package.json bin; in the image as `node dist/cli/main.js`).
 * Every command reads the service's own configuration (DB_*, BARS_DB_*, KAFKA_*), has --help, and
 * exits with the codes of ./command.ts.
 */
import { registerCodecs } from '../consumer/codecs';
import { EXIT, processIo, type Command, type Io } from './command';
import { backfillCommand } from './backfill';
import { dlqCommand } from './dlq';
import { doctorCommand } from './doctor';
import { migrateCommand } from './migrate';
import { offsetsCommand } from './offsets';

export const COMMANDS: Record<string, Command> = {
  migrate: migrateCommand,
  offsets: offsetsCommand,
  backfill: backfillCommand,
  dlq: dlqCommand,
  doctor: doctorCommand,
};

function usage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((n) => n.length));
  return [
    'Usage: bar-writer <command> [options]   (bar-writer <command> --help for one command)',
    '',
    'Commands:',
    ...Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`),
    '',
    'Configuration: the environment of the service itself (DB_*, BARS_DB_*, KAFKA_*; see docs/configuration.md).',
    'Exit codes: 0 done; 1 failed; 2 invalid usage or configuration; 3 done with a finding (see each command).',
  ].join('\n');
}

export async function main(argv: string[], io: Io = processIo): Promise<number> {
  const [name, ...args] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    (name === undefined ? io.err : io.out)(usage());
    return name === undefined ? EXIT.usage : EXIT.ok;
  }
  const command = COMMANDS[name];
  if (!command) {
    io.err(`bar-writer: unknown command "${name}"\n\n${usage()}`);
    return EXIT.usage;
  }
  if (args.includes('--help') || args.includes('-h')) {
    io.out(command.help);
    return EXIT.ok;
  }
  return command.run(args, io);
}

if (require.main === module) {
  registerCodecs();
  // Exits as soon as the command is done: a client's retry timers must not keep a finished command
  // alive (stdout and stderr are synchronous on Linux pipes, files and terminals).
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`bar-writer: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(EXIT.failed);
    },
  );
}
