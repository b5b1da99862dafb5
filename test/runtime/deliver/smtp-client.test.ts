/**
 * The SMTP client against real smtp-server instances on loopback, scripted to answer as
 * receiving providers do. Servers hide their own enhanced status codes so every reply is
 * exactly the provider's text.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { SMTPServer, type SMTPServerOptions, type SMTPServerSession } from 'smtp-server';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { LOCAL_REPLIES, openSession, type SessionOptions, type SmtpSession } from '../../../runtime/deliver/smtp-client.ts';
import { selfSignedCertificate } from '../fixtures/e2e.ts';

const YAHOO_TS01 =
  '421 4.7.0 [TS01] Messages from 192.0.2.1 temporarily deferred due to user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes';
const USER_UNKNOWN = '550 5.1.1 <x@y>: Recipient address rejected: User unknown';
const OVER_QUOTA = '452 4.2.2 The email account that you tried to reach is over quota';
const GMAIL_SPAM = [
  '550-5.7.1 [192.0.2.1      12] Our system has detected that this message is',
  '550-5.7.1 likely unsolicited mail. To reduce the amount of spam sent to Gmail,',
  '550-5.7.1 this message has been blocked. Please visit',
  '550 5.7.1  https://support.google.com/mail/?p=UnsolicitedMessageError a1si1234567wrb.12 - gsmtp',
].join('\n');
const SENDER_REJECTED = '553 5.7.1 <bulk@sender.test>: Sender address rejected: not owned by user';

const EHLO = 'mta1.petrel.test';
const MX_NAME = 'mx.petrel.test';

/** An error smtp-server answers with, as `reply` reads; a multi-line `reply` gives a multi-line answer. */
function serverReply(reply: string): Error {
  const lines = reply.split('\n');
  const err = Object.assign(new Error(lines[0]!.slice(4)), { responseCode: Number(reply.slice(0, 3)) });
  // smtp-server writes an array message line by line, with the code on each (SMTPConnection#send).
  if (lines.length > 1) (err as { message: unknown }).message = lines.map((l) => l.slice(4));
  return err;
}

interface Received {
  from: string;
  to: string[];
  data: Buffer;
  ehlo: string;
  secure: boolean;
  remoteAddress: string;
}

interface Peer {
  port: number;
  server: SMTPServer;
  received: Received[];
  /** TCP connections accepted. */
  connections: number;
  /** What clients sent on plain-text connections, one string per connection. */
  transcripts: string[];
  sockets: Set<Socket>;
}

const peers: Peer[] = [];
const sessions: SmtpSession[] = [];
const timers: NodeJS.Timeout[] = [];

