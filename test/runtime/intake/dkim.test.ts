/**
 * runtime/intake/dkim.ts: which keys sign a message, and signatures that two independent
 * verifiers (mailauth with a resolver override, and Python's dkimpy with a DNS override)
 * accept against the TXT records this test publishes — and reject once the message is
 * changed where the signature covers it.
 */
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addressDomain, chooseKeys, DkimConfigError, dkimRecord, loadDkimKeyring, plainBodyHash, signMessage, signMessageStreamed, type DkimConfig, type DkimKeyring } from '../../../runtime/intake/dkim.ts';
import { createDkimSigning } from '../../../runtime/intake/dkim-signing.ts';
import { makeKey, signatureTags, signedNames, verifyWithDkimpy, verifyWithMailauth, zoneOf, type TestKey, type Zone } from '../fixtures/dkim.ts';

let dir: string;
let keys: Record<string, TestKey>;
let zone: Zone;
let config: DkimConfig;
let ring: DkimKeyring;
const read = (file: string) => readFileSync(file);

beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'petrel-dkim-'));
  keys = {
    rsa: makeKey(dir, 'example.com', 'rsa2026', 'rsa'),
    ed: makeKey(dir, 'example.com', 'ed2026', 'ed25519'),
    child: makeKey(dir, 'news.example.com', 'n1', 'ed25519'),
    fallback: makeKey(dir, 'esp.example', 'esp1', 'rsa'),
    tenant: makeKey(dir, 'example.com', 'acme1', 'ed25519'),
  };
  zone = zoneOf(Object.values(keys));
  config = {
    fallbackDomain: 'esp.example',
    keys: [
      { domain: 'example.com', selector: 'rsa2026', keyFile: keys.rsa!.file },
      { domain: 'example.com', selector: 'ed2026', keyFile: keys.ed!.file },
      { domain: 'news.example.com', selector: 'n1', keyFile: keys.child!.file },
      { domain: 'esp.example', selector: 'esp1', keyFile: keys.fallback!.file },
      { domain: 'example.com', selector: 'acme1', keyFile: keys.tenant!.file, tenant: 'acme' },
    ],
  };
  ring = loadDkimKeyring(config, read);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const MESSAGE = [
  'Received: from client (localhost [127.0.0.1]) by petrel; Mon, 2 Mar 2026 10:00:00 +0000',
  'From: "Shop, The" <news@Example.COM>',
  'To: someone@receiver.test',
  'Subject: Your order',
  'Date: Mon, 2 Mar 2026 10:00:00 +0000',
  'Message-ID: <1@example.com>',
  'MIME-Version: 1.0',
  'Content-Type: text/plain; charset=utf-8',
  'List-Unsubscribe: <https://example.com/u/1>',
  'List-Unsubscribe-Post: List-Unsubscribe=One-Click',
  'X-Mailer: not signed',
  '',
  'Hello,  there. ',
  '',
  '',
].join('\r\n');

async function signed(message: string, tenant?: string, r = ring): Promise<Buffer> {
  const signature = await signMessage(r, [Buffer.from(message)], tenant, new Date('2026-03-02T10:00:00Z'));
  return Buffer.concat([signature?.fields ?? Buffer.alloc(0), Buffer.from(message)]);
}

/** Both verifiers' verdicts, which must agree. */
async function verdicts(message: Buffer): Promise<{ d: string; s: string; pass: boolean }[]> {
  const byMailauth = await verifyWithMailauth(message, zone);
  const byDkimpy = verifyWithDkimpy(message, zone);
  expect(byDkimpy).toEqual(byMailauth);
  return byDkimpy;
}

