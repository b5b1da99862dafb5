/** `petrel hash-password`: a password hash for `smtp.users` in the `petrel run` config. */
import { hashPassword } from '../runtime/intake/index.ts';
import { EXIT, parseCommandArgs, UsageError, type Io } from './common.ts';

export const HASH_PASSWORD_HELP = `usage: printf '%s' 'PASSWORD' | petrel hash-password

Reads a password on standard input (one trailing newline is dropped) and prints its
scrypt hash, for \`smtp.users\` in the \`petrel run\` config file:

  { "smtp": { "users": [{ "user": "app", "passwordHash": "scrypt$ln=14,r=8,p=1$…" }] } }

The password never appears in the config, the command line or the process list.
exit codes: 0 ok, 2 usage error (no password given)
`;

async function readStdin(): Promise<string> {
  if (process.stdin.isTTY) throw new UsageError('give the password on standard input, e.g. `printf %s "$PASSWORD" | petrel hash-password`');
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

export async function hashPasswordCommand(argv: string[], io: Io, input: () => Promise<string> = readStdin): Promise<number> {
  const { values, positionals } = parseCommandArgs(argv, {});
  if (values.help) {
    io.out(HASH_PASSWORD_HELP);
    return EXIT.ok;
  }
  if (positionals.length > 0) throw new UsageError('the password is read from standard input, not taken as an argument');
  const password = (await input()).replace(/\r?\n$/, '');
  if (password.length === 0) throw new UsageError('empty password on standard input');
  io.out(`${await hashPassword(password)}\n`);
  return EXIT.ok;
}
