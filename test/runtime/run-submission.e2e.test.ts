/**
 * SMTP submission security over loopback, nodemailer as the client: STARTTLS with the
 * configured certificate, AUTH PLAIN and LOGIN against scrypt hashes, relaying for
 * authenticated users from outside the client networks, and refusals for everyone else.
 * Clients bind 127.0.0.2; the client networks are `127.0.0.1` only, so nothing relays
 * from there without AUTH.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import nodemailer from 'nodemailer';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Runtime } from '../../runtime/runtime.ts';
import { SpoolError } from '../../runtime/spool/errors.ts';
import { smtpLimitsFromConfig } from '../../runtime/intake/submission-limits.ts';
import { createSubmissionServer, hashPassword, verifyPassword, type SubmissionOptions } from '../../runtime/intake/submission-smtp.ts';
import { e2eCase, readAccounting, selfSignedCertificate, until } from './fixtures/e2e.ts';
import type { Sink } from './fixtures/sink.ts';

const NAME = 'submit.petrel.test';
const OUTSIDE = '127.0.0.2';
const POLICY = 'policy submission version 1\n\ndefault {\n  connections 2\n}\n';

let certDir: string;
let tls: { key: Buffer; cert: Buffer };
let users: SubmissionOptions['users'];
beforeAll(async () => {
  certDir = mkdtempSync(path.join(tmpdir(), 'petrel-submission-cert-'));
  tls = selfSignedCertificate(certDir, NAME);
  users = [{ user: 'app', passwordHash: await hashPassword('correct horse') }];
});
afterAll(() => rmSync(certDir, { recursive: true, force: true }));

const t = e2eCase('submission', 2_000);
let sink: Sink;

async function start(smtp: Partial<SubmissionOptions>): Promise<Runtime> {
  sink = await t.sink();
  return t.start(POLICY, { smtp: { host: '127.0.0.1', port: 0, clientNetworks: ['127.0.0.1'], ...smtp }, mxOverride: { '*': `127.0.0.1:${sink.port}` } });
}

/** A client connection from 127.0.0.2 that verifies our certificate (so TLS is with *this* server). */
function connect(port: number, options: { ignoreTLS?: boolean } = {}): Promise<SMTPConnection> {
  const connection = new SMTPConnection({ host: '127.0.0.1', port, localAddress: OUTSIDE, name: 'client.test', ...(options.ignoreTLS ? { ignoreTLS: true } : { requireTLS: true, tls: { ca: tls.cert, servername: NAME } }), connectionTimeout: 5000 });
  connection.on('error', () => undefined);
  return new Promise((resolve, reject) => connection.connect((e?: Error) => (e ? reject(e) : resolve(connection))));
}

function login(c: SMTPConnection, user: string, pass: string, method: 'PLAIN' | 'LOGIN'): Promise<void> {
  return new Promise((resolve, reject) => c.login({ user, pass, method }, (e) => (e ? reject(e) : resolve())));
}

function send(c: SMTPConnection, to: string): Promise<SMTPConnection.SentMessageInfo> {
  return new Promise((resolve, reject) => c.send({ from: 'app@shop.example', to: [to] }, `Subject: s\r\n\r\nto ${to}\r\n`, (e, info) => (e ? reject(e) : resolve(info))));
}

/** The EHLO keywords a plain-text client sees. */
async function ehloKeywords(port: number): Promise<string[]> {
  const socket = net.connect({ host: '127.0.0.1', port, localAddress: OUTSIDE });
  let text = '';
  socket.setEncoding('utf8');
  socket.on('data', (d: string) => {
    text += d;
    if (/^220 /m.test(text) && !text.includes('EHLO-SENT')) {
      text += 'EHLO-SENT\n';
      socket.write('EHLO client.test\r\n');
    }
  });
  await until('the EHLO reply', () => /^250 /m.test(text.split('EHLO-SENT')[1] ?? ''), 5000);
  socket.end('QUIT\r\n');
  return text
    .split('EHLO-SENT\n')[1]!
    .split('\r\n')
    .filter((l) => /^250[- ]/.test(l))
    .slice(1)
    .map((l) => l.slice(4));
}