describe('signing', () => {
  it('signs with the From domain\'s RSA-2048 and Ed25519 keys, relaxed/relaxed, over-signed, no l=; both verifiers pass both', async () => {
    const message = await signed(MESSAGE);
    expect(await verdicts(message)).toEqual([
      { d: 'example.com', s: 'rsa2026', pass: true },
      { d: 'example.com', s: 'ed2026', pass: true },
    ]);
    const [rsa, ed] = signatureTags(message);
    expect([rsa!.a, ed!.a]).toEqual(['rsa-sha256', 'ed25519-sha256']);
    for (const tags of [rsa!, ed!]) {
      expect(tags.c).toBe('relaxed/relaxed');
      expect(tags.l).toBeUndefined();
      expect(tags.t).toBe(String(Date.parse('2026-03-02T10:00:00Z') / 1000));
      const names = signedNames(tags);
      for (const n of ['from', 'to', 'subject', 'date', 'message-id', 'mime-version', 'content-type', 'list-unsubscribe', 'list-unsubscribe-post']) expect(names[n], n).toBe(2);
      expect(names['received']).toBeUndefined();
      expect(names['x-mailer']).toBeUndefined();
      // Absent and not over-signed always: a forwarder may add them.
      expect(names['reply-to']).toBeUndefined();
      expect(names['cc']).toBeUndefined();
    }
  });

  it('fails under both verifiers once a covered header is added twice, changed, or the body changes; an unsigned header may be added', async () => {
    const message = (await signed(MESSAGE)).toString();
    const failing = {
      'a second Subject on top': `Subject: Act now\r\n${message}`,
      'a second From on top': `From: ceo@example.com\r\n${message}`,
      'a To added': `To: other@receiver.test\r\n${message}`,
      'a second List-Unsubscribe': `List-Unsubscribe: <https://evil.test/>\r\n${message}`,
      'the Subject changed': message.replace('Subject: Your order', 'Subject: Your 0rder'),
      'the body changed': message.replace('Hello,', 'Hallo,'),
    };
    for (const [what, text] of Object.entries(failing)) expect((await verdicts(Buffer.from(text))).map((v) => v.pass), what).toEqual([false, false]);
    // Relaxed canonicalisation: whitespace and header case may change on the way.
    const relaxed = message.replace('Subject: Your order', 'subject:   Your   order').replace('Hello,  there. ', 'Hello, there.');
    expect((await verdicts(Buffer.from(`X-Spam-Score: 0\r\n${relaxed}`))).map((v) => v.pass)).toEqual([true, true]);
  });

  it('signs with the closest parent that has keys, the exact domain first', async () => {
    const sub = await signed(MESSAGE.replace('news@Example.COM', 'a@mail.shop.example.com'));
    expect(await verdicts(sub)).toEqual([
      { d: 'example.com', s: 'rsa2026', pass: true },
      { d: 'example.com', s: 'ed2026', pass: true },
    ]);
    const exact = await signed(MESSAGE.replace('news@Example.COM', 'a@News.Example.com'));
    expect(await verdicts(exact)).toEqual([{ d: 'news.example.com', s: 'n1', pass: true }]);
  });

  it('signs a From domain without keys with the fallback domain, and leaves it unsigned without a fallback', async () => {
    const other = MESSAGE.replace('news@Example.COM', 'a@unknown.test');
    expect(await verdicts(await signed(other))).toEqual([{ d: 'esp.example', s: 'esp1', pass: true }]);
    const noFallback = loadDkimKeyring({ keys: config.keys }, read);
    expect(await signMessage(noFallback, [Buffer.from(other)], undefined, new Date())).toBeUndefined();
    const noFrom = MESSAGE.replace(/^From: .*\r\n/m, '');
    expect(await verdicts(await signed(noFrom))).toEqual([{ d: 'esp.example', s: 'esp1', pass: true }]);
  });

  it('signs a tenant\'s message with its own keys, other tenants\' with the shared ones', async () => {
    expect(await verdicts(await signed(MESSAGE, 'acme'))).toEqual([{ d: 'example.com', s: 'acme1', pass: true }]);
    expect((await verdicts(await signed(MESSAGE, 'other'))).map((v) => v.s)).toEqual(['rsa2026', 'ed2026']);
  });

  it('signs a message with no body, bare-LF line ends, and one large body in many chunks', async () => {
    const headersOnly = await signed('From: a@example.com\r\nTo: b@receiver.test\r\nSubject: empty\r\n');
    expect(verifyWithDkimpy(headersOnly, zone).map((v) => v.pass)).toEqual([true, true]);
    // mailauth's verifier, like its signer, reads nothing without an end of the header block.
    expect((await verifyWithMailauth(Buffer.concat([headersOnly, Buffer.from('\r\n')]), zone)).map((v) => v.pass)).toEqual([true, true]);
    const lf = MESSAGE.replace(/\r\n/g, '\n');
    // What goes on the wire is CRLF (the SMTP client writes lines so): verify that.
    expect((await verdicts(Buffer.from((await signed(lf)).toString().replace(/\r?\n/g, '\r\n')))).map((v) => v.pass)).toEqual([true, true]);
    const body = Array.from({ length: 20_000 }, (_, i) => `line ${i} of a long body\r\n`).join('');
    const big = Buffer.from(`${MESSAGE}${body}`);
    const chunks = Array.from({ length: Math.ceil(big.length / 7919) }, (_, i) => big.subarray(i * 7919, (i + 1) * 7919));
    const signature = await signMessage(ring, chunks, undefined, new Date());
    expect((await verdicts(Buffer.concat([signature!.fields, big]))).map((v) => v.pass)).toEqual([true, true]);
  });
});

