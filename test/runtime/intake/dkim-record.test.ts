/**
 * `petrel dkim-record`, the real binary: keys made with openssl as docs/runtime.md says,
 * the record it prints published as the test's DNS, and a message signed with the key
 * verified by dkimpy against it.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadDkimKeyring, signMessage } from '../../../runtime/intake/dkim.ts';
import { runPetrel } from '../../helpers.ts';
import { verifyWithDkimpy } from '../fixtures/dkim.ts';

let dir: string;
const openssl = (...args: string[]) => execFileSync('openssl', args, { stdio: 'pipe', timeout: 30_000 });

beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'petrel-dkim-record-'));
  openssl('genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', path.join(dir, 'rsa.pem'));
  openssl('genpkey', '-algorithm', 'ed25519', '-out', path.join(dir, 'ed25519.pem'));
  openssl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', path.join(dir, 'ec.pem'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The TXT text of a zone-file line: its character strings joined, as DNS joins them. */
const joined = (line: string) => [...line.matchAll(/"([^"]*)"/g)].map((m) => m[1]).join('');

describe('petrel dkim-record', () => {
  it('prints a zone line whose record verifies what the key signs (RSA split into strings of at most 255, Ed25519 whole)', async () => {
    const message = Buffer.from('From: a@example.com\r\nTo: b@receiver.test\r\nSubject: hi\r\n\r\nHello\r\n');
    for (const [file, selector] of [['rsa.pem', 'rsa2026'], ['ed25519.pem', 'ed2026']] as const) {
      const r = runPetrel(['dkim-record', path.join(dir, file), '--selector', selector, '--domain', 'Example.COM.']);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`^${selector}\\._domainkey\\.example\\.com\\. IN TXT \\( ("[^"]{1,255}" ?)+ \\)\\n$`));
      const text = runPetrel(['dkim-record', path.join(dir, file), '--selector', selector, '--domain', 'example.com', '--text']).stdout.trim();
      expect(joined(r.stdout)).toBe(text);
      const ring = loadDkimKeyring({ keys: [{ domain: 'example.com', selector, keyFile: path.join(dir, file) }] }, (f) => readFileSync(f));
      const signature = await signMessage(ring, [message], undefined, new Date());
      const signed = Buffer.concat([signature!.fields, message]);
      expect(verifyWithDkimpy(signed, { [`${selector}._domainkey.example.com`]: text })).toEqual([{ d: 'example.com', s: selector, pass: true }]);
      // Another key's record does not verify it.
      expect(verifyWithDkimpy(signed, { [`${selector}._domainkey.example.com`]: text.replace(/p=.{8}/, 'p=AAAAAAAA') })[0]!.pass).toBe(false);
    }
  });

  it('refuses what is not a DKIM key, naming the file or the flag, exit 2', () => {
    const ec = runPetrel(['dkim-record', path.join(dir, 'ec.pem'), '--selector', 's', '--domain', 'example.com']);
    expect(ec.code).toBe(2);
    expect(ec.stderr).toMatch(/ec\.pem` ?:? .*is a ec key; DKIM signs with RSA or Ed25519/);
    const missing = runPetrel(['dkim-record', path.join(dir, 'nope.pem'), '--selector', 's', '--domain', 'example.com']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/cannot read .*nope\.pem/);
    const domain = runPetrel(['dkim-record', path.join(dir, 'rsa.pem'), '--selector', 's', '--domain', 'bad domain']);
    expect(domain.code).toBe(2);
    expect(domain.stderr).toMatch(/`--domain`: `bad domain` is not a domain name/);
    expect(runPetrel(['dkim-record', path.join(dir, 'rsa.pem')]).stderr).toMatch(/`--selector` and `--domain` are required/);
  });
});
