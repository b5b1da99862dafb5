/**
 * The operator's dashboard in a real browser (issue 18 part 1): Debian's chromium driven by
 * playwright-core loads every page of a real `petrel run` (API key configured, so keyless
 * loopback is off) that delivers to a local sink under a policy whose `IP banned` reply
 * disables the source. Without the key the page shows the API's refusal; with it, the
 * numbers shown equal the status API's, the disabled source shows its rule and is enabled
 * from the page (the held mail is then delivered), a queue is paused and resumed from the
 * page, a change without the key is refused, the policy page shows the live version and
 * its history and the line diff of two versions, and the message search finds a deferred
 * message by recipient and a delivered (finished) one by Message-ID, each with its
 * accounting trail. An SMTP user named in `dashboard.users` logs in with the password SMTP
 * AUTH checks and enables a source; a wrong password is refused and then throttled; a
 * cross-site POST carrying the session cookie is refused.
 * Screenshots of each page go to var/dashboard-screenshots/.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import nodemailer from 'nodemailer';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT } from '../helpers.ts';
import { hashPassword } from '../../runtime/intake/submission-smtp.ts';
import { killAllPetrel, startPetrel, type PetrelProcess } from '../cli/petrel-process.ts';
import { BANNING_PROVIDER, until } from './fixtures/e2e.ts';
import { startSink, type Sink } from './fixtures/sink.ts';

const KEY = 'dashboard-test-key-0123456789';
const PASSWORD = 'correct horse battery staple';
const SHOTS = path.join(ROOT, 'var', 'dashboard-screenshots');
const POLICY = `policy banning version 1

${BANNING_PROVIDER}
provider later {
  match domain later.test
  retry {
    after 1h
    then every 1h
  }
}
`;
const RULE = `banning.policy:${POLICY.split('\n').findIndex((l) => l.includes('on reply 550')) + 1}`;
const DELIVERED = 12;

interface Status {
  policy: { name: string; version: string; hash: string };
  accepted: number;
  delivered: number;
  deferred: number;
  bounced: number;
  queued: number;
  paused: string[];
  disabled: { queue: string; source: string; reason: string; rule: string | null }[];
  queues: { queue: string; queued: number; limits: Record<string, string[]> }[];
}

let dir: string;
let sink: Sink;
let petrel: PetrelProcess;
let context: BrowserContext;
let page: Page;
let banned = 0;
const cspErrors: string[] = [];
const base = () => `http://127.0.0.1:${petrel.http}`;

/** A call of the API as the test sees it (with the key unless `headers` says otherwise). */
async function api(apiPath: string, body?: unknown, headers: Record<string, string> = { authorization: `Bearer ${KEY}` }): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(base() + apiPath, body === undefined ? { headers } : { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}
const status = async () => (await api('/api/v1/status')).body as unknown as Status;

/** Shows a page of the dashboard and waits for a refresh after it. */
async function show(name: string): Promise<void> {
  const before = await page.evaluate(() => document.body.dataset.updated ?? '');
  await page.click(`nav a[href="#${name}"]`);
  await page.waitForFunction((b) => (document.body.dataset.updated ?? '') !== b, before, { timeout: 20_000 });
}
const shot = (name: string) => page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
const text = (selector: string) => page.locator(selector).innerText();

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'petrel-dashboard-'));
  mkdirSync(SHOTS, { recursive: true });
  sink = await startSink({
    refuse: (rcpt) => (rcpt.endsWith('@later.test') ? { code: 451, text: '4.3.0 try again later' } : rcpt.endsWith('@banning.test') && banned++ === 0 ? { code: 550, text: '5.7.1 IP banned' } : undefined),
  });
  mkdirSync(path.join(dir, 'policies'));
  writeFileSync(path.join(dir, 'policies', 'banning.policy'), POLICY);
  writeFileSync(path.join(dir, 'mx.json'), JSON.stringify({ '*': `127.0.0.1:${sink.port}` }));
  const smtp = { users: [{ user: 'ops', passwordHash: await hashPassword(PASSWORD) }], allowInsecureAuth: true, auth: { failureDelaySeconds: 0.1, maxFailuresPerIp: 3, lockoutSeconds: 600 } };
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ http: { apiKeys: [KEY] }, smtp, dashboard: { users: ['ops'] } }));
  petrel = await startPetrel(['--config', path.join(dir, 'config.json'), '--policies', path.join(dir, 'policies'), '--no-watch', '--spool', path.join(dir, 'spool'), '--acct', path.join(dir, 'acct'), '--artifact', path.join(dir, 'artifact'), '--mx-override', path.join(dir, 'mx.json')]);
  context = await chromium.launchPersistentContext(path.join(dir, 'chromium-profile'), {
    executablePath: '/usr/bin/chromium',
    args: ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
    viewport: { width: 1280, height: 900 },
  });
  page = context.pages()[0] ?? (await context.newPage());
  page.on('console', (m) => {
    if (/Content.Security.Policy/i.test(m.text())) cspErrors.push(m.text());
  });
}, 90_000);

