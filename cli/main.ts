/**
 * The `petrel` command line: one file per subcommand; this file only dispatches. Each
 * command is imported when it runs (the bundle splits them), so `petrel fmt` does not
 * load the SMTP stack and `--help` loads nothing heavy.
 */
import { EXIT, UsageError, type Io } from './common.ts';

type Command = (argv: string[], io: Io) => Promise<number>;

const COMMANDS: Record<string, { load: () => Promise<Command>; summary: string }> = {
  init: { load: async () => (await import('./init.ts')).initCommand, summary: 'create a policy repository: policies, CI workflow, package.json' },
  check: { load: async () => (await import('./check.ts')).check, summary: 'check policy files and report problems' },
  build: { load: async () => (await import('./build.ts')).buildCommand, summary: 'compile policy files into an artifact' },
  'hash-password': { load: async () => (await import('./hash-password.ts')).hashPasswordCommand, summary: 'hash a password for SMTP AUTH users (petrel run config)' },
  fmt: { load: async () => (await import('./fmt.ts')).fmtCommand, summary: 'format policy files canonically' },
  run: { load: async () => (await import('./run.ts')).runCommand, summary: 'accept mail and deliver it under the policies' },
  test: { load: async () => (await import('./test.ts')).testCommand, summary: 'run the policies\' test blocks against the compiled artifact' },
  diff: { load: async () => (await import('./diff.ts')).diffCommand, summary: 'show the effective change between two versions of a policy set, per destination' },
  reload: { load: async () => (await import('./policy-ops.ts')).reloadCommand, summary: 'make a running petrel build, test and load its policies now' },
  rollback: { load: async () => (await import('./policy-ops.ts')).rollbackCommand, summary: 'switch a running petrel back to a kept policy version' },
  deploy: { load: async () => (await import('./policy-ops.ts')).deployCommand, summary: 'build and test policies here, and make them live on a running petrel' },
  keygen: { load: async () => (await import('./keygen.ts')).keygenCommand, summary: 'make an Ed25519 key pair for signing deploys' },
  'dkim-record': { load: async () => (await import('./dkim-record.ts')).dkimRecordCommand, summary: 'print the DNS TXT record that publishes a DKIM signing key' },
  simulate: { load: async () => (await import('./simulate.ts')).simulateCommand, summary: 'run a campaign through the policies on a virtual clock against provider models' },
  source: { load: async () => (await import('./source.ts')).sourceCommand, summary: 'disable a source of a running petrel, or enable it again' },
  queue: { load: async () => (await import('./queue.ts')).queueCommand, summary: 'list, show, retry, delete or bounce the mail a running petrel holds' },
  suppression: { load: async () => (await import('./suppression.ts')).suppressionCommand, summary: 'list, add, remove, import or export suppressed addresses of a running petrel' },
  hook: { load: async () => (await import('./policy-ops.ts')).hookCommand, summary: 'install a git post-receive hook that notifies a running petrel' },
};

export const MAIN_HELP = `usage: petrel <command> [options]

commands:
${Object.entries(COMMANDS)
  .map(([name, c]) => `  ${name.padEnd(13)} ${c.summary}`)
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
    return await (await command.load())(rest, io);
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
