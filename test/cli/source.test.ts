/**
 * `petrel source enable|disable` with the real binaries: a `petrel run` process (API key
 * configured, keyless loopback on) delivers to a local sink under a policy whose `IP
 * banned` reply disables the source; the real `petrel source enable` brings it back while
 * Petrel runs and the held mail is delivered; disable on one route, refusals, a wrong key
 * and an unreachable runtime each end with their exit code and a clear line.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import nodemailer from 'nodemailer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runPetrel } from '../helpers.ts';
import { BANNING_PROVIDER, until } from '../runtime/fixtures/e2e.ts';
import { startSink, type Sink } from '../runtime/fixtures/sink.ts';
import { killAllPetrel, startPetrel, type PetrelProcess } from './petrel-process.ts';

const KEY = 'source-test-key-0123456789';
const POLICY = `policy banning version 1

${BANNING_PROVIDER}`;

interface Status {
  disabled: { queue: string; source: string; reason: string; rule: string | null }[];
  queued: number;
}

let dir: string;
let sink: Sink;
let petrel: PetrelProcess;
let banned = 0;
const url = () => `http://127.0.0.1:${petrel.http}`;
const keyFile = () => path.join(dir, 'key.txt');
const source = (...args: string[]) => runPetrel(['source', ...args]);

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'petrel-source-'));
  sink = await startSink({ refuse: () => (banned++ === 0 ? { code: 550, text: '5.7.1 IP banned' } : undefined) });
  mkdirSync(path.join(dir, 'policies'));
  writeFileSync(path.join(dir, 'policies', 'banning.policy'), POLICY);
  writeFileSync(path.join(dir, 'mx.json'), JSON.stringify({ '*': `127.0.0.1:${sink.port}` }));
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ http: { apiKeys: [KEY], keylessLoopback: true } }));
  writeFileSync(keyFile(), `# the operator's key\n${KEY}\n`);
  writeFileSync(path.join(dir, 'wrong.txt'), 'not-the-key-0123456789\n');
  petrel = await startPetrel(['--config', path.join(dir, 'config.json'), '--policies', path.join(dir, 'policies'), '--no-watch', '--spool', path.join(dir, 'spool'), '--acct', path.join(dir, 'acct'), '--artifact', path.join(dir, 'artifact'), '--mx-override', path.join(dir, 'mx.json')]);
}, 60_000);

afterAll(async () => {
  if (petrel) expect(await petrel.stop()).toBe(0);
  await killAllPetrel();
  await sink?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('petrel source', () => {
  it('says how to use it', () => {
    const help = source('--help');
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^usage: petrel source enable\|disable <name>/);
    expect(runPetrel(['--help']).stdout).toMatch(/^ {2}source {8}disable a source of a running petrel/m);
    expect(source()).toMatchObject({ code: 2, stderr: expect.stringContaining('say `petrel source enable NAME` or `petrel source disable NAME`') });
    expect(source('pause', 'ip1')).toMatchObject({ code: 2, stderr: expect.stringContaining('unknown source command `pause`; `enable` or `disable`') });
    expect(source('enable')).toMatchObject({ code: 2, stderr: expect.stringContaining('name the source to enable') });
    expect(source('enable', 'ip1', '--colour', 'red')).toMatchObject({ code: 2, stderr: expect.stringContaining('unknown option `--colour`') });
  }, 120_000);

  it('re-enables a source a rule disabled while petrel runs, and the held mail is delivered', async () => {
    const transport = nodemailer.createTransport({ host: '127.0.0.1', port: petrel.smtp, secure: false, ignoreTLS: true });
    await transport.sendMail({ from: 'ops@sender.test', to: 'held@banning.test', subject: 'held', text: 'x' });
    transport.close();
    const held = await until('the source disabled and the mail held', async () => {
      const s = await petrel.get<Status>('/api/v1/status');
      return s.disabled.length === 1 && s.queued === 1 ? s : undefined;
    });
    expect(held.disabled[0]).toMatchObject({ queue: 'provider:banning', source: 'default', reason: expect.stringContaining('IP banned'), rule: expect.stringMatching(new RegExp(`banning\\.policy:${POLICY.split('\n').findIndex((l) => l.includes('on reply')) + 1}$`)) });

    // A wrong key is refused and changes nothing.
    const refused = source('enable', 'default', '--to', url(), '--api-key-file', path.join(dir, 'wrong.txt'));
    expect(refused).toMatchObject({ code: 2, stderr: 'the runtime answered 401: missing or unknown API key\n' });
    expect((await petrel.get<Status>('/api/v1/status')).disabled).toHaveLength(1);

    const enabled = source('enable', 'default', '--to', url(), '--api-key-file', keyFile());
    expect(enabled).toMatchObject({ code: 0, stdout: 'enabled default on provider:banning (recovery ramp); disabled now on nowhere\n' });
    await until('the held mail delivered', () => sink.received.length === 1, 15_000);
    expect(sink.received[0]!.to).toEqual(['held@banning.test']);
    expect(banned).toBe(2);
    expect(petrel.log()).toContain('petrel: source default enabled by an operator on provider:banning (recovery ramp); disabled now on nowhere');
    expect((await petrel.get<Status>('/api/v1/status')).disabled).toEqual([]);
  }, 60_000);

  it('disables a source on one route, and refuses what it cannot do with exit 3', async () => {
    const disabled = source('disable', 'default', '--route', 'provider:banning', '--to', url(), '--api-key-file', keyFile());
    expect(disabled).toMatchObject({ code: 0, stdout: 'disabled default on provider:banning; disabled now on provider:banning\n' });
    expect((await petrel.get<Status>('/api/v1/status')).disabled).toEqual([expect.objectContaining({ queue: 'provider:banning', source: 'default', reason: 'disabled by an operator', rule: null })]);
    expect(source('disable', 'default', '--route', 'provider:banning', '--to', url())).toMatchObject({ code: 0, stdout: 'default was already disabled there; disabled now on provider:banning\n' });
    expect(source('disable', 'ip9', '--to', url())).toMatchObject({ code: 3, stderr: 'the runtime answered 404: no source `ip9` in the policy (its sources: default)\n' });
    expect(source('enable', 'default', '--route', 'default/other.test', '--to', url())).toMatchObject({ code: 3, stderr: 'the runtime answered 404: source `default` is not disabled on `default/other.test` (it is on provider:banning)\n' });
    expect(source('enable', 'default', '--to', url())).toMatchObject({ code: 0, stdout: 'enabled default on provider:banning (recovery ramp); disabled now on nowhere\n' });
    expect(source('enable', 'default', '--to', 'http://127.0.0.1:1')).toMatchObject({ code: 1, stderr: expect.stringMatching(/^cannot reach http:\/\/127\.0\.0\.1:1/) });
    // Each run of the binary takes seconds on a loaded machine: seven of them here.
  }, 120_000);
});
