/**
 * The operator sees and can undo what the policy did (issue 13 part 6), through the HTTP
 * API of a runtime delivering to a local sink: a source a rule disabled shows in the
 * status and /metrics with its rule, `POST /api/v1/sources/enable` brings it back on a
 * recovery ramp while the runtime runs and the held mail goes out; an operator's disable
 * holds mail on every route until enabled; a warming-up source at its cap shows today's
 * count against today's limit; `queued` is the sum of the queues; limits read as the
 * policy writes them, a backoff's on its source only; and the endpoints are refused
 * without a key or from another origin.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import nodemailer from 'nodemailer';
import { describe, expect, it } from 'vitest';
import type { Runtime } from '../../runtime/runtime.ts';
import { BANNING_PROVIDER, e2eCase, until } from './fixtures/e2e.ts';

const t = e2eCase('operator');

/** The policy: a provider whose `IP banned` reply disables the source, one that backs off on `[TS01]`, and the long tail. */
const POLICY = `policy op version 1

default {
  retry {
    after 1h
  }
}

${BANNING_PROVIDER}
provider slow {
  match domain slow.test
  rate 3600/h per source
  retry {
    after 1h
  }
  on reply 451 /\\[TS01\\]/ {
    backoff 1h {
      rate 600/h per source
    }
    example "451 4.7.0 [TS01] deferred"
  }
}
`;
/** Where the `disable source` rule is, as status names it. */
const DISABLE_RULE = `p.policy:${POLICY.split('\n').findIndex((l) => l.includes('on reply 550')) + 1}`;

const submit = async (port: number, to: string[]) => {
  const transport = nodemailer.createTransport({ host: '127.0.0.1', port, secure: false, ignoreTLS: true });
  for (const rcpt of to) await transport.sendMail({ from: 'ops@sender.test', to: rcpt, subject: 'hi', text: 'x' });
  transport.close();
};

/** One API call: POST with a JSON body (or GET without one) and any headers. */
async function api(r: Runtime, apiPath: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`http://127.0.0.1:${r.httpPort}${apiPath}`, body === undefined ? { headers } : { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: typeof body === 'string' ? body : JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, body: res.headers.get('content-type')?.includes('json') ? (JSON.parse(text) as Record<string, unknown>) : { text } };
}
const metrics = async (r: Runtime) => (await api(r, '/metrics')).body.text as string;
/** The disabled entries of the state file, once it is written. */
function savedDisables(dir: string): [string, unknown][] | undefined {
  try {
    return (JSON.parse(readFileSync(path.join(dir, 'spool', 'runtime-state.json'), 'utf8')) as { policy: { disabled: [string, unknown][] } }).policy.disabled;
  } catch {
    return undefined;
  }
}

