/**
 * `petrel queue` and `petrel suppression` against a runtime with mail held by a real
 * receiving MX that defers some recipients (issue 18.2, 18.4): ls with filters, show with
 * the accounting trail, retry now (the MX sees another attempt), bounce (a DSN reaches the
 * sender), delete (accounted, no DSN); suppression add, ls, export, import, remove.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import nodemailer from 'nodemailer';
import { describe, expect, it } from 'vitest';
import { main } from '../../cli/main.ts';
import { e2eCase, readAccounting, until } from '../runtime/fixtures/e2e.ts';

const POLICY = `policy ops version 1.0.0
use stdlib/bounces
use stdlib/retry

default {
  retry standard
  rules bounces
}
`;

const t = e2eCase('queue-cli');

async function petrel(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await main(argv, { out: (s) => (out += s), err: (s) => (err += s), cwd: t.dir });
  return { code, out, err };
}

describe('petrel queue and petrel suppression', () => {
  it('lists, shows, retries, bounces and deletes held mail, each accounted', async () => {
    const tried: string[] = [];
    const sink = await t.sink({ refuse: (rcpt) => (tried.push(rcpt), rcpt.startsWith('held') ? { code: 451, text: '4.7.1 Try again later' } : undefined) });
    const runtime = await t.start(POLICY, { mxOverride: { '*': `127.0.0.1:${sink.port}` }, bounceLoop: { tenants: { '*': {} } } });
    const url = `http://127.0.0.1:${runtime.httpPort}`;
    const smtp = nodemailer.createTransport({ host: '127.0.0.1', port: runtime.smtpPort, secure: false, ignoreTLS: true });
    for (const [to, tenant] of [['held1@x.example', 'a'], ['held2@y.example', 'b'], ['held3@x.example', 'b']]) await smtp.sendMail({ from: 'news@shop.example', to, subject: to, text: 'x', headers: { 'X-Petrel-Tenant': tenant! } });
    smtp.close();
    await until('three deferrals', () => tried.length === 3);

    const all = await petrel('queue', 'ls', '--to', url, '--json');
    expect(all.code).toBe(0);
    const listed = JSON.parse(all.out) as { total: number; messages: { id: string; recipients: { rcpt: string }[] }[] };
    expect(listed.total).toBe(3);
    const idOf = (rcpt: string) => listed.messages.find((m) => m.recipients[0]!.rcpt === rcpt)!.id;
    expect((await petrel('queue', 'ls', '--to', url, '--tenant', 'b', '--domain', 'x.example')).out).toMatch(new RegExp(`^${idOf('held3@x.example')} .*held3@x\\.example\\n1 of 1 queued`, 'm'));
    expect((await petrel('queue', 'ls', '--to', url, '--rcpt', 'HELD?@*.example', '--limit', '2')).out).toMatch(/2 of 3 queued message\(s\) from 0/);

    const shown = await petrel('queue', 'show', idOf('held1@x.example'), '--to', url);
    expect(shown.out).toMatch(/held1@x\.example {2}attempts 1 {2}next \d{4}-/);
    expect(shown.out).toMatch(/accounting \(2\):\n {2}r,.*\n {2}t,.*4\.7\.1 Try again later/);
    expect((await petrel('queue', 'show', 'NOSUCHID', '--to', url)).code).toBe(3);

    // Retry now: the MX sees a second attempt at once (the retry curve said 5 minutes).
    expect((await petrel('queue', 'retry', idOf('held1@x.example'), '--to', url)).out).toMatch(/^retried 1 message/);
    await until('the second attempt', () => tried.filter((r) => r === 'held1@x.example').length === 2);

    // Bounce: finished, accounted, and the sender gets a DSN through the MX.
    expect((await petrel('queue', 'bounce', '--tenant', 'a', '--to', url)).out).toMatch(/^bounced 1 message/);
    await until('the DSN', () => sink.received.find((m) => m.to.includes('news@shop.example')));
    // Delete: finished without a DSN.
    expect((await petrel('queue', 'delete', '--domain', 'y.example', '--to', url)).out).toMatch(/^deleted 1 message/);
    expect((await petrel('queue', 'delete', '--to', url)).code).toBe(2);
    const left = JSON.parse((await petrel('queue', 'ls', '--to', url, '--json')).out);
    expect(left.messages.map((m: { recipients: { rcpt: string }[] }) => m.recipients[0]!.rcpt)).toEqual(['held3@x.example']);
    await until('the operator records', () => readAccounting(`${t.dir}/acct`).filter((r) => /by operator$/.test(r.dsnDiag)).length === 3);
    const ops = readAccounting(`${t.dir}/acct`).filter((r) => /by operator$/.test(r.dsnDiag)).map((r) => [r.type, r.rcpt, r.dsnDiag]);
    expect(ops).toEqual([
      ['t', 'held1@x.example', 'petrel;retry now by operator'],
      ['b', 'held1@x.example', 'petrel;bounced by operator'],
      ['b', 'held2@y.example', 'petrel;deleted by operator'],
    ]);
    expect(sink.received.filter((m) => m.to.includes('news@shop.example'))).toHaveLength(1);
  }, 90_000);

  it('adds, lists, exports, imports and removes suppressed addresses', async () => {
    const runtime = await t.start(POLICY, {});
    const url = `http://127.0.0.1:${runtime.httpPort}`;
    expect((await petrel('suppression', 'add', 'a@x.example', 'b@x.example', '--tenant', 'shop', '--to', url)).out).toBe('added 2; 2 suppressed in all\n');
    expect((await petrel('suppression', 'add', 'nonsense', '--to', url)).code).toBe(2);
    const exported = (await petrel('suppression', 'export', '--tenant', 'shop', '--to', url)).out;
    expect(exported.trim().split('\n').map((l) => JSON.parse(l).address)).toEqual(['a@x.example', 'b@x.example']);
    writeFileSync(path.join(t.dir, 'list.txt'), `# from the old MTA\nc@x.example\n\n${exported}`);
    expect((await petrel('suppression', 'import', 'list.txt', '--tenant', 'other', '--to', url)).out).toBe('added 3; 5 suppressed in all\n');
    expect((await petrel('suppression', 'remove', 'A@x.example', '--tenant', 'shop', '--to', url)).out).toBe('removed 1 of 1\n');
    const ls = await petrel('suppression', 'ls', '--to', url);
    expect(ls.out).toMatch(/^4 of 4 suppressed/m);
    expect(ls.out).not.toMatch(/^a@x\.example .* shop /m);
    expect((await petrel('suppression', 'ls', '--to', 'http://127.0.0.1:1')).code).toBe(1);
  }, 60_000);

  it('petrel run refuses a bounce loop config it cannot use, naming the key', async () => {
    const config = (c: unknown) => (writeFileSync(path.join(t.dir, 'c.json'), JSON.stringify(c)), ['run', '--config', 'c.json', '--policies', 'none.policy']);
    expect((await petrel(...config({ feedback: { addresses: ['fbl@x.example'] } }))).err).toMatch(/config: `feedback` needs `secret` or `secretFile`/);
    expect((await petrel(...config({ feedback: { secret: 'short', addresses: ['fbl@x.example'] } }))).err).toMatch(/feedback\.secret.* must NOT have fewer than 16 characters/);
    expect((await petrel(...config({ tenants: { acme: { webhook: { url: 'ftp://x.example/', secret: '0123456789abcdef' } } } }))).err).toMatch(/`tenants\.acme\.webhook\.url`: `ftp:\/\/x\.example\/` is not http or https/);
    const unknown = await petrel(...config({ tenants: { acme: { dsns: true } } }));
    expect([unknown.code, unknown.err]).toEqual([2, expect.stringMatching(/unknown key `tenants\.acme\.dsns`/)]);
  });

  it('needs the API key for every queue and suppression route, and refuses cross-origin calls', async () => {
    const runtime = await t.start(POLICY, { http: { host: '127.0.0.1', port: 0, apiKeys: ['queue-test-key-1'] } });
    const url = `http://127.0.0.1:${runtime.httpPort}`;
    const post = (p: string, headers: Record<string, string> = {}) => fetch(`${url}${p}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify({ all: true }) });
    expect((await post('/api/v1/queue/delete')).status).toBe(401);
    expect((await fetch(`${url}/api/v1/queue`)).status).toBe(401);
    expect((await fetch(`${url}/api/v1/suppression/export`)).status).toBe(401);
    expect((await post('/api/v1/queue/delete', { authorization: 'Bearer queue-test-key-1', origin: 'http://evil.example' })).status).toBe(403);
    expect((await fetch(`${url}/api/v1/queue/delete`, { method: 'POST', headers: { authorization: 'Bearer queue-test-key-1', 'content-type': 'text/plain' }, body: '{"all":true}' })).status).toBe(415);
    expect(await (await post('/api/v1/queue/delete', { authorization: 'Bearer queue-test-key-1' })).json()).toEqual({ deleted: [] });
    expect((await petrel('queue', 'ls', '--to', url)).code).toBe(2);
    expect((await petrel('queue', 'ls', '--to', url, '--api-key', 'queue-test-key-1')).out).toMatch(/^0 of 0 queued/);
  }, 60_000);
});
