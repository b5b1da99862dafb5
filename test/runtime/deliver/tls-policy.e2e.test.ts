/**
 * Outbound TLS policy end to end (issue 16 part 2), fully offline: the runtime delivers
 * through real SMTP sessions to STARTTLS sinks whose MX names, addresses, TLSA and MTA-STS
 * TXT records come from zones served by nsd behind a validating unbound (the `dane.test`
 * zone signed with ldns-signzone, `sts.test` not), and fetches MTA-STS policies from a
 * local HTTPS server whose certificate a test CA issued (trusted through the extra-CA
 * option only).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import dgram from 'node:dgram';
import { tmpdir } from 'node:os';
import path from 'node:path';
import nodemailer from 'nodemailer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMtaSts, createSecureDns, createTlsPolicy, encodeQuery, httpsPolicyFetch, lookupTlsa, lookupThrough, parseResolverAddress, txtThrough } from '../../../runtime/deliver/index.ts';
import { openTlsRpt, type TlsRptReport, type TlsRptWriter } from '../../../runtime/observe/index.ts';
import { runPetrel } from '../../helpers.ts';
import { startPetrel } from '../../cli/petrel-process.ts';
import { e2eCase, readAccounting, until, type AccountingRow } from '../fixtures/e2e.ts';
import { issue, makeCa, startPolicyServer, startTestDns, startTlsSink, tlsaSha256, type TestDns, type TlsSink } from './tls-policy-peers.ts';

const POLICY = `policy tls version 1.0.0
use stdlib/bounces
use stdlib/retry

default {
  retry standard
  rules bounces
  tls opportunistic
}

source s1 {
  address 127.0.0.1
  ehlo petrel.test
}
`;

/** Which sink receives each recipient domain, under which MX name. */
const ROUTES = {
  'ok.dane.test': 'mx.dane.test',
  'ta.dane.test': 'ta.dane.test',
  'mismatch.dane.test': 'bad.dane.test',
  'enforce.sts.test': 'mx.enforce.sts.test',
  'good.sts.test': 'mx.good.sts.test',
  'testing.sts.test': 'mx.testing.sts.test',
} as const;
type Domain = keyof typeof ROUTES;

let dir: string;
let ca: ReturnType<typeof makeCa>;
let dns: TestDns;
const sinks = {} as Record<Domain, TlsSink>;
let policyHost: Awaited<ReturnType<typeof startPolicyServer>>;

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'petrel-tls-policy-'));
  ca = makeCa(dir);
  const good = (name: string) => issue(dir, [name], ca);
  const daneEe = good('mx.dane.test');
  const daneTa = good('ta.dane.test');
  sinks['ok.dane.test'] = await startTlsSink(daneEe);
  // The DANE-TA server sends the CA after its certificate, as RFC 7672 §3.2.1 asks.
  sinks['ta.dane.test'] = await startTlsSink({ key: daneTa.key, cert: daneTa.cert + ca.cert });
  sinks['mismatch.dane.test'] = await startTlsSink(good('bad.dane.test'));
  sinks['enforce.sts.test'] = await startTlsSink(issue(dir, ['mx.enforce.sts.test'])); // self-signed: not trusted
  sinks['good.sts.test'] = await startTlsSink(good('mx.good.sts.test'));
  sinks['testing.sts.test'] = await startTlsSink(issue(dir, ['mx.testing.sts.test']));
  const sts = (mode: string, mx: string) => `version: STSv1\nmode: ${mode}\nmx: ${mx}\nmax_age: 86400\n`;
  policyHost = await startPolicyServer(issue(dir, ['mta-sts.enforce.sts.test', 'mta-sts.good.sts.test', 'mta-sts.testing.sts.test'], ca), {
    'mta-sts.enforce.sts.test': sts('enforce', 'mx.enforce.sts.test'),
    'mta-sts.good.sts.test': sts('enforce', '*.good.sts.test'),
    'mta-sts.testing.sts.test': sts('testing', 'mx.testing.sts.test'),
  });
  const port = (d: Domain) => sinks[d].port;
  dns = await startTestDns(dir, [
    {
      origin: 'dane.test',
      signed: true,
      records: [
        'mx IN A 127.0.0.1',
        `_${port('ok.dane.test')}._tcp.mx IN TLSA 3 1 1 ${tlsaSha256(daneEe.cert, 1)}`,
        'ta IN A 127.0.0.1',
        `_${port('ta.dane.test')}._tcp.ta IN TLSA 2 0 1 ${tlsaSha256(ca.cert, 0)}`,
        'bad IN A 127.0.0.1',
        // The CA's key, as DANE-EE: the server's own certificate matches nothing.
        `_${port('mismatch.dane.test')}._tcp.bad IN TLSA 3 1 1 ${tlsaSha256(ca.cert, 1)}`,
      ],
    },
    {
      origin: 'sts.test',
      signed: false,
      records: [
        ...['enforce', 'good', 'testing'].flatMap((d) => [`_mta-sts.${d} IN TXT "v=STSv1; id=20261207"`, `mta-sts.${d} IN A 127.0.0.1`, `mx.${d} IN A 127.0.0.1`]),
        // In an unsigned zone: never authenticated, so never used, though it matches nothing.
        `_${port('testing.sts.test')}._tcp.mx.testing IN TLSA 3 1 1 ${'00'.repeat(32)}`,
      ],
    },
  ]);
}, 60_000);

