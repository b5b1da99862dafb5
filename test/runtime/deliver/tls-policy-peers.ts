/**
 * The peers of the outbound TLS policy tests, all offline on loopback: a test CA and the
 * certificates it issues (openssl), DNS zones — some signed with ldns-keygen/ldns-signzone
 * — served by nsd behind a validating unbound that trusts the signed zones' keys, receiving
 * MXs that offer STARTTLS with a given certificate, and an HTTPS server for the
 * `mta-sts.<domain>` policy hosts. Every process is started with `startService` and
 * stopped by its PID.
 */
import { execFileSync } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { SMTPServer } from 'smtp-server';
import { startService, type Service } from '../../global-setup.ts';

const run = (cmd: string, args: string[], cwd?: string) => execFileSync(cmd, args, { cwd, stdio: 'pipe', timeout: 20_000 }).toString();

/** A certificate and its key, PEM. */
export interface Issued {
  key: string;
  cert: string;
}

/** A test CA (EC P-256, two days), which the client trusts only through the test's extra-CA option. */
export function makeCa(dir: string): Issued & { keyFile: string; certFile: string } {
  const keyFile = path.join(dir, 'ca.key');
  const certFile = path.join(dir, 'ca.pem');
  run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2', '-subj', '/CN=Petrel Test CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign', '-keyout', keyFile, '-out', certFile]);
  return { keyFile, certFile, key: readFileSync(keyFile, 'utf8'), cert: readFileSync(certFile, 'utf8') };
}

/** A certificate for `names` issued by `ca` (`ca` undefined: self-signed). */
export function issue(dir: string, names: string[], ca?: { keyFile: string; certFile: string }): Issued {
  const base = path.join(dir, names[0]!.replace(/[^a-z0-9.-]/g, '_') + (ca ? '' : '.self'));
  const san = `subjectAltName=${names.map((n) => `DNS:${n}`).join(',')}`;
  run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2', '-subj', `/CN=${names[0]}`, '-addext', san, '-addext', 'basicConstraints=CA:FALSE', ...(ca ? ['-CA', ca.certFile, '-CAkey', ca.keyFile] : []), '-keyout', `${base}.key`, '-out', `${base}.pem`]);
  return { key: readFileSync(`${base}.key`, 'utf8'), cert: readFileSync(`${base}.pem`, 'utf8') };
}

/** The TLSA association data (hex) of a PEM certificate for selector 0 (certificate) or 1 (SPKI), SHA-256. */
export function tlsaSha256(pem: string, selector: 0 | 1): string {
  const cert = new X509Certificate(pem);
  return createHash('sha256').update(selector === 0 ? cert.raw : cert.publicKey.export({ type: 'spki', format: 'der' })).digest('hex');
}

/** A zone: its origin and records in zone-file syntax, relative to it. */
export interface ZoneSpec {
  origin: string;
  records: string[];
  /** Signed with a fresh KSK and ZSK; its DS becomes unbound's trust anchor. */
  signed: boolean;
}

export interface TestDns {
  /** unbound's `127.0.0.1:port`: the validating resolver. */
  resolver: string;
  /** nsd's `127.0.0.1:port`: authoritative, never sets AD. */
  authoritative: string;
  stop(): Promise<void>;
}

