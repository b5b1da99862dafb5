/**
 * `petrel init`: the scaffold passes `check`, `test` and `fmt --check` unchanged — every
 * `npx petrel` line of the workflow it writes, run by the real binary in the scaffold — and
 * it refuses what it should.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { main } from '../../cli/main.ts';
import { ROOT, runPetrel } from '../helpers.ts';
import { git } from './policy-repo.ts';

let dir: string | undefined;
afterEach(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});

function tempDir(): string {
  dir = mkdtempSync(path.join(tmpdir(), 'petrel-init-'));
  return dir;
}

/** Every file under `root` (but node_modules) → a hash of its content. */
function snapshot(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of readdirSync(root, { recursive: true, withFileTypes: true })) {
    const file = path.join(e.parentPath, e.name);
    if (e.isFile() && !file.includes('node_modules')) out[path.relative(root, file)] = createHash('sha256').update(readFileSync(file)).digest('hex');
  }
  return out;
}

/**
 * The `npx petrel …` commands of the workflow, each as arguments, the file its output goes
 * to, and the exit codes its line accepts (`|| true`: any; `|| test $? -eq 1`: 0 and 1).
 * `${{ github.base_ref }}` is replaced as GitHub does before the shell runs, by `main`.
 */
function workflowCommands(repo: string): { args: string[]; to?: string; accepts: 'any' | number[] }[] {
  const yaml = readFileSync(path.join(repo, '.github/workflows/petrel.yml'), 'utf8');
  return [...yaml.matchAll(/npx petrel ([^\n>|]+?)(?: >>? (\S+))?( \|\| true| \|\| test \$\? -eq 1)?$/gm)].map((m) => ({
    args: m[1]!.replaceAll('${{ github.base_ref }}', 'main').split(' '),
    ...(m[2] ? { to: m[2] } : {}),
    accepts: m[3] === ' || true' ? 'any' : m[3] ? [0, 1] : [0],
  }));
}

const petrelVersion = (JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

/** The CLI in this process (the same code the binary runs), for loops where a process each would be slow. */
async function petrelHere(argv: string[], cwd: string): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await main(argv, { out: (t) => (out += t), err: (t) => (err += t), cwd });
  return { code, out, err };
}

