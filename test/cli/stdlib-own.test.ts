/**
 * A stdlib the user owns, through the real binary: `cp -r policies stdlib ~/acme-policies`
 * checks, tests and builds from the copy (no packaged stdlib file is loaded), `--verbose`
 * says which file each `use stdlib/…` loaded, a real duplicate is one RES002 naming both
 * files, and `petrel run --policy-git` on a repository holding policies/ + stdlib/ starts
 * and delivers a message to a loopback MX.
 */
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import nodemailer from 'nodemailer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, runPetrel } from '../helpers.ts';
import { until } from '../runtime/fixtures/e2e.ts';
import { startSink, type Sink } from '../runtime/fixtures/sink.ts';
import { killAllPetrel, startPetrel } from './petrel-process.ts';
import { git } from './policy-repo.ts';

let dir: string;
/** The user's copy: `policies/` and `stdlib/` copied from the repository. */
let acme: string;
let fileCount: number;

beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'petrel-stdlib-own-'));
  acme = path.join(dir, 'acme-policies');
  for (const sub of ['policies', 'stdlib']) cpSync(path.join(ROOT, sub), path.join(acme, sub), { recursive: true });
  fileCount = ['policies', 'stdlib'].reduce((n, sub) => n + readdirSync(path.join(acme, sub)).filter((f) => f.endsWith('.policy')).length, 0);
});

afterAll(async () => {
  await killAllPetrel();
  rmSync(dir, { recursive: true, force: true });
});

describe('a copied policies/ + stdlib/ layout', () => {
  it('checks clean, its tests pass, and it builds from its own files only', () => {
    const checked = runPetrel(['check', 'policies', 'stdlib'], { cwd: acme });
    expect(checked.stderr).toBe(`checked ${fileCount} files: no problems\n`);
    expect(checked.code).toBe(0);

    const tested = runPetrel(['test', 'policies', 'stdlib'], { cwd: acme });
    expect(tested.code, tested.stdout + tested.stderr).toBe(0);
    expect(tested.stdout).toMatch(/^tests: \d+ passed, 0 failed$/m);

    const built = runPetrel(['build', 'policies', 'stdlib', '--out', 'out'], { cwd: acme });
    expect(built.code, built.stderr).toBe(0);
    expect(built.stderr).toContain(`from ${fileCount} files →`);
    const manifest = JSON.parse(readFileSync(path.join(acme, 'out', 'manifest.json'), 'utf8')) as { sources: { path: string }[] };
    const sources = manifest.sources.map((s) => s.path);
    expect(sources).toContain('stdlib/retry.policy');
    expect(sources.filter((p) => p.startsWith('petrel:'))).toEqual([]);
  });

  it('--verbose says which file each use stdlib/… loaded, in human and JSON output', () => {
    const human = runPetrel(['check', '--verbose', 'policies/apple.policy', 'stdlib'], { cwd: acme });
    expect(human.code).toBe(0);
    expect(human.stderr).toBe(
      "policies/apple.policy:3:1: use stdlib/retry → stdlib/retry.policy (the set's own copy)\n" +
        "policies/apple.policy:4:1: use stdlib/bounces → stdlib/bounces.policy (the set's own copy)\n" +
        'checked 4 files: no problems\n',
    );

    // Without stdlib/ on the command line, the packaged files are loaded.
    const json = runPetrel(['check', '-v', '--format', 'json', 'policies/apple.policy'], { cwd: acme });
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout)).toEqual({
      diagnostics: [],
      stdlib: [
        { file: 'policies/apple.policy', line: 3, column: 1, use: 'stdlib/retry', resolved: 'petrel:stdlib/retry.policy', from: 'packaged' },
        { file: 'policies/apple.policy', line: 4, column: 1, use: 'stdlib/bounces', resolved: 'petrel:stdlib/bounces.policy', from: 'packaged' },
      ],
    });
  });

  it('a curve defined in the user file and in the stdlib copy is one RES002 naming both', () => {
    writeFileSync(path.join(dir, 'mine.policy'), 'policy mine version 1\nuse stdlib/retry\n\nretry standard {\n  after 1m\n  expire 1d\n}\n');
    const r = runPetrel(['check', '--format', 'json', 'acme-policies/stdlib/retry.policy', 'mine.policy'], { cwd: dir });
    expect(r.code).toBe(3);
    const found = JSON.parse(r.stdout) as { code: string; file: string; line: number; column: number; message: string; labels: { file: string; line: number; column: number }[] }[];
    expect(found.map((d) => `${d.code} ${d.file}:${d.line}:${d.column}`)).toEqual(['RES002 mine.policy:4:7']);
    expect(found[0]!.labels.map((l) => `${l.file}:${l.line}:${l.column}`)).toEqual(['acme-policies/stdlib/retry.policy:15:7']);
    expect(found[0]!.message).toContain('`acme-policies/stdlib/retry.policy:15` and `mine.policy:4`');
  });
});

describe('petrel run --policy-git on a repository holding policies/ + stdlib/', () => {
  let sink: Sink;

  beforeAll(async () => {
    sink = await startSink();
  });

  afterAll(async () => {
    await sink?.close();
  });

  it('starts from the repository and delivers a message to the MX', async () => {
    const repo = path.join(dir, 'repo');
    for (const sub of ['policies', 'stdlib']) cpSync(path.join(acme, sub), path.join(repo, sub), { recursive: true });
    git(dir, 'init', '--quiet', '--initial-branch=main', repo);
    git(repo, 'add', 'policies', 'stdlib');
    git(repo, 'commit', '--quiet', '-m', 'policies with our own stdlib');
    writeFileSync(path.join(dir, 'mx.json'), JSON.stringify({ '*': `127.0.0.1:${sink.port}` }));

    const petrel = await startPetrel(['--policy-git', repo, '--poll', '0', '--artifact', path.join(dir, 'artifact'), '--spool', path.join(dir, 'spool'), '--acct', path.join(dir, 'acct'), '--mx-override', path.join(dir, 'mx.json')]);
    let stopped: number | null = null;
    try {
      const policy = await petrel.get<{ current: { hash: string; commit?: string } }>('/api/v1/policy');
      expect(policy.current.commit).toBe(git(repo, 'rev-parse', 'HEAD').trim());
      // Built from the commit's own stdlib/, not the packaged one.
      const manifest = JSON.parse(readFileSync(path.join(dir, 'artifact', 'versions', policy.current.hash, 'manifest.json'), 'utf8')) as { sources: { path: string }[] };
      const sources = manifest.sources.map((s) => s.path);
      expect(sources).toContain('stdlib/retry.policy');
      expect(sources.filter((p) => p.startsWith('petrel:'))).toEqual([]);
      const transport = nodemailer.createTransport({ host: '127.0.0.1', port: petrel.smtp, secure: false, ignoreTLS: true });
      await transport.sendMail({ from: 'news@acme.example', to: 'someone@example.com', subject: 'own stdlib', text: 'x' });
      transport.close();
      const got = await until('the message at the MX', () => sink.received.find((m) => m.to.includes('someone@example.com')), 30_000);
      expect(got.raw).toContain('Subject: own stdlib');
    } finally {
      // Stopped whatever happened, without hiding why the test failed.
      stopped = await petrel.stop();
    }
    expect(stopped, petrel.log()).toBe(0);
  }, 90_000);
});
