/**
 * Reading policy versions out of a git repository (bare or not) without touching its
 * work tree or index: the ref's commit, the commit's subject and author, and its files
 * exported into a directory of ours (a private index file, `read-tree` + `checkout-index`).
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

async function git(repo: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<string> {
  try {
    const { stdout } = await run('git', ['--git-dir', gitDir(repo), ...args], { env: { ...process.env, ...env }, maxBuffer: 16 * 1024 * 1024 });
    return stdout;
  } catch (e) {
    const err = e as Error & { stderr?: string };
    throw new Error(`git ${args.find((a) => /^[a-z]/.test(a) && !a.includes('=') && !a.startsWith('/')) ?? ''} in ${repo}: ${(err.stderr ?? err.message).trim()}`);
  }
}

/** A bare repository is its own git dir; a work tree has `.git`. */
function gitDir(repo: string): string {
  return existsSync(path.join(repo, '.git')) ? path.join(repo, '.git') : repo;
}

/** The commit `ref` names now (a branch, tag or hash). */
export async function resolveRef(repo: string, ref: string): Promise<string> {
  return (await git(repo, ['rev-parse', '--verify', '--quiet', `${ref}^{commit}`])).trim();
}

export async function commitInfo(repo: string, commit: string): Promise<{ subject: string; author: string }> {
  const [subject = '', author = ''] = (await git(repo, ['log', '-1', '--format=%s%x00%an <%ae>', commit])).trim().split('\0');
  return { subject, author };
}

/** Exports the commit's tree into a new temporary directory; `dispose` removes it. */
export async function exportCommit(repo: string, commit: string): Promise<{ dir: string; dispose: () => Promise<void> }> {
  const dir = await mkdtemp(path.join(tmpdir(), 'petrel-policy-'));
  const tree = path.join(dir, 'tree');
  const env = { GIT_INDEX_FILE: path.join(dir, 'index') };
  try {
    await mkdir(tree);
    await git(repo, ['read-tree', commit], env);
    // A bare repository refuses checkout-index unless told it has a work tree (ours, for now).
    await git(repo, ['-c', 'core.bare=false', '--work-tree', tree, 'checkout-index', '--all', `--prefix=${tree}/`], env);
  } catch (e) {
    await rm(dir, { recursive: true, force: true });
    throw e;
  }
  return { dir: tree, dispose: () => rm(dir, { recursive: true, force: true }) };
}