/** Writes the zones (signing those marked), starts nsd with them and unbound in front. */
export async function startTestDns(dir: string, zones: ZoneSpec[]): Promise<TestDns> {
  const anchors: string[] = [];
  for (const z of zones) {
    const file = path.join(dir, `${z.origin}.zone`);
    writeFileSync(file, [`$ORIGIN ${z.origin}.`, '$TTL 60', `@ IN SOA ns.${z.origin}. hostmaster.${z.origin}. 1 3600 600 86400 60`, `@ IN NS ns.${z.origin}.`, 'ns IN A 127.0.0.1', ...z.records, ''].join('\n'));
    if (!z.signed) continue;
    const ksk = run('ldns-keygen', ['-a', 'ECDSAP256SHA256', '-k', z.origin], dir).trim();
    const zsk = run('ldns-keygen', ['-a', 'ECDSAP256SHA256', z.origin], dir).trim();
    run('ldns-signzone', ['-f', `${file}.signed`, file, ksk, zsk], dir);
    anchors.push(readFileSync(path.join(dir, `${ksk}.ds`), 'utf8'));
  }
  writeFileSync(path.join(dir, 'anchors.ds'), anchors.join(''));
  const nsd = await startService('nsd', (port) => {
    const conf = path.join(dir, 'nsd.conf');
    writeFileSync(conf, [
      'server:', `  ip-address: 127.0.0.1@${port}`, '  username: ""', '  chroot: ""', `  zonesdir: "${dir}"`, '  database: ""',
      `  pidfile: "${dir}/nsd.pid"`, `  xfrdfile: "${dir}/xfrd.state"`, `  zonelistfile: "${dir}/zone.list"`, `  logfile: "${dir}/nsd.log"`, '  server-count: 1', '  verbosity: 0',
      'remote-control:', '  control-enable: no',
      ...zones.flatMap((z) => ['zone:', `  name: ${z.origin}`, `  zonefile: ${z.origin}.zone${z.signed ? '.signed' : ''}`]),
    ].join('\n') + '\n');
    return ['-d', '-c', conf];
  });
  let unbound: Service;
  try {
    unbound = await startService('unbound', (port) => {
      const conf = path.join(dir, 'unbound.conf');
      writeFileSync(conf, [
        'server:', `  interface: 127.0.0.1@${port}`, `  port: ${port}`, '  do-daemonize: no', '  username: ""', '  chroot: ""', `  directory: "${dir}"`, `  pidfile: "${dir}/unbound.pid"`,
        '  use-syslog: no', '  logfile: ""', '  do-ip6: no', '  do-not-query-localhost: no', `  trust-anchor-file: "${dir}/anchors.ds"`, '  access-control: 127.0.0.0/8 allow',
        '  module-config: "validator iterator"', '  verbosity: 0',
        // unbound answers NXDOMAIN for test. itself (RFC 6761) unless told not to.
        '  local-zone: "test." nodefault',
        ...zones.flatMap((z) => ['stub-zone:', `  name: "${z.origin}"`, `  stub-addr: 127.0.0.1@${nsd.port}`]),
      ].join('\n') + '\n');
      return ['-d', '-c', conf];
    });
  } catch (e) {
    await nsd.stop();
    throw e;
  }
  return {
    resolver: `127.0.0.1:${unbound.port}`,
    authoritative: `127.0.0.1:${nsd.port}`,
    async stop() {
      await unbound.stop();
      await nsd.stop();
    },
  };
}

/** A receiving MX offering STARTTLS with `tls` (its chain may hold the CA after the leaf). */
export interface TlsSink {
  port: number;
  /** Recipients of every message received, and whether each came over TLS. */
  received: { to: string[]; secure: boolean }[];
  close(): Promise<void>;
}

export async function startTlsSink(tls: Issued): Promise<TlsSink> {
  const received: TlsSink['received'] = [];
  const server = new SMTPServer({
    key: tls.key,
    cert: tls.cert,
    authOptional: true,
    disabledCommands: ['AUTH'],
    logger: process.env.H19 === '1',
    onData(stream, session, cb) {
      stream.on('data', () => undefined);
      stream.on('end', () => {
        received.push({ to: session.envelope.rcptTo.map((r) => r.address), secure: session.secure });
        cb();
      });
    },
  });
  server.on('error', () => undefined);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: (server.server.address() as AddressInfo).port, received, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

/** An HTTPS server answering `/.well-known/mta-sts.txt` with `policies[Host]`; counts the fetches. */
export async function startPolicyServer(tls: Issued, policies: Record<string, string>): Promise<{ port: number; fetches: string[]; close(): Promise<void> }> {
  const fetches: string[] = [];
  const server = https.createServer({ key: tls.key, cert: tls.cert }, (req, res) => {
    const host = (req.headers.host ?? '').replace(/:\d+$/, '');
    fetches.push(host);
    const body = policies[host];
    if (req.url !== '/.well-known/mta-sts.txt' || body === undefined) return res.writeHead(404).end();
    res.writeHead(200, { 'content-type': 'text/plain' }).end(body);
  });
  server.on('tlsClientError', () => undefined);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    fetches,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
