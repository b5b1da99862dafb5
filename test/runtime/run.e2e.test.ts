/**
 * The assembled runtime end to end over loopback: a client submits with nodemailer, the
 * runtime spools and delivers to a scripted smtp-server acting as the receiving MX, and
 * accounting records what the policy decided.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import nodemailer from 'nodemailer';
import { beforeEach, describe, expect, it } from 'vitest';
import type { Runtime, RuntimeOptions } from '../../runtime/runtime.ts';
import { e2eCase, until } from './fixtures/e2e.ts';
import { startSink, type Sink } from './fixtures/sink.ts';

const POLICY = `policy e2e version 1.0.0

default {
  retry {
    after 1s
    then every 2s
    expire 1h
  }
  on reply 550 5.1.1 {
    bounce bad-mailbox
    example "550 5.1.1 No such user"
  }
}
`;

const t = e2eCase('e2e');
let sink: Sink;
beforeEach(async () => {
  sink = await t.sink({ refuse: (rcpt) => (rcpt.startsWith('unknown@') ? { code: 550, text: '5.1.1 No such user' } : undefined) });
});

function start(override: Record<string, string>, extra: Partial<RuntimeOptions> = {}): Promise<Runtime> {
  return t.start(POLICY, { mxOverride: override, greetingTimeoutMs: 2000, ...extra }, 'e2e.policy');
}

function submit(port: number, to: string[], headers: Record<string, string> = {}) {
  const transport = nodemailer.createTransport({ host: '127.0.0.1', port, secure: false, ignoreTLS: true });
  return transport.sendMail({ from: 'news@shop.example', to, subject: 'hello', text: 'body text', headers });
}

function accounting(): string[][] {
  const files = readdirSync(path.join(t.dir, 'acct'));
  return files.flatMap((f) => readFileSync(path.join(t.dir, 'acct', f), 'utf8').trim().split('\n').slice(1).map((l) => l.split(',')));
}

describe('petrel run (first assembly)', () => {
  it.each([0, 2])('delivers accepted mail, bounces an unknown user, strips control headers, and accounts for both with the policy version (%i delivery threads)', async (deliveryThreads) => {
    const r = await start({ '*': `127.0.0.1:${sink.port}` }, { deliveryThreads });
    const info = await submit(r.smtpPort, ['ok@a.example', 'unknown@a.example'], { 'X-Petrel-Campaign': 'black-friday', 'X-Petrel-Tenant': 'shop' });
    expect(info.response).toMatch(/^250 .*queued as /);
    // Both recipients decided, and the bounce's DSN (to the sender, routed to the same sink) delivered.
    await until('both recipients decided and the DSN delivered', () => r.status().delivered === 2 && r.status().bounced === 1);
    expect(sink.received).toHaveLength(2);
    const [mail, dsn] = sink.received[0]!.to[0] === 'ok@a.example' ? sink.received : [...sink.received].reverse();
    expect(mail!.to).toEqual(['ok@a.example']);
    expect(mail!.raw).toContain('body text');
    expect(mail!.raw).not.toMatch(/X-Petrel-/i);
    expect(dsn!.to).toEqual(['news@shop.example']);
    expect(dsn!.raw).toMatch(/^Content-Type: multipart\/report; report-type=delivery-status/im);
    expect(dsn!.raw).toMatch(/^Final-Recipient: rfc822; unknown@a\.example\r?\nAction: failed\r?\nStatus: 5\.1\.1/m);
    const status = r.status();
    expect(status).toMatchObject({ accepted: 2, delivered: 2, bounced: 1, queued: 0 });
    const hash = status.policy.hash;
    const metrics = await (await fetch(`http://127.0.0.1:${r.httpPort}/metrics`)).text();
    expect(metrics).toMatch(/^petrel_accepted_total 2$/m);
    expect(metrics).toMatch(/^petrel_recipients_total\{type="d",route="default",category=""\} 2$/m);
    expect(metrics).toMatch(/^petrel_recipients_total\{type="b",route="default",category="bad-mailbox"\} 1$/m);
    expect(metrics).toMatch(/^petrel_queued_recipients 0$/m);
    expect(metrics).toContain(`petrel_policy_info{name="test",version="1.0.0",hash="${hash}"} 1`);
    if (deliveryThreads > 0) {
      expect(metrics).toMatch(new RegExp(`^petrel_delivery_threads ${deliveryThreads}$`, 'm'));
      expect(metrics).toMatch(/^petrel_delivery_sessions_lost_total 0$/m);
    } else expect(metrics).not.toContain('petrel_delivery_threads');
    await r.stop(1000);
    t.runtime = undefined;
    const rows = accounting();
    const byRcpt = Object.fromEntries(rows.map((row) => [row[4], row]));
    expect(byRcpt['ok@a.example']).toMatchObject({ 0: 'd', 5: 'relayed', 12: 'black-friday', 13: 'shop', 14: hash });
    expect(byRcpt['unknown@a.example']).toMatchObject({ 0: 'b', 6: '5.1.1', 9: 'bad-mailbox', 14: hash, 15: 'e2e.policy:9' });
    // Each recipient was first logged as received (PowerMTA's `r`), when the message was accepted;
    // the DSN too, from the null sender, in the original's tenant.
    expect(rows.filter((row) => row[0] === 'r').map((row) => [row[3], row[4], row[12], row[13], row[14]]).sort()).toEqual([
      ['', 'news@shop.example', '', 'shop', hash],
      ['news@shop.example', 'ok@a.example', 'black-friday', 'shop', hash],
      ['news@shop.example', 'unknown@a.example', 'black-friday', 'shop', hash],
    ]);
  });

  it('refuses to relay for clients outside its networks', async () => {
    const r = await start({ '*': `127.0.0.1:${sink.port}` }, { smtp: { host: '127.0.0.1', port: 0, clientNetworks: ['10.0.0.0/8'] } });
    await expect(submit(r.smtpPort, ['ok@a.example'])).rejects.toMatchObject({ responseCode: 550 });
    expect(r.status().accepted).toBe(0);
  });

  it('retries an unreachable MX under the policy curve, and after a restart delivers what was spooled', async () => {
    // Nothing listens on this port: every attempt is a connection failure (421 4.4.1).
    const closed = await startSink();
    const deadPort = closed.port;
    await closed.close();
    let r = await start({ '*': `127.0.0.1:${deadPort}` });
    await submit(r.smtpPort, ['later@b.example']);
    await until('a deferral', () => r.status().deferred >= 1);
    expect(r.status()).toMatchObject({ delivered: 0, bounced: 0, queued: 1 });
    await r.stop(1000);
    t.runtime = undefined;
    r = await start({ '*': `127.0.0.1:${sink.port}` });
    expect(r.status().queued).toBe(1);
    await until('delivery after restart', () => r.status().delivered === 1, 20_000);
    expect(sink.received.map((m) => m.to)).toEqual([['later@b.example']]);
    await r.stop(1000);
    t.runtime = undefined;
    const types = accounting().filter((row) => row[4] === 'later@b.example').map((row) => row[0]);
    // Received, then queue-level deferrals (no reply from any host), then delivered.
    expect(types[0]).toBe('r');
    expect(types[1]).toBe('tq');
    expect(types.at(-1)).toBe('d');
  });

  it('accepts mail over HTTP with an API key (202 once durable), validates the body, and delivers it', async () => {
    const r = await start({ '*': `127.0.0.1:${sink.port}` }, { http: { host: '127.0.0.1', port: 0, apiKeys: ['k-123'] } });
    const post = (body: unknown, key?: string) =>
      fetch(`http://127.0.0.1:${r.httpPort}/api/v1/messages`, { method: 'POST', headers: { 'content-type': 'application/json', ...(key ? { authorization: `Bearer ${key}` } : {}) }, body: JSON.stringify(body) });
    expect((await post({ from: 'a@shop.example', to: ['x@c.example'] })).status).toBe(401);
    const bad = await post({ from: 'a@shop.example', to: [], subject: 's' }, 'k-123');
    expect(bad.status).toBe(400);
    expect(await bad.json()).toEqual({ error: '`to` must NOT have fewer than 1 items' });
    const unknown = await post({ from: 'a@shop.example', to: ['x@c.example'], colour: 'red' }, 'k-123');
    expect(await unknown.json()).toEqual({ error: 'unknown field `colour`' });
    const ok = await post({ from: 'a@shop.example', to: ['x@c.example'], subject: 'via http', text: 'hello over http', campaign: 'api', headers: { 'X-Petrel-Tenant': 'shop' } }, 'k-123');
    expect(ok.status).toBe(202);
    const { id } = (await ok.json()) as { id: string };
    expect(id).toMatch(/^\S{10,}$/);
    await until('HTTP message delivered', () => r.status().delivered === 1);
    expect(sink.received[0]!.raw).toContain('hello over http');
    expect(sink.received[0]!.raw).not.toMatch(/X-Petrel-/i);
    // The trace header names the client's address and the protocol (RFC 5321 §4.4).
    expect(sink.received[0]!.raw).toMatch(new RegExp(`^Received: from \\[?127\\.0\\.0\\.1\\]?[^\\r\\n]*(?:\\r\\n\\t[^\\r\\n]*)*with HTTP id ${id}`));
    await r.stop(1000);
    t.runtime = undefined;
    const row = accounting().find((x) => x[4] === 'x@c.example' && x[0] === 'd')!;
    expect(row).toMatchObject({ 0: 'd', 12: 'api', 13: 'shop' });
  });

  it('holds a paused queue until it is resumed', async () => {
    const r = await start({ '*': `127.0.0.1:${sink.port}` });
    const control = (what: string, body: unknown) => fetch(`http://127.0.0.1:${r.httpPort}/api/v1/${what}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    expect(await (await control('pause', { queue: 'default/held.example' })).json()).toEqual({ paused: ['queue:default/held.example'] });
    expect((await control('pause', { queue: 'a', source: 'b' })).status).toBe(400);
    await submit(r.smtpPort, ['x@held.example']);
    await submit(r.smtpPort, ['y@free.example']);
    await until('the unpaused queue delivered', () => r.status().delivered === 1);
    await new Promise((res) => setTimeout(res, 300));
    expect(sink.received.map((m) => m.to)).toEqual([['y@free.example']]);
    expect(r.status()).toMatchObject({ queued: 1, paused: ['queue:default/held.example'] });
    await control('resume', { queue: 'default/held.example' });
    await until('the resumed queue delivered', () => r.status().delivered === 2);
  });

  it('answers the status API over HTTP', async () => {
    const r = await start({ '*': `127.0.0.1:${sink.port}` });
    const res = await fetch(`http://127.0.0.1:${r.httpPort}/api/v1/status`);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ policy: { name: 'test', version: '1.0.0' }, accepted: 0, queued: 0, inFlight: 0 });
  });
});