afterAll(async () => {
  await context?.close();
  if (petrel) expect(await petrel.stop()).toBe(0);
  await killAllPetrel();
  await sink?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('the dashboard in Chromium', () => {
  it('sends traffic: deliveries, a deferred message, and a source a rule disabled', async () => {
    const transport = nodemailer.createTransport({ host: '127.0.0.1', port: petrel.smtp, secure: false, ignoreTLS: true });
    for (let i = 0; i < DELIVERED; i++) await transport.sendMail({ from: 'ops@sender.test', to: `r${i}@fine.test`, subject: 'hi', text: 'x', messageId: `<done-${i}@sender.test>` });
    await transport.sendMail({ from: 'ops@sender.test', to: 'stay@later.test', subject: 'later', text: 'x', messageId: '<stay-1@sender.test>' });
    await transport.sendMail({ from: 'ops@sender.test', to: 'held@banning.test', subject: 'held', text: 'x' });
    transport.close();
    const s = await until('deliveries, a deferral and the disable', async () => {
      const st = await status();
      return st.delivered >= DELIVERED && st.deferred >= 1 && st.disabled.length === 1 && st;
    }, 60_000);
    expect(s.disabled[0]).toMatchObject({ rule: expect.stringMatching(new RegExp(`/${RULE}$`)), reason: expect.stringContaining('IP banned') });
  }, 90_000);

  it('is served with a policy that forbids inline script and framing; its data needs the key', async () => {
    const res = await fetch(`${base()}/dashboard`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-security-policy')).toMatch(/default-src 'self'.*script-src 'self'.*frame-ancestors 'none'/);
    expect(res.headers.get('x-frame-options')).toBe('DENY');
    expect(await res.text()).not.toMatch(/<script>|on(click|load)=/i);
    expect((await api('/dashboard/api/history', undefined, {})).status).toBe(401);
    await page.goto(`${base()}/dashboard`);
    await page.waitForFunction(() => document.getElementById('updated')?.className === 'error', undefined, { timeout: 20_000 });
    expect(await text('#updated')).toMatch(/401 missing or unknown API key — enter an API key or log in above/);
    await shot('0-no-key');
  }, 60_000);

  it('overview: the numbers shown are the status API\'s, and the rates are plotted', async () => {
    await page.fill('#api-key', KEY);
    await page.click('#key-form button[type=submit]');
    await page.waitForFunction(() => document.body.dataset.updated !== undefined, undefined, { timeout: 20_000 });
    // The page and the API are read at different moments: equal once nothing moves between them.
    await until('the page to show the status API\'s numbers', async () => {
      const before = await status();
      await page.waitForFunction((t) => (document.body.dataset.updated ?? '') > t, new Date().toISOString(), { timeout: 20_000 });
      const shown = Object.fromEntries(await Promise.all(['accepted', 'delivered', 'deferred', 'bounced', 'queued'].map(async (k) => [k, Number(await text(`#total-${k}`))])));
      const after = await status();
      const api = { accepted: after.accepted, delivered: after.delivered, deferred: after.deferred, bounced: after.bounced, queued: after.queued };
      return JSON.stringify(before) === JSON.stringify(after) && JSON.stringify(shown) === JSON.stringify(api);
    }, 60_000);
    expect(Number(await text('#total-delivered'))).toBeGreaterThanOrEqual(DELIVERED);
    // The history samples every 5 s: two points make a line.
    await until('two plotted points', async () => ((await api('/dashboard/api/history')).body.points as unknown[]).length >= 2 && (await page.locator('#chart-rates .uplot canvas').count()) === 1, 30_000);
    await page.waitForFunction((t) => (document.body.dataset.updated ?? '') > t, new Date().toISOString(), { timeout: 20_000 });
    expect(await page.locator('#chart-queue .uplot canvas').count()).toBe(1);
    await shot('1-overview');
  }, 120_000);

  it('destinations: each queue with its queued count and limits, as the API has them', async () => {
    await show('destinations');
    const s = await status();
    const rows = await page.locator('#queues tr.queue').allInnerTexts();
    expect(rows.map((r) => r.split('\t')[0]).sort()).toEqual(s.queues.map((q) => q.queue).sort());
    for (const q of s.queues) {
      const cells = rows.find((r) => r.startsWith(q.queue + '\t'))!.split('\t');
      expect(cells[2]).toBe(String(q.queued));
      expect(cells[5]).toBe(Object.values(q.limits).flat().join(', ') || 'no limit');
    }
    await shot('2-destinations');
  }, 60_000);

  it('sources: the disabled source shows its rule, and Enable brings it back: the held mail is delivered', async () => {
    await show('sources');
    const s = await status();
    const d = s.disabled[0]!;
    const row = page.locator('#source-list tr', { has: page.locator(`button[data-source="${d.source}"]`) });
    expect(await row.innerText()).toContain(RULE);
    await shot('3-sources-disabled');
    await row.locator('button').click();
    await page.waitForFunction(() => /enable .*: done/.test(document.getElementById('notice')?.textContent ?? ''), undefined, { timeout: 20_000 });
    await until('the source enabled and the held mail delivered', async () => (await status()).disabled.length === 0 && sink.received.some((m) => m.to.includes('held@banning.test')), 60_000);
    await page.waitForFunction(() => document.querySelectorAll('#source-list button[data-source]').length === 0, undefined, { timeout: 20_000 });
    await shot('4-sources-enabled');
  }, 120_000);

  it('pauses and resumes a queue from the page; without the key the change is refused', async () => {
    await show('overview');
    const queue = (await status()).queues[0]!.queue;
    await page.selectOption('#pause-kind', 'queue');
    await page.fill('#pause-name', queue);
    await page.click('#pause-form button[data-on="true"]');
    await until('the pause', async () => (await status()).paused.includes(`queue:${queue}`), 20_000);
    await page.waitForFunction((q) => document.getElementById('paused')?.textContent?.includes(`queue:${q}`), queue, { timeout: 20_000 });
    await shot('5-paused');
    await page.click('#key-forget');
    await page.click('#pause-form button[data-on="false"]');
    await page.waitForFunction(() => /refused: .*401/.test(document.getElementById('notice')?.textContent ?? ''), undefined, { timeout: 20_000 });
    expect((await status()).paused).toContain(`queue:${queue}`);
    // The same without the page: no key, and a key from another origin.
    expect((await api('/api/v1/resume', { queue }, {})).status).toBe(401);
    expect((await api('/api/v1/resume', { queue }, { authorization: `Bearer ${KEY}`, origin: 'http://evil.test' })).status).toBe(403);
    await page.fill('#api-key', KEY);
    await page.click('#key-form button[type=submit]');
    await page.click('#pause-form button[data-on="false"]');
    await until('the resume', async () => !(await status()).paused.includes(`queue:${queue}`), 20_000);
  }, 90_000);

  it('policy: the live version and its history, as GET /api/v1/policy has them', async () => {
    await show('policy');
    const p = (await api('/api/v1/policy')).body as { current: { version: string; hash: string }; previous: unknown[] };
    expect(await text('#policy-current')).toContain(p.current.hash);
    expect(await page.locator('#policy-history tr').count()).toBe(1 + 1 + p.previous.length);
    expect(await text('#policy-name')).toBe(`${(await status()).policy.name} ${p.current.version}`);
    await shot('6-policy');
  }, 60_000);

  it('message search: a recipient finds the deferred message, and its accounting trail is the API\'s', async () => {
    await show('search');
    await page.selectOption('#search-kind', 'rcpt');
    await page.fill('#search-text', 'stay@later.test');
    await page.click('#search-form button');
    const row = page.locator('#search-results tr', { hasText: 'stay@later.test' });
    await row.locator('button').click();
    await page.waitForSelector('#search-message pre', { timeout: 20_000 });
    const id = (await row.innerText()).split('\t')[0]!;
    const shown = (await api(`/api/v1/queue/${encodeURIComponent(id)}`)).body as { accounting: string[] };
    expect(shown.accounting.length).toBeGreaterThanOrEqual(1);
    expect(await text('#search-message pre')).toBe(shown.accounting.join('\n'));
    await page.selectOption('#search-kind', 'id');
    await page.fill('#search-text', 'no-such-id');
    await page.click('#search-form button');
    await page.waitForFunction(() => /no message `no-such-id`/.test(document.getElementById('search-message')?.textContent ?? ''), undefined, { timeout: 20_000 });
    await page.fill('#search-text', id);
    await page.click('#search-form button');
    await page.waitForSelector('#search-message pre', { timeout: 20_000 });
    await shot('7-search');
    // A queue action from the page: retry now (a new attempt: the sink defers it again), then delete.
    const attemptsOf = async () => ((await api(`/api/v1/queue/${encodeURIComponent(id)}`)).body as { recipients: { attempts: number }[] }).recipients[0]!.attempts;
    const attempts = await attemptsOf();
    await page.click('#search-message button:text("Retry now")');
    await page.waitForFunction((i) => document.getElementById('notice')?.textContent === `retry ${i}: done`, id, { timeout: 20_000 });
    await until('the retried attempt', async () => (await attemptsOf()) > attempts, 30_000);
    page.once('dialog', (d) => void d.accept());
    await page.click('#search-message button:text("Delete")');
    await page.waitForFunction((i) => document.getElementById('notice')?.textContent === `delete ${i}: done`, id, { timeout: 20_000 });
    expect((await api(`/api/v1/queue/${encodeURIComponent(id)}`)).status).toBe(404);
    // Deleted, it has left the queue: the page shows it as finished, from the message index.
    await page.waitForFunction((i) => document.getElementById('search-message')?.textContent?.includes(`Message ${i} (finished)`), id, { timeout: 20_000 });
  }, 90_000);

  it('message search: a Message-ID (with its angle brackets) finds a delivered message, finished, with its trail', async () => {
    await show('search');
    await page.selectOption('#search-kind', 'messageId');
    await page.fill('#search-text', '<done-3@sender.test>');
    await page.click('#search-form button');
    const row = page.locator('#search-results tr', { hasText: 'done-3@sender.test' });
    await row.waitFor({ timeout: 20_000 });
    expect(await row.innerText()).toContain('finished');
    const id = (await row.innerText()).split('\t')[0]!;
    await row.locator('button').click();
    await page.waitForSelector('#search-message pre', { timeout: 20_000 });
    const shown = (await api(`/dashboard/api/messages/${encodeURIComponent(id)}`)).body as { state: string; outcomes: Record<string, string>; accounting: string[] };
    expect(shown).toMatchObject({ state: 'finished', outcomes: { 'r3@fine.test': 'delivered' } });
    expect(shown.accounting.some((l) => l.startsWith('d,') && l.includes('r3@fine.test'))).toBe(true);
    expect(await text('#search-message pre')).toBe(shown.accounting.join('\n'));
    expect(await text('#search-message table')).toContain('delivered');
    await shot('7b-search-finished');
  }, 60_000);

  it('policy: a kept version is rolled back to from the page', async () => {
    const first = (await status()).policy.hash;
    writeFileSync(path.join(dir, 'policies', 'banning.policy'), POLICY.replace('version 1', 'version 2').replace('after 1s', 'after 2s'));
    expect((await api('/api/v1/policy/reload', {})).body).toMatchObject({ result: 'live' });
    const second = (await status()).policy.hash;
    expect(second).not.toBe(first);
    await show('policy');
    await page.waitForFunction(() => document.querySelectorAll('#policy-history tr').length === 3, undefined, { timeout: 20_000 });
    // The diff between the two: the changed lines of banning.policy, as the kept artifacts hold it.
    expect(await page.inputValue('#diff-from')).toBe(first);
    expect(await page.inputValue('#diff-to')).toBe(second);
    await page.click('#diff-form button');
    await page.waitForSelector('#policy-diff .file-diff pre', { timeout: 20_000 });
    expect(await text('#policy-diff .file-diff h4')).toMatch(/banning\.policy — changed$/);
    expect(await page.locator('#policy-diff .del').allInnerTexts()).toEqual(['-policy banning version 1', '-    after 1s']);
    expect(await page.locator('#policy-diff .add').allInnerTexts()).toEqual(['+policy banning version 2', '+    after 2s']);
    await shot('8-policy-diff');
    page.once('dialog', (d) => void d.accept());
    await page.locator('#policy-history button').click();
    await until('the rollback', async () => (await status()).policy.hash === first, 20_000);
    await page.waitForFunction((h) => document.getElementById('policy-current')?.textContent?.includes(h), first, { timeout: 20_000 });
    await shot('9-policy-rolled-back');
  }, 60_000);

  it('login: an SMTP user of dashboard.users logs in with its password and enables a source; a cross-site POST with the cookie is refused', async () => {
    const source = (await status()).queues.flatMap((q) => (q as unknown as { sources: { source: string }[] }).sources)[0]!.source;
    expect((await api('/api/v1/sources/disable', { source })).status).toBe(200);
    await page.click('#key-forget');
    await page.fill('#login-user', 'ops');
    await page.fill('#login-password', PASSWORD);
    await page.click('#login-form button[type=submit]');
    await page.waitForFunction(() => document.getElementById('login-state')?.textContent === 'logged in as ops', undefined, { timeout: 20_000 });
    await show('sources');
    const cookies = await context.cookies(base());
    const session = cookies.find((c) => c.name === 'petrel_session')!;
    expect(session).toMatchObject({ httpOnly: true, sameSite: 'Strict', secure: false });
    expect(session.value).toMatch(/^[0-9a-f]{64}$/);
    // Without the key, through the cookie: the disabled source is shown and enabled from the page.
    const enable = page.locator(`#source-list button[data-source="${source}"]`);
    await enable.waitFor({ timeout: 20_000 });
    await shot('10-login-sources');
    await enable.click();
    await page.waitForFunction(() => /enable .*: done/.test(document.getElementById('notice')?.textContent ?? ''), undefined, { timeout: 20_000 });
    await until('the source enabled', async () => (await status()).disabled.length === 0, 20_000);
    // The same cookie from another site's page: refused, though it is valid from this origin.
    const cookie = { cookie: `petrel_session=${session.value}` };
    expect((await api('/api/v1/pause', { queue: 'csrf-probe' }, { ...cookie, origin: 'http://evil.test' })).status).toBe(403);
    expect((await status()).paused).not.toContain('queue:csrf-probe');
    expect((await api('/api/v1/status', undefined, cookie)).status).toBe(200);
  }, 90_000);

  it('login: a wrong password is refused, and after three the address is locked out (even the right password)', async () => {
    await page.click('#logout');
    await page.waitForFunction(() => document.getElementById('login-state')?.textContent === 'not logged in', undefined, { timeout: 20_000 });
    for (let i = 0; i < 3; i++) {
      await page.evaluate(() => (document.getElementById('notice')!.textContent = ''));
      await page.fill('#login-user', 'ops');
      await page.fill('#login-password', 'wrong password');
      await page.click('#login-form button[type=submit]');
      await page.waitForFunction(() => /login refused: .*401 unknown user or wrong password/.test(document.getElementById('notice')?.textContent ?? ''), undefined, { timeout: 20_000 });
    }
    await page.fill('#login-user', 'ops');
    await page.fill('#login-password', PASSWORD);
    await page.click('#login-form button[type=submit]');
    await page.waitForFunction(() => /login refused: .*429 too many failed logins/.test(document.getElementById('notice')?.textContent ?? ''), undefined, { timeout: 20_000 });
    expect(await text('#login-state')).toBe('not logged in');
    await shot('11-login-locked-out');
    expect(cspErrors).toEqual([]);
  }, 90_000);
});
