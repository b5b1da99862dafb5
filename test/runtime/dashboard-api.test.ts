/**
 * The dashboard's API at the HTTP level, against a runtime started in this process (real
 * SMTP submission, a real sink as the receiving MX, a real version store):
 * - login with an SMTP user's password: the cookie's attributes, a session admits reads
 *   and same-origin changes, a cross-site POST with it is refused, logout ends it, the
 *   server-side expiry ends it, a wrong password is refused and the client locked out
 *   by AUTH's throttle, a user not in `dashboard.users` cannot log in;
 * - the message search finds a delivered message by Message-ID (with or without angle
 *   brackets), by queue id and by recipient, with its accounting trail;
 * - the diff of two kept versions shows the changed line, and refuses a bad hash.
 */
import { appendFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import nodemailer from 'nodemailer';
import { describe, expect, it } from 'vitest';
import { hashPassword } from '../../runtime/intake/submission-smtp.ts';
import { policyDiff } from '../../runtime/observe/dashboard/policy-diff.ts';
import { messageIdOf, openMessageIndex } from '../../runtime/observe/message-index.ts';
import { globMatch } from '../../runtime/decide/queue-ops.ts';
import { openVersionStore } from '../../runtime/policy/policy-versions.ts';
import { compileFiles } from '../helpers.ts';
import { e2eCase, until } from './fixtures/e2e.ts';

const KEY = 'dashboard-api-test-key-0123';
const POLICY = `policy plain version 1

provider fine {
  match domain fine.test
  rate 100/s
  on reply 550 /IP banned/ {
    disable source
    example "550 5.7.1 IP banned"
  }
}
`;
const t = e2eCase('dashboard-api');

/** A call of the runtime's HTTP API; `headers` as given (no key unless said). */
async function call(port: number, url: string, init: { body?: unknown; headers?: Record<string, string> } = {}) {
  const res = await fetch(`http://127.0.0.1:${port}${url}`, init.body === undefined ? { headers: init.headers ?? {} } : { method: 'POST', headers: { 'content-type': 'application/json', ...init.headers }, body: JSON.stringify(init.body) });
  return { status: res.status, cookie: res.headers.get('set-cookie'), body: (await res.json()) as Record<string, unknown> };
}

/** A runtime with two SMTP users, `ops` (allowed to log in, sessions of ten minutes) and `sender`, and a throttle that locks out after three failures. */
async function startWithLogin(clock?: () => number) {
  const users = [
    { user: 'ops', passwordHash: await hashPassword('right horse battery') },
    { user: 'sender', passwordHash: await hashPassword('sender pass') },
  ];
  return t.start(POLICY, {
    smtp: { host: '127.0.0.1', port: 0, users, allowInsecureAuth: true, auth: { failureDelayMs: 50, maxFailuresPerIp: 3, lockoutMs: 60_000 } },
    http: { host: '127.0.0.1', port: 0, apiKeys: [KEY] },
    dashboard: { users: ['ops'], sessionMinutes: 10 },
    ...(clock ? { clock } : {}),
  });
}

describe('dashboard login with the SMTP users\' hashes', () => {
  it('logs in, admits reads and same-origin changes, refuses cross-site ones, logs out, expires', async () => {
    let offset = 0;
    const rt = await startWithLogin(() => Date.now() + offset);
    const port = rt.httpPort;
    const origin = `http://127.0.0.1:${port}`;
    expect((await call(port, '/api/v1/status')).status).toBe(401);

    const login = await call(port, '/dashboard/api/login', { body: { user: 'ops', password: 'right horse battery' }, headers: { origin } });
    expect(login.status).toBe(200);
    expect(login.body.user).toBe('ops');
    const cookie = login.cookie!;
    expect(cookie).toMatch(/^petrel_session=[0-9a-f]{64}; Path=\/; HttpOnly; SameSite=Strict; Max-Age=600$/);
    const session = { cookie: cookie.split(';')[0]! };

    expect((await call(port, '/api/v1/status', { headers: session })).status).toBe(200);
    expect((await call(port, '/dashboard/api/session', { headers: session })).body.user).toBe('ops');
    // A change with the cookie: from this origin it is admitted, from another refused, without an Origin refused.
    expect((await call(port, '/api/v1/pause', { body: { queue: 'q1' }, headers: { ...session, origin } })).body).toEqual({ paused: ['queue:q1'] });
    expect((await call(port, '/api/v1/resume', { body: { queue: 'q1' }, headers: { ...session, origin: 'http://evil.test' } })).status).toBe(403);
    expect((await call(port, '/api/v1/resume', { body: { queue: 'q1' }, headers: session })).status).toBe(401);
    expect(rt.status().paused).toEqual(['queue:q1']);
    // A forged or unknown cookie admits nothing.
    expect((await call(port, '/api/v1/status', { headers: { cookie: `petrel_session=${'0'.repeat(64)}` } })).status).toBe(401);

    const out = await call(port, '/dashboard/api/logout', { body: {}, headers: { ...session, origin } });
    expect(out.body).toEqual({ loggedOut: true });
    expect(out.cookie).toMatch(/^petrel_session=; .*Max-Age=0/);
    expect((await call(port, '/api/v1/status', { headers: session })).status).toBe(401);

    // Server-side expiry: the same cookie is refused once its ten minutes have passed on the runtime's clock.
    const again = { cookie: (await call(port, '/dashboard/api/login', { body: { user: 'ops', password: 'right horse battery' } })).cookie!.split(';')[0]! };
    expect((await call(port, '/api/v1/status', { headers: again })).status).toBe(200);
    offset = 10 * 60_000 + 1000;
    expect((await call(port, '/api/v1/status', { headers: again })).status).toBe(401);
    expect((await call(port, '/dashboard/api/session', { headers: again })).status).toBe(401);
  }, 60_000);

  it('refuses a wrong password, a user not allowed, a cross-site login; locks the client out after three failures', async () => {
    const rt = await startWithLogin();
    const port = rt.httpPort;
    expect((await call(port, '/dashboard/api/login', { body: { user: 'ops', password: 'x' }, headers: { origin: 'http://evil.test' } })).status).toBe(403);
    expect((await call(port, '/dashboard/api/login', { body: { user: 'ops', password: 7 } })).status).toBe(400);
    const started = Date.now();
    const wrong = await call(port, '/dashboard/api/login', { body: { user: 'ops', password: 'wrong' } });
    expect(wrong.status).toBe(401);
    expect(wrong.cookie).toBeNull();
    expect(Date.now() - started).toBeGreaterThanOrEqual(50); // the throttle's delay before a refusal
    // An SMTP user who is not in dashboard.users, with the right password: refused as a wrong password.
    expect((await call(port, '/dashboard/api/login', { body: { user: 'sender', password: 'sender pass' } })).status).toBe(401);
    const third = await call(port, '/dashboard/api/login', { body: { user: 'nobody', password: 'x' } });
    expect(third.status).toBe(401);
    expect(third.body.error).toMatch(/locked out/);
    // Locked out: even the right password is refused unchecked.
    const locked = await call(port, '/dashboard/api/login', { body: { user: 'ops', password: 'right horse battery' } });
    expect(locked.status).toBe(429);
    expect(locked.cookie).toBeNull();
  }, 60_000);

  it('is off without dashboard.users', async () => {
    const rt = await t.start(POLICY, { smtp: { host: '127.0.0.1', port: 0, users: [{ user: 'ops', passwordHash: await hashPassword('pw') }], allowInsecureAuth: true }, http: { host: '127.0.0.1', port: 0, apiKeys: [KEY] } });
    const res = await call(rt.httpPort, '/dashboard/api/login', { body: { user: 'ops', password: 'pw' } });
    expect(res.status).toBe(403);
    expect(res.body.error).toMatch(/no `dashboard.users`/);
  }, 30_000);
});

describe('dashboard message search', () => {
  it('finds a delivered message by Message-ID, queue id and recipient, with its trail', async () => {
    const sink = await t.sink();
    const rt = await t.start(POLICY, { http: { host: '127.0.0.1', port: 0, apiKeys: [KEY] }, mxOverride: { '*': `127.0.0.1:${sink.port}` } });
    const auth = { authorization: `Bearer ${KEY}` };
    const transport = nodemailer.createTransport({ host: '127.0.0.1', port: rt.smtpPort, secure: false, ignoreTLS: true });
    await transport.sendMail({ from: 'ops@sender.test', to: ['a@fine.test', 'b@fine.test'], subject: 'hi', text: 'x', messageId: '<Found-1@Sender.test>' });
    await transport.sendMail({ from: 'ops@sender.test', to: 'c@fine.test', subject: 'other', text: 'x', messageId: '<other-2@sender.test>' });
    transport.close();
    await until('both delivered', () => rt.status().delivered >= 3 && rt.status().queued === 0, 30_000);
    for (const q of ['found-1@sender.test', '<Found-1@Sender.test>', ' <found-1@sender.test> ']) {
      const found = await call(rt.httpPort, `/dashboard/api/messages?messageId=${encodeURIComponent(q)}`, { headers: auth });
      expect(found.status).toBe(200);
      expect(found.body.messages).toMatchObject([{ messageId: 'found-1@sender.test', from: 'ops@sender.test', to: ['a@fine.test', 'b@fine.test'], state: 'finished' }]);
    }
    const [m] = (await call(rt.httpPort, '/dashboard/api/messages?messageId=found-1@sender.test', { headers: auth })).body.messages as { id: string }[];
    const one = await call(rt.httpPort, `/dashboard/api/messages/${m!.id}`, { headers: auth });
    expect(one.body).toMatchObject({ id: m!.id, state: 'finished', outcomes: { 'a@fine.test': 'delivered', 'b@fine.test': 'delivered' } });
    const trail = one.body.accounting as string[];
    expect(trail.filter((l) => l.startsWith('d,')).length).toBe(2);
    expect(trail.filter((l) => l.startsWith('r,')).length).toBe(2);
    expect(trail.some((l) => l.includes('c@fine.test'))).toBe(false);
    expect(((await call(rt.httpPort, '/dashboard/api/messages?rcpt=*@fine.test', { headers: auth })).body.messages as unknown[]).length).toBe(2);
    expect((await call(rt.httpPort, `/dashboard/api/messages?id=${m!.id}`, { headers: auth })).body.messages).toMatchObject([{ id: m!.id }]);
    // Bad queries: none or two fields, a bad limit; an unknown id; no key.
    expect((await call(rt.httpPort, '/dashboard/api/messages', { headers: auth })).status).toBe(400);
    expect((await call(rt.httpPort, '/dashboard/api/messages?id=a&rcpt=b', { headers: auth })).status).toBe(400);
    expect((await call(rt.httpPort, '/dashboard/api/messages?id=a&limit=1000', { headers: auth })).status).toBe(400);
    expect((await call(rt.httpPort, '/dashboard/api/messages/no-such-id', { headers: auth })).status).toBe(404);
    expect((await call(rt.httpPort, '/dashboard/api/messages?id=a')).status).toBe(401);
  }, 60_000);
});

describe('the new routes under hostile input', () => {
  it('answer every random query, body, cookie and method with a 2xx-4xx, and keep serving', async () => {
    const rt = await startWithLogin();
    const port = rt.httpPort;
    const paths = fc.constantFrom('/dashboard/api/login', '/dashboard/api/logout', '/dashboard/api/session', '/dashboard/api/messages', '/dashboard/api/messages/', '/dashboard/api/messages/%ZZ', '/dashboard/api/policy-diff', '/api/v1/queue/%ZZ', '/api/v1/queue/a%E0%A4%A');
    const query = fc.dictionary(fc.constantFrom('id', 'messageId', 'rcpt', 'limit', 'from', 'to', 'x'), fc.string({ maxLength: 1200 }), { maxKeys: 3 });
    await fc.assert(
      fc.asyncProperty(paths, query, fc.constantFrom('GET', 'POST', 'PUT'), fc.option(fc.jsonValue({ maxDepth: 2 })), fc.option(fc.string({ maxLength: 100 })), async (p, q, method, body, cookie) => {
        const url = `http://127.0.0.1:${port}${p}?${new URLSearchParams(q)}`;
        const headers: Record<string, string> = { authorization: `Bearer ${KEY}`, 'content-type': 'application/json', ...(cookie !== null ? { cookie: `petrel_session=${cookie.replace(/[^\x21-\x7e]/g, '')}` } : {}) };
        const res = await fetch(url, { method, headers, ...(method === 'GET' ? {} : { body: JSON.stringify(body) }) });
        await res.arrayBuffer();
        expect(res.status, `${method} ${url}`).toBeGreaterThanOrEqual(200);
        expect(res.status, `${method} ${url}`).toBeLessThan(500);
      }),
      { numRuns: 60 },
    );
    expect((await call(port, '/api/v1/status', { headers: { authorization: `Bearer ${KEY}` } })).status).toBe(200);
  }, 120_000);
});

describe('the message index', () => {
  it('takes the Message-ID from a folded header, searches newest first within its days, skips a torn line', async () => {
    expect(messageIdOf([Buffer.from('Subject: x\r\nMessage-ID:\r\n <Folded.1@Example.test>\r\n\r\nbody')])).toBe('folded.1@example.test');
    expect(messageIdOf([Buffer.from('Subject: no id\r\n\r\nMessage-ID: <in-body@x>\r\n')])).toBe('');
    const dir = path.join(t.dir, 'acct');
    const index = openMessageIndex(dir, { globMatch, flushMs: 0 });
    const day = 86_400_000;
    const now = Date.UTC(2026, 11, 7, 12);
    const head = (id: string) => [Buffer.from(`Message-ID: <${id}>\r\n\r\n`)];
    index.write({ id: 'old', from: 'a@x', to: ['r@fine.test'], receivedAt: now - 7 * day }, head('old@x'));
    index.write({ id: 'm1', from: 'a@x', to: ['r@fine.test'], receivedAt: now - 2 * day }, head('m1@x'));
    index.write({ id: 'm2', from: 'a@x', to: ['other@fine.test', 'r@fine.test'], receivedAt: now - day }, head('m2@x'));
    index.write({ id: 'm3', from: 'a@x', to: ['r@fine.test'], receivedAt: now - day + 1000 }, head('m3@x'));
    index.flush();
    appendFileSync(path.join(dir, readdirSync(dir).sort().at(-1)!), '{"id":"torn","to":["r@fine');
    expect(readdirSync(dir).sort()).toEqual(['msgs-2026-11-30.ndjson', 'msgs-2026-12-05.ndjson', 'msgs-2026-12-06.ndjson']);
    // Seven days back from today: 2026-12-01 on; the message of 2026-11-30 is past the bound.
    expect((await index.find({ rcpt: 'r@*.test' }, now, 10)).map((m) => m.id)).toEqual(['m3', 'm2', 'm1']);
    expect((await index.find({ rcpt: 'r@*.test' }, now, 2)).map((m) => m.id)).toEqual(['m3', 'm2']);
    expect((await index.find({ messageId: '<M2@X>' }, now, 10)).map((m) => m.id)).toEqual(['m2']);
    expect(await index.find({ messageId: 'old@x' }, now, 10)).toEqual([]);
    expect(await index.find({ id: 'torn' }, now, 10)).toEqual([]);
    index.close();
  });
});

describe('dashboard policy diff', () => {
  it('gives the changed lines of two kept versions, file by file', async () => {
    const dir = path.join(t.dir, 'store');
    const store = await openVersionStore(dir);
    const hashes: string[] = [];
    for (const [rate, same, after] of [['100/s', '1', '1h'], ['50/s', '1', '2h']]) {
      const curves = `policy curves version 1\n\nretry slow {\n  after ${after}\n}\n`;
      const built = await compileFiles({ 'fine.policy': POLICY.replace('100/s', rate), 'curves.policy': curves, 'same.policy': `policy same version ${same}\n` });
      const { manifest } = await store.install(built.artifact!);
      await store.activate(manifest, { trigger: 'api' }, Date.now());
      hashes.push(manifest.hash);
    }
    const d = await policyDiff(dir, hashes[0]!, hashes[1]!);
    expect(d.from.hash).toBe(hashes[0]);
    const fine = d.files.find((f) => f.path.endsWith('fine.policy'))!;
    expect(fine.change).toBe('changed');
    expect(fine.hunks!.flatMap((h) => h.lines).filter((l) => /^[-+]/.test(l))).toEqual(['-  rate 100/s', '+  rate 50/s']);
    expect(d.files.find((f) => f.path === 'same.policy')).toEqual({ path: 'same.policy', change: 'same' });
    // A file no rule code came from (retry curves only): the artifacts keep no text of it, so its change is told by hash alone.
    expect(d.files.find((f) => f.path === 'curves.policy')).toMatchObject({ change: 'changed', note: expect.stringContaining('petrel diff') });
    await expect(policyDiff(dir, '../etc', hashes[1]!)).rejects.toMatchObject({ status: 400 });
    await expect(policyDiff(dir, 'f'.repeat(64), hashes[1]!)).rejects.toMatchObject({ status: 404 });
  }, 60_000);
});
