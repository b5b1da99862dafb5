/**
 * The package as npm ships it: `npm pack` (from a copy of this working tree, so packing
 * does not rebuild this checkout's dist/ under other tests), installed from the tarball into
 * an empty directory, gives a working `npx petrel` there and in any working directory:
 * init, fmt, check, test, build, and run (start-up line, status API, a delivery through
 * the installed worker files, SIGTERM).
 */
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import nodemailer from 'nodemailer';
import { afterEach, describe, expect, it } from 'vitest';
import { ROOT } from '../helpers.ts';
import { startSink, type Sink } from '../runtime/fixtures/sink.ts';
import { until } from '../runtime/fixtures/e2e.ts';
import { killAllPetrel, startPetrel } from './petrel-process.ts';

let dir: string | undefined;
let sink: Sink | undefined;
afterEach(async () => {
  await killAllPetrel();
  await sink?.close();
  sink = undefined;
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});

/** The environment without what `npm test` sets for its own package (npm_config_local_prefix …), which would steer npm below. */
const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.toLowerCase().startsWith('npm_')));

function sh(command: string, args: string[], cwd: string): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(command, args, { cwd, env, encoding: 'utf8', timeout: 180_000, maxBuffer: 64 << 20 });
  if (r.error) throw r.error;
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** This working tree as git sees it (tracked and new files, not ignored ones: no dist/, no node_modules/), in `to`. */
function copyWorkingTree(to: string): void {
  const list = sh('git', ['ls-files', '-co', '--exclude-standard', '-z'], ROOT);
  expect(list.code, list.stderr).toBe(0);
  // node_modules is linked below (a symlinked one is not ignored by `node_modules/`).
  for (const file of list.stdout.split('\0').filter((f) => f && f.split('/')[0] !== 'node_modules')) if (existsSync(path.join(ROOT, file))) cpSync(path.join(ROOT, file), path.join(to, file));
  symlinkSync(path.join(ROOT, 'node_modules'), path.join(to, 'node_modules'));
}

interface Packed {
  filename: string;
  files: { path: string }[];
}

describe('npm pack', () => {
  it('installs into an empty directory and gives a working npx petrel: init, fmt, check, test, build, run', { timeout: 600_000 }, async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'petrel-pack-'));
    const src = path.join(dir, 'src');
    copyWorkingTree(src);
    const pack = sh('npm', ['pack', '--json', '--pack-destination', dir], src);
    expect(pack.code, pack.stderr).toBe(0);
    const [packed] = JSON.parse(pack.stdout.slice(pack.stdout.indexOf('['))) as Packed[];
    const files = packed!.files.map((f) => f.path);
    for (const f of ['LICENSE', 'README.md', 'package.json', 'bin/petrel.js', 'dist/petrel.mjs', 'dist/compile-worker.mjs', 'dist/delivery-worker.mjs', 'compiler/artifact-lib.ts', 'runtime/config.schema.json', 'stdlib/bounces.policy', 'policies/google.policy']) expect(files).toContain(f);
    expect(files.filter((f) => /^(test|cli|grammar|bench|scripts|docs|node_modules)\//.test(f) || (f.endsWith('.ts') && f !== 'compiler/artifact-lib.ts'))).toEqual([]);

    const repo = path.join(dir, 'repo');
    mkdirSync(repo);
    const install = sh('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', path.join(dir, packed!.filename)], repo);
    expect(install.code, install.stderr).toBe(0);
    // --no: never fetch a `petrel` from the registry; only the installed one may answer.
    const npx = (args: string[], cwd = repo) => sh('npx', ['--no', 'petrel', ...args], cwd);
    const ok = (args: string[], cwd = repo) => {
      const r = npx(args, cwd);
      expect(r.code, `npx petrel ${args.join(' ')} in ${cwd}: ${r.stdout}${r.stderr}`).toBe(0);
      return r;
    };

    ok(['init', '--providers', 'google,yahoo,microsoft']);
    expect(JSON.parse(readFileSync(path.join(repo, 'package.json'), 'utf8')).dependencies.petrel).toMatch(/^file:.*petrel-.*\.tgz$/);
    ok(['fmt', '--check', 'policies']);
    expect(ok(['check', '--format', 'github', 'policies']).stdout).toBe('');
    expect(ok(['test', '--format', 'github', 'policies']).stdout).toMatch(/^tests: \d+ passed, 0 failed\n$/);
    ok(['build', 'policies', '--out', 'build']);
    expect(existsSync(path.join(repo, 'build', 'manifest.json'))).toBe(true);
    // Any working directory: a subdirectory through npx, an unrelated one through the bin.
    expect(ok(['check', '.'], path.join(repo, 'policies')).stderr).toMatch(/no problems/);
    mkdirSync(path.join(dir, 'elsewhere'));
    const far = sh(process.execPath, [path.join(repo, 'node_modules', '.bin', 'petrel'), 'test', '--quiet', path.join(repo, 'policies')], path.join(dir, 'elsewhere'));
    expect(far.code, far.stderr).toBe(0);

    sink = await startSink();
    writeFileSync(path.join(repo, 'mx.json'), JSON.stringify({ '*': `127.0.0.1:${sink.port}` }));
    const petrel = await startPetrel(['--mx-override', 'mx.json', '--grace', '5'], { cwd: repo, bin: path.join(repo, 'node_modules', 'petrel', 'bin', 'petrel.js') });
    expect(petrel.log()).toMatch(/^petrel: policy policies \S+ \([0-9a-f]{12}\); SMTP on 127\.0\.0\.1:\d+, HTTP on 127\.0\.0\.1:\d+$/m);
    expect(await petrel.get('/api/v1/status')).toMatchObject({ policy: { name: 'policies' }, accepted: 0 });
    const transport = nodemailer.createTransport({ host: '127.0.0.1', port: petrel.smtp, secure: false, ignoreTLS: true });
    await transport.sendMail({ from: 'news@shop.example', to: 'someone@example.org', subject: 'packed', text: 'hello' });
    await until('the delivery', async () => (await petrel.get<{ delivered: number }>('/api/v1/status')).delivered === 1);
    expect(sink.received.map((m) => m.to)).toEqual([['someone@example.org']]);
    expect(await petrel.stop()).toBe(0);
    expect(existsSync(path.join(repo, 'var', 'spool'))).toBe(true);
  });
});
