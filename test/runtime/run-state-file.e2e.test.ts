/**
 * Issue 11 end to end. A suspension no date can hold (`suspend source
 * 99999999999999999999d`, from an artifact built elsewhere) once made `GET /api/v1/status`
 * throw and the process exit, and its saved state made every restart do the same. Now the
 * runtime holds a pause to a year, and a state file it cannot use is set aside with a
 * warning; status is served either way. And a receiving MX's multi-line reply with a
 * fake accounting line inside stays one accounting line.
 */
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import nodemailer from 'nodemailer';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { PolicyArtifact } from '../../runtime/abi.ts';
import { ACCOUNTING_FIELDS } from '../../runtime/observe/accounting.ts';
import { loadArtifact } from '../../runtime/policy/loader.ts';
import { MAX_AHEAD_MS } from '../../runtime/decide/policy-state.ts';
import type { Runtime, RuntimeOptions, RuntimeStatus } from '../../runtime/runtime.ts';
import { compileFiles, writeArtifact } from '../helpers.ts';
import { e2eCase, parseCsv, readAccounting, until } from './fixtures/e2e.ts';

const POLICY = `policy state version 1

default {
  on reply 4xx /\\[TSS04\\]/ {
    classify policy-related
    suspend source 2h
    example "421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred"
  }
}
`;

/** What issue 11's policy asked for: 99999999999999999999 days, in seconds. */
const ABSURD_SECONDS = 99999999999999999999 * 86_400;
const DAY_MS = 86_400_000;

const t = e2eCase('state-file');
const spoolDir = () => path.join(t.dir, 'spool');
const stateFile = () => path.join(spoolDir(), 'runtime-state.json');

/** Warnings the process emitted during the test. */
let warnings: string[] = [];
const onWarning = (w: Error) => warnings.push(w.message);
beforeEach(() => {
  warnings = [];
  process.on('warning', onWarning);
});
afterEach(() => {
  process.off('warning', onWarning);
});

/** `GET /api/v1/status` over HTTP, as an operator's dashboard reads it. */
async function fetchStatus(r: Runtime): Promise<RuntimeStatus> {
  const res = await fetch(`http://127.0.0.1:${r.httpPort}/api/v1/status`);
  expect(res.status).toBe(200);
  return (await res.json()) as RuntimeStatus;
}

/** The policy's artifact as another build might have made it (its suspensions last `seconds`), to start in its place. */
async function artifactSuspendingFor(seconds: number): Promise<Pick<RuntimeOptions, 'artifact' | 'manifest'>> {
  const { artifact, manifest } = await loadArtifact(await writeArtifact(t.dir, await compileFiles({ 'p.policy': POLICY })));
  const react: PolicyArtifact['react'] = (route, reply, phase) => {
    const r = artifact.react(route, reply, phase);
    return { ...r, actions: r.actions.map((a) => (a.type === 'suspend' ? { ...a, durationSeconds: seconds } : a)) };
  };
  return { artifact: { ...artifact, react }, manifest };
}

describe('petrel run: a suspension longer than any date', () => {
  it('is held to a year; status is served, and again after a restart from the saved state', async () => {
    const sink = await t.sink({ refuse: () => ({ code: 421, text: '4.7.0 [TSS04] Messages from 127.0.0.1 temporarily deferred' }) });
    const built = await artifactSuspendingFor(ABSURD_SECONDS);
    const options = { ...built, mxOverride: { '*': `127.0.0.1:${sink.port}` } };
    const r = await t.start(POLICY, options);
    const transport = nodemailer.createTransport({ host: '127.0.0.1', port: r.smtpPort, secure: false, ignoreTLS: true });
    const sent = Date.now();
    await transport.sendMail({ from: 'news@shop.example', to: 'someone@example.org', subject: 'hi', text: 'x' });
    await until('the suspension', () => r.status().suspensions.length === 1);
    const status = await fetchStatus(r);
    const until1 = Date.parse(status.suspensions[0]!.until);
    expect(until1).toBeGreaterThanOrEqual(sent + MAX_AHEAD_MS);
    expect(until1).toBeLessThanOrEqual(Date.now() + MAX_AHEAD_MS);
    await r.stop(2000);
    t.runtime = undefined;
    const saved = JSON.parse(readFileSync(stateFile(), 'utf8')) as { policy: { suspensions: [string, { until: number }][] } };
    expect(saved.policy.suspensions[0]![1].until).toBe(until1);

    const again = await t.start(POLICY, options);
    expect((await fetchStatus(again)).suspensions.map((s) => s.until)).toEqual([status.suspensions[0]!.until]);
    expect(warnings.filter((w) => w.includes('runtime-state'))).toEqual([]);
  });
});

/** A state file as the runtime writes it, holding one source suspension. */
const stateWith = (suspension: Record<string, unknown>) => ({
  version: 1,
  policy: { triggerHits: [], backoffs: [], suspensions: [['source|default|default', { target: 'source', since: Date.now(), until: Date.now() + 3_600_000, rule: null, reason: '421 [TSS04]', ...suspension }]], disabled: [] },
  paused: [],
  warmup: [],
});

