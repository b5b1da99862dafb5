/**
 * What every subcommand shares: exit codes, argument parsing that rejects unknown
 * options by name, finding `.policy` files under the paths given, and the disk host the
 * compiler reads through.
 */
import { statSync } from 'node:fs';
import path from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';

export const EXIT = { ok: 0, internal: 1, usage: 2, policy: 3 } as const;

/** Where a command writes; tests pass buffers, the binary passes process streams. */
export interface Io {
  out(text: string): void;
  err(text: string): void;
  cwd: string;
}

/** A usage error: printed with the command's help hint, exit 2. */
export class UsageError extends Error {}

type Options = NonNullable<ParseArgsConfig['options']>;

/** Parses `argv` for one command; unknown options and bad values become UsageErrors. */
export function parseCommandArgs<O extends Options>(argv: string[], options: O) {
  try {
    return parseArgs({ args: argv, options: { ...options, help: { type: 'boolean', short: 'h' } }, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError((e as Error).message.replace(/^Unknown option '([^']*)'.*$/s, 'unknown option `$1`'));
  }
}

/** Every `.policy` file named or under a named directory, sorted, as absolute paths. */
export function findPolicyFiles(paths: string[], cwd: string): string[] {
  const found = new Set<string>();
  for (const p of paths) {
    const abs = path.resolve(cwd, p);
    let stat;
    try {
      stat = statSync(abs);
    } catch {
      throw new UsageError(`no such file or directory: \`${p}\``);
    }
    if (stat.isDirectory()) for (const f of listPolicyFiles(abs)) found.add(f);
    else found.add(abs);
  }
  return [...found];
}

/** The compiler's view of the disk (re-exported: the runtime's compile worker uses it too). */
export { diskHost } from '../compiler/disk-host.ts';
import { listPolicyFiles } from '../compiler/disk-host.ts';

/** `1 file`, `2 files`: a count and its noun, plural unless the count is one. */
export function plural(count: number, noun: string, nouns = `${noun}s`): string {
  return `${count} ${count === 1 ? noun : nouns}`;
}

/** The set name when `--name` is not given: the first path's base name (`policies`). */
export function defaultSetName(paths: string[], cwd: string): string {
  const first = path.resolve(cwd, paths[0] ?? '.');
  return path.basename(first).replace(/\.policy$/, '') || 'policy';
}