describe('SMTP submission: STARTTLS and AUTH', () => {
  it('offers STARTTLS with the configured certificate, then AUTH PLAIN lets a client outside the networks relay', async () => {
    const r = await start({ tls, users });
    expect(await ehloKeywords(r.smtpPort)).toEqual(expect.arrayContaining(['STARTTLS', 'AUTH PLAIN LOGIN']));
    const c = await connect(r.smtpPort);
    expect(c.secure).toBe(true);
    await login(c, 'app', 'correct horse', 'PLAIN');
    const info = await send(c, 'plain@relay.example');
    expect(info.response).toMatch(/^250 2\.0\.0 queued as \S+$/);
    c.quit();
    await until('delivery', () => r.status().delivered === 1);
    expect(sink.received.map((m) => m.to)).toEqual([['plain@relay.example']]);
    await r.stop(1000);
    t.runtime = undefined;
    expect(readAccounting(path.join(t.dir, 'acct')).map((row) => [row.type, row.rcpt])).toEqual([
      ['r', 'plain@relay.example'],
      ['d', 'plain@relay.example'],
    ]);
  });

  it('AUTH LOGIN through nodemailer\'s transport relays too', async () => {
    const r = await start({ tls, users });
    const transport = nodemailer.createTransport({ host: '127.0.0.1', port: r.smtpPort, localAddress: OUTSIDE, requireTLS: true, tls: { ca: tls.cert, servername: NAME }, auth: { user: 'app', pass: 'correct horse' }, authMethod: 'LOGIN' });
    const info = await transport.sendMail({ from: 'app@shop.example', to: 'login@relay.example', subject: 's', text: 'via AUTH LOGIN' });
    expect(info.response).toMatch(/^250 /);
    await until('delivery', () => r.status().delivered === 1);
    expect(sink.received[0]!.raw).toContain('via AUTH LOGIN');
  });

  it('refuses a wrong password or an unknown user with 535 5.7.8, and relays nothing for them', async () => {
    const r = await start({ tls, users });
    for (const [user, pass, method] of [['app', 'wrong horse', 'PLAIN'], ['app', 'wrong horse', 'LOGIN'], ['nobody', 'correct horse', 'PLAIN']] as const) {
      const c = await connect(r.smtpPort);
      await expect(login(c, user, pass, method)).rejects.toMatchObject({ responseCode: 535, response: '535 5.7.8 Authentication credentials invalid' });
      await expect(send(c, 'x@relay.example')).rejects.toMatchObject({ responseCode: 550, response: '550 5.7.1 Relaying denied' });
      c.close();
    }
    expect(r.status().accepted).toBe(0);
  });

  it('refuses to relay for an unauthenticated client outside the networks, even over TLS', async () => {
    const r = await start({ tls, users });
    const c = await connect(r.smtpPort);
    expect(c.secure).toBe(true);
    await expect(send(c, 'open-relay@relay.example')).rejects.toMatchObject({ responseCode: 550, response: '550 5.7.1 Relaying denied' });
    c.close();
    expect(r.status().accepted).toBe(0);
  });

  it('refuses AUTH before STARTTLS; the password never crosses in clear', async () => {
    const r = await start({ tls, users });
    const c = await connect(r.smtpPort, { ignoreTLS: true });
    expect(c.secure).toBe(false);
    await expect(login(c, 'app', 'correct horse', 'PLAIN')).rejects.toMatchObject({ responseCode: 538 });
    await expect(send(c, 'x@relay.example')).rejects.toMatchObject({ responseCode: 550 });
    c.close();
    expect(r.status().accepted).toBe(0);
  });

  it('with allowInsecureAuth and no certificate: AUTH in plain text works and STARTTLS is not offered', async () => {
    const r = await start({ users, allowInsecureAuth: true });
    const keywords = await ehloKeywords(r.smtpPort);
    expect(keywords).toContain('AUTH PLAIN LOGIN');
    expect(keywords).not.toContain('STARTTLS');
    const c = await connect(r.smtpPort, { ignoreTLS: true });
    await login(c, 'app', 'correct horse', 'PLAIN');
    await send(c, 'insecure@relay.example');
    c.quit();
    await until('delivery', () => r.status().delivered === 1);
  });

  it('without users or a certificate offers neither AUTH nor STARTTLS (smtp-server\'s built-in certificate is never used)', async () => {
    const r = await start({});
    const keywords = await ehloKeywords(r.smtpPort);
    expect(keywords.filter((k) => /^(AUTH|STARTTLS)/.test(k))).toEqual([]);
    expect(keywords).toEqual(expect.arrayContaining(['PIPELINING', '8BITMIME', 'SMTPUTF8']));
  });

  it('will not build a server with users but neither a certificate nor allowInsecureAuth, or with a malformed hash', () => {
    const build = (smtp: Partial<SubmissionOptions>) => () => createSubmissionServer({ host: '127.0.0.1', port: 0, name: NAME, ...smtp }, { acceptMessage: () => Promise.reject(new Error('unused')), isStopping: () => false });
    expect(build({ users })).toThrow('submission users need TLS (a key and certificate) or allowInsecureAuth');
    expect(build({ users: [{ user: 'app', passwordHash: 'correct horse' }], allowInsecureAuth: true })).toThrow(/^submission user `app`: password hash is not in the form/);
  });
});