afterAll(async () => {
  await dns?.stop();
  await policyHost?.close();
  for (const sink of Object.values(sinks)) await sink.close();
  rmSync(dir, { recursive: true, force: true });
});

const t = e2eCase('tls-policy');

/** The TLS policy the runtime runs under: DANE through unbound, MTA-STS through the policy host, TLS-RPT files in `reportDir`. */
function tlsPolicyFor(reportDir: string, cacheFile: string): { policy: ReturnType<typeof createTlsPolicy>; tlsrpt: TlsRptWriter } {
  const resolver = createSecureDns(dns.resolver, { timeoutMs: 3_000 });
  const tlsrpt = openTlsRpt(reportDir, { flushMs: 0, organization: 'petrel.test' });
  const mtaSts = createMtaSts({ txt: txtThrough(resolver), fetch: httpsPolicyFetch({ ca: [ca.cert], port: policyHost.port, timeoutMs: 5_000, lookup: lookupThrough(resolver) }), cacheFile });
  return { policy: createTlsPolicy({ dns: resolver, mtaSts, extraCa: [ca.cert], report: (s) => tlsrpt.record(s) }), tlsrpt };
}

function readReport(reportDir: string, domain: string): TlsRptReport {
  const day = new Date().toISOString().slice(0, 10);
  return JSON.parse(readFileSync(path.join(reportDir, day, `${domain}.json`), 'utf8')) as TlsRptReport;
}

