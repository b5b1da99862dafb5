/**
 * Checks on received mail through the real `petrel run`: the config's `inbound` section
 * turns them on and its DNS is the config's `dns.resolver` (a loopback DNS server of this
 * test, never the real DNS): the lookups reach it and the delivered message carries our
 * Authentication-Results; a bad disposition exits 2 naming the key.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import nodemailer from 'nodemailer';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { killAllPetrel, startPetrel } from '../../cli/petrel-process.ts';
import { startDnsServer, type DnsServer } from '../fixtures/dns-server.ts';
import { until } from '../fixtures/e2e.ts';
import { startSink, type Sink } from '../fixtures/sink.ts';

let dir: string;
let sink: Sink;
let dns: DnsServer;

beforeEach(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'petrel-inbound-cli-'));
  sink = await startSink();
  dns = await startDnsServer({});
});
afterEach(async () => {
  await killAllPetrel();
  await sink.close();
  await dns.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Writes the config with `inbound` and returns its path. */
function config(inbound: unknown): string {
  const file = path.join(dir, 'petrel.config.json');
  const base = { spool: path.join(dir, 'spool'), acct: path.join(dir, 'acct'), artifact: path.join(dir, 'artifact'), ehlo: 'mx.petrel.test', graceSeconds: 2, mxOverride: { '*': `127.0.0.1:${sink.port}` } };
  writeFileSync(file, JSON.stringify({ ...base, dns: { resolver: `127.0.0.1:${dns.port}`, timeoutMs: 2000 }, inbound }));
  return file;
}

it('inbound with checkClientNetworks: lookups go to dns.resolver and the sink gets our Authentication-Results, the forged one gone', async () => {
  const petrel = await startPetrel(['--config', config({ checkClientNetworks: true })]);
  const transport = nodemailer.createTransport({ host: '127.0.0.1', port: petrel.smtp, secure: false, ignoreTLS: true });
  const raw = 'Authentication-Results: mx.petrel.test; dmarc=pass header.from=bank.example\r\nFrom: <a@sender.test>\r\nTo: <r@receiver.test>\r\nSubject: cli1\r\n\r\nHi.\r\n';
  await transport.sendMail({ envelope: { from: 'a@sender.test', to: ['r@receiver.test'] }, raw });
  transport.close();
  const got = await until('the sink receives cli1', () => sink.received.find((m) => m.raw.includes('Subject: cli1')));
  expect(got.raw).toMatch(/^Received-SPF: none[\s\S]*Authentication-Results: mx\.petrel\.test;\r\n dkim=none/m);
  expect(got.raw).toMatch(/spf=none .*smtp\.mailfrom=a@sender\.test/);
  expect(got.raw).not.toContain('bank.example');
  expect(dns.queries).toEqual(expect.arrayContaining(['TXT sender.test', 'TXT _dmarc.sender.test']));
}, 60_000);

it('an unknown disposition exits 2 naming inbound', async () => {
  await expect(startPetrel(['--config', config({ spfFail: 'bounce' })])).rejects.toThrow(/exited 2[\s\S]*inbound/);
}, 60_000);