describe('password hashes', () => {
  it('verifies the password it was made from, and only that one', async () => {
    const hash = await hashPassword('pässword 1');
    expect(hash).toMatch(/^scrypt\$ln=14,r=8,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/);
    expect(await hashPassword('pässword 1')).not.toBe(hash);
    expect(await verifyPassword('pässword 1', hash)).toBe(true);
    expect(await verifyPassword('pässword 2', hash)).toBe(false);
    expect(await verifyPassword('pässword 1', hash.replace('ln=14', 'ln=15'))).toBe(false);
    expect(await verifyPassword('pässword 1', 'plaintext')).toBe(false);
  });
});

describe('spool failures at end of DATA', () => {
  /** A submission server whose spool fails with `error`; resolves with what a client is answered. */
  async function answerTo(error: Error): Promise<string> {
    const server = createSubmissionServer({ host: '127.0.0.1', port: 0, name: NAME }, { acceptMessage: () => Promise.reject(error), isStopping: () => false });
    const port = await server.listen();
    try {
      const transport = nodemailer.createTransport({ host: '127.0.0.1', port, ignoreTLS: true });
      const e = await transport.sendMail({ from: 'a@shop.example', to: 'b@example.org', text: 'x' }).then(() => undefined, (err: { response?: string }) => err);
      transport.close();
      return e?.response ?? 'accepted';
    } finally {
      await server.close(0);
    }
  }

  it('answers a full spool with 452 4.3.1 and any other spool failure with 451 4.3.0, never with the spool\'s own text', async () => {
    expect(await answerTo(new SpoolError('no-space', 'no space left for `/var/spool/seg-000042`'))).toBe('452 4.3.1 Insufficient system storage');
    expect(await answerTo(new SpoolError('failed', 'fsync of `/var/spool/seg-000042` failed'))).toBe('451 4.3.0 Temporary local problem, try again later');
    expect(await answerTo(new Error('EIO: /var/spool'))).toBe('451 4.3.0 Temporary local problem, try again later');
  });
});

describe('submission limits from the config file', () => {
  it('turns seconds into milliseconds and passes only the keys given', () => {
    expect(smtpLimitsFromConfig({})).toEqual({});
    expect(smtpLimitsFromConfig({ maxRecipients: 50, idleTimeoutSeconds: 1.5, auth: { lockoutSeconds: 60, maxConcurrentChecks: 2 } })).toEqual({ maxRecipients: 50, idleTimeoutMs: 1500, auth: { lockoutMs: 60_000, maxConcurrentChecks: 2 } });
  });

  it('refuses limits that contradict each other, naming the keys', () => {
    expect(() => smtpLimitsFromConfig({ maxMessageBytes: 10_000_000, maxBufferedBytes: 1_000_000 })).toThrow('`smtp.maxBufferedBytes` (1000000) must be at least `smtp.maxMessageBytes` (10000000)');
    expect(() => smtpLimitsFromConfig({ maxConnections: 10, maxConnectionsPerIp: 20 })).toThrow('`smtp.maxConnectionsPerIp` must be at most `smtp.maxConnections` (10)');
    expect(() => createSubmissionServer({ host: '127.0.0.1', port: 0, name: NAME, maxMessageBytes: 2048, maxBufferedBytes: 1024 }, { acceptMessage: () => Promise.reject(new Error('unused')), isStopping: () => false })).toThrow('maxBufferedBytes (1024) is less than maxMessageBytes (2048)');
  });
});