describe('petrel run: what the policy did, seen and undone by an operator', () => {
  it('shows a source a rule disabled, with its rule, and enabling it through the API delivers the held mail on a recovery ramp', async () => {
    let banned = 0;
    const sink = await t.sink({ refuse: (rcpt) => (rcpt.endsWith('@banning.test') && banned++ === 0 ? { code: 550, text: '5.7.1 IP banned' } : undefined) });
    const logged: string[] = [];
    const r = await t.start(POLICY, { mxOverride: { '*': `127.0.0.1:${sink.port}` }, log: (line) => logged.push(line) });
    await submit(r.smtpPort, ['held@banning.test']);
    // The rule disables the source, then the deferral is recorded and the recipient waits.
    const status = await until('the source disabled and the mail held', () => {
      const s = r.status();
      return s.disabled.length === 1 && s.queued === 1 && s.inFlight === 0 ? s : undefined;
    });
    expect(status.disabled).toEqual([{ queue: 'provider:banning', source: 'default', since: expect.any(String), reason: expect.stringContaining('IP banned'), rule: DISABLE_RULE }]);
    const queue = status.queues.find((q) => q.queue === 'provider:banning')!;
    expect(queue).toMatchObject({ queued: 1, disabled: [{ source: 'default', everyRoute: false, rule: DISABLE_RULE }], sources: [{ source: 'default', stopped: 'disabled', backoff: false, ramp: null }] });
    expect(await metrics(r)).toMatch(/^petrel_source_disabled\{queue="provider:banning",source="default"\} 1$/m);
    // Held: no new try while it is disabled (the retry curve says every second).
    await new Promise((res) => setTimeout(res, 2000));
    expect(banned).toBe(1);
    expect(sink.received).toHaveLength(0);

    const enabled = await api(r, '/api/v1/sources/enable', { source: 'default' });
    expect(enabled).toEqual({ status: 200, body: { source: 'default', enabled: ['provider:banning'], disabledOn: [] } });
    expect(logged).toEqual(['petrel: source default enabled by an operator on provider:banning (recovery ramp); disabled now on nowhere']);
    // Saved at once, as a pause is.
    await until('the state file without the disable', () => savedDisables(t.dir)?.length === 0, 5_000);
    await until('the held mail delivered', () => sink.received.length === 1, 10_000);
    expect(sink.received[0]!.to).toEqual(['held@banning.test']);
    const after = r.status();
    expect(after.disabled).toEqual([]);
    // Back on the recovery ramp: 10% of the normal limits first (60/min where the route sets no rate).
    expect(after.ramps).toEqual([{ queue: 'provider:banning', target: 'source', who: 'default', share: 0.1, from: expect.any(String), until: expect.any(String), reason: 'enabled by an operator', rule: DISABLE_RULE }]);
    expect(after.queues.find((q) => q.queue === 'provider:banning')?.sources).toEqual([{ source: 'default', limits: expect.objectContaining({ rate: ['6/min per source'], connections: ['2 per source'] }), backoff: false, ramp: 0.1, stopped: null }]);
    expect(await metrics(r)).toMatch(/^petrel_ramp_share\{queue="provider:banning",target="source",who="default"\} 0\.1$/m);
    expect(await metrics(r)).not.toMatch(/^petrel_source_disabled\{/m);
    // Nothing is disabled there any more: a second enable says so.
    expect(await api(r, '/api/v1/sources/enable', { source: 'default', route: 'provider:banning' })).toEqual({ status: 404, body: { error: 'source `default` is not disabled on `provider:banning`' } });
  }, 60_000);

  it('holds mail on every route while an operator has the source disabled, and sends it when enabled', async () => {
    const sink = await t.sink();
    const logged: string[] = [];
    const r = await t.start(POLICY, { mxOverride: { '*': `127.0.0.1:${sink.port}` }, log: (line) => logged.push(line) });
    expect(await api(r, '/api/v1/sources/disable', { source: 'nosuch' })).toEqual({ status: 404, body: { error: 'no source `nosuch` in the policy (its sources: default)' } });
    expect(await api(r, '/api/v1/sources/disable', { source: 'default' })).toEqual({ status: 200, body: { source: 'default', disabled: ['*'], disabledOn: ['*'] } });
    await until('the state file with the disable', () => savedDisables(t.dir)?.length === 1, 5_000);
    await submit(r.smtpPort, ['a@long-tail.test', 'b@banning.test']);
    await until('both queues holding', () => r.status().queues.filter((q) => q.queued === 1).length === 2, 10_000);
    await new Promise((res) => setTimeout(res, 1000));
    expect(sink.received).toHaveLength(0);
    const status = r.status();
    expect(status.disabled).toEqual([{ queue: '*', source: 'default', since: expect.any(String), reason: 'disabled by an operator', rule: null }]);
    for (const q of status.queues) expect(q.sources).toEqual([expect.objectContaining({ source: 'default', stopped: 'disabled' })]);
    expect(await metrics(r)).toMatch(/^petrel_source_disabled\{queue="\*",source="default"\} 1$/m);
    // Enabling one route while it is disabled on all of them is refused, and says how.
    expect(await api(r, '/api/v1/sources/enable', { source: 'default', route: 'provider:banning' })).toEqual({ status: 409, body: { error: 'source `default` is disabled on every route: enable it without a route' } });

    expect(await api(r, '/api/v1/sources/enable', { source: 'default' })).toEqual({ status: 200, body: { source: 'default', enabled: ['*'], disabledOn: [] } });
    await until('both delivered', () => sink.received.length === 2, 10_000);
    expect(logged).toEqual([
      'petrel: source default disabled by an operator on every route; disabled now on every route',
      'petrel: source default enabled by an operator on every route (recovery ramp); disabled now on nowhere',
    ]);
    expect(r.status().ramps).toEqual([expect.objectContaining({ queue: '*', target: 'source', who: 'default', share: 0.1 })]);
  }, 60_000);

  it('shows a warming-up source at its cap: the day of its ramp, today\'s count against today\'s limit', async () => {
    const sink = await t.sink();
    const today = new Date().toISOString().slice(0, 10);
    const policy = `policy warm version 1\n\nwarmup cold {\n  schedule 2/day, 4/day\n}\n\nsource fresh {\n  address 127.0.0.1\n  warmup cold since ${today}\n}\n`;
    const r = await t.start(policy, { mxOverride: { '*': `127.0.0.1:${sink.port}` } });
    await submit(r.smtpPort, ['w1@warm.test', 'w2@warm.test', 'w3@warm.test']);
    await until('two delivered', () => sink.received.length === 2, 10_000);
    await until('the third held', () => r.status().queues.find((q) => q.queue === 'default/warm.test')?.queued === 1, 5_000);
    expect(r.status().warmup).toEqual([{ source: 'fresh', ramp: 'cold', since: today, day: 0, overflowPool: null, routes: [{ route: 'default', sentToday: 2, limitToday: 2, capped: true }] }]);
    const text = await metrics(r);
    expect(text).toMatch(/^petrel_warmup_sent_today\{source="fresh",route="default"\} 2$/m);
    expect(text).toMatch(/^petrel_warmup_limit_today\{source="fresh",route="default"\} 2$/m);
    await new Promise((res) => setTimeout(res, 500));
    expect(sink.received).toHaveLength(2);
  }, 60_000);

  it('counts queued as the sum of the queues, and shows limits as the policy writes them, a backoff\'s on its source', async () => {
    const sink = await t.sink({ refuse: (rcpt) => ({ code: 451, text: rcpt.endsWith('@slow.test') ? '4.7.0 [TS01] deferred' : '4.3.0 try later' }) });
    const r = await t.start(POLICY, { mxOverride: { '*': `127.0.0.1:${sink.port}` } });
    const rcpts = ['a1@one.test', 'a2@one.test', 'b1@two.test', 'c1@three.test', 'c2@three.test', 'c3@three.test', 's1@slow.test', 's2@slow.test'];
    await submit(r.smtpPort, rcpts);
    await until('every recipient deferred once', () => r.status().deferred >= rcpts.length && r.status().inFlight === 0, 20_000);
    const status = r.status();
    expect(Object.fromEntries(status.queues.map((q) => [q.queue, q.queued]))).toEqual({ 'default/one.test': 2, 'default/three.test': 3, 'default/two.test': 1, 'provider:slow': 2 });
    expect(status.queued).toBe(rcpts.length);
    expect(status.queued).toBe(status.queues.reduce((n, q) => n + q.queued, 0));
    expect(status.inFlight).toBe(status.queues.reduce((n, q) => n + q.inFlight, 0));
    expect(await metrics(r)).toMatch(new RegExp(`^petrel_queued_recipients ${rcpts.length}$`, 'm'));

    const slow = status.queues.find((q) => q.queue === 'provider:slow')!;
    // The queue's own limits for a source with nothing of its own; the backed-off source's under the backoff.
    expect(slow.limits.rate).toEqual(['3600/h per source']);
    expect(slow.limits.connections).toContain('20 per source');
    expect(slow.sources).toEqual([{ source: 'default', limits: expect.objectContaining({ rate: ['600/h per source'] }), backoff: true, ramp: null, stopped: null }]);
    expect(status.backoffs).toEqual([{ queue: 'provider:slow', source: 'default', since: expect.any(String), until: expect.any(String), reason: expect.stringContaining('[TS01]'), rule: expect.stringMatching(/^p\.policy:\d+$/), limits: expect.objectContaining({ rate: ['600/h per source'] }) }]);
    expect(await metrics(r)).toMatch(/^petrel_backoff_until_seconds\{queue="provider:slow",source="default"\} \d+(\.\d+)?$/m);
    // The long tail is untouched by it.
    expect(status.queues.find((q) => q.queue === 'default/one.test')?.limits.rate).toEqual([]);
  }, 60_000);

  it('refuses a source change without a key when keys are configured, from another origin, or malformed', async () => {
    const KEY = 'operator-test-key-0123456789';
    const r = await t.start(POLICY, { http: { host: '127.0.0.1', port: 0, apiKeys: [KEY] } });
    const auth = { authorization: `Bearer ${KEY}` };
    expect((await api(r, '/api/v1/sources/disable', { source: 'default' })).status).toBe(401);
    expect((await api(r, '/api/v1/sources/disable', { source: 'default' }, { ...auth, origin: 'http://evil.example' })).status).toBe(403);
    expect((await api(r, '/api/v1/sources/disable', 'source=default', { ...auth, 'content-type': 'application/x-www-form-urlencoded' })).status).toBe(415);
    expect(await api(r, '/api/v1/sources/disable', { source: 'default', colour: 'red' }, auth)).toEqual({ status: 400, body: { error: 'unknown field `colour`: give `source` and, optionally, `route`' } });
    expect(await api(r, '/api/v1/sources/disable', { source: 'a b' }, auth)).toEqual({ status: 400, body: { error: '`source` must be 1 to 256 printable characters without spaces' } });
    expect(await api(r, '/api/v1/sources/enable', { source: 'default', route: 'x'.repeat(257) }, auth)).toEqual({ status: 400, body: { error: '`route` must be 1 to 256 printable characters without spaces' } });
    expect((await api(r, '/api/v1/sources/disable', { source: 'default'.repeat(1000) }, auth)).status).toBe(413);
    expect((await fetch(`http://127.0.0.1:${r.httpPort}/api/v1/sources/disable`, { headers: auth })).status).toBe(405);
    // None of those changed anything.
    expect(r.status().disabled).toEqual([]);
    expect(await api(r, '/api/v1/sources/disable', { source: 'default', route: 'provider:slow' }, auth)).toEqual({ status: 200, body: { source: 'default', disabled: ['provider:slow'], disabledOn: ['provider:slow'] } });
  }, 60_000);
});
