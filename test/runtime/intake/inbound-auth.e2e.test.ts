/**
 * Checks on received mail through the real runtime: nodemailer submits over loopback
 * SMTP, a local smtp-server sink is the MX, DNS is this test's zone (a resolver override;
 * never the real DNS). Mail from outside the client networks (here: an authenticated
 * client at 127.0.0.1 with client networks 10.0.0.0/8) gets an Authentication-Results
 * header whose spf/dkim/dmarc results match the published records; a forged one with our
 * authserv-id is removed, another server's kept; DMARC p=reject failures are refused
 * 550 5.7.1 (or tagged, as configured); mail from the client networks is not checked
 * unless `checkClientNetworks`.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import nodemailer from 'nodemailer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashPassword, MAX_DKIM_SIGNATURES, withoutOurResults, type InboundAuthOptions, type SubmissionOptions } from '../../../runtime/intake/index.ts';
import { e2eCase, until } from '../fixtures/e2e.ts';
import { makeKey, type TestKey } from '../fixtures/dkim.ts';
import type { Sink } from '../fixtures/sink.ts';

const require = createRequire(import.meta.url);
const { dkimSign } = require('mailauth') as { dkimSign(m: Buffer, o: object): Promise<{ signatures: string; errors: unknown[] }> };

const POLICY = 'policy inbound version 1\n\ndefault {\n  connections 2\n}\n';
const PASSWORD = 'inbound test password';
const t = e2eCase('inbound-auth');
let keyDir: string;
let key: TestKey;
let passwordHash: string;
let zone: Record<string, string>;
/** Every lookup the runtime made, `NAME TYPE`. */
const asked: string[] = [];

const resolver = async (name: string, rrtype: string) => {
  asked.push(`${name} ${rrtype}`);
  const text = rrtype === 'TXT' ? zone[name.toLowerCase().replace(/\.$/, '')] : undefined;
  if (text === undefined) throw Object.assign(new Error(`${name} ${rrtype}: no such record`), { code: 'ENOTFOUND' });
  return [[text]];
};

beforeAll(async () => {
  keyDir = mkdtempSync(path.join(tmpdir(), 'petrel-inbound-key-'));
  key = makeKey(keyDir, 'sender.test', 'sel1', 'rsa');
  passwordHash = await hashPassword(PASSWORD);
  zone = {
    [key.name]: key.record,
    'sender.test': 'v=spf1 ip4:127.0.0.1 -all',
    '_dmarc.sender.test': 'v=DMARC1; p=reject',
    'strict.test': 'v=spf1 ip4:192.0.2.1 -all',
    '_dmarc.strict.test': 'v=DMARC1; p=reject',
  };
}, 60_000);
afterAll(() => rmSync(keyDir, { recursive: true, force: true }));

/** The runtime with inbound checks; `outside`: client networks that do not hold 127.0.0.1 (the client then AUTHs). */
async function start(inbound: InboundAuthOptions, outside: boolean): Promise<Sink> {
  const sink = await t.sink();
  const smtp: SubmissionOptions = outside
    ? { host: '127.0.0.1', port: 0, clientNetworks: ['10.0.0.0/8'], users: [{ user: 'app', passwordHash }], allowInsecureAuth: true, inbound: { resolver, ...inbound } }
    : { host: '127.0.0.1', port: 0, inbound: { resolver, ...inbound } };
  await t.start(POLICY, { smtp, mxOverride: { '*': `127.0.0.1:${sink.port}` } });
  return sink;
}

/** A message From `from`, DKIM-signed by sender.test when `sign`, with `extra` header lines on top. */
async function message(from: string, subject: string, sign: boolean, extra = ''): Promise<Buffer> {
  const raw = Buffer.from(`From: <${from}>\r\nTo: <rcpt@receiver.test>\r\nSubject: ${subject}\r\nMessage-ID: <${subject}@sender.test>\r\n\r\nHello.\r\n`);
  const signed = sign ? (await dkimSign(raw, { signatureData: [{ signingDomain: key.domain, selector: key.selector, privateKey: readFileSync(key.file) }] })).signatures : '';
  return Buffer.concat([Buffer.from(extra + signed), raw]);
}