/** A server on 127.0.0.1 that accepts everything unless `options` hooks say otherwise. */
async function startPeer(options: SMTPServerOptions = {}): Promise<Peer> {
  const peer: Peer = { port: 0, server: undefined as never, received: [], connections: 0, transcripts: [], sockets: new Set() };
  const server = new SMTPServer({
    logger: false,
    disableReverseLookup: true,
    hideENHANCEDSTATUSCODES: true,
    hideSTARTTLS: true,
    authOptional: true,
    closeTimeout: 500,
    socketTimeout: 10_000,
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        peer.received.push(received(session, Buffer.concat(chunks)));
        callback(null, '2.0.0 Ok: queued as 4XyZ1');
      });
    },
    ...options,
  });
  server.on('error', () => undefined);
  server.server.on('connection', (socket: Socket) => {
    peer.connections++;
    peer.sockets.add(socket);
    const index = peer.transcripts.push('') - 1;
    socket.on('data', (chunk: Buffer) => (peer.transcripts[index] += chunk.toString('latin1')));
    socket.on('close', () => peer.sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  peer.server = server;
  peer.port = (server.server.address() as AddressInfo).port;
  peers.push(peer);
  return peer;
}

function received(session: SMTPServerSession, data: Buffer): Received {
  return {
    from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
    to: session.envelope.rcptTo.map((r) => r.address),
    data,
    ehlo: session.hostNameAppearsAs,
    secure: session.secure,
    remoteAddress: session.remoteAddress,
  };
}

/** Opens a session (to be closed after the test) or fails the test with the reply. */
async function open(peer: Peer, extra: Partial<SessionOptions> = {}): Promise<SmtpSession> {
  const result = await openSession(options(peer, extra));
  if (!result.ok) throw new Error(`session failed in ${result.phase}: ${result.reply}`);
  sessions.push(result.session);
  return result.session;
}

function options(peer: Peer, extra: Partial<SessionOptions> = {}): SessionOptions {
  return { host: '127.0.0.1', port: peer.port, ehlo: EHLO, tls: 'opportunistic', connectTimeoutMs: 2_000, greetingTimeoutMs: 2_000, socketTimeoutMs: 5_000, ...extra };
}

function message(subject: string, body = 'Hello.\r\n'): Buffer {
  return Buffer.from(`From: <bulk@sender.test>\r\nTo: <a@rcpt.test>\r\nSubject: ${subject}\r\nMessage-ID: <${subject.replace(/\W/g, '')}@sender.test>\r\n\r\n${body}`);
}

afterEach(async () => {
  await Promise.all(sessions.splice(0).map((s) => s.close()));
  for (const t of timers.splice(0)) clearTimeout(t);
  await Promise.all(
    peers.splice(0).map((peer) => {
      for (const socket of peer.sockets) socket.destroy();
      return new Promise<void>((resolve) => peer.server.close(() => resolve()));
    }),
  );
});

describe('delivery', { timeout: 15_000 }, () => {
  it('delivers the message bytes intact, says EHLO with our name, and QUITs on close', async () => {
    const peer = await startPeer();
    const session = await open(peer, { tls: 'disabled' });
    // A leading dot (dot-stuffed on the wire), 8-bit UTF-8, a long line and a blank line.
    const raw = message('intact', `.dotted line\r\n..two dots\r\nGrüße, 你好\r\n${'x'.repeat(2000)}\r\n\r\nend\r\n`);
    const result = await session.send({ from: 'bulk@sender.test', to: ['a@rcpt.test', 'b@rcpt.test'], raw });

    expect(result).toEqual({
      perRecipient: [
        { rcpt: 'a@rcpt.test', accepted: true, reply: '250 2.0.0 Ok: queued as 4XyZ1', phase: 'data', synthesized: false },
        { rcpt: 'b@rcpt.test', accepted: true, reply: '250 2.0.0 Ok: queued as 4XyZ1', phase: 'data', synthesized: false },
      ],
      messageReply: '250 2.0.0 Ok: queued as 4XyZ1',
    });
    expect(peer.received).toHaveLength(1);
    expect(peer.received[0]!.data.equals(raw)).toBe(true);
    expect(peer.received[0]).toMatchObject({ from: 'bulk@sender.test', to: ['a@rcpt.test', 'b@rcpt.test'], ehlo: EHLO, secure: false });
    expect(session).toMatchObject({ messagesSent: 1, transactions: 1, secure: false, tls: null, closed: false });

    await session.close();
    expect(session.closed).toBe(true);
    expect(peer.transcripts[0]).toMatch(/^EHLO mta1\.petrel\.test\r\n/);
    expect(peer.transcripts[0]).toMatch(/\r\nQUIT\r\n$/);
  });

  // Linux routes all of 127.0.0.0/8 to the loopback interface; other systems may not.
  it.runIf(process.platform === 'linux')('binds the connection to the source address', async () => {
    const peer = await startPeer();
    const session = await open(peer, { localAddress: '127.0.0.2' });
    expect(session.localAddress).toBe('127.0.0.2');
    expect(session.remoteAddress).toBe('127.0.0.1');
    await session.send({ from: 'bulk@sender.test', to: ['a@rcpt.test'], raw: message('bound') });
    expect(peer.received[0]!.remoteAddress).toBe('127.0.0.2');
  });

  it('reuses one connection for five messages, buffers and streams alike', async () => {
    const peer = await startPeer();
    const session = await open(peer);
    const sent: Buffer[] = [];
    for (let n = 1; n <= 5; n++) {
      const raw = message(`reuse ${n}`, `message ${n}\r\n`.repeat(500));
      sent.push(raw);
      const body = n % 2 ? raw : Readable.from([raw.subarray(0, 1000), raw.subarray(1000)]);
      const result = await session.send({ from: 'bulk@sender.test', to: [`r${n}@rcpt.test`], raw: body });
      expect(result.perRecipient[0]).toMatchObject({ accepted: true, phase: 'data' });
    }
    expect(peer.connections).toBe(1);
    expect(peer.received.map((r) => r.data.toString('latin1'))).toEqual(sent.map((b) => b.toString('latin1')));
    expect(session).toMatchObject({ messagesSent: 5, transactions: 5, closed: false });
  });

  it('refuses a second send while one is in progress', async () => {
    const peer = await startPeer();
    const session = await open(peer);
    const first = session.send({ from: 'bulk@sender.test', to: ['a@rcpt.test'], raw: message('first') });
    await expect(session.send({ from: 'bulk@sender.test', to: ['b@rcpt.test'], raw: message('second') })).rejects.toThrow(/in progress/);
    expect((await first).perRecipient[0]!.accepted).toBe(true);
  });

  it('throws when the message stream fails, and closes the session', async () => {
    const peer = await startPeer();
    const session = await open(peer);
    let reads = 0;
    const raw = new Readable({
      read() {
        if (reads++ === 0) this.push(message('half'));
        else this.destroy(new Error('spool read failed'));
      },
    });
    await expect(session.send({ from: 'bulk@sender.test', to: ['a@rcpt.test'], raw })).rejects.toThrow('spool read failed');
    expect(session.closed).toBe(true);
    expect(peer.received).toEqual([]);
  });

  it('answers invalid addresses itself and sends the rest', async () => {
    const peer = await startPeer();
    const session = await open(peer);
    const result = await session.send({ from: 'bulk@sender.test', to: ['bad\r\nRSET@rcpt.test', 'a@rcpt.test', ''], raw: message('addresses') });
    expect(result.perRecipient.map((r) => [r.accepted, r.phase, r.reply, r.synthesized])).toEqual([
      [false, 'rcpt', LOCAL_REPLIES.badRecipient, true],
      [true, 'data', '250 2.0.0 Ok: queued as 4XyZ1', false],
      [false, 'rcpt', LOCAL_REPLIES.badRecipient, true],
    ]);
    expect(peer.received[0]!.to).toEqual(['a@rcpt.test']);
  });
});

describe('replies as providers send them', { timeout: 15_000 }, () => {
  it("gives Yahoo's 421 deferral at RCPT to every recipient, and the session is closed", async () => {
    const peer = await startPeer({
      onRcptTo(_address, _session, callback) {
        callback(serverReply(YAHOO_TS01));
      },
    });
    const session = await open(peer);
    const result = await session.send({ from: 'bulk@sender.test', to: ['a@yahoo.test', 'b@yahoo.test'], raw: message('yahoo') });
    expect(result.perRecipient).toEqual([
      { rcpt: 'a@yahoo.test', accepted: false, reply: YAHOO_TS01, phase: 'rcpt', synthesized: false },
      { rcpt: 'b@yahoo.test', accepted: false, reply: YAHOO_TS01, phase: 'rcpt', synthesized: false },
    ]);
    expect(result.messageReply).toBeUndefined();
    expect(session.closed).toBe(true);
    expect(peer.received).toEqual([]);
  });

  it('rejects one of two recipients at RCPT and delivers to the other', async () => {
    const peer = await startPeer({
      onRcptTo(address, _session, callback) {
        callback(address.address === 'x@y' ? serverReply(USER_UNKNOWN) : null);
      },
    });
    const session = await open(peer);
    const result = await session.send({ from: 'bulk@sender.test', to: ['x@y', 'ok@rcpt.test'], raw: message('one of two') });
    expect(result.perRecipient).toEqual([
      { rcpt: 'x@y', accepted: false, reply: USER_UNKNOWN, phase: 'rcpt', synthesized: false },
      { rcpt: 'ok@rcpt.test', accepted: true, reply: '250 2.0.0 Ok: queued as 4XyZ1', phase: 'data', synthesized: false },
    ]);
    expect(peer.received.map((r) => r.to)).toEqual([['ok@rcpt.test']]);
    expect(session.messagesSent).toBe(1);
  });

  it('reports an over-quota recipient and keeps the session usable', async () => {
    const peer = await startPeer({
      onRcptTo(address, _session, callback) {
        callback(address.address.startsWith('full@') ? serverReply(OVER_QUOTA) : null);
      },
    });
    const session = await open(peer);
    const full = await session.send({ from: 'bulk@sender.test', to: ['full@rcpt.test'], raw: message('quota') });
    expect(full.perRecipient).toEqual([{ rcpt: 'full@rcpt.test', accepted: false, reply: OVER_QUOTA, phase: 'rcpt', synthesized: false }]);
    expect(session).toMatchObject({ closed: false, messagesSent: 0, transactions: 1 });

    const next = await session.send({ from: 'bulk@sender.test', to: ['ok@rcpt.test'], raw: message('after quota') });
    expect(next.perRecipient[0]).toMatchObject({ accepted: true, phase: 'data' });
    expect(peer.connections).toBe(1);
    expect(peer.transcripts[0]).toContain('\r\nRSET\r\n');
  });

  it('gives a multi-line Gmail refusal at end of data, every line, to every accepted recipient', async () => {
    let refuse = true;
    const peer = await startPeer({
      onRcptTo(address, _session, callback) {
        callback(address.address === 'x@y' ? serverReply(USER_UNKNOWN) : null);
      },
      onData(stream, _session, callback) {
        stream.resume();
        stream.on('end', () => callback(refuse ? serverReply(GMAIL_SPAM) : null));
      },
    });
    const session = await open(peer);
    const result = await session.send({ from: 'bulk@sender.test', to: ['a@gmail.test', 'x@y', 'b@gmail.test'], raw: message('spam') });
    expect(result).toEqual({
      perRecipient: [
        { rcpt: 'a@gmail.test', accepted: false, reply: GMAIL_SPAM, phase: 'data', synthesized: false },
        { rcpt: 'x@y', accepted: false, reply: USER_UNKNOWN, phase: 'rcpt', synthesized: false },
        { rcpt: 'b@gmail.test', accepted: false, reply: GMAIL_SPAM, phase: 'data', synthesized: false },
      ],
      messageReply: GMAIL_SPAM,
    });
    expect(result.messageReply!.split('\n')).toHaveLength(4);

    refuse = false;
    const next = await session.send({ from: 'bulk@sender.test', to: ['a@gmail.test'], raw: message('ham') });
    expect(next.perRecipient[0]).toMatchObject({ accepted: true, phase: 'data' });
    expect(peer.connections).toBe(1);
  });

  it('gives a refused sender to every recipient, in the mail phase', async () => {
    const peer = await startPeer({
      onMailFrom(_address, _session, callback) {
        callback(serverReply(SENDER_REJECTED));
      },
    });
    const session = await open(peer);
    const result = await session.send({ from: 'bulk@sender.test', to: ['a@rcpt.test', 'b@rcpt.test'], raw: message('sender') });
    expect(result.perRecipient).toEqual([
      { rcpt: 'a@rcpt.test', accepted: false, reply: SENDER_REJECTED, phase: 'mail', synthesized: false },
      { rcpt: 'b@rcpt.test', accepted: false, reply: SENDER_REJECTED, phase: 'mail', synthesized: false },
    ]);
    expect(session.closed).toBe(false);
  });

  it('refuses a message larger than the SIZE the server announced without sending it', async () => {
    const peer = await startPeer({ size: 1000 });
    const session = await open(peer);
    const result = await session.send({ from: 'bulk@sender.test', to: ['a@rcpt.test'], raw: message('big', 'x'.repeat(2000) + '\r\n') });
    expect(result.perRecipient).toEqual([{ rcpt: 'a@rcpt.test', accepted: false, reply: LOCAL_REPLIES.messageTooBig, phase: 'mail', synthesized: true }]);
    expect(session.transactions).toBe(0);
    expect(peer.transcripts[0]).not.toContain('MAIL FROM');
  });
});

describe('connection failures', { timeout: 15_000 }, () => {
  it('gives up on a slow banner with a synthesized 421', async () => {
    const peer = await startPeer({
      onConnect(_session, callback) {
        timers.push(setTimeout(() => callback(), 3_000));
      },
    });
    const started = Date.now();
    const result = await openSession(options(peer, { greetingTimeoutMs: 300 }));
    expect(result).toEqual({ ok: false, phase: 'connect', reply: '421 4.4.2 no greeting from host within 300 ms', synthesized: true });
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  it('passes on a refusing greeting as the server wrote it', async () => {
    const banner = '554 5.7.1 mx.example.test ESMTP not accepting messages from 192.0.2.1';
    const peer = await startPeer({
      onConnect(_session, callback) {
        callback(serverReply(banner));
      },
    });
    expect(await openSession(options(peer))).toEqual({ ok: false, phase: 'connect', reply: banner, synthesized: false });
  });

  it('reports a refused connection', async () => {
    const peer = await startPeer();
    const port = peer.port;
    await new Promise<void>((resolve) => peer.server.close(() => resolve()));
    peers.splice(peers.indexOf(peer), 1);
    expect(await openSession({ ...options(peer), port })).toEqual({ ok: false, phase: 'connect', reply: '421 4.4.1 no answer from host (connection refused)', synthesized: true });
  });

  it('reports a connection dropped during DATA to every recipient, and the session is closed', async () => {
    const peer = await startPeer({
      onData(stream) {
        stream.once('data', () => {
          for (const socket of peer.sockets) socket.destroy();
        });
      },
    });
    const session = await open(peer);
    const result = await session.send({ from: 'bulk@sender.test', to: ['a@rcpt.test', 'b@rcpt.test'], raw: message('dropped') });
    for (const r of result.perRecipient) {
      expect(r).toMatchObject({ accepted: false, phase: 'data', synthesized: true });
      expect(r.reply).toMatch(/^421 4\.4\.2 connection lost( \(E[A-Z]+\))?$/);
    }
    expect(result.messageReply).toBeUndefined();
    expect(session.closed).toBe(true);

    const again = await session.send({ from: 'bulk@sender.test', to: ['a@rcpt.test'], raw: message('again') });
    expect(again.perRecipient).toEqual([{ rcpt: 'a@rcpt.test', accepted: false, reply: LOCAL_REPLIES.connectionLost(), phase: 'mail', synthesized: true }]);
  });

  it('reports a server that goes silent after DATA', async () => {
    const peer = await startPeer({
      onData(stream) {
        stream.resume(); // and never answer
      },
    });
    const session = await open(peer, { socketTimeoutMs: 300 });
    const result = await session.send({ from: 'bulk@sender.test', to: ['a@rcpt.test'], raw: message('silent') });
    expect(result.perRecipient).toEqual([{ rcpt: 'a@rcpt.test', accepted: false, reply: '421 4.4.2 no reply from host within 300 ms', phase: 'data', synthesized: true }]);
    expect(session.closed).toBe(true);
  });
});

describe('STARTTLS', { timeout: 15_000 }, () => {
  let dir: string;
  let key: Buffer;
  let cert: Buffer;
  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'petrel-smtp-tls-'));
    ({ key, cert } = selfSignedCertificate(dir, MX_NAME));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const tlsPeer = (extra: SMTPServerOptions = {}) => startPeer({ hideSTARTTLS: false, key, cert, ...extra });

  it('opportunistic: uses TLS when offered, without verifying the certificate', async () => {
    const peer = await tlsPeer();
    const session = await open(peer, { tls: 'opportunistic' });
    expect(session.secure).toBe(true);
    expect(session.tls).toMatchObject({ authorized: false });
    await session.send({ from: 'bulk@sender.test', to: ['a@rcpt.test'], raw: message('tls') });
    expect(peer.received[0]!.secure).toBe(true);
  });

  it('opportunistic: delivers in plain text when TLS is not offered', async () => {
    const peer = await startPeer();
    const session = await open(peer, { tls: 'opportunistic' });
    expect(session.secure).toBe(false);
    await session.send({ from: 'bulk@sender.test', to: ['a@rcpt.test'], raw: message('plain') });
    expect(peer.received[0]!.secure).toBe(false);
  });

  it('opportunistic: reconnects without TLS when the handshake fails', async () => {
    const peer = await tlsPeer({ minVersion: 'TLSv1.3' });
    const session = await open(peer, { tls: 'opportunistic', tlsOptions: { maxVersion: 'TLSv1.2' } });
    expect(session.secure).toBe(false);
    expect(session.tlsFailure).toMatch(/^421 4\.7\.5 TLS handshake failed \(.+\)$/);
    expect(peer.connections).toBe(2);
    await session.send({ from: 'bulk@sender.test', to: ['a@rcpt.test'], raw: message('fallback') });
    expect(peer.received[0]!.secure).toBe(false);
  });

  it('required: fails when STARTTLS is not offered, without sending it or anything else', async () => {
    const peer = await startPeer();
    const result = await openSession(options(peer, { tls: 'required' }));
    expect(result).toEqual({ ok: false, phase: 'ehlo', reply: LOCAL_REPLIES.tlsNotOffered, synthesized: true });
    expect(peer.transcripts[0]).toBe(`EHLO ${EHLO}\r\nQUIT\r\n`);
  });

  it('required: accepts a self-signed certificate', async () => {
    const peer = await tlsPeer();
    const session = await open(peer, { tls: 'required' });
    expect(session.secure).toBe(true);
  });

  it('verify: fails against a self-signed certificate', async () => {
    const peer = await tlsPeer();
    const result = await openSession(options(peer, { tls: 'verify', mxHost: MX_NAME }));
    expect(result).toEqual({ ok: false, phase: 'ehlo', reply: LOCAL_REPLIES.tlsUntrusted('DEPTH_ZERO_SELF_SIGNED_CERT'), synthesized: true });
    expect(peer.received).toEqual([]);
  });

  it('verify: succeeds with the certificate trusted and the MX host name it names', async () => {
    const peer = await tlsPeer();
    const session = await open(peer, { tls: 'verify', mxHost: MX_NAME, tlsOptions: { ca: cert } });
    expect(session.secure).toBe(true);
    expect(session.tls).toMatchObject({ authorized: true, protocol: 'TLSv1.3' });
    await session.send({ from: 'bulk@sender.test', to: ['a@rcpt.test'], raw: message('verified') });
    expect(peer.received[0]!.secure).toBe(true);
  });

  it('verify: fails when the certificate names another host', async () => {
    const peer = await tlsPeer();
    const result = await openSession(options(peer, { tls: 'verify', mxHost: 'mx.elsewhere.test', tlsOptions: { ca: cert } }));
    expect(result).toEqual({ ok: false, phase: 'ehlo', reply: LOCAL_REPLIES.tlsUntrusted('ERR_TLS_CERT_ALTNAME_INVALID'), synthesized: true });
  });

  it('disabled: never starts TLS, even when offered', async () => {
    const peer = await tlsPeer();
    const session = await open(peer, { tls: 'disabled' });
    expect(session.secure).toBe(false);
    await session.send({ from: 'bulk@sender.test', to: ['a@rcpt.test'], raw: message('no tls') });
    expect(peer.transcripts[0]).not.toContain('STARTTLS');
  });
});
