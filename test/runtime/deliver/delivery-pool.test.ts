/**
 * The delivery worker pool against real smtp-server instances on loopback: sessions held
 * by worker threads must answer exactly as in-process sessions do, share threads without
 * one slow MX holding the others, and end as lost connections when their thread dies.
 */
import { type AddressInfo, createServer } from 'node:net';
import { Readable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { createDeliveryPool, type DeliveryPool } from '../../../runtime/deliver/delivery-pool.ts';
import { LOCAL_REPLIES, openSession, type SessionOptions, type SmtpSession } from '../../../runtime/deliver/smtp-client.ts';
import { startSink, type Sink, type SinkOptions } from '../fixtures/sink.ts';

const pools: DeliveryPool[] = [];
const sinks: Sink[] = [];
const sessions: SmtpSession[] = [];

afterEach(async () => {
  await Promise.all(sessions.splice(0).map((s) => s.close()));
  await Promise.all(pools.splice(0).map((p) => p.close()));
  for (const sink of sinks) sink.dropConnections();
  await Promise.all(sinks.splice(0).map((s) => s.close()));
});

function pool(threads = 2): DeliveryPool {
  const p = createDeliveryPool({ threads });
  pools.push(p);
  return p;
}

async function sink(options: SinkOptions = {}): Promise<Sink> {
  const s = await startSink(options);
  sinks.push(s);
  return s;
}

function options(port: number, extra: Partial<SessionOptions> = {}): SessionOptions {
  return { host: '127.0.0.1', port, ehlo: 'mta1.petrel.test', tls: 'opportunistic', connectTimeoutMs: 2_000, greetingTimeoutMs: 5_000, socketTimeoutMs: 5_000, ...extra };
}

async function open(p: DeliveryPool, port: number, extra: Partial<SessionOptions> = {}): Promise<SmtpSession> {
  const result = await p.openSession(options(port, extra));
  if (!result.ok) throw new Error(`session failed in ${result.phase}: ${result.reply}`);
  sessions.push(result.session);
  return result.session;
}

function message(subject: string): Buffer {
  return Buffer.from(`From: <bulk@sender.test>\r\nTo: <a@rcpt.test>\r\nSubject: ${subject}\r\n\r\n.dotted line\r\nGrüße\r\n`);
}

const lost = (rcpt: string) => ({ rcpt, accepted: false, reply: LOCAL_REPLIES.connectionLost(), phase: 'mail', synthesized: true });

/** A port on loopback nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('delivery pool', { timeout: 30_000 }, () => {
  it('delivers several messages over one session, on one connection, bytes intact', async () => {
    const mx = await sink();
    const session = await open(pool(), mx.port);
    expect(session.remoteAddress).toBe('127.0.0.1');
    expect(session.secure).toBe(false);
    const raw = message('one');
    for (const to of [['a@rcpt.test'], ['b@rcpt.test', 'c@rcpt.test'], ['d@rcpt.test']]) {
      const result = await session.send({ from: 'bulk@sender.test', to, raw });
      expect(result.perRecipient.map((r) => [r.rcpt, r.accepted, r.phase])).toEqual(to.map((r) => [r, true, 'data']));
    }
    // The caller's buffer is copied, not taken: it can be sent again (next MX, next batch).
    expect(raw.equals(message('one'))).toBe(true);
    const stream = Readable.from([message('streamed')]);
    expect((await session.send({ from: '', to: ['e@rcpt.test'], raw: stream })).perRecipient[0]).toMatchObject({ accepted: true });

    expect(session.messagesSent).toBe(4);
    expect(session.transactions).toBe(4);
    expect(mx.connections).toBe(1);
    expect(mx.received.map((r) => r.to)).toEqual([['a@rcpt.test'], ['b@rcpt.test', 'c@rcpt.test'], ['d@rcpt.test'], ['e@rcpt.test']]);
    expect(mx.received[0]!.raw).toBe(message('one').toString());
    expect(mx.received[0]!.ehlo).toBe('mta1.petrel.test');
    await session.close();
    expect(session.closed).toBe(true);
  });

  it('passes recipient refusals through as the server wrote them', async () => {
    const mx = await sink({ refuse: (rcpt) => (rcpt.startsWith('unknown@') ? { code: 550, text: '5.1.1 No such user' } : undefined) });
    const session = await open(pool(), mx.port);
    const result = await session.send({ from: 'bulk@sender.test', to: ['unknown@rcpt.test', 'a@rcpt.test'], raw: message('mixed') });
    expect(result.perRecipient).toEqual([
      { rcpt: 'unknown@rcpt.test', accepted: false, reply: '550 5.1.1 No such user', phase: 'rcpt', synthesized: false },
      expect.objectContaining({ rcpt: 'a@rcpt.test', accepted: true, phase: 'data' }),
    ]);
  });

  it('is ready once every thread has loaded; a worker file that does not load fails ready()', async () => {
    const p = pool(2);
    await p.ready();
    expect(p.stats()).toMatchObject({ threads: 2, sessions: 0, queued: 0, lostToCrashes: 0 });
    const broken = createDeliveryPool({ threads: 1, workerFile: '/nonexistent/delivery-worker.mjs' });
    pools.push(broken);
    await expect(broken.ready()).rejects.toThrow(/^delivery worker thread failed: .*nonexistent/);
  });

  it('answers a refused connection with the same synthesized reply as the in-process client', async () => {
    const port = await closedPort();
    const inProcess = await openSession(options(port));
    expect(inProcess).toEqual({ ok: false, phase: 'connect', reply: '421 4.4.1 no answer from host (connection refused)', synthesized: true });
    expect(await pool().openSession(options(port))).toEqual(inProcess);
  });

  it('throws the in-process TypeError for invalid options', async () => {
    const p = pool();
    const bad = options(25, { ehlo: 'two words' });
    await expect(openSession(bad)).rejects.toThrow(new TypeError('invalid EHLO name "two words"'));
    await expect(p.openSession(bad)).rejects.toThrow(new TypeError('invalid EHLO name "two words"'));
    expect(p.stats().sessions).toBe(0);
  });

  it('throws as in-process on overlapping sends and on send after close', async () => {
    const mx = await sink({ delayMs: 200 });
    const session = await open(pool(), mx.port);
    const first = session.send({ from: 'bulk@sender.test', to: ['a@rcpt.test'], raw: message('first') });
    await expect(session.send({ from: 'bulk@sender.test', to: ['b@rcpt.test'], raw: message('second') })).rejects.toThrow('send: a transaction is already in progress on this session');
    await expect(session.send({ from: 'bulk@sender.test', to: [], raw: message('none') })).rejects.toThrow('send: a transaction is already in progress on this session');
    // close waits for the send in progress, which completes.
    const closing = session.close();
    expect(session.closed).toBe(true);
    expect((await first).perRecipient[0]).toMatchObject({ accepted: true });
    await closing;
    await expect(session.send({ from: 'bulk@sender.test', to: ['a@rcpt.test'], raw: message('late') })).rejects.toThrow('send: the session was closed');
    expect(mx.received).toHaveLength(1);
  });

  it('flips `closed` when the server drops an idle session, and the next send reports the lost connection', async () => {
    const mx = await sink();
    const session = await open(pool(), mx.port);
    await session.send({ from: 'bulk@sender.test', to: ['a@rcpt.test'], raw: message('before') });
    expect(session.closed).toBe(false);
    mx.dropConnections();
    await session.ended;
    expect(session.closed).toBe(true);
    const result = await session.send({ from: 'bulk@sender.test', to: ['a@rcpt.test', 'b@rcpt.test'], raw: message('after') });
    expect(result).toEqual({ perRecipient: [lost('a@rcpt.test'), lost('b@rcpt.test')] });
    await session.close();
  });

  it('reports a connection dropped during DATA to every recipient, closed already when the result arrives', async () => {
    const mx = await sink({ dropInData: () => true });
    const session = await open(pool(), mx.port);
    const result = await session.send({ from: 'bulk@sender.test', to: ['a@rcpt.test', 'b@rcpt.test'], raw: message('dropped') });
    expect(session.closed).toBe(true);
    for (const r of result.perRecipient) {
      expect(r).toMatchObject({ accepted: false, phase: 'data', synthesized: true });
      expect(r.reply).toMatch(/^421 4\.4\.2 connection lost( \(E[A-Z]+\))?$/);
    }
    expect(result.messageReply).toBeUndefined();
  });

  it('keeps delivering to a fast MX while many sessions wait on a slow banner in the same thread', async () => {
    const slow = await sink({ bannerDelayMs: () => 5_000 });
    const fast = await sink();
    const p = pool(1);
    let slowSettled = 0;
    const waiting = Array.from({ length: 40 }, () =>
      p.openSession(options(slow.port, { greetingTimeoutMs: 15_000, socketTimeoutMs: 15_000 })).then((r) => {
        slowSettled++;
        if (r.ok) sessions.push(r.session);
        return r;
      }),
    );
    const session = await open(p, fast.port);
    for (let i = 0; i < 5; i++) await session.send({ from: 'bulk@sender.test', to: [`r${i}@rcpt.test`], raw: message(`fast ${i}`) });
    expect(fast.received).toHaveLength(5);
    // Everything on the fast MX is done while every slow greeting is still due.
    expect(slowSettled).toBe(0);
    expect(p.stats()).toMatchObject({ threads: 1, sessions: 41, queued: 0 });
    const results = await Promise.all(waiting);
    expect(results.filter((r) => !r.ok)).toEqual([]);
  });

  it('close() of the pool closes its sessions and refuses new ones', async () => {
    const mx = await sink();
    const p = createDeliveryPool({ threads: 2 });
    const opened = await Promise.all([0, 1, 2, 3].map(() => p.openSession(options(mx.port))));
    const list = opened.map((r) => (r.ok ? r.session : expect.unreachable(`failed: ${JSON.stringify(r)}`)));
    expect(mx.concurrent).toBe(4);
    await p.close();
    expect(list.every((s) => s.closed)).toBe(true);
    expect(p.stats()).toMatchObject({ threads: 0, sessions: 0 });
    await waitFor(() => mx.concurrent === 0);
    await expect(p.openSession(options(mx.port))).rejects.toThrow('openSession: the delivery pool is closed');
  });

  it('ends every session of a dead worker thread as a lost connection, and goes on with a new thread', async () => {
    const mx = await sink();
    const dropping = await sink();
    const slowData = await sink({ delayMs: 10_000 });
    const slowBanner = await sink({ bannerDelayMs: () => 10_000 });
    const p = pool(2);
    const idle = await open(p, mx.port);
    const dropped = await open(p, dropping.port);
    const busy = await open(p, slowData.port);
    dropping.dropConnections();
    await dropped.ended;
    const idle2 = await open(p, mx.port);
    const sending = busy.send({ from: 'bulk@sender.test', to: ['a@rcpt.test', 'b@rcpt.test'], raw: message('in flight') });
    const opening = p.openSession(options(slowBanner.port));
    await waitFor(() => slowBanner.concurrent === 1 && slowData.concurrent === 1);

    await Promise.all(p.threads.map((t) => t.terminate()));

    expect(await sending).toEqual({ perRecipient: [lost('a@rcpt.test'), lost('b@rcpt.test')] });
    expect(await opening).toEqual({ ok: false, phase: 'connect', reply: LOCAL_REPLIES.connectionLost(), synthesized: true });
    for (const s of [idle, idle2, busy, dropped]) {
      await s.ended;
      expect(s.closed).toBe(true);
    }
    expect(await idle2.send({ from: 'bulk@sender.test', to: ['c@rcpt.test'], raw: message('after') })).toEqual({ perRecipient: [lost('c@rcpt.test')] });
    // close() of a session whose thread is gone resolves (nothing left to wait for).
    await Promise.all([idle, idle2, busy, dropped].map((s) => s.close()));
    // Lost: the two idle sessions, the busy one and the one being opened (not the one the server had dropped).
    expect(p.stats()).toMatchObject({ sessions: 0, lostToCrashes: 4 });

    // piscina replaces the threads; new sessions work.
    await waitFor(() => p.threads.length === 2);
    const fresh = await open(p, mx.port);
    expect((await fresh.send({ from: 'bulk@sender.test', to: ['d@rcpt.test'], raw: message('fresh') })).perRecipient[0]).toMatchObject({ accepted: true });
  });
});

/** Polls a condition every 10 ms, for up to 5 s. */
async function waitFor(condition: () => boolean): Promise<void> {
  const end = Date.now() + 5_000;
  while (!condition()) {
    if (Date.now() > end) throw new Error('condition not met within 5 s');
    await new Promise((r) => setTimeout(r, 10));
  }
}
