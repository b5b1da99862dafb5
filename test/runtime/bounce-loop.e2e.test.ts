/**
 * The bounce loop end to end (issue 18.3–4): a real receiving MX refuses recipients, the
 * runtime bounces them and sends a DSN (RFC 3464) back to the sender through the same MX;
 * a hard-bounced address is refused at the next submission (SMTP and HTTP) and a
 * block-refused one is not; the operator's suppression API adds, lists, exports, removes.
 */
import nodemailer from 'nodemailer';
import { describe, expect, it } from 'vitest';
import { readMime, headerFields, field } from '../../runtime/intake/index.ts';
import { e2eCase, readAccounting, until } from './fixtures/e2e.ts';
import { flakyReceiver } from './fixtures/webhook-receiver.ts';

const POLICY = `policy loop version 1.0.0
use stdlib/bounces
use stdlib/retry

default {
  retry standard
  rules bounces
}
`;

const USER_UNKNOWN = '5.1.1 <gone@x.example>: Recipient address rejected: User unknown in local recipient table';
const IP_BLOCK = '5.7.28 [127.0.0.1] Our system has detected an unusual rate of unsolicited mail originating from your IP address. To protect our users from spam, mail sent from your IP address has been blocked.';

const t = e2eCase('bounce-loop');

async function api(port: number, path: string, body?: unknown): Promise<{ status: number; json: any; text: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, body === undefined ? {} : { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, json, text };
}