const BAD_FILES: [string, string][] = [
  ['an `until` no date can hold', JSON.stringify(stateWith({ until: Date.now() + ABSURD_SECONDS * 1000 }))],
  ['an `until` past JSON numbers (1e400 reads as Infinity)', JSON.stringify(stateWith({})).replace(/"until":\d+/, '"until":1e400')],
  ['garbage', '\u0000\u0001{"version":1,"policy":'],
  ['a JSON value that is not an object', '[1,2,3]'],
  ['wrong types', JSON.stringify({ ...stateWith({}), paused: 'queue:x', warmup: [['k', 'many']] })],
  ['a suspension of the wrong shape', JSON.stringify(stateWith({ target: 'planet', rule: 'p.policy:3' }))],
  ['another version', JSON.stringify({ ...stateWith({}), version: 2 })],
];

describe('petrel run: a state file it cannot use', () => {
  it.each(BAD_FILES)('with %s: starts, serves status, and sets the file aside with a warning naming it', async (_what, text) => {
    mkdirSync(spoolDir(), { recursive: true });
    writeFileSync(stateFile(), text);
    const r = await t.start(POLICY, {});
    const status = await fetchStatus(r);
    expect(status.suspensions).toEqual([]);
    const aside = readdirSync(spoolDir()).filter((f) => f.startsWith('runtime-state.json.bad-'));
    expect(aside).toHaveLength(1);
    expect(readFileSync(path.join(spoolDir(), aside[0]!), 'utf8')).toBe(text);
    expect(readdirSync(spoolDir())).not.toContain('runtime-state.json');
    const warning = warnings.find((w) => w.includes('runtime-state.json'));
    expect(warning).toContain(`set aside ${stateFile()} as ${path.join(spoolDir(), aside[0]!)}`);
    expect(warning).not.toMatch(/[\x00-\x1f]/);
  });

  it('keeps a good file, holding a suspension it restores to a year from now at most', async () => {
    mkdirSync(spoolDir(), { recursive: true });
    const tenYears = Date.now() + 3650 * DAY_MS;
    writeFileSync(stateFile(), JSON.stringify(stateWith({ until: tenYears })));
    const r = await t.start(POLICY, {});
    const [suspension, ...others] = (await fetchStatus(r)).suspensions;
    expect(others).toEqual([]);
    expect(Date.parse(suspension!.until)).toBeLessThanOrEqual(Date.now() + MAX_AHEAD_MS);
    expect(Date.parse(suspension!.until)).toBeGreaterThan(Date.now() + MAX_AHEAD_MS - 60_000);
    expect(readdirSync(spoolDir()).filter((f) => f.includes('.bad-'))).toEqual([]);
    expect(warnings.filter((w) => w.includes('runtime-state'))).toEqual([]);
  });
});

describe('petrel run: accounting of a hostile reply', () => {
  it('writes a multi-line RCPT reply with a fake `d,…` line inside as one accounting line', async () => {
    const fake = `d,2026-11-29 23:59:58+0000,2026-11-29 23:50:00+0000,ceo@shop.example,victim@example.org,relayed,2.0.0,smtp;250 ok`;
    const sink = await t.sink({ refuse: (rcpt) => (rcpt === 'someone@example.org' ? { code: 550, text: ['5.1.1 No such user here', fake, '5.1.1 Goodbye'] } : undefined) });
    const r = await t.start(POLICY, { mxOverride: { '*': `127.0.0.1:${sink.port}` } });
    const transport = nodemailer.createTransport({ host: '127.0.0.1', port: r.smtpPort, secure: false, ignoreTLS: true });
    await transport.sendMail({ from: 'news@shop.example', to: 'someone@example.org', subject: 'hi', text: 'x' });
    // The bounce, and its DSN to the sender delivered to the same sink.
    await until('the bounce and its DSN', () => r.status().bounced === 1 && r.status().delivered === 1);
    await r.stop(2000);
    t.runtime = undefined;

    const acctDir = path.join(t.dir, 'acct');
    const [file, ...more] = readdirSync(acctDir);
    expect(more).toEqual([]);
    const text = readFileSync(path.join(acctDir, file!), 'utf8');
    const lines = text.split('\n').slice(0, -1);
    // The header, the message's `r` (received) and `b` (bounced), its DSN's `r` and `d`: nothing else.
    expect(lines[0]!.split(',')[0]).toBe('type');
    expect(lines.slice(1).map((l) => l.split(',')[0]).sort()).toEqual(['b', 'd', 'r', 'r']);
    expect(parseCsv(text).map((row) => row.length)).toEqual(Array(5).fill(ACCOUNTING_FIELDS.length));
    // The DSN's delivery-status part holds the whole reply on one Diagnostic-Code line.
    const dsn = sink.received.find((m) => m.to.includes('news@shop.example'))!;
    expect(dsn.raw).toMatch(/^Diagnostic-Code: smtp; 550-5\.1\.1 No such user here 550-d,2026-11-29 [^\r\n]*Goodbye\r$/m);
    const bounce = readAccounting(acctDir).find((row) => row.type === 'b')!;
    expect(bounce.dsnDiag).toContain(`\\n550-${fake}`);
    expect(bounce.dsnDiag).not.toMatch(/[\r\n]/);
  });
});