/** Submits `raw` with MAIL FROM `from` (AUTH when `outside`); resolves with the sink's copy, or rejects with the SMTP error. */
async function submit(sink: Sink, raw: Buffer, from: string, subject: string, outside: boolean): Promise<string> {
  const transport = nodemailer.createTransport({ host: '127.0.0.1', port: t.runtime!.smtpPort, secure: false, ignoreTLS: true, name: 'client.sender.test', ...(outside ? { auth: { user: 'app', pass: PASSWORD } } : {}) });
  try {
    await transport.sendMail({ envelope: { from, to: ['rcpt@receiver.test'] }, raw });
  } finally {
    transport.close();
  }
  return (await until(`the sink receives ${subject}`, () => sink.received.find((m) => m.raw.includes(`Subject: ${subject}`)))).raw;
}

/** The Authentication-Results fields of `raw`'s header, unfolded. */
const resultsOf = (raw: string) =>
  raw
    .slice(0, raw.indexOf('\r\n\r\n'))
    .split(/\r\n(?![ \t])/)
    .filter((f) => /^authentication-results:/i.test(f))
    .map((f) => f.replace(/\r\n[ \t]+/g, ' '));

describe('inbound authentication', () => {
  it('mail from outside the client networks gets Authentication-Results matching the published records', async () => {
    const sink = await start({}, true);
    asked.length = 0;
    const got = await submit(sink, await message('alice@sender.test', 'pass1', true), 'alice@sender.test', 'pass1', true);
    const [ours, ...others] = resultsOf(got);
    expect(others).toEqual([]);
    expect(ours).toMatch(/^Authentication-Results: petrel\.test;/);
    expect(ours).toMatch(/dkim=pass header\.i=@sender\.test header\.s=sel1/);
    expect(ours).toMatch(/spf=pass .*smtp\.mailfrom=alice@sender\.test/);
    expect(ours).toMatch(/dmarc=pass .*header\.from=sender\.test/);
    expect(asked).toEqual(expect.arrayContaining(['sel1._domainkey.sender.test TXT', 'sender.test TXT', '_dmarc.sender.test TXT']));
  }, 60_000);

  it('a DMARC p=reject failure is refused 550 5.7.1 by default, and only tagged when dmarcReject is tag', async () => {
    let sink = await start({}, true);
    const raw = await message('bob@strict.test', 'fail1', false);
    const refused = await submit(sink, raw, 'bob@strict.test', 'fail1', true).then(() => undefined, (e: { responseCode?: number; response?: string }) => e);
    expect(refused?.responseCode).toBe(550);
    expect(refused?.response).toMatch(/5\.7\.1 DMARC policy of strict\.test \(p=reject\)/);
    expect(sink.received).toHaveLength(0);
    await t.runtime!.stop(5000);
    sink = await start({ dmarcReject: 'tag' }, true);
    const [ours] = resultsOf(await submit(sink, await message('bob@strict.test', 'fail2', false), 'bob@strict.test', 'fail2', true));
    expect(ours).toMatch(/spf=fail .*smtp\.mailfrom=bob@strict\.test/);
    expect(ours).toMatch(/dmarc=fail .*header\.from=strict\.test/);
  }, 60_000);

  it('SPF fail is refused when spfFail is reject (DMARC aside)', async () => {
    const sink = await start({ spfFail: 'reject', dmarcReject: 'tag' }, true);
    const refused = await submit(sink, await message('bob@strict.test', 'spf1', false), 'bob@strict.test', 'spf1', true).then(() => undefined, (e: { responseCode?: number; response?: string }) => e);
    expect(refused?.responseCode).toBe(550);
    expect(refused?.response).toMatch(/5\.7\.1 SPF of strict\.test does not permit 127\.0\.0\.1/);
  }, 60_000);

  it('a forged Authentication-Results claiming our authserv-id is removed; another server\'s is kept', async () => {
    const sink = await start({}, true);
    const forged = 'Authentication-Results: PETREL.test;\r\n dkim=pass header.d=bank.example\r\nAuthentication-Results: (comment) petrel.test; spf=pass\r\nAuthentication-Results: mx.other.example; spf=pass smtp.mailfrom=x@other.example\r\n';
    const got = await submit(sink, await message('alice@sender.test', 'spoof1', true, forged), 'alice@sender.test', 'spoof1', true);
    const results = resultsOf(got);
    expect(results).toHaveLength(2);
    expect(results[0]).toMatch(/^Authentication-Results: petrel\.test;.*dkim=pass header\.i=@sender\.test/);
    expect(results[1]).toBe('Authentication-Results: mx.other.example; spf=pass smtp.mailfrom=x@other.example');
    expect(got).not.toContain('bank.example');
  }, 60_000);

  it('mail from the client networks is not checked unless checkClientNetworks', async () => {
    let sink = await start({}, false);
    asked.length = 0;
    const forged = 'Authentication-Results: petrel.test; dmarc=pass\r\n';
    const inside = await submit(sink, await message('bob@strict.test', 'inside1', false, forged), 'bob@strict.test', 'inside1', false);
    expect(asked).toEqual([]);
    expect(resultsOf(inside)).toEqual(['Authentication-Results: petrel.test; dmarc=pass']);
    await t.runtime!.stop(5000);
    sink = await start({ checkClientNetworks: true, dmarcReject: 'tag' }, false);
    const checked = await submit(sink, await message('bob@strict.test', 'inside2', false, forged), 'bob@strict.test', 'inside2', false);
    const results = resultsOf(checked);
    expect(results).toHaveLength(1);
    expect(results[0]).toMatch(/dmarc=fail/);
  }, 60_000);
});

