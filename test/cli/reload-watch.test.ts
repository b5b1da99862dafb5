/**
 * Hot reload without the hook: `petrel run --policies DIR` rebuilds when a file under DIR
 * changes, and `--policy-git` with `--poll` picks up a pushed commit by itself; a change
 * that breaks the build is refused and the old version stays.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { killAllPetrel, startPetrel, type PetrelProcess } from './petrel-process.ts';
import { policyRepo, ratePolicy } from './policy-repo.ts';
import { until } from '../runtime/fixtures/e2e.ts';

let dir: string | undefined;
let petrel: PetrelProcess | undefined;
afterAll(async () => {
  if (petrel) expect(await petrel.stop()).toBe(0);
  await killAllPetrel();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

interface PolicyView {
  current: { hash: string; trigger: string; commit?: string };
  refusals: { stage: string; report: string; trigger: string }[];
}

describe('petrel run --policies DIR (watched)', () => {
  it('rebuilds on a change, and refuses a broken one', async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'petrel-watch-'));
    const policies = path.join(dir, 'policies', 'providers');
    mkdirSync(policies, { recursive: true });
    const file = path.join(policies, 'example.policy');
    writeFileSync(file, ratePolicy('10/s'));
    petrel = await startPetrel(['--policies', path.join(dir, 'policies'), '--artifact', path.join(dir, 'artifact'), '--spool', path.join(dir, 'spool'), '--acct', path.join(dir, 'acct')]);
    const p = petrel;
    const first = await p.get<PolicyView>('/api/v1/policy');

    // A change in a subdirectory: rebuilt after the debounce, live.
    writeFileSync(file, ratePolicy('20/s'));
    const changed = await until('the rebuilt version', async () => {
      const v = await p.get<PolicyView>('/api/v1/policy');
      return v.current.hash !== first.current.hash ? v : undefined;
    });
    expect(changed.current.trigger).toBe('watch');

    // A syntax error: refused, the version before keeps running.
    writeFileSync(file, ratePolicy('20/s').replace('provider example {', 'provider example'));
    const refused = await until('the refusal', async () => {
      const v = await p.get<PolicyView>('/api/v1/policy');
      return v.refusals.length > 0 ? v : undefined;
    });
    expect(refused.current.hash).toBe(changed.current.hash);
    expect(refused.refusals[0]).toMatchObject({ trigger: 'watch', stage: 'compile' });
    expect(refused.refusals[0]!.report).toMatch(/example\.policy:\d+/);
    expect((await p.get<{ policy: { hash: string } }>('/api/v1/status')).policy.hash).toBe(changed.current.hash);
  }, 60_000);

  it('--policy-git --poll 1: a pushed commit goes live without any hook', async () => {
    const repoDir = mkdtempSync(path.join(tmpdir(), 'petrel-poll-'));
    try {
      const repo = policyRepo(repoDir, { 'example.policy': ratePolicy('10/s') });
      const p = await startPetrel(['--policy-git', repo.bare, '--poll', '1', '--artifact', path.join(repoDir, 'artifact'), '--spool', path.join(repoDir, 'spool'), '--acct', path.join(repoDir, 'acct')]);
      const pushed = repo.push({ 'example.policy': ratePolicy('20/s') }, 'faster');
      const live = await until('the polled commit', async () => {
        const v = await p.get<PolicyView>('/api/v1/policy');
        return v.current.commit === pushed.commit ? v : undefined;
      });
      expect(live.current.trigger).toBe('poll');
      expect(await p.stop()).toBe(0);
    } finally {
      rmSync(repoDir, { recursive: true, force: true });
    }
  }, 60_000);
});
