/**
 * DKIM end to end through the real `petrel run`: messages submitted over SMTP reach a
 * loopback smtp-server sink signed — the From domain's RSA-2048 and Ed25519 keys, the
 * fallback domain's for a From domain without keys, a tenant's own key — and both
 * verifiers (mailauth, and dkimpy independent of it) accept every signature against the
 * TXT records this test publishes. Keys reload on the API and on SIGHUP; a bad reload
 * keeps the keys in use; no private key shows in the status, the log, the artifact
 * directory, the accounting or the spool.
 */
import { lstatSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import nodemailer from 'nodemailer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { killAllPetrel, startPetrel, type PetrelProcess } from '../cli/petrel-process.ts';
import { until } from './fixtures/e2e.ts';
import { makeKey, signatureTags, signedNames, verifyWithDkimpy, verifyWithMailauth, zoneOf, type TestKey } from './fixtures/dkim.ts';
import { startSink, type Sink } from './fixtures/sink.ts';

let dir: string;
let sink: Sink;
let petrel: PetrelProcess;
let keys: Record<'rsa' | 'ed' | 'fallback' | 'tenant' | 'news', TestKey>;
let configFile: string;
let base: Record<string, unknown>;

const dkimKey = (k: TestKey, tenant?: string) => ({ domain: k.domain, selector: k.selector, keyFile: k.file, ...(tenant ? { tenant } : {}) });
const writeConfig = (dkim: unknown) => writeFileSync(configFile, JSON.stringify({ ...base, dkim }));

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'petrel-dkim-e2e-'));
  keys = {
    rsa: makeKey(dir, 'example.com', 'rsa2026', 'rsa'),
    ed: makeKey(dir, 'example.com', 'ed2026', 'ed25519'),
    fallback: makeKey(dir, 'esp.example', 'esp1', 'rsa'),
    tenant: makeKey(dir, 'example.com', 'acme1', 'ed25519'),
    news: makeKey(dir, 'news.example.com', 'n1', 'ed25519'),
  };
  sink = await startSink();
  configFile = path.join(dir, 'petrel.config.json');
  base = { spool: path.join(dir, 'spool'), acct: path.join(dir, 'acct'), artifact: path.join(dir, 'artifact'), graceSeconds: 5, mxOverride: { '*': `127.0.0.1:${sink.port}` } };
  writeConfig({ fallbackDomain: 'esp.example', keys: [dkimKey(keys.rsa), dkimKey(keys.ed), dkimKey(keys.fallback), dkimKey(keys.tenant, 'acme')] });
  petrel = await startPetrel(['--config', configFile]);
}, 120_000);
afterAll(async () => {
  await killAllPetrel();
  await sink?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Submits over SMTP and resolves with the message as the sink received it (each copy, with several recipient domains). */
async function deliverCopies(mail: { from: string; subject: string; to?: string[]; headers?: Record<string, string> }): Promise<Buffer[]> {
  const transport = nodemailer.createTransport({ host: '127.0.0.1', port: petrel.smtp, secure: false, ignoreTLS: true });
  const subject = `${mail.subject} ${Math.random().toString(36).slice(2)}`;
  const to = mail.to ?? ['someone@receiver.test'];
  await transport.sendMail({ text: 'Hello,\r\nthere.\r\n', ...mail, to, subject });
  transport.close();
  const copies = () => sink.received.filter((m) => m.raw.includes(`Subject: ${subject}`));
  await until(`the sink receives "${subject}" ${to.length} times`, () => copies().length >= to.length);
  return copies().map((m) => Buffer.from(m.raw));
}
const deliver = async (mail: { from: string; subject: string; headers?: Record<string, string> }) => (await deliverCopies(mail))[0]!;

const zone = () => zoneOf(Object.values(keys));
async function verdicts(message: Buffer) {
  const byDkimpy = verifyWithDkimpy(message, zone());
  expect(await verifyWithMailauth(message, zone())).toEqual(byDkimpy);
  return byDkimpy;
}

describe('petrel run signs what it accepts', () => {
  it('with the From domain\'s RSA-2048 and Ed25519 keys: both verify, d= the From domain, over-signed, no l=', async () => {
    const message = await deliver({ from: '"The Shop" <news@example.com>', subject: 'Aligned', headers: { 'List-Unsubscribe': '<https://example.com/u/1>', 'List-Unsubscribe-Post': 'List-Unsubscribe=One-Click' } });
    expect(await verdicts(message)).toEqual([
      { d: 'example.com', s: 'rsa2026', pass: true },
      { d: 'example.com', s: 'ed2026', pass: true },
    ]);
    const tags = signatureTags(message);
    expect(tags.map((t) => t.a)).toEqual(['rsa-sha256', 'ed25519-sha256']);
    for (const t of tags) {
      expect(t.c).toBe('relaxed/relaxed');
      expect(t.l).toBeUndefined();
      const names = signedNames(t);
      for (const n of ['from', 'subject', 'to', 'date', 'message-id', 'mime-version', 'content-type', 'list-unsubscribe', 'list-unsubscribe-post']) expect(names[n], n).toBe(2);
    }
    // The signatures are on top, over the Received header Petrel added.
    expect(message.toString()).toMatch(/^DKIM-Signature: [^]*?\r\nDKIM-Signature: [^]*?\r\nReceived: /);
  });

  it('once per message: the copies for two recipient domains (two deliveries) carry the same signatures', async () => {
    const copies = await deliverCopies({ from: 'news@example.com', subject: 'Two domains', to: ['a@receiver.test', 'b@other.test'] });
    expect(copies).toHaveLength(2);
    const fields = (m: Buffer) => m.toString().split('\r\nReceived: ')[0];
    expect(fields(copies[0]!)).toBe(fields(copies[1]!));
    for (const copy of copies) expect((await verdicts(copy)).map((v) => v.pass)).toEqual([true, true]);
  });

  it('with the fallback domain when the From domain has no key, and with a tenant\'s own key', async () => {
    expect(await verdicts(await deliver({ from: 'x@unknown.test', subject: 'Fallback' }))).toEqual([{ d: 'esp.example', s: 'esp1', pass: true }]);
    expect(await verdicts(await deliver({ from: 'y@example.com', subject: 'Tenant', headers: { 'X-Petrel-Tenant': 'acme' } }))).toEqual([{ d: 'example.com', s: 'acme1', pass: true }]);
  });

  it('shows keys in status by fingerprint, and no private key anywhere it writes or says', async () => {
    const status = await petrel.get<{ dkim: { keys: { domain: string; selector: string; algorithm: string; fingerprint: string }[]; fallbackDomain: string; signed: number; signedFallback: number } }>('/api/v1/status');
    expect(status.dkim.keys.map((k) => `${k.selector}._domainkey.${k.domain} ${k.algorithm}`)).toEqual(['rsa2026._domainkey.example.com rsa-sha256', 'ed2026._domainkey.example.com ed25519-sha256', 'esp1._domainkey.esp.example rsa-sha256', 'acme1._domainkey.example.com ed25519-sha256']);
    expect(status.dkim).toMatchObject({ fallbackDomain: 'esp.example', signed: 3, signedFallback: 1, unsigned: 0 });
    const places: Record<string, string> = { status: JSON.stringify(status), log: petrel.log() };
    // Every file under a directory (the spool's lock is a symlink to nothing: skipped).
    const walk = (d: string): string[] =>
      readdirSync(d).flatMap((f) => {
        const s = lstatSync(path.join(d, f));
        return s.isDirectory() ? walk(path.join(d, f)) : s.isFile() ? [path.join(d, f)] : [];
      });
    for (const sub of ['artifact', 'acct', 'spool']) for (const f of walk(path.join(dir, sub))) places[f] = readFileSync(f).toString('latin1');
    expect(Object.keys(places).some((p) => p.includes(`${path.sep}artifact${path.sep}`))).toBe(true);
    for (const [where, text] of Object.entries(places)) {
      for (const k of Object.values(keys)) {
        expect(text.includes(k.file), `${where} names ${k.file}`).toBe(false);
        for (let i = 0; i + 24 <= k.secret.length; i += 24) expect(text.includes(k.secret.slice(i, i + 24)), `${where} holds part of ${k.file}`).toBe(false);
      }
    }
  });
});

describe('petrel run reloads its keys', () => {
  it('on POST /api/v1/dkim/reload and on SIGHUP; a bad config or key keeps the keys in use', async () => {
    const post = () => fetch(`http://127.0.0.1:${petrel.http}/api/v1/dkim/reload`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    // A new selector for a subdomain goes live.
    writeConfig({ fallbackDomain: 'esp.example', keys: [dkimKey(keys.rsa), dkimKey(keys.ed), dkimKey(keys.fallback), dkimKey(keys.news)] });
    const ok = await post();
    expect(ok.status).toBe(200);
    expect(((await ok.json()) as { result: string; keys: { selector: string }[] }).keys.map((k) => k.selector)).toEqual(['rsa2026', 'ed2026', 'esp1', 'n1']);
    expect(await verdicts(await deliver({ from: 'a@news.example.com', subject: 'New selector' }))).toEqual([{ d: 'news.example.com', s: 'n1', pass: true }]);
    // A key file that is gone: refused, named, and the keys in use stay.
    writeConfig({ keys: [dkimKey(keys.rsa), { ...dkimKey(keys.news), keyFile: path.join(dir, 'gone.pem') }] });
    const refused = await post();
    expect(refused.status).toBe(422);
    expect(((await refused.json()) as { error: string }).error).toMatch(/^`dkim\.keys\.1\.keyFile`: cannot read .*gone\.pem/);
    process.kill(petrel.child.pid!, 'SIGHUP');
    await until('the SIGHUP reload is refused in the log', () => /dkim reload \(SIGHUP\) refused/.test(petrel.log()));
    expect(await verdicts(await deliver({ from: 'a@news.example.com', subject: 'Old keys stay' }))).toEqual([{ d: 'news.example.com', s: 'n1', pass: true }]);
    // SIGHUP with a good config: the tenant's key back, the subdomain's gone (the parent signs it).
    writeConfig({ keys: [dkimKey(keys.rsa), dkimKey(keys.tenant, 'acme')] });
    process.kill(petrel.child.pid!, 'SIGHUP');
    await until('the SIGHUP reload in the log', () => /dkim reload \(SIGHUP\): 2 keys/.test(petrel.log()));
    expect(await verdicts(await deliver({ from: 'a@news.example.com', subject: 'After SIGHUP' }))).toEqual([{ d: 'example.com', s: 'rsa2026', pass: true }]);
    expect(petrel.child.exitCode).toBeNull();
  });
});