describe('the plain-message shortcut', () => {
  const at = new Date('2026-03-02T10:00:00Z');
  /** Both ways' fields, or the error each throws. */
  const bothWays = async (message: Buffer, r: DkimKeyring) =>
    Promise.all([signMessage(r, [message], undefined, at), signMessageStreamed(r, [message], undefined, at)].map((p) => p.then((s) => s?.fields.toString('latin1'), (e: Error) => `throws ${e.message}`)));

  it('hashes a plain body natively and signs it byte for byte as mailauth\'s stream does; anything else goes through the stream', async () => {
    const head = 'From: news@example.com\r\nTo: someone@receiver.test\r\nSubject: plain\r\n\r\n';
    const cases: [string, string, boolean][] = [
      ['lines of text', 'Hello there.\r\nA second line, with one space each.\r\n', true],
      ['trailing empty lines', 'Hello.\r\n\r\n\r\n', true],
      ['no final CRLF', 'Hello.', true],
      ['empty lines inside', 'a\r\n\r\n\r\nb\r\n', true],
      ['a bare CR inside a line', 'a\rb\r\n', true],
      ['an empty body', '', true],
      ['only empty lines', '\r\n\r\n', true],
      ['a leading space', ' indented\r\n', true],
      ['a space at a line end', 'Hello. \r\nNext\r\n', false],
      ['a space at the body end', 'Hello. ', false],
      ['a space before trailing empty lines', 'Hello. \r\n\r\n', false],
      ['two spaces', 'Hello,  there.\r\n', false],
      ['a tab', 'Hello,\tthere.\r\n', false],
      ['a bare LF in the body', 'Hello.\nNext\r\n', false],
      ['a whitespace-only line', 'a\r\n \r\nb\r\n', false],
    ];
    for (const [what, body, plain] of cases) {
      const message = Buffer.from(head + body);
      expect(plainBodyHash(message) !== undefined, what).toBe(plain);
      const [shortcut, streamed] = await bothWays(message, ring);
      expect(shortcut, what).toBe(streamed);
      // Verified as it goes on the wire: SMTP ends a message with CRLF.
      const wire = body.endsWith('\r\n') || body === '' ? message : Buffer.concat([message, Buffer.from('\r\n')]);
      expect((await verdicts(Buffer.concat([Buffer.from(shortcut!, 'latin1'), wire]))).map((v) => v.pass), what).toEqual([true, true]);
    }
    // Outside the body: a bare LF in the header block, and no header block end at all.
    expect(plainBodyHash(Buffer.from('From: news@example.com\nTo: b@receiver.test\r\n\r\nHello.\r\n'))).toBeUndefined();
    expect(plainBodyHash(Buffer.from('From: news@example.com\r\nTo: b@receiver.test\r\n'))).toBeUndefined();
  });

  it('signs 2,000 random messages of spaces, tabs, CRs, LFs and text exactly as mailauth\'s stream does, with RSA and Ed25519', async () => {
    let seed = 16;
    const random = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * n;
    const pieces = ['a', 'b c', ' ', '\t', '\r', '\n', '\r\n', '\r\n', ': x'];
    let plain = 0;
    for (let i = 0; i < 2_000; i++) {
      const head = random(10) < 1 ? 'From: news@example.com\nSubject: s\r\n' : 'From: news@example.com\r\nSubject: s\r\n';
      const text = head + (random(10) < 9 ? '\r\n' : '') + Array.from({ length: Math.floor(random(24)) }, () => pieces[Math.floor(random(pieces.length))]).join('');
      const message = Buffer.from(text);
      if (plainBodyHash(message)) plain++;
      const [shortcut, streamed] = await bothWays(message, ring);
      expect(shortcut, JSON.stringify(text)).toBe(streamed);
    }
    // Both ways were taken, each often.
    expect(plain).toBeGreaterThan(200);
    expect(plain).toBeLessThan(1_800);
  });
});