describe('inbound authentication bounds', () => {
  it(`verifies only the topmost ${MAX_DKIM_SIGNATURES} DKIM signatures, and delivers them all`, async () => {
    const sink = await start({}, true);
    const selectors = Array.from({ length: MAX_DKIM_SIGNATURES + 3 }, (_, i) => `many${i}`);
    for (const sel of selectors) zone[`${sel}._domainkey.sender.test`] = key.record;
    const raw = Buffer.from('From: <alice@sender.test>\r\nTo: <rcpt@receiver.test>\r\nSubject: many1\r\n\r\nHello.\r\n');
    const { signatures } = await dkimSign(raw, { signatureData: selectors.map((selector) => ({ signingDomain: 'sender.test', selector, privateKey: readFileSync(key.file) })) });
    asked.length = 0;
    const got = await submit(sink, Buffer.concat([Buffer.from(signatures), raw]), 'alice@sender.test', 'many1', true);
    const lookedUp = asked.filter((a) => a.includes('._domainkey.'));
    expect(lookedUp).toHaveLength(MAX_DKIM_SIGNATURES);
    expect(got.match(/^DKIM-Signature:/gm)).toHaveLength(selectors.length);
    expect(resultsOf(got)[0]!.match(/dkim=pass/g)).toHaveLength(MAX_DKIM_SIGNATURES);
  }, 60_000);

  it('a DNS that never answers: the message is accepted within the bound, tagged temperror', async () => {
    const hang = () => new Promise<never>(() => {});
    const sink = await start({ resolver: hang, timeoutMs: 200 }, true);
    const began = Date.now();
    const got = await submit(sink, await message('alice@sender.test', 'hang1', true), 'alice@sender.test', 'hang1', true);
    // 4 × timeoutMs bounds the check; the rest is submission and delivery on a loaded machine.
    expect(Date.now() - began).toBeLessThan(15_000);
    const [ours] = resultsOf(got);
    expect(ours).toMatch(/^Authentication-Results: petrel\.test;/);
    expect(ours).toMatch(/spf=temperror|none \(checks timed out\)/);
  }, 60_000);
});

describe('withoutOurResults', () => {
  it('removes folded fields of our authserv-id, case-insensitive and after comments, and keeps the rest byte for byte', () => {
    const head = Buffer.from('Received: x\r\nAuthentication-Results:\r\n  petrel.test; dkim=pass\r\nAuthentication-Results: petrel.test.evil; spf=pass\r\nSubject: s\r\n\r\n');
    expect(withoutOurResults(head, 'Petrel.Test').toString()).toBe('Received: x\r\nAuthentication-Results: petrel.test.evil; spf=pass\r\nSubject: s\r\n\r\n');
    const none = Buffer.from('Subject: s\r\n\r\n');
    expect(withoutOurResults(none, 'petrel.test')).toBe(none);
  });
});