describe('petrel run: DSNs and suppression', () => {
  it('bounces a user-unknown recipient with a multipart/report DSN to the sender, then refuses the address; a blocked address stays sendable', async () => {
    const sink = await t.sink({
      refuse: (rcpt) => (rcpt === 'gone@x.example' ? { code: 550, text: USER_UNKNOWN } : rcpt === 'blocked@y.example' ? { code: 550, text: IP_BLOCK } : undefined),
    });
    const runtime = await t.start(POLICY, { mxOverride: { '*': `127.0.0.1:${sink.port}` }, bounceLoop: { tenants: { '*': { dsn: true } } } });
    const smtp = nodemailer.createTransport({ host: '127.0.0.1', port: runtime.smtpPort, secure: false, ignoreTLS: true });
    await smtp.sendMail({ from: 'news@shop.example', to: 'gone@x.example', subject: 'hello', messageId: '<orig-1@shop.example>', text: 'x' });
    await smtp.sendMail({ from: 'news@shop.example', to: 'blocked@y.example', subject: 'hello too', text: 'y' });

    const dsn = await until('the DSN at the sender', () => sink.received.find((m) => m.to.includes('news@shop.example')), 30_000);
    const report = readMime(Buffer.from(dsn.raw, 'latin1'));
    expect(report.type).toBe('multipart/report');
    expect(report.params['report-type']).toBe('delivery-status');
    expect(report.parts.map((p) => p.type)).toEqual(['text/plain', 'message/delivery-status', 'text/rfc822-headers']);
    expect(field(headerFields(report.parts[2]!.body.toString('latin1')), 'message-id')).toBe('<orig-1@shop.example>');
    const [perMessage, perRecipient] = report.parts[1]!.body.toString('latin1').split(/\r?\n\r?\n/).map(headerFields);
    expect(field(perMessage!, 'reporting-mta')).toBe('dns; petrel.test');
    expect(field(perRecipient!, 'final-recipient')).toBe('rfc822; gone@x.example');
    expect(field(perRecipient!, 'action')).toBe('failed');
    expect(field(perRecipient!, 'status')).toBe('5.1.1');
    expect(field(perRecipient!, 'diagnostic-code')).toContain('User unknown');
    expect(field(report.headers, 'auto-submitted')).toBe('auto-replied');

    // The DSN went from the null sender; the bounce suppressed the address (bad-mailbox, hard).
    await until('the suppression', async () => (await api(runtime.httpPort, '/api/v1/suppression')).json.total === 1);
    const dsnReceipt = await until('the DSN\'s receipt record', () => readAccounting(`${t.dir}/acct`).find((r) => r.type === 'r' && r.rcpt === 'news@shop.example'));
    expect(dsnReceipt.orig).toBe('');
    const listed = await api(runtime.httpPort, '/api/v1/suppression?tenant=');
    expect(listed.json.entries).toMatchObject([{ tenant: '', address: 'gone@x.example', reason: 'bad-mailbox' }]);

    // Next submission: refused over SMTP (550 5.1.1) and over HTTP (422).
    const refused = await smtp.sendMail({ from: 'news@shop.example', to: 'Gone@x.example', subject: 'again', text: 'x' }).then(() => undefined, (e: { responseCode?: number; response?: string }) => e);
    expect(refused?.responseCode).toBe(550);
    expect(refused?.response).toMatch(/5\.1\.1 <Gone@x\.example> is suppressed: it bounced \(bad-mailbox\)/);
    const viaHttp = await api(runtime.httpPort, '/api/v1/messages', { from: 'news@shop.example', to: ['gone@x.example'], subject: 's', text: 't' });
    expect(viaHttp.status).toBe(422);

    // The block kept its message queued and suppressed nothing: the address is taken again.
    await until('the block deferral', () => readAccounting(`${t.dir}/acct`).some((r) => r.type === 't' && r.rcpt === 'blocked@y.example'));
    await expect(smtp.sendMail({ from: 'news@shop.example', to: 'blocked@y.example', subject: 'again', text: 'y' })).resolves.toMatchObject({ response: expect.stringMatching(/^250 /) });
    expect((await api(runtime.httpPort, '/api/v1/suppression')).json.total).toBe(1);
    smtp.close();
  }, 90_000);

  it('imports, lists, exports and removes suppressed addresses per tenant; a tenant set to drop accepts and drops', async () => {
    const sink = await t.sink();
    const runtime = await t.start(POLICY, { mxOverride: { '*': `127.0.0.1:${sink.port}` }, bounceLoop: { tenants: { shop: { suppressed: 'drop' } } } });
    const port = runtime.httpPort;
    expect((await api(port, '/api/v1/suppression/add', { tenant: 'shop', entries: ['a@x.example', { address: 'b@x.example', reason: 'complaint' }] })).json).toEqual({ added: 2, total: 2 });
    expect((await api(port, '/api/v1/suppression/add', { tenant: 'shop', entries: ['not an address'] })).status).toBe(400);
    expect((await api(port, '/api/v1/suppression/add', { tenant: 'shop', entries: [{ address: 'c@x.example', reason: 'throttle' }] })).json.error).toMatch(/reason/);
    const exported = (await api(port, '/api/v1/suppression/export?tenant=shop')).text.trim().split('\n').map((l) => JSON.parse(l));
    expect(exported.map((e) => [e.address, e.reason])).toEqual([['a@x.example', 'manual'], ['b@x.example', 'complaint']]);

    // Tenant shop drops: one suppressed and one clean recipient → accepted, only the clean one delivered.
    const smtp = nodemailer.createTransport({ host: '127.0.0.1', port: runtime.smtpPort, secure: false, ignoreTLS: true });
    await smtp.sendMail({ from: 'n@shop.example', to: ['a@x.example', 'ok@x.example'], subject: 's', text: 't', headers: { 'X-Petrel-Tenant': 'shop' } });
    await until('the delivery', () => sink.received.length === 1);
    expect(sink.received[0]!.to).toEqual(['ok@x.example']);
    // Another tenant's list is its own: a@x.example is not suppressed without a tenant.
    await smtp.sendMail({ from: 'n@shop.example', to: 'a@x.example', subject: 's', text: 't' });
    await until('the second delivery', () => sink.received.length === 2);
    await until('the drop record', () => readAccounting(`${t.dir}/acct`).some((r) => r.type === 'b' && r.rcpt === 'a@x.example' && r.dsnDiag === 'petrel;suppressed (manual) at submission' && r.tenant === 'shop'));

    expect((await api(port, '/api/v1/suppression/remove', { tenant: 'shop', addresses: ['A@x.example', 'nobody@x.example'] })).json).toEqual({ removed: 1 });
    expect((await api(port, '/api/v1/suppression?tenant=shop')).json.entries.map((e: { address: string }) => e.address)).toEqual(['b@x.example']);
    smtp.close();

    // Durable: a restart finds the list as it was.
    await runtime.stop(2000);
    const again = await t.start(POLICY, { mxOverride: { '*': `127.0.0.1:${sink.port}` } });
    expect((await api(again.httpPort, '/api/v1/suppression?tenant=shop')).json).toMatchObject({ total: 1, entries: [{ address: 'b@x.example', reason: 'complaint' }] });
  }, 60_000);

  it('an expired recipient gets a DSN with status 4.4.7 and an expired event', async () => {
    const receiver = await flakyReceiver('expiry-webhook-secret', () => 'ok');
    const sink = await t.sink({ refuse: () => ({ code: 451, text: '4.7.1 Try again later' }) });
    const policy = `policy expiry version 1.0.0\nuse stdlib/bounces\n\nretry brisk {\n  after 1s\n  then every 1s\n  expire 3s\n}\n\ndefault {\n  rules bounces\n  retry brisk\n  expire 3s\n}\n`;
    const runtime = await t.start(policy, { mxOverride: { 'x.example': `127.0.0.1:${sink.port}`, 'shop.example': `127.0.0.1:${(await t.sink()).port}` }, bounceLoop: { tenants: { '*': { webhook: { url: receiver.url, secret: 'expiry-webhook-secret' } } }, webhooks: { allowPrivateTargets: true } } });
    try {
      const smtp = nodemailer.createTransport({ host: '127.0.0.1', port: runtime.smtpPort, secure: false, ignoreTLS: true });
      await smtp.sendMail({ from: 'news@shop.example', to: 'late@x.example', subject: 's', text: 't' });
      smtp.close();
      const dsn = await until('the DSN', () => t.sinks[1]!.received.find((m) => m.to.includes('news@shop.example')), 30_000);
      const perRecipient = readMime(Buffer.from(dsn.raw, 'latin1')).parts[1]!.body.toString('latin1').split(/\r?\n\r?\n/).map(headerFields)[1]!;
      expect([field(perRecipient, 'action'), field(perRecipient, 'status')]).toEqual(['failed', '4.4.7']);
      await until('the expired event', () => receiver.events.find((e) => e.type === 'expired' && e.rcpt === 'late@x.example'), 10_000);
      expect(receiver.events.filter((e) => e.rcpt === 'late@x.example').map((e) => e.type).at(-1)).toBe('expired');
      expect((await api(runtime.httpPort, '/api/v1/suppression')).json.total).toBe(0);
    } finally {
      await receiver.close();
    }
  }, 60_000);

  it('is on without any settings: a bounce sends a DSN, the DSN\'s own bounce sends none (no loop), both addresses are suppressed', async () => {
    const sink = await t.sink({ refuse: (rcpt) => (rcpt === 'nobody@x.example' || rcpt.endsWith('@gone.example') ? { code: 550, text: '5.1.1 User unknown' } : undefined) });
    const runtime = await t.start(POLICY, { mxOverride: { '*': `127.0.0.1:${sink.port}` } });
    const smtp = nodemailer.createTransport({ host: '127.0.0.1', port: runtime.smtpPort, secure: false, ignoreTLS: true });
    await smtp.sendMail({ from: 'news@gone.example', to: 'nobody@x.example', subject: 's', text: 't' });
    // The recipient bounces; its DSN goes to news@gone.example, which bounces too.
    await until('the message and its DSN bounced', () => runtime.status().bounced === 2);
    // Give a DSN for the DSN time to be spooled before saying there is none.
    await new Promise((r) => setTimeout(r, 1500));
    expect(runtime.status()).toMatchObject({ accepted: 2, bounced: 2, delivered: 0, queued: 0 });
    expect(readAccounting(`${t.dir}/acct`).filter((r) => r.type === 'r').map((r) => [r.orig, r.rcpt])).toEqual([
      ['news@gone.example', 'nobody@x.example'],
      ['', 'news@gone.example'],
    ]);
    const listed = (await api(runtime.httpPort, '/api/v1/suppression?tenant=')).json.entries.map((e: { address: string; reason: string }) => [e.address, e.reason]);
    expect(listed).toEqual([['news@gone.example', 'bad-mailbox'], ['nobody@x.example', 'bad-mailbox']]);
    const refused = await smtp.sendMail({ from: 'news@shop.example', to: 'nobody@x.example', subject: 'again', text: 'x' }).then(() => undefined, (e: { responseCode?: number }) => e);
    expect(refused?.responseCode).toBe(550);
    smtp.close();
  }, 60_000);

  it('is off for a tenant set to dsn false and suppressed off: no DSN, nothing suppressed, the list not checked', async () => {
    const sink = await t.sink({ refuse: (rcpt) => (rcpt === 'nobody@x.example' ? { code: 550, text: '5.1.1 User unknown' } : undefined) });
    const runtime = await t.start(POLICY, { mxOverride: { '*': `127.0.0.1:${sink.port}` }, bounceLoop: { tenants: { '*': { dsn: false, suppressed: 'off' } } } });
    const smtp = nodemailer.createTransport({ host: '127.0.0.1', port: runtime.smtpPort, secure: false, ignoreTLS: true });
    await smtp.sendMail({ from: 'news@shop.example', to: 'nobody@x.example', subject: 's', text: 't' });
    await until('the bounce', () => runtime.status().bounced === 1);
    await new Promise((r) => setTimeout(r, 1500));
    expect(runtime.status()).toMatchObject({ accepted: 1, bounced: 1 });
    expect(sink.received).toEqual([]);
    expect((await api(runtime.httpPort, '/api/v1/suppression')).json.total).toBe(0);
    // What the operator adds is kept, but submissions are not checked against it.
    expect((await api(runtime.httpPort, '/api/v1/suppression/add', { tenant: '', entries: ['held@x.example'] })).json).toEqual({ added: 1, total: 1 });
    await expect(smtp.sendMail({ from: 'news@shop.example', to: 'held@x.example', subject: 's', text: 't' })).resolves.toMatchObject({ response: expect.stringMatching(/^250 /) });
    await until('the delivery', () => sink.received.some((m) => m.to.includes('held@x.example')));
    smtp.close();
  }, 60_000);

  it('sends a delayed DSN at the first deferral when the tenant asks, none for a null sender, none for a tenant without DSNs', async () => {
    const sink = await t.sink({ refuse: (rcpt) => (rcpt.startsWith('slow') ? { code: 451, text: '4.7.1 Greylisted, try again later' } : rcpt.startsWith('gone') ? { code: 550, text: USER_UNKNOWN } : undefined) });
    const runtime = await t.start(POLICY, { mxOverride: { '*': `127.0.0.1:${sink.port}` }, bounceLoop: { tenants: { '*': { delayDsn: true }, quiet: { dsn: false } } } });
    const smtp = nodemailer.createTransport({ host: '127.0.0.1', port: runtime.smtpPort, secure: false, ignoreTLS: true });
    await smtp.sendMail({ from: 'news@shop.example', to: 'slow@x.example', subject: 's', text: 't' });
    await smtp.sendMail({ envelope: { from: '', to: ['gone1@x.example'] }, from: 'mailer-daemon@elsewhere.example', to: 'gone1@x.example', subject: 'a bounce', text: 't' });
    await smtp.sendMail({ from: 'quiet@shop.example', to: 'gone2@x.example', subject: 's', text: 't', headers: { 'X-Petrel-Tenant': 'quiet' } });
    smtp.close();
    const delayed = await until('the delayed DSN', () => sink.received.find((m) => m.to.includes('news@shop.example')));
    const status = readMime(Buffer.from(delayed.raw, 'latin1')).parts[1]!.body.toString('latin1').split(/\r?\n\r?\n/).map(headerFields)[1]!;
    expect([field(status, 'action'), field(status, 'status')]).toEqual(['delayed', '4.7.1']);
    await until('both bounces', () => runtime.status().bounced === 2);
    // Give a wrong DSN time to be spooled and delivered before saying there is none.
    await new Promise((r) => setTimeout(r, 1500));
    expect(sink.received.filter((m) => m.to.includes('quiet@shop.example'))).toEqual([]);
    // Null-sender messages accepted: the test's own bounce and the one delayed DSN — none for either bounce.
    expect(readAccounting(`${t.dir}/acct`).filter((r) => r.type === 'r' && r.orig === '').map((r) => r.rcpt).sort()).toEqual(['gone1@x.example', 'news@shop.example']);
  }, 60_000);
});
