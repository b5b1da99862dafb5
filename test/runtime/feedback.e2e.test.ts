/**
 * Feedback loops end to end (issue 18.5): messages go out with a signed X-Petrel-Id;
 * ARF reports about them (written from the structure of published samples: Yahoo's
 * complaint feedback loop, Microsoft's JMRP with the recipient redacted, RFC 5965's
 * headers-only layout — test/fixtures/arf) arrive by SMTP at the feedback address, and
 * each suppresses its recipient for the tenant, with a PowerMTA `f` accounting record.
 * A forged token and a report that is not ARF are refused and suppress nobody.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import nodemailer from 'nodemailer';
import { describe, expect, it } from 'vitest';
import { feedbackHeader, splitHeader } from '../../runtime/intake/index.ts';
import { e2eCase, readAccounting, until } from './fixtures/e2e.ts';

const POLICY = `policy fbl version 1.0.0
use stdlib/bounces
use stdlib/retry

default {
  retry standard
  rules bounces
}
`;
const SECRET = 'feedback-secret-for-tests-0123456789';
const FBL = 'fbl@petrel.test';

const t = e2eCase('feedback');
const sample = (name: string, values: Record<string, string>) =>
  readFileSync(path.join(import.meta.dirname, '..', 'fixtures', 'arf', name), 'utf8')
    .replace(/\r?\n/g, '\r\n')
    .replace(/\{\{(\w+)\}\}/g, (_, k: string) => values[k] ?? '');

describe('petrel run: feedback reports', () => {
  it('takes ARF reports about its own messages and suppresses their recipients for the tenant', async () => {
    const sink = await t.sink();
    const runtime = await t.start(POLICY, { mxOverride: { '*': `127.0.0.1:${sink.port}` }, bounceLoop: { feedback: { secret: SECRET, addresses: [FBL] } } });
    const smtp = nodemailer.createTransport({ host: '127.0.0.1', port: runtime.smtpPort, secure: false, ignoreTLS: true });
    const rcpts = ['r1@z.example', 'r2@z.example', 'r3@z.example'];
    for (const to of rcpts) await smtp.sendMail({ from: 'news@shop.example', to, subject: `for ${to}`, text: 'offer', headers: { 'X-Petrel-Tenant': 'acme', 'X-Petrel-Campaign': 'spring' } });
    await until('three deliveries', () => sink.received.length === 3);
    const original = (rcpt: string) => sink.received.find((m) => m.to.includes(rcpt))!.raw.replace(/\r?\n/g, '\r\n');
    expect(original('r1@z.example')).toMatch(/^X-Petrel-Id: v1\.\S+$/m);

    const report = (raw: string) => smtp.sendMail({ envelope: { from: 'feedback@isp.example', to: [FBL] }, raw });
    await report(sample('yahoo-style.eml', { FBL, RCPT: 'r1@z.example', ORIGINAL: original('r1@z.example') }));
    await report(sample('jmrp-style.eml', { FBL, ORIGINAL: original('r2@z.example') }));
    await report(sample('rfc5965-headers-only.eml', { FBL, RCPT: 'r3@z.example', HEADERS: splitHeader(Buffer.from(original('r3@z.example'))).head }));

    const listed = await (await fetch(`http://127.0.0.1:${runtime.httpPort}/api/v1/suppression?tenant=acme`)).json();
    expect(listed.entries.map((e: { address: string; reason: string }) => [e.address, e.reason])).toEqual(rcpts.map((r) => [r, 'complaint']));
    const noTenant = await (await fetch(`http://127.0.0.1:${runtime.httpPort}/api/v1/suppression?tenant=`)).json();
    expect(noTenant.total).toBe(0);
    await until('three f records', () => readAccounting(`${t.dir}/acct`).filter((r) => r.type === 'f').length === 3);
    const f = readAccounting(`${t.dir}/acct`).filter((r) => r.type === 'f');
    expect(f.map((r) => [r.rcpt, r.tenant, r.jobId, r.dsnStatus])).toEqual(rcpts.map((r) => [r, 'acme', 'spring', 'abuse']));
    expect(f[0]!.dsnDiag).toContain('Yahoo!-Mail-Feedback/2.0');

    // The tenant's next message to a complainer is refused; another tenant's is not.
    const again = await smtp.sendMail({ from: 'news@shop.example', to: 'r1@z.example', subject: 's', text: 't', headers: { 'X-Petrel-Tenant': 'acme' } }).then(() => undefined, (e: { responseCode?: number; response?: string }) => e);
    expect(again?.responseCode).toBe(550);
    expect(again?.response).toMatch(/suppressed for tenant acme: the recipient complained/);
    await expect(smtp.sendMail({ from: 'news@shop.example', to: 'r1@z.example', subject: 's', text: 't', headers: { 'X-Petrel-Tenant': 'other' } })).resolves.toBeDefined();
    smtp.close();
  }, 60_000);

  it('refuses a report with a forged token or without ARF, and suppresses nobody', async () => {
    const sink = await t.sink();
    const runtime = await t.start(POLICY, { mxOverride: { '*': `127.0.0.1:${sink.port}` }, bounceLoop: { feedback: { secret: SECRET, addresses: [FBL] } } });
    const smtp = nodemailer.createTransport({ host: '127.0.0.1', port: runtime.smtpPort, secure: false, ignoreTLS: true });
    // Someone without the secret makes a token naming a victim's message and tenant.
    const forged = `${feedbackHeader('not-the-secret-but-long-enough', { id: '0ABCDEFGHIJKLMN', tenant: 'acme', campaign: '' })}To: victim@z.example\r\nSubject: x\r\n\r\nbody\r\n`;
    const refusal = (raw: string) => smtp.sendMail({ envelope: { from: 'x@isp.example', to: [FBL] }, raw }).then(() => undefined, (e: { responseCode?: number; response?: string }) => e);
    const one = await refusal(sample('yahoo-style.eml', { FBL, RCPT: 'victim@z.example', ORIGINAL: forged }));
    expect(one?.responseCode).toBe(550);
    expect(one?.response).toMatch(/5\.6\.0 Feedback report not taken: .*X-Petrel-Id is forged/);
    const two = await refusal(`From: a@isp.example\r\nTo: ${FBL}\r\nSubject: hello\r\n\r\nplain text, no report\r\n`);
    expect(two?.response).toMatch(/5\.6\.0 Feedback report not taken: not an ARF report/);
    const listed = await (await fetch(`http://127.0.0.1:${runtime.httpPort}/api/v1/suppression`)).json();
    expect(listed.total).toBe(0);
    smtp.close();
  }, 60_000);
});
