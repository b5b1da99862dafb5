/**
 * Hot reload end to end, with the real binaries: a bare git repository with the hook that
 * `petrel hook install` writes, a `petrel run --policy-git` following it, and pushes from a
 * clone. A pushed change goes live within 2 s and the delivery rate follows it; a pushed
 * syntax error or failing test is refused and the old version keeps serving; rollback and
 * deploy (signed, with an API key) switch versions the same way; accounting names the
 * version that decided. The runtime has an API key and opts into keyless loopback calls
 * (`http.keylessLoopback`), as an operator who uploads with a key but pushes from the
 * same machine would.
 */
import { createPrivateKey } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import nodemailer from 'nodemailer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newSigningKeyPair, signUpload } from '../../runtime/policy/artifact-signature.ts';
import type { ArtifactTexts } from '../../runtime/policy/loader.ts';
import { compileFiles, runPetrel } from '../helpers.ts';
import { startSink, type Sink } from '../runtime/fixtures/sink.ts';
import { killAllPetrel, startPetrel, type PetrelProcess } from './petrel-process.ts';
import { git, policyRepo, ratePolicy } from './policy-repo.ts';
import { readAccounting, until } from '../runtime/fixtures/e2e.ts';

interface PolicyView {
  current: { hash: string; commit?: string; trigger: string; activatedAt: string; replacedAt?: string; author?: string; subject?: string };
  previous: { hash: string; commit?: string; trigger: string }[];
  refusals: { commit?: string; stage: string; report: string; problems: { code: string; file: string; line: number }[] }[];
}

let dir: string;
let sink: Sink;
let petrel: PetrelProcess;
let repo: ReturnType<typeof policyRepo>;
const API_KEY = 'reload-test-key-0123456789';
const signer = newSigningKeyPair();
const signed = (artifact: ArtifactTexts, tests: unknown[] = []) => ({ artifact, tests, signature: signUpload({ ...artifact, tests }, createPrivateKey(signer.privatePem)) });
/** When each message reached the sink, by recipient. */
const arrivals = new Map<string, number>();

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'petrel-reload-'));
  sink = await startSink({
    refuse: (rcpt) => {
      arrivals.set(rcpt, Date.now());
      return undefined;
    },
  });
  writeFileSync(path.join(dir, 'mx.json'), JSON.stringify({ '*': `127.0.0.1:${sink.port}` }));
  repo = policyRepo(dir, { 'example.policy': ratePolicy('100/s') });
  writeFileSync(path.join(dir, 'deploy.key'), signer.privatePem);
  writeFileSync(path.join(dir, 'deploy.pub'), signer.publicPem);
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ http: { apiKeys: [API_KEY], keylessLoopback: true }, deploy: { publicKeys: [path.join(dir, 'deploy.pub')] } }));
  petrel = await startPetrel(['--config', path.join(dir, 'config.json'), '--policy-git', repo.bare, '--ref', 'main', '--poll', '0', '--artifact', path.join(dir, 'artifact'), '--spool', path.join(dir, 'spool'), '--acct', path.join(dir, 'acct'), '--mx-override', path.join(dir, 'mx.json')]);
  const hook = runPetrel(['hook', 'install', repo.bare, '--notify', `http://127.0.0.1:${petrel.http}`]);
  expect(hook.code, hook.stderr).toBe(0);
}, 60_000);