describe('outbound TLS policy', () => {
  it('DANE-EE and DANE-TA deliver, a TLSA mismatch and an MTA-STS enforce MX with a bad certificate are deferred, testing delivers and reports', async () => {
    const reportDir = path.join(t.dir, 'tlsrpt');
    const cacheFile = path.join(t.dir, 'mta-sts.json');
    const { policy, tlsrpt } = tlsPolicyFor(reportDir, cacheFile);
    const mxOverride = Object.fromEntries(Object.entries(ROUTES).map(([d, mx]) => [d, `${mx}:${sinks[d as Domain].port}`]));
    const runtime = await t.start(POLICY, { mxOverride, tlsPolicy: policy });
    const client = nodemailer.createTransport({ host: '127.0.0.1', port: runtime.smtpPort, secure: false, ignoreTLS: true });
    for (const domain of Object.keys(ROUTES)) await client.sendMail({ from: 'news@shop.example', to: `user@${domain}`, subject: domain, text: 'x' });
    const acct = path.join(t.dir, 'acct');
    const rows = await until('an outcome for every domain', () => {
      const byDomain = new Map<string, AccountingRow>();
      for (const r of readAccounting(acct)) if (r.type !== 'r') byDomain.set(r.rcpt.split('@')[1]!, r);
      return byDomain.size === Object.keys(ROUTES).length && byDomain;
    }).catch((e: Error) => {
      throw new Error(`${e.message}; accounting: ${JSON.stringify(readAccounting(acct).map((r) => [r.type, r.rcpt, r.dsnDiag, r.tlsVerified]))}`);
    });
    tlsrpt.flush();
    const row = (d: Domain) => rows.get(d)!;

    expect(row('ok.dane.test')).toMatchObject({ type: 'd', tlsVerified: 'dane-ee', tlsVersion: expect.stringMatching(/^TLSv1\.[23]$/) as unknown as string });
    expect(row('ok.dane.test').tlsCipher).not.toBe('');
    expect(sinks['ok.dane.test'].received).toEqual([{ to: ['user@ok.dane.test'], secure: true }]);
    expect(row('ta.dane.test')).toMatchObject({ type: 'd', tlsVerified: 'dane-ta' });

    // TLSA present and authenticated, certificate matching none: deferred, nothing sent (in clear or otherwise).
    expect(row('mismatch.dane.test').type).toMatch(/^tq?$/);
    expect(row('mismatch.dane.test').dsnDiag).toContain('421 4.7.5 TLS certificate does not match the TLSA records of bad.dane.test');
    expect(sinks['mismatch.dane.test'].received).toEqual([]);

    // MTA-STS enforce, the MX's certificate self-signed: deferred with the reason.
    expect(row('enforce.sts.test').type).toMatch(/^tq?$/);
    expect(row('enforce.sts.test').dsnDiag).toMatch(/421 4\.7\.5 TLS certificate not trusted \(\w+\)/);
    expect(sinks['enforce.sts.test'].received).toEqual([]);
    expect(row('good.sts.test')).toMatchObject({ type: 'd', tlsVerified: 'mta-sts' });

    // MTA-STS testing: delivered (TLS, unverified; the insecure TLSA ignored), the failure in the TLS-RPT report.
    expect(row('testing.sts.test')).toMatchObject({ type: 'd', tlsVerified: 'none' });
    expect(sinks['testing.sts.test'].received).toEqual([{ to: ['user@testing.sts.test'], secure: true }]);
    const testing = readReport(reportDir, 'testing.sts.test');
    expect(testing['organization-name']).toBe('petrel.test');
    expect(testing.policies).toEqual([
      {
        policy: { 'policy-type': 'sts', 'policy-string': ['version: STSv1', 'mode: testing', 'mx: mx.testing.sts.test', 'max_age: 86400'], 'policy-domain': 'testing.sts.test', 'mx-host': ['mx.testing.sts.test'] },
        summary: { 'total-successful-session-count': 0, 'total-failure-session-count': 1 },
        'failure-details': [expect.objectContaining({ 'result-type': 'certificate-not-trusted', 'receiving-mx-hostname': 'mx.testing.sts.test', 'receiving-ip': '127.0.0.1', 'sending-mta-ip': '127.0.0.1', 'failed-session-count': 1 })],
      },
    ]);
    const enforce = readReport(reportDir, 'enforce.sts.test').policies[0]!;
    expect(enforce.summary).toEqual({ 'total-successful-session-count': 0, 'total-failure-session-count': 1 });
    expect(enforce['failure-details'][0]!['result-type']).toBe('certificate-not-trusted');
    expect(readReport(reportDir, 'ok.dane.test').policies[0]).toMatchObject({ policy: { 'policy-type': 'tlsa' }, summary: { 'total-successful-session-count': 1, 'total-failure-session-count': 0 } });
    expect(readReport(reportDir, 'mismatch.dane.test').policies[0]!['failure-details'][0]!['result-type']).toBe('validation-failure');

    // The policies are cached on disk with their ids: a restart enforces them before any fetch.
    expect(Object.keys(JSON.parse(readFileSync(cacheFile, 'utf8')) as object).sort()).toEqual(['enforce.sts.test', 'good.sts.test', 'testing.sts.test']);
    tlsrpt.close();
  }, 60_000);

  it('a cached MTA-STS policy survives a restart: enforced without the policy host', async () => {
    const cacheFile = path.join(t.dir, 'mta-sts.json');
    const first = tlsPolicyFor(path.join(t.dir, 'r1'), cacheFile);
    const fetchesBefore = policyHost.fetches.length;
    const resolver = createSecureDns(dns.resolver);
    // Discovery once, through the first cache (the policy host answers)...
    const mtaSts = createMtaSts({ txt: txtThrough(resolver), fetch: httpsPolicyFetch({ ca: [ca.cert], port: policyHost.port, lookup: lookupThrough(resolver) }), cacheFile });
    expect(await mtaSts.lookup('enforce.sts.test')).toMatchObject({ kind: 'policy', id: '20261207', policy: { mode: 'enforce' } });
    expect(policyHost.fetches.length).toBe(fetchesBefore + 1);
    // ...then a new cache from the file, whose fetches all fail: the policy still applies.
    const restarted = createMtaSts({ txt: txtThrough(resolver), fetch: httpsPolicyFetch({ port: 1 }), cacheFile });
    expect(await restarted.lookup('enforce.sts.test')).toMatchObject({ kind: 'policy', policy: { mode: 'enforce', mx: ['mx.enforce.sts.test'] } });
    first.tlsrpt.close();
  });

  it('the AD bit counts only from the validating resolver: TLSA through nsd (no AD) or in an unsigned zone is not DANE', async () => {
    const port = sinks['mismatch.dane.test'].port;
    expect(await lookupTlsa(createSecureDns(dns.resolver), 'bad.dane.test', port)).toMatchObject({ kind: 'dane' });
    expect(await lookupTlsa(createSecureDns(dns.authoritative), 'bad.dane.test', port)).toEqual({ kind: 'none', secure: false });
    expect(await lookupTlsa(createSecureDns(dns.resolver), 'mx.testing.sts.test', sinks['testing.sts.test'].port)).toEqual({ kind: 'none', secure: false });
  });

  it('a resolver that is not on loopback is refused, and a forged answer from another port is never read', async () => {
    expect(() => parseResolverAddress('192.0.2.53:53')).toThrow(/not a loopback address/);
    expect(() => createSecureDns('resolver.example:53')).toThrow(/is not an address:port/);
    // A "resolver" that never answers itself; a forger on another port sends an AD answer to the asker.
    const silent = dgram.createSocket('udp4');
    const forger = dgram.createSocket('udp4');
    await new Promise<void>((r) => silent.bind(0, '127.0.0.1', r));
    await new Promise<void>((r) => forger.bind(0, '127.0.0.1', r));
    silent.on('message', (query, peer) => {
      const answer = Buffer.from(query);
      answer.writeUInt16BE(0x81a0, 2); // QR RD RA AD, NOERROR
      forger.send(answer, peer.port, peer.address);
    });
    try {
      const answer = await createSecureDns(`127.0.0.1:${silent.address().port}`, { timeoutMs: 500 }).query('_25._tcp.mx.example', 'TLSA');
      expect(answer).toMatchObject({ ok: false, reason: expect.stringContaining('no answer') as unknown as string });
    } finally {
      silent.close();
      forger.close();
    }
    expect(encodeQuery(1, 'a.example', 52).readUInt16BE(2) & 0x0020).toBe(0x0020);
  });
});