describe('petrel init', () => {
  it('scaffolds a repository whose workflow commands all pass, unchanged, with the binary', () => {
    const repo = path.join(tempDir(), 'mail-policies');
    const init = runPetrel(['init', repo, '--providers', 'google,yahoo,microsoft']);
    expect(init.code, init.stderr).toBe(0);
    const before = snapshot(repo);
    expect(Object.keys(before).sort()).toEqual(['.github/workflows/petrel.yml', '.gitignore', 'README.md', 'package.json', 'policies/default.policy', 'policies/google.policy', 'policies/microsoft.policy', 'policies/yahoo.policy', 'simulation/campaign.json']);
    for (const f of ['default', 'google', 'yahoo', 'microsoft']) expect(readFileSync(path.join(repo, 'policies', `${f}.policy`), 'utf8')).toBe(readFileSync(path.join(ROOT, 'policies', `${f}.policy`), 'utf8'));
    expect(JSON.parse(readFileSync(path.join(repo, 'package.json'), 'utf8'))).toMatchObject({ name: 'mail-policies', dependencies: { petrel: petrelVersion } });
    expect(readFileSync(path.join(repo, '.gitignore'), 'utf8').split('\n')).toEqual(expect.arrayContaining(['var/', 'build/', 'node_modules/']));

    const commands = workflowCommands(repo);
    expect(commands.map((c) => c.args.slice(0, 3).join(' '))).toEqual(['fmt --check policies', 'check --format github', 'test --format github', 'diff --git .', 'simulate policies --campaign', 'test --format junit', 'check --format sarif']);
    // The diff step needs a pull request's git history: the next test runs it.
    for (const c of commands.filter((c) => c.args[0] !== 'diff')) {
      const r = runPetrel(c.args, { cwd: repo });
      expect(r.code, `petrel ${c.args.join(' ')}: ${r.stdout}${r.stderr}`).toBe(0);
      expect(r.stdout).not.toContain('::error');
      if (c.to === 'petrel-tests.xml') expect(r.stdout).toMatch(/<testsuites name="petrel" tests="\d+" failures="0">/);
      if (c.to === 'petrel.sarif') expect(JSON.parse(r.stdout).runs[0].results).toEqual([]);
      if (c.to === 'petrel-simulation.html') expect(r.stdout).toMatch(/^<!doctype html>[\s\S]*20000 messages, 20000 recipients/);
    }
    expect(snapshot(repo)).toEqual(before);
  });

  // Each run of the diff step simulates the sample campaign twice (20 000 messages, about 10 s of wall time each on the loaded machine).
  it('the workflow\'s diff step runs on a pull request\'s history: no change, then a change, both accepted by its line', { timeout: 240_000 }, () => {
    const repo = path.join(tempDir(), 'mail-policies');
    expect(runPetrel(['init', repo, '--providers', 'yahoo']).code).toBe(0);
    const step = workflowCommands(repo).find((c) => c.args[0] === 'diff')!;
    expect(step).toMatchObject({ to: '"$GITHUB_STEP_SUMMARY"', accepts: [0, 1] });
    // A clone of a pull request: the base branch as origin/main, the pull request's commit as HEAD.
    git(repo, 'init', '--quiet', '--initial-branch=main');
    git(repo, 'add', '-A');
    git(repo, 'commit', '--quiet', '-m', 'scaffold');
    git(repo, 'update-ref', 'refs/remotes/origin/main', 'HEAD');
    const args = step.args;
    expect(args.slice(0, 5)).toEqual(['diff', '--git', '.', 'origin/main', 'HEAD']);
    expect(args.slice(-4, -2)).toEqual(['--simulate', 'simulation/campaign.json']);
    const same = runPetrel(args, { cwd: repo });
    expect(same.code, same.stderr).toBe(0);
    expect(same.stdout).toMatch(/^## petrel diff: no effective change\n\nbase `origin\/main \([0-9a-f]{12}\)` \(\S+\) → head `HEAD \([0-9a-f]{12}\)` \(\S+\)\n\n## Outcomes: no change in outcomes\n/);
    expect(same.stdout).toContain('- base: 20000 recipients, ');
    const yahoo = path.join(repo, 'policies/yahoo.policy');
    // Slower than the campaign's 2000 Yahoo messages an hour: Yahoo's share now takes longer.
    writeFileSync(yahoo, readFileSync(yahoo, 'utf8').replace(/^ {2}rate 3600\/h per source$/m, '  rate 1200/h per source'));
    git(repo, 'commit', '--quiet', '-am', 'slower to yahoo');
    const changed = runPetrel(args, { cwd: repo });
    expect(step.accepts).toContain(changed.code);
    expect(changed.code, changed.stderr).toBe(1);
    expect(changed.stdout).toContain('### `provider:yahoo` changed');
    expect(changed.stdout).toContain('| rate per source | `3600/h per source` | `1200/h per source` |');
    expect(changed.stdout).toMatch(/\n## Outcomes: \d+ providers? changed; flagged: yahoo slower/);
    // Its bulk, that is: every provider's last recipient is a full mailbox on its bounded
    // retry (72 hourly tries), so the time to complete is the same on both sides.
    expect(changed.stdout).toMatch(/\n\| `yahoo` ⚠️ slower \| [^\n]*\n(\| {2}\| [^\n]*\n)*\| {2}\| time to 50 % settled \| /);
  });

  it('copies every shipped provider with --all, and the scaffold passes check and test', async () => {
    const repo = tempDir();
    expect((await petrelHere(['init', '--all'], repo)).code).toBe(0);
    expect(readdirSync(path.join(repo, 'policies')).sort()).toEqual(readdirSync(path.join(ROOT, 'policies')).sort());
    expect(await petrelHere(['check', '--deny-warnings', 'policies'], repo)).toMatchObject({ code: 0 });
    expect((await petrelHere(['test', 'policies'], repo)).out).toMatch(/tests: \d+ passed, 0 failed\n$/);
  });

  it('each shipped provider alone, with the files it uses, passes check and test', async () => {
    const providers = readdirSync(path.join(ROOT, 'policies')).filter((f) => f !== 'default.policy').map((f) => f.replace(/\.policy$/, ''));
    expect(providers.length).toBeGreaterThan(10);
    for (const p of [...providers, '']) {
      const repo = path.join(tempDir(), p || 'none');
      const init = await petrelHere(['init', repo, '--providers', p], ROOT);
      expect(init.code, init.err).toBe(0);
      const check = await petrelHere(['check', '--deny-warnings', 'policies'], repo);
      expect(check.code, `${p}: ${check.err}`).toBe(0);
      const test = await petrelHere(['test', '--quiet', 'policies'], repo);
      expect(test.code, `${p}: ${test.out}${test.err}`).toBe(0);
      rmSync(dir!, { recursive: true, force: true });
    }
  });

  it('takes provider blocks and domains as names, and copies the shipped files a provider uses', async () => {
    const repo = tempDir();
    expect((await petrelHere(['init', '--providers', 'att,qq,gmail.com'], repo)).code).toBe(0);
    expect(readdirSync(path.join(repo, 'policies')).sort()).toEqual(['att.policy', 'china.policy', 'default.policy', 'google.policy', 'yahoo.policy']);
  });

  it('refuses an unknown provider, listing the shipped ones, and writes nothing', async () => {
    const repo = tempDir();
    const r = await petrelHere(['init', '--providers', 'google,gmial'], repo);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/unknown provider `gmial`; the shipped ones are apple, att, .*google.*microsoft \(microsoft-consumer, office365\)/);
    expect(readdirSync(repo)).toEqual([]);
    expect((await petrelHere(['init', '--all', '--providers', 'google'], repo)).code).toBe(2);
  });

  it('refuses a directory that is not empty unless --force, which keeps what package.json has', async () => {
    const repo = tempDir();
    writeFileSync(path.join(repo, 'notes.txt'), 'ours');
    const refused = await petrelHere(['init'], repo);
    expect(refused.code).toBe(2);
    expect(refused.err).toContain('is not empty (notes.txt); use --force');
    expect(readdirSync(repo)).toEqual(['notes.txt']);

    writeFileSync(path.join(repo, 'package.json'), JSON.stringify({ name: 'ours', dependencies: { left: '1.0.0' }, scripts: { test: 'ours' } }));
    expect((await petrelHere(['init', '--force'], repo)).code).toBe(0);
    expect(readFileSync(path.join(repo, 'notes.txt'), 'utf8')).toBe('ours');
    expect(JSON.parse(readFileSync(path.join(repo, 'package.json'), 'utf8'))).toMatchObject({ name: 'ours', dependencies: { left: '1.0.0', petrel: petrelVersion }, scripts: { test: 'ours', check: 'petrel check policies' } });
  });

  it('writes into a directory holding only .git and what npm install petrel leaves, keeping its petrel dependency', async () => {
    const repo = tempDir();
    mkdirSync(path.join(repo, '.git'));
    mkdirSync(path.join(repo, 'node_modules'));
    writeFileSync(path.join(repo, 'package.json'), JSON.stringify({ dependencies: { petrel: 'file:../petrel-0.1.0.tgz' } }));
    writeFileSync(path.join(repo, 'package-lock.json'), '{}');
    expect((await petrelHere(['init'], repo)).code).toBe(0);
    expect(JSON.parse(readFileSync(path.join(repo, 'package.json'), 'utf8')).dependencies).toEqual({ petrel: 'file:../petrel-0.1.0.tgz' });
  });

  it('refuses a package.json that is not JSON, a DIR that is a file, and two DIRs', async () => {
    const repo = tempDir();
    writeFileSync(path.join(repo, 'package.json'), '{ nope');
    expect(await petrelHere(['init'], repo)).toMatchObject({ code: 2, err: expect.stringContaining('package.json` is not JSON') });
    expect(await petrelHere(['init', 'package.json'], repo)).toMatchObject({ code: 2, err: expect.stringContaining('is not a directory') });
    expect(await petrelHere(['init', 'a', 'b'], repo)).toMatchObject({ code: 2, err: expect.stringContaining('name one directory') });
  });

  it('has --help', () => {
    const r = runPetrel(['init', '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^usage: petrel init \[options\] \[DIR\]/);
    expect(r.stdout).toContain('--providers <names>');
  });
});