afterAll(async () => {
  if (petrel) expect(await petrel.stop()).toBe(0);
  await killAllPetrel();
  await sink?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function send(prefix: string, count: number): Promise<string[]> {
  const transport = nodemailer.createTransport({ host: '127.0.0.1', port: petrel.smtp, secure: false, ignoreTLS: true, pool: true, maxConnections: 4 });
  const rcpts = Array.from({ length: count }, (_, n) => `${prefix}${n}@example.com`);
  await Promise.all(rcpts.map((to) => transport.sendMail({ from: 'news@shop.example', to, subject: to, text: 'x' })));
  transport.close();
  await until(`${count} ${prefix} deliveries`, () => (rcpts.every((r) => arrivals.has(r)) ? true : undefined), 30_000);
  return rcpts;
}

/** Milliseconds between deliveries after the first `skip` (the burst). */
function interval(rcpts: string[], skip: number): number {
  const times = rcpts.map((r) => arrivals.get(r)!).sort((a, b) => a - b);
  return (times.at(-1)! - times[skip]!) / (times.length - 1 - skip);
}

describe('petrel run --policy-git with the post-receive hook', () => {
  let v1: string;
  let v2: string;

  it('a pushed rate change is live within 2 s and the delivery rate follows it', async () => {
    const first = await petrel.get<PolicyView>('/api/v1/policy');
    v1 = first.current.hash;
    expect(first.current.trigger).toBe('startup');
    expect(first.current.commit).toBe(git(repo.work, 'rev-parse', 'HEAD').trim());

    // Under v1 (100/s) twenty messages go out in well under the 3 s they take at 5/s.
    const fast = await send('v1-', 20);
    const fastSpan = Math.max(...fast.map((r) => arrivals.get(r)!)) - Math.min(...fast.map((r) => arrivals.get(r)!));
    expect(fastSpan).toBeLessThan(1500);

    const pushed = repo.push({ 'example.policy': ratePolicy('5/s') }, 'example: slow down to 5/s');
    const live = await until('the new version', async () => {
      const view = await petrel.get<PolicyView>('/api/v1/policy');
      return view.current.hash !== v1 ? view : undefined;
    }, 2000);
    expect(Date.now() - pushed.pushedAt).toBeLessThan(2000);
    v2 = live.current.hash;
    expect(live.current).toMatchObject({ commit: pushed.commit, trigger: 'post-receive', subject: 'example: slow down to 5/s', author: 'Dee Liverability <dee@shop.example>' });
    expect(live.previous[0]).toMatchObject({ hash: v1, trigger: 'startup' });
    expect((await petrel.get<{ policy: { hash: string } }>('/api/v1/status')).policy.hash).toBe(v2);

    // Under v2: 5/s after the burst, within 10 %.
    const slow = await send('v2-', 20);
    const gap = interval(slow, 5);
    expect(gap).toBeGreaterThan(200 * 0.9);
    expect(gap).toBeLessThan(200 * 1.1);
  }, 60_000);

  it('a pushed syntax error is refused with its diagnostics; the old version keeps serving', async () => {
    const pushed = repo.push({ 'example.policy': ratePolicy('5/s').replace('rate 5/s', 'rate five per second') }, 'broken');
    const view = await until('the refusal', async () => {
      const v = await petrel.get<PolicyView>('/api/v1/policy');
      return v.refusals.some((r) => r.commit === pushed.commit) ? v : undefined;
    });
    expect(view.current.hash).toBe(v2);
    const refusal = view.refusals.find((r) => r.commit === pushed.commit)!;
    expect(refusal.stage).toBe('compile');
    expect(refusal.problems[0]).toMatchObject({ file: 'example.policy', line: 9 });
    expect(refusal.report).toMatch(/example\.policy:9/);
    expect(petrel.log()).toMatch(new RegExp(`policy refused \\(post-receive, commit ${pushed.commit.slice(0, 12)}`));
    expect((await petrel.get<{ policy: { hash: string } }>('/api/v1/status')).policy.hash).toBe(v2);
    const metrics = await (await fetch(`http://127.0.0.1:${petrel.http}/metrics`)).text();
    expect(metrics).toMatch(/^petrel_policy_refusals_total 1$/m);
    // Still delivering, under v2.
    await send('after-broken-', 3);
  }, 30_000);

  it('a pushed failing test is refused at the test stage', async () => {
    const pushed = repo.push({ 'example.policy': ratePolicy('5/s').replace('expect route provider:example', 'expect route default') }, 'wrong expectation');
    const view = await until('the refusal', async () => {
      const v = await petrel.get<PolicyView>('/api/v1/policy');
      return v.refusals.some((r) => r.commit === pushed.commit) ? v : undefined;
    });
    expect(view.current.hash).toBe(v2);
    expect(view.refusals[0]).toMatchObject({ commit: pushed.commit, stage: 'test' });
    expect(view.refusals[0]!.report).toMatch(/example\.policy:\d+: expect route default: expected default, got provider:example/);
    // Put the good version back at the head of main for what follows.
    repo.push({ 'example.policy': ratePolicy('5/s') }, 'fix the expectation');
    await until('the fixed head', async () => ((await petrel.get<PolicyView>('/api/v1/policy')).refusals.length === 2 ? true : undefined));
  }, 30_000);

  it('petrel rollback goes back to the version before, and --to forward again', async () => {
    const back = runPetrel(['rollback', '--url', `http://127.0.0.1:${petrel.http}`]);
    expect(back.code, back.stderr).toBe(0);
    expect(back.stdout).toContain(`live: ${v1}`);
    let view = await petrel.get<PolicyView>('/api/v1/policy');
    expect(view.current).toMatchObject({ hash: v1, trigger: 'rollback' });
    const again = runPetrel(['rollback', '--url', `http://127.0.0.1:${petrel.http}`, '--to', v2.slice(0, 10)]);
    expect(again.code, again.stderr).toBe(0);
    view = await petrel.get<PolicyView>('/api/v1/policy');
    expect(view.current).toMatchObject({ hash: v2, trigger: 'rollback' });
    const unknown = runPetrel(['rollback', '--url', `http://127.0.0.1:${petrel.http}`, '--to', 'abcdef123']);
    expect(unknown.code).toBe(3);
    expect(unknown.stderr).toMatch(/no kept version `abcdef123`/);
  }, 30_000);

  it('petrel deploy uploads a locally built, tested and signed version with an API key; a failing test uploads nothing', async () => {
    const local = path.join(dir, 'local');
    rmSync(local, { recursive: true, force: true });
    mkdirSync(local, { recursive: true });
    writeFileSync(path.join(local, 'example.policy'), ratePolicy('7/s', 'deployed by hand'));
    const before = (await petrel.get<PolicyView>('/api/v1/policy')).current.hash;
    const deploy = (...args: string[]) => runPetrel(['deploy', '--to', `http://127.0.0.1:${petrel.http}`, ...args]);
    // Without a key, and signed by no key: refused, nothing changes.
    const keyless = deploy(local, '--sign', path.join(dir, 'deploy.key'));
    expect(keyless.code).toBe(2);
    expect(keyless.stderr).toMatch(/answered 401: artifact upload needs an API key/);
    const unsigned = deploy(local, '--api-key', API_KEY);
    expect(unsigned.code).toBe(2);
    expect(unsigned.stderr).toMatch(/`--sign KEYFILE` is required/);
    expect((await petrel.get<PolicyView>('/api/v1/policy')).current.hash).toBe(before);

    const ok = deploy(local, '--api-key', API_KEY, '--sign', path.join(dir, 'deploy.key'), '--message', 'hotfix');
    expect(ok.code, ok.stderr).toBe(0);
    const view = await petrel.get<PolicyView>('/api/v1/policy');
    expect(view.current).toMatchObject({ trigger: 'deploy', subject: 'hotfix' });
    expect(ok.stdout).toContain(`live: ${view.current.hash}`);
    writeFileSync(path.join(local, 'example.policy'), ratePolicy('7/s').replace('expect route provider:example', 'expect route default'));
    const bad = deploy(local, '--api-key', API_KEY, '--sign', path.join(dir, 'deploy.key'));
    expect(bad.code).toBe(3);
    expect(bad.stderr).toMatch(/nothing uploaded/);
    expect((await petrel.get<PolicyView>('/api/v1/policy')).current.hash).toBe(view.current.hash);

    // A signed artifact of another ABI is refused at load, and says why.
    const upload = (body: unknown) => fetch(`http://127.0.0.1:${petrel.http}/api/v1/policy/artifact`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${API_KEY}` }, body: JSON.stringify(body) });
    const built = await compileFiles({ 'example.policy': ratePolicy('9/s') });
    const other = { ...built.artifact!, manifest: { ...built.artifact!.manifest, abi: 99 } };
    const res = await upload(signed(other));
    expect(res.status).toBe(422);
    const answer = (await res.json()) as { refusal: { stage: string; report: string }; hash: string };
    expect(answer.refusal.stage).toBe('abi');
    expect(answer.refusal.report).toMatch(/artifact ABI 99, this runtime speaks ABI 1/);
    expect(answer.hash).toBe(view.current.hash);

    // A module name that would write outside the version store is refused before anything is written, signed or not.
    const sneaky = { ...built.artifact!, moduleFile: '../../sneaky.mjs', manifest: { ...built.artifact!.manifest, module: '../../sneaky.mjs' } };
    const res2 = await upload(signed(sneaky));
    expect(res2.status).toBe(400);
    expect(((await res2.json()) as { error: string }).error).toMatch(/`artifact.moduleFile` must match pattern/);
    expect(existsSync(path.join(dir, 'sneaky.mjs'))).toBe(false);
    expect((await petrel.get<PolicyView>('/api/v1/policy')).current.hash).toBe(view.current.hash);
  }, 30_000);

  it('petrel build --sign writes a signed artifact that petrel deploy --artifact uploads as it is', async () => {
    const local = path.join(dir, 'local-build');
    mkdirSync(local, { recursive: true });
    writeFileSync(path.join(local, 'example.policy'), ratePolicy('8/s', 'built and signed in CI'));
    const out = path.join(dir, 'signed-artifact');
    const build = runPetrel(['build', local, '--out', out, '--sign', path.join(dir, 'deploy.key')]);
    expect(build.code, build.stderr).toBe(0);
    expect(existsSync(path.join(out, 'signature.json'))).toBe(true);
    const up = runPetrel(['deploy', '--artifact', out, '--to', `http://127.0.0.1:${petrel.http}`, '--api-key', API_KEY, '--message', 'from CI']);
    expect(up.code, up.stderr).toBe(0);
    const view = await petrel.get<PolicyView>('/api/v1/policy');
    expect(view.current).toMatchObject({ trigger: 'deploy', subject: 'from CI', hash: JSON.parse(readFileSync(path.join(out, 'manifest.json'), 'utf8')).hash });
  }, 30_000);

  it('queued messages whose route changed move to their new queue', async () => {
    const http = `http://127.0.0.1:${petrel.http}`;
    // Held in the long tail's queue for moved.example by a pause…
    const paused = await fetch(`${http}/api/v1/pause`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ queue: 'default/moved.example' }) });
    expect(paused.status).toBe(200);
    const transport = nodemailer.createTransport({ host: '127.0.0.1', port: petrel.smtp, secure: false, ignoreTLS: true });
    for (let n = 0; n < 3; n++) await transport.sendMail({ from: 'news@shop.example', to: `moved${n}@moved.example`, subject: 'x', text: 'x' });
    await until('three waiting in default/moved.example', async () => {
      const q = (await petrel.get<{ queues: { queue: string; queued: number }[] }>('/api/v1/status')).queues.find((x) => x.queue === 'default/moved.example');
      return q?.queued === 3 ? true : undefined;
    });
    // …until a push routes the domain to the example provider, whose queue is not paused.
    repo.push({ 'example.policy': ratePolicy('50/s').replace('match domain example.com', 'match domain example.com, moved.example') }, 'example: also moved.example');
    await until('the three delivered', () => (['moved0@moved.example', 'moved1@moved.example', 'moved2@moved.example'].every((r) => arrivals.has(r)) ? true : undefined));
    const status = await petrel.get<{ queues: { queue: string; queued: number }[] }>('/api/v1/status');
    expect(status.queues.find((x) => x.queue === 'default/moved.example')?.queued ?? 0).toBe(0);
  }, 30_000);

  it('every accounting record names the version that decided it', async () => {
    // Accounting is flushed every 200 ms.
    await new Promise((r) => setTimeout(r, 500));
    const acct = readdirSync(path.join(dir, 'acct'))
      .map((f) => readFileSync(path.join(dir, 'acct', f), 'utf8'))
      .join('');
    // Read by column name, as CSV tools do (more columns may follow policyVersion).
    const rows = readAccounting(path.join(dir, 'acct'));
    const versionOf = (prefix: string) => new Set(rows.filter((r) => r.type === 'd' && new RegExp(`^${prefix}\\d+@example\\.com$`).test(r.rcpt)).map((r) => r.policyVersion));
    expect([...versionOf('v1-')]).toEqual([v1]);
    expect([...versionOf('v2-')]).toEqual([v2]);
    expect([...versionOf('after-broken-')]).toEqual([v2]);
    // The moved messages went out in the provider's queue.
    expect(acct).toMatch(/^d,.*,moved0@moved\.example,.*,provider:example\/default,/m);
  });
});