describe('signing cost', () => {
  it('prints CPU per message for RSA-2048, Ed25519 and both, at 4 KB and 100 KB (bench/delivery-dkim.ts --sign measures it interleaved with mailauth\'s stream)', async () => {
    const sets = { 'rsa-2048': [config.keys[0]!], ed25519: [config.keys[1]!], dual: [config.keys[0]!, config.keys[1]!] };
    const lines: string[] = [];
    for (const kb of [4, 100]) {
      const message = Buffer.from(`${MESSAGE}${`${'x'.repeat(76)}\r\n`.repeat(Math.ceil((kb * 1024) / 78))}`);
      for (const [name, set] of Object.entries(sets)) {
        const r = loadDkimKeyring({ keys: set }, read);
        for (let i = 0; i < 20; i++) await signMessage(r, [message], undefined, new Date());
        const n = 200;
        const cpu = process.cpuUsage();
        let last: Buffer | undefined;
        for (let i = 0; i < n; i++) last = (await signMessage(r, [message], undefined, new Date()))!.fields;
        const used = process.cpuUsage(cpu);
        lines.push(`dkim signing, ${kb} KB, ${name}: ${((used.user + used.system) / 1000 / n).toFixed(2)} ms CPU per message`);
        expect(verifyWithDkimpy(Buffer.concat([last!, message]), zone).map((v) => v.pass)).toEqual(set.map(() => true));
      }
    }
    console.log(lines.join('\n'));
  });
});

describe('choosing keys', () => {
  it('reads the From domain from the usual forms', () => {
    expect(addressDomain(' "Shop, The" <news@Example.COM>')).toBe('example.com');
    expect(addressDomain(' news@example.com (The @Shop)')).toBe('example.com');
    expect(addressDomain(' "a@evil.test" <a@example.com>')).toBe('example.com');
    expect(addressDomain(' a@b.example, c@d.example')).toBe('b.example');
    expect(addressDomain(' <a@bücher.example>')).toBe('xn--bcher-kva.example');
    expect(addressDomain(' undisclosed')).toBeUndefined();
    expect(addressDomain(' a@[127.0.0.1]')).toBeUndefined();
  });

  it('never climbs to a top-level domain', () => {
    expect(chooseKeys(loadDkimKeyring({ keys: config.keys }, read), 'example.org', undefined)).toBeUndefined();
  });
});