describe('petrel run with dns and tls in its config', () => {
  it('refuses a resolver that is not on loopback and an unreadable CA file, naming the key (exit 2)', () => {
    const config = path.join(t.dir, 'bad.json');
    writeFileSync(config, JSON.stringify({ dns: { resolver: '192.0.2.53:53' } }));
    const remote = runPetrel(['run', '--config', config]);
    expect(remote.code).toBe(2);
    expect(remote.stderr).toMatch(/`dns\.resolver`: dns resolver `192\.0\.2\.53:53` is not a loopback address/);
    writeFileSync(config, JSON.stringify({ tls: { extraCaFiles: ['no-such-ca.pem'] } }));
    const missing = runPetrel(['run', '--config', config]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/cannot read `tls\.extraCaFiles\.0` no-such-ca\.pem/);
    writeFileSync(config, JSON.stringify({ tls: { mtaSts: { colour: 'red' } } }));
    expect(runPetrel(['run', '--config', config]).stderr).toMatch(/unknown key `tls\.mtaSts\.colour`/);
  });

  it('delivers by DANE-EE, defers a TLSA mismatch, and writes the TLS-RPT files where the config says', async () => {
    const policyFile = path.join(t.dir, 'tls.policy');
    writeFileSync(policyFile, POLICY);
    const config = path.join(t.dir, 'petrel.json');
    const domains: Domain[] = ['ok.dane.test', 'mismatch.dane.test'];
    writeFileSync(config, JSON.stringify({
      policies: [policyFile, 'stdlib'],
      spool: path.join(t.dir, 'spool'),
      acct: path.join(t.dir, 'acct'),
      artifact: path.join(t.dir, 'artifact'),
      mxOverride: Object.fromEntries(domains.map((d) => [d, `${ROUTES[d]}:${sinks[d].port}`])),
      dns: { resolver: dns.resolver },
      tls: { extraCaFiles: [ca.certFile], reportDir: path.join(t.dir, 'tlsrpt'), reportOrganization: 'petrel.test' },
    }));
    const before = sinks['ok.dane.test'].received.length;
    const petrel = await startPetrel(['--config', config, '--no-watch']);
    try {
      const client = nodemailer.createTransport({ host: '127.0.0.1', port: petrel.smtp, secure: false, ignoreTLS: true });
      for (const d of domains) await client.sendMail({ from: 'news@shop.example', to: `cli@${d}`, subject: d, text: 'x' });
      const rows = await until('both outcomes', () => {
        const r = readAccounting(path.join(t.dir, 'acct')).filter((x) => x.type !== 'r');
        return r.length >= 2 && r;
      });
      expect(rows.find((r) => r.rcpt === 'cli@ok.dane.test')).toMatchObject({ type: 'd', tlsVerified: 'dane-ee' });
      expect(rows.find((r) => r.rcpt === 'cli@mismatch.dane.test')?.dsnDiag).toContain('does not match the TLSA records of bad.dane.test');
      expect(sinks['ok.dane.test'].received.length).toBe(before + 1);
    } finally {
      expect(await petrel.stop()).toBe(0);
    }
    // Written at stop at the latest.
    expect(readReport(path.join(t.dir, 'tlsrpt'), 'ok.dane.test')['organization-name']).toBe('petrel.test');
    expect(readReport(path.join(t.dir, 'tlsrpt'), 'mismatch.dane.test').policies[0]!.summary['total-failure-session-count']).toBeGreaterThan(0);
  }, 60_000);
});
