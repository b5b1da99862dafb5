/** The `petrel` command line: one file per subcommand; this file only dispatches. */
import { buildCommand, BUILD_HELP } from './build.ts';
import { check, CHECK_HELP } from './check.ts';
import { EXIT, UsageError, type Io } from './common.ts';
import { fmtCommand, FMT_HELP } from './fmt.ts';
import { runCommand, RUN_HELP } from './run.ts';
import { testCommand, TEST_HELP } from './test.ts';

const COMMANDS: Record<string, { run: (argv: string[], io: Io) => Promise<number>; help: string; summary: string }> = {
  check: { run: check, help: CHECK_HELP, summary: 'check policy files and report problems' },
  build: { run: buildCommand, help: BUILD_HELP, summary: 'compile policy files into an artifact' },
  fmt: { run: fmtCommand, help: FMT_HELP, summary: 'format policy files canonically' },
  run: { run: runCommand, help: RUN_HELP, summary: 'accept mail and deliver it under the policies' },
  test: { run: testCommand, help: TEST_HELP, summary: 'run the policies\' test blocks against the compiled artifact' },
};

export const MAIN_HELP = `usage: petrel <command> [options]

commands:
${Object.entries(COMMANDS)
  .map(([name, c]) => `  ${name.padEnd(8)} ${c.summary}`)
  .join('\n')}

Run \`petrel <command> --help\` for a command's options.
exit codes: 0 ok, 1 internal error, 2 usage error, 3 policy errors
`;

/** Runs the CLI; returns the exit code. */
export async function main(argv: string[], io: Io = processIo()): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    io.out(MAIN_HELP);
    return name === undefined ? EXIT.usage : EXIT.ok;
  }
  const command = COMMANDS[name];
  if (!command) {
    io.err(`petrel: unknown command \`${name}\`\n\n${MAIN_HELP}`);
    return EXIT.usage;
  }
  try {
    return await command.run(rest, io);
  } catch (e) {
    if (e instanceof UsageError) {
      io.err(`petrel ${name}: ${e.message}\nrun \`petrel ${name} --help\` for usage\n`);
      return EXIT.usage;
    }
    io.err(`petrel ${name}: internal error: ${(e as Error).stack ?? String(e)}\n`);
    return EXIT.internal;
  }
}

function processIo(): Io {
  return { out: (t) => process.stdout.write(t), err: (t) => process.stderr.write(t), cwd: process.cwd() };
}