describe('keys', () => {
  const bad = (keysOverride: DkimConfig['keys'], extra: Partial<DkimConfig> = {}) => {
    try {
      loadDkimKeyring({ keys: keysOverride, ...extra }, read);
    } catch (e) {
      expect(e).toBeInstanceOf(DkimConfigError);
      return (e as Error).message;
    }
    throw new Error('accepted');
  };
  const write = (name: string, text: string | Buffer) => {
    const file = path.join(dir, name);
    writeFileSync(file, text);
    return file;
  };

  it('refuses bad keys and config, naming the key', () => {
    const ok = { domain: 'example.com', selector: 's', keyFile: keys.ed!.file };
    expect(bad([ok, { ...ok, domain: 'not a domain' }])).toMatch(/^`dkim\.keys\.1\.domain`: `not a domain` is not a domain name/);
    expect(bad([{ ...ok, selector: 'a b' }])).toMatch(/^`dkim\.keys\.0\.selector`/);
    expect(bad([{ ...ok, keyFile: path.join(dir, 'missing.pem') }])).toMatch(/^`dkim\.keys\.0\.keyFile`: cannot read .*missing\.pem/);
    expect(bad([{ ...ok, keyFile: write('junk.pem', 'not a key') }])).toMatch(/^`dkim\.keys\.0\.keyFile`: .*junk\.pem is not an unencrypted PEM private key/);
    const ec = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey.export({ type: 'pkcs8', format: 'pem' });
    expect(bad([{ ...ok, keyFile: write('ec.pem', ec) }])).toMatch(/is a ec key; DKIM signs with RSA or Ed25519/);
    const small = generateKeyPairSync('rsa', { modulusLength: 768 }).privateKey.export({ type: 'pkcs8', format: 'pem' });
    expect(bad([{ ...ok, keyFile: write('small.pem', small) }])).toMatch(/is a 768-bit RSA key; DKIM takes 1024 to 8192 bits/);
    expect(bad([{ ...ok, keyFile: write('huge.pem', Buffer.alloc(100_000, 0x41)) }])).toMatch(/is 100000 bytes; a key file is at most 65536/);
    expect(bad([ok, { ...ok, keyFile: keys.rsa!.file, tenant: 'acme' }])).toMatch(/^`dkim\.keys\.1`: `s\._domainkey\.example\.com` names two different keys/);
    expect(bad([ok, ok])).toMatch(/^`dkim\.keys\.1`: selector `s` of `example\.com` is given twice/);
    expect(bad(['a', 'b', 'c', 'd', 'e'].map((s) => ({ ...ok, selector: s })))).toMatch(/^`dkim\.keys\.4`: more than 4 keys sign for `example\.com`/);
    expect(bad([ok], { fallbackDomain: 'esp.example' })).toMatch(/^`dkim\.fallbackDomain`: `esp\.example` has no key of its own/);
    expect(bad([{ ...ok, tenant: 'acme' }], { fallbackDomain: 'example.com' })).toMatch(/^`dkim\.fallbackDomain`: `example\.com` has no key of its own/);
  });

  it('publishes RSA as SubjectPublicKeyInfo and Ed25519 as its 32-byte key (RFC 8463)', () => {
    expect(keys.rsa!.record).toMatch(/^v=DKIM1; k=rsa; p=MIIBIjAN[A-Za-z0-9+/]+=*$/);
    expect(Buffer.from(/p=(.*)$/.exec(keys.ed!.record)![1]!, 'base64')).toHaveLength(32);
    expect(() => dkimRecord(generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey)).toThrow(/a ec key cannot sign DKIM/);
  });

  it('status shows domain, selector, algorithm and fingerprint, never the key; counts what it signed', async () => {
    const signing = createDkimSigning(ring, Date.parse('2026-03-02T09:00:00Z'));
    await signing.sign([Buffer.from(MESSAGE)], undefined, Date.now());
    await signing.sign([Buffer.from(MESSAGE.replace('news@Example.COM', 'a@unknown.test'))], undefined, Date.now());
    const status = signing.status();
    expect(status).toMatchObject({ fallbackDomain: 'esp.example', loadedAt: '2026-03-02T09:00:00.000Z', signed: 1, signedFallback: 1, unsigned: 0 });
    expect(status.keys[0]).toEqual({ domain: 'example.com', selector: 'rsa2026', tenant: null, algorithm: 'rsa-sha256', bits: 2048, fingerprint: expect.stringMatching(/^sha256:[A-Za-z0-9+/]{43}=$/) });
    const text = JSON.stringify(status);
    for (const k of Object.values(keys)) for (let i = 0; i + 32 <= k.secret.length; i += 32) expect(text).not.toContain(k.secret.slice(i, i + 32));
    // A reload swaps the keys: the next message is signed with the new set.
    signing.replace(loadDkimKeyring({ keys: [config.keys[1]!] }, read), Date.now());
    const next = await signing.sign([Buffer.from(MESSAGE)], undefined, Date.now());
    expect(signatureTags(next!).map((t) => t.s)).toEqual(['ed2026']);
    await signing.close();
  });
});
