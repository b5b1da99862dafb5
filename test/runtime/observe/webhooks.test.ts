/**
 * The webhook outbox and sender (observe/outbox.ts, webhooks.ts) against a real HTTP
 * receiver on loopback: pending events survive a reopen in order, acked ones do not; a
 * failing message holds back its own later events but not other messages'; a target
 * that resolves to a private address is refused unless allowed (SSRF).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openOutbox, startWebhooks, webhookUrlProblem, type WebhookEvent } from '../../../runtime/observe/index.ts';
import { until } from '../fixtures/e2e.ts';
import { flakyReceiver, type FlakyReceiver } from '../fixtures/webhook-receiver.ts';

let dir = '';
const receivers: FlakyReceiver[] = [];
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'petrel-webhooks-'));
});
afterEach(async () => {
  for (const r of receivers.splice(0)) await r.close();
  rmSync(dir, { recursive: true, force: true });
});

const event = (id: string, messageId: string, type: WebhookEvent['type'] = 'delivered'): WebhookEvent => ({ id, type, tenant: 't', messageId, rcpt: `${id}@x.example`, at: Date.now(), detail: {} });

describe('outbox', () => {
  it('replays pending events in order after a reopen and forgets acked ones', async () => {
    const box = openOutbox(dir);
    await box.add([event('e1', 'm1'), event('e2', 'm2'), event('e3', 'm1')]);
    box.ack('e2');
    await box.add([event('e1', 'm1')]); // the same id again: kept once
    box.close();
    const again = openOutbox(dir);
    expect(again.pending().map((e) => e.id)).toEqual(['e1', 'e3']);
    again.close();
  });

  it('refuses events past its bound', async () => {
    const box = openOutbox(dir, { maxPending: 2 });
    await box.add([event('e1', 'm'), event('e2', 'm')]);
    await expect(box.add([event('e3', 'm')])).rejects.toThrow('the webhook outbox is full (2 events)');
    box.close();
  });
});

describe('webhook sender', () => {
  it("holds a failing message's later events behind it, not other messages'", async () => {
    // Every request about message m1 fails until 6 have; m2's go through.
    let m1Failures = 0;
    const receiver = await flakyReceiver('s', () => 'ok');
    receivers.push(receiver);
    receiver.server.removeAllListeners('request');
    const got: string[] = [];
    // Requests open at once per message: in order per message means never more than one.
    const open = new Map<string, number>();
    let mostOpen = 0;
    receiver.server.on('request', (req, res) => {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        const e = JSON.parse(body) as WebhookEvent;
        open.set(e.messageId, (open.get(e.messageId) ?? 0) + 1);
        mostOpen = Math.max(mostOpen, open.get(e.messageId)!);
        setTimeout(() => {
          open.set(e.messageId, open.get(e.messageId)! - 1);
          if (e.messageId === 'm1' && m1Failures < 6) return void (m1Failures++, res.writeHead(503).end());
          got.push(e.id);
          res.writeHead(200).end();
        }, 15);
      });
    });
    const box = openOutbox(dir);
    const sender = startWebhooks(box, { targets: { '*': { url: receiver.url, secret: 's' } }, allowPrivateTargets: true, baseDelayMs: 20, maxDelayMs: 100, warn: () => undefined });
    await sender.add([event('a1', 'm1', 'deferred'), event('b1', 'm2'), event('a2', 'm1', 'bounced'), event('b2', 'm2', 'complained')]);
    // Other messages answering while m1 retries: each answer looks at the queues again.
    const others = Array.from({ length: 12 }, (_, n) => [event(`c${n}x`, `o${n}`), event(`c${n}y`, `o${n}`, 'bounced')]).flat();
    await sender.add(others.slice(0, 12));
    setTimeout(() => void sender.add(others.slice(12)), 40);
    // Received, and the last answer seen by the sender (the receiver records before it answers).
    await until('all of them, acknowledged', () => got.length === 4 + others.length && sender.stats().pending === 0, 20_000);
    expect(got.filter((id) => id.startsWith('b'))).toEqual(['b1', 'b2']);
    expect(got.filter((id) => id.startsWith('a'))).toEqual(['a1', 'a2']);
    expect(got.indexOf('b2')).toBeLessThan(got.indexOf('a1'));
    for (let n = 0; n < 12; n++) expect(got.filter((id) => id === `c${n}x` || id === `c${n}y`)).toEqual([`c${n}x`, `c${n}y`]);
    expect(sender.stats()).toMatchObject({ pending: 0, sent: 4 + others.length, failures: 6 });
    expect(mostOpen).toBe(1);
    sender.close();
    box.close();
  });

  it('sends what the outbox held when it was opened (a restart), in order per message', async () => {
    const receiver = await flakyReceiver('s', (n) => (n % 2 === 0 ? '500' : 'ok'));
    receivers.push(receiver);
    const box = openOutbox(dir);
    await box.add([event('p1', 'm1'), event('q1', 'm2'), event('p2', 'm1', 'bounced')]);
    box.close();
    const reopened = openOutbox(dir);
    const sender = startWebhooks(reopened, { targets: { '*': { url: receiver.url, secret: 's' } }, allowPrivateTargets: true, baseDelayMs: 20, warn: () => undefined });
    await until('three events', () => reopened.size === 0, 10_000);
    expect(receiver.events.map((e) => e.id).filter((id) => id.startsWith('p'))).toEqual(['p1', 'p2']);
    sender.close();
    reopened.close();
  });

  it('refuses a target that resolves to loopback unless private targets are allowed', async () => {
    const receiver = await flakyReceiver('s');
    receivers.push(receiver);
    const warnings: string[] = [];
    const box = openOutbox(dir);
    const sender = startWebhooks(box, { targets: { '*': { url: receiver.url.replace('127.0.0.1', 'localhost'), secret: 's' } }, baseDelayMs: 20, warn: (l) => warnings.push(l) });
    await sender.add([event('x1', 'm')]);
    await until('the refusal', () => warnings.find((w) => /resolves to (127\.0\.0\.1|::1), a private or loopback address/.test(w)), 10_000);
    expect(receiver.requests).toBe(0);
    sender.close();
    box.close();
    expect(webhookUrlProblem('ftp://x.example/')).toMatch(/not http or https/);
    expect(webhookUrlProblem('https://user:pw@x.example/')).toMatch(/credentials/);
    expect(webhookUrlProblem('https://hooks.example/petrel')).toBeUndefined();
  });
});
