/**
 * Event webhooks end to end (issue 18.6), in process: a real receiving MX delivers,
 * bounces and defers; the tenant's events go to a local HTTP receiver that fails some
 * requests (500s and dropped connections). Every event arrives, exactly once after dedup
 * by id, each signed, and in order per message (a bounce before the suppression it
 * caused). The kill -9 case is test/cli/webhooks-crash.test.ts.
 */
import nodemailer from 'nodemailer';
import { afterEach, describe, expect, it } from 'vitest';
import { e2eCase, until } from './fixtures/e2e.ts';
import { firstArrivals, flakyReceiver, type FlakyReceiver } from './fixtures/webhook-receiver.ts';

const POLICY = `policy hooks version 1.0.0
use stdlib/bounces
use stdlib/retry

default {
  retry standard
  rules bounces
}
`;
const SECRET = 'webhook-secret-0123456789';

const t = e2eCase('webhooks');
const receivers: FlakyReceiver[] = [];
afterEach(async () => {
  for (const r of receivers.splice(0)) await r.close();
});

describe('petrel run: event webhooks', () => {
  it('posts delivered, bounced, deferred and suppressed events to a flaky receiver: each id once after dedup, signed, in order per message', async () => {
    const receiver = await flakyReceiver(SECRET);
    receivers.push(receiver);
    const sink = await t.sink({ refuse: (rcpt) => (rcpt.startsWith('gone') ? { code: 550, text: '5.1.1 User unknown' } : rcpt.startsWith('slow') ? { code: 451, text: '4.7.1 Try again later' } : undefined) });
    const runtime = await t.start(POLICY, {
      mxOverride: { '*': `127.0.0.1:${sink.port}` },
      bounceLoop: { tenants: { shop: { dsn: false, webhook: { url: receiver.url, secret: SECRET } } }, webhooks: { allowPrivateTargets: true, baseDelayMs: 50 } },
    });
    const smtp = nodemailer.createTransport({ host: '127.0.0.1', port: runtime.smtpPort, secure: false, ignoreTLS: true });
    const rcpts = ['ok1@x.example', 'gone1@x.example', 'ok2@x.example', 'slow1@x.example', 'ok3@x.example', 'gone2@x.example', 'ok4@x.example'];
    for (const to of rcpts) await smtp.sendMail({ from: 'news@shop.example', to, subject: to, text: 'x', headers: { 'X-Petrel-Tenant': 'shop' } });
    // And a message of another tenant, which has no webhook: no event.
    await smtp.sendMail({ from: 'news@shop.example', to: 'ok9@x.example', subject: 'other', text: 'x', headers: { 'X-Petrel-Tenant': 'other' } });
    smtp.close();

    const expected = 4 + 2 + 1 + 2; // delivered, bounced, deferred, suppressed
    await until(`${expected} distinct events`, () => new Set(receiver.events.map((e) => e.id)).size >= expected, 60_000);
    const unique = firstArrivals(receiver.events);
    expect(unique).toHaveLength(expected);
    expect(receiver.failed).toBeGreaterThan(0);
    expect(receiver.badSignatures).toBe(0);
    const byType = (type: string) => unique.filter((e) => e.type === type).map((e) => e.rcpt).sort();
    expect(byType('delivered')).toEqual(['ok1@x.example', 'ok2@x.example', 'ok3@x.example', 'ok4@x.example']);
    expect(byType('bounced')).toEqual(['gone1@x.example', 'gone2@x.example']);
    expect(byType('suppressed')).toEqual(['gone1@x.example', 'gone2@x.example']);
    expect(byType('deferred')).toEqual(['slow1@x.example']);
    // In order per message: its bounce arrived (first) before the suppression it caused.
    for (const rcpt of ['gone1@x.example', 'gone2@x.example']) expect(unique.filter((e) => e.rcpt === rcpt).map((e) => e.type)).toEqual(['bounced', 'suppressed']);
    // The last answer is counted once the receiver's response is read: wait for it.
    const metrics = await until('every post counted', async () => ((m) => /^petrel_webhook_posts_total\{result="sent"\} 9$/m.test(m) && m)(await runtime.registry.metrics()));
    expect(metrics).toMatch(/^petrel_suppressed_addresses 2$/m);
    expect(metrics).toMatch(/^petrel_webhook_events_pending 0$/m);
    expect(Number(/^petrel_webhook_posts_total\{result="failed"\} (\d+)$/m.exec(metrics)?.[1])).toBe(receiver.failed);
  }, 90_000);
});
