/**
 * The pure parts of outbound TLS policy: MTA-STS policy and TXT parsing and MX matching,
 * DANE matching of certificate chains (real certificates from openssl), TLSA usability,
 * and the TLS-RPT writer's files (aggregation, bounds, going on after a reopen).
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { matchDane, mxAllowed, parseMtaStsPolicy, parseTlsa, stsRecordId, usableTlsa, type TlsaRecord } from '../../../runtime/deliver/index.ts';
import { openTlsRpt, reportFileName, type TlsRptReport } from '../../../runtime/observe/index.ts';
import { issue, makeCa, tlsaSha256 } from './tls-policy-peers.ts';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'petrel-tls-units-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('MTA-STS', () => {
  it('parses a policy, and says what is wrong with a bad one', () => {
    const parsed = parseMtaStsPolicy('version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.Example.net\r\nmax_age: 604800\r\n');
    expect(parsed).toEqual({ ok: true, policy: { mode: 'enforce', mx: ['mail.example.com', '*.example.net'], maxAge: 604800, lines: ['version: STSv1', 'mode: enforce', 'mx: mail.example.com', 'mx: *.Example.net', 'max_age: 604800'] } });
    expect(parseMtaStsPolicy('version: STSv2\nmode: enforce\nmx: a.example\nmax_age: 1')).toMatchObject({ ok: false, reason: 'version is not STSv1' });
    expect(parseMtaStsPolicy('version: STSv1\nmode: strict\nmx: a.example\nmax_age: 1')).toMatchObject({ ok: false, reason: expect.stringContaining('`strict`') as unknown as string });
    expect(parseMtaStsPolicy('version: STSv1\nmode: enforce\nmax_age: 86400')).toMatchObject({ ok: false, reason: 'no mx pattern' });
    expect(parseMtaStsPolicy('version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 99999999999')).toMatchObject({ ok: false, reason: expect.stringContaining('max_age') as unknown as string });
    expect(parseMtaStsPolicy('<html>')).toMatchObject({ ok: false });
  });

  it('matches MX hosts as RFC 8461 §4.1 says: `*.` is exactly one label', () => {
    const policy = { mode: 'enforce' as const, mx: ['mail.example.com', '*.example.net'], maxAge: 1, lines: [] };
    expect(mxAllowed(policy, 'mail.example.com.')).toBe(true);
    expect(mxAllowed(policy, 'MX1.example.net')).toBe(true);
    expect(mxAllowed(policy, 'a.b.example.net')).toBe(false);
    expect(mxAllowed(policy, 'example.net')).toBe(false);
    expect(mxAllowed(policy, 'evil-mail.example.com')).toBe(false);
  });

  it('takes the id of exactly one v=STSv1 TXT record', () => {
    expect(stsRecordId(['v=spf1 -all', 'v=STSv1; id=20261207T01;'])).toBe('20261207T01');
    expect(stsRecordId(['v=STSv1; id=a', 'v=STSv1; id=b'])).toBeUndefined();
    expect(stsRecordId(['v=STSv1; id=not-alnum'])).toBeUndefined();
    expect(stsRecordId([])).toBeUndefined();
  });
});

describe('DANE matching', () => {
  let ca: ReturnType<typeof makeCa>;
  let leaf: { key: string; cert: string };
  const der = (pem: string) => new X509Certificate(pem).raw;
  // Read when asked, not when the file is collected: the certificates are made later, in beforeAll.
  let now = 0;
  beforeAll(() => {
    ca = makeCa(dir);
    leaf = issue(dir, ['mx.example.test'], ca);
    now = Date.now();
  });

  it('DANE-EE matches the leaf by certificate or key, SHA-256, SHA-512 or full, whatever its name', () => {
    const spki = new X509Certificate(leaf.cert).publicKey.export({ type: 'spki', format: 'der' }).toString('hex');
    for (const r of [
      { usage: 3, selector: 1, matchingType: 1, data: tlsaSha256(leaf.cert, 1) },
      { usage: 3, selector: 0, matchingType: 1, data: tlsaSha256(leaf.cert, 0) },
      { usage: 3, selector: 1, matchingType: 0, data: spki },
    ]) expect(matchDane([der(leaf.cert)], [r], 'other.name.test', now)).toEqual({ verified: 'dane-ee' });
    expect(matchDane([der(leaf.cert)], [{ usage: 3, selector: 1, matchingType: 1, data: tlsaSha256(ca.cert, 1) }], 'mx.example.test', now)).toMatchObject({ verified: null });
  });

  it('DANE-TA needs the anchor in the presented chain, the leaf signed by it, and the MX name', () => {
    const ta: TlsaRecord = { usage: 2, selector: 0, matchingType: 1, data: tlsaSha256(ca.cert, 0) };
    expect(matchDane([der(leaf.cert), der(ca.cert)], [ta], 'mx.example.test', now)).toEqual({ verified: 'dane-ta' });
    expect(matchDane([der(leaf.cert), der(ca.cert)], [ta], 'other.example.test', now)).toEqual({ verified: null, reason: 'certificate does not name other.example.test' });
    expect(matchDane([der(leaf.cert)], [ta], 'mx.example.test', now)).toMatchObject({ verified: null });
    // A chain whose "anchor" did not sign the leaf.
    const stranger = makeCa(mkdtempSync(path.join(dir, 'other-')));
    expect(matchDane([der(leaf.cert), der(stranger.cert)], [{ ...ta, data: tlsaSha256(stranger.cert, 0) }], 'mx.example.test', now)).toMatchObject({ verified: null });
    expect(matchDane([der(leaf.cert), der(ca.cert)], [ta], 'mx.example.test', now + 5 * 86_400_000)).toEqual({ verified: null, reason: 'certificate is outside its validity dates' });
  });

  it('reads TLSA RDATA and keeps only what RFC 7672 lets SMTP use', () => {
    expect(parseTlsa(Buffer.from('030101' + 'ab'.repeat(32), 'hex'))).toEqual({ usage: 3, selector: 1, matchingType: 1, data: 'ab'.repeat(32) });
    expect(parseTlsa(Buffer.from('0301', 'hex'))).toBeUndefined();
    expect(usableTlsa({ usage: 3, selector: 1, matchingType: 1, data: 'ab'.repeat(32) })).toBe(true);
    expect(usableTlsa({ usage: 1, selector: 1, matchingType: 1, data: 'ab'.repeat(32) })).toBe(false); // PKIX-EE
    expect(usableTlsa({ usage: 3, selector: 1, matchingType: 1, data: 'ab'.repeat(31) })).toBe(false); // wrong length
    expect(usableTlsa({ usage: 2, selector: 2, matchingType: 1, data: 'ab'.repeat(32) })).toBe(false);
  });
});

describe('TLS-RPT files', () => {
  const day = '2026-12-07';
  const at = Date.parse(`${day}T12:00:00Z`);
  const session = { at, domain: 'example.test', policyType: 'sts' as const, policyStrings: ['version: STSv1', 'mode: testing'], mxPatterns: ['mx.example.test'], mxHost: 'mx.example.test', sendingIp: '192.0.2.1', receivingIp: '198.51.100.1' };

  it('aggregates per domain and day, groups failure details, and goes on counting after a reopen', () => {
    const reports = path.join(dir, 'tlsrpt');
    let w = openTlsRpt(reports, { flushMs: 0, organization: 'petrel.test', contact: 'postmaster@petrel.test' });
    w.record(session);
    w.record({ ...session, failure: { type: 'certificate-not-trusted', reason: 'self signed' } });
    w.record({ ...session, failure: { type: 'certificate-not-trusted', reason: 'self signed' } });
    w.close();
    w = openTlsRpt(reports, { flushMs: 0, organization: 'petrel.test' });
    w.record(session);
    w.close();
    expect(readdirSync(path.join(reports, day))).toEqual(['example.test.json']);
    const report = JSON.parse(readFileSync(path.join(reports, day, 'example.test.json'), 'utf8')) as TlsRptReport;
    expect(report).toEqual({
      'organization-name': 'petrel.test',
      'date-range': { 'start-datetime': `${day}T00:00:00Z`, 'end-datetime': `${day}T23:59:59Z` },
      'contact-info': 'postmaster@petrel.test',
      'report-id': `${day}_example.test@petrel.test`,
      policies: [
        {
          policy: { 'policy-type': 'sts', 'policy-string': ['version: STSv1', 'mode: testing'], 'policy-domain': 'example.test', 'mx-host': ['mx.example.test'] },
          summary: { 'total-successful-session-count': 2, 'total-failure-session-count': 2 },
          'failure-details': [{ 'result-type': 'certificate-not-trusted', 'sending-mta-ip': '192.0.2.1', 'receiving-mx-hostname': 'mx.example.test', 'receiving-ip': '198.51.100.1', 'failed-session-count': 2, 'failure-reason-code': 'self signed' }],
        },
      ],
    });
  });

  it('never writes outside its directory, whatever the domain', () => {
    expect(reportFileName('example.test')).toBe('example.test.json');
    for (const hostile of ['../../etc/passwd', '..', 'a/b', 'x\u0000y', '.hidden']) expect(reportFileName(hostile)).toMatch(/^domain-[0-9a-f]{32}\.json$/);
  });
});
