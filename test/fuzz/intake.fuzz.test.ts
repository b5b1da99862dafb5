/**
 * The standing fuzz suite: fast-check drives random and mutated SMTP sessions and HTTP
 * requests at a real `petrel run` (shipped policies, embedded defaults plus an API key),
 * delivering to a local smtp-server sink. After every session the server must still answer
 * SMTP and HTTP; at the end the process must be alive with no unhandled error in its log,
 * and every message it acknowledged (SMTP 250 after DATA, HTTP 202) must reach the sink
 * exactly once — and no recipient more than once, acknowledged or not.
 *
 * Bounded: a fixed number of runs per property, each exchange with a timeout, and a time
 * limit per property. fast-check prints the seed and the shrunk counterexample of a failure;
 * rerun it with `FUZZ_SEED=<seed>`.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSink, type Sink } from '../runtime/fixtures/sink.ts';
import { until } from '../runtime/fixtures/e2e.ts';
import { killAllPetrel, startPetrel, type PetrelProcess } from '../cli/petrel-process.ts';
import { rawHttp, RawSmtp, type HttpEnding } from './wire.ts';

const API_KEY = 'fuzz-key-0123456789abcdef';
const RUNS = Number(process.env.FUZZ_RUNS ?? 60);
const seed = process.env.FUZZ_SEED ? { seed: Number(process.env.FUZZ_SEED) } : {};

let dir: string;
let sink: Sink;
let petrel: PetrelProcess;
/** Recipients the server acknowledged (250 after DATA, 202), each unique. */
const acknowledged = new Set<string>();
let serial = 0;
/** A recipient no other exchange uses, so the sink's count of it is this exchange's doing. */
const fresh = () => `r${++serial}.${process.pid}@fuzz.test`;

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'petrel-fuzz-'));
  sink = await startSink();
  writeFileSync(path.join(dir, 'mx.json'), JSON.stringify({ '*': `127.0.0.1:${sink.port}` }));
  petrel = await startPetrel(['--spool', path.join(dir, 'spool'), '--acct', path.join(dir, 'acct'), '--artifact', path.join(dir, 'artifact'), '--mx-override', path.join(dir, 'mx.json'), '--no-watch', '--api-key', API_KEY, '--grace', '2']);
}, 120_000);

afterAll(async () => {
  await petrel?.stop(10_000);
  await killAllPetrel();
  await sink?.close();
  rmSync(dir, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------
// SMTP sessions

/** One thing a client does in a session. `rcpt: null` is a fresh tracked recipient. */
type Step =
  | { kind: 'ehlo'; verb: 'EHLO' | 'HELO' | 'LHLO'; name: string }
  | { kind: 'mail'; addr: string; params: string }
  | { kind: 'rcpt'; addr: string | null; count: number }
  | { kind: 'data'; body: string; dotEnd: boolean }
  | { kind: 'cmd'; line: string }
  | { kind: 'raw'; bytes: Uint8Array };
type Ending = 'quit' | 'half-close' | 'reset' | 'reset-in-data' | 'abandon';

const junk = fc.string({ unit: 'binary-ascii', maxLength: 40 });
const longJunk = fc.string({ unit: 'grapheme-ascii', minLength: 500, maxLength: 3000 });
const mailbox = fc.oneof(fc.constant('sender@example.com'), fc.constant(''), junk, longJunk, fc.emailAddress());
const header = fc.oneof(
  fc.constant('X-Petrel-Tenant: acme\r'),
  fc.constant('X-Petrel-Tenant: a\rBcc: victim@example.com'),
  fc.constant('X-Petrel-Pool: warm\r\n\tcontinued'),
  fc.constant('X-Petrel-Campaign: c1'),
  fc.constant('Subject: =?utf-8?B?w6k=?='),
  junk.map((s) => `X-Junk: ${s}`),
);
const bodyLine = fc.oneof(junk, longJunk, fc.constant('.'), fc.constant('..leading dot'), fc.constant('\r'), fc.constant('\n'), fc.constant(''));
const body = fc
  .tuple(fc.array(header, { maxLength: 4 }), fc.array(bodyLine, { maxLength: 12 }), fc.boolean())
  .map(([headers, lines, bareLf]) => ['From: f@example.com', 'To: t@example.com', ...headers, '', ...lines].join(bareLf ? '\n' : '\r\n'))
  // Dot-stuffed as every client must: a body never ends DATA early (the raw step may).
  .map((text) => text.replace(/(^|\r\n)\./g, '$1..'));

const step: fc.Arbitrary<Step> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('ehlo' as const), verb: fc.constantFrom('EHLO' as const, 'HELO' as const, 'LHLO' as const), name: fc.oneof(fc.constant('client.example'), junk, fc.constant('')) }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('mail' as const), addr: mailbox, params: fc.constantFrom('', ' SIZE=100', ' SIZE=99999999999999', ' BODY=8BITMIME', ' SMTPUTF8', ' AUTH=<>', ' X=Y') }) },
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('rcpt' as const), addr: fc.oneof({ weight: 4, arbitrary: fc.constant(null) }, mailbox), count: fc.integer({ min: 1, max: 4 }) }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('data' as const), body, dotEnd: fc.boolean() }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('cmd' as const),
      line: fc.oneof(
        fc.constantFrom('RSET', 'NOOP', 'VRFY postmaster', 'EXPN list', 'HELP', 'STARTTLS', 'AUTH PLAIN', 'AUTH PLAIN AGFkbWluAHdyb25n', 'AUTH LOGIN', 'AUTH CRAM-MD5', 'BDAT 10 LAST', 'ETRN example.com', 'DATA', 'MAIL', 'RCPT'),
        junk,
        longJunk,
      ),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('raw' as const), bytes: fc.uint8Array({ maxLength: 600 }) }) },
);
const session = fc.record({
  steps: fc.array(step, { maxLength: 10 }),
  ending: fc.constantFrom<Ending>('quit', 'half-close', 'reset', 'reset-in-data', 'abandon'),
  // Sessions that are mostly well-formed, so acknowledged mail is common enough to check.
  wellFormedStart: fc.boolean(),
});

/**
 * Plays one session; returns the recipients acknowledged in it. A transaction's recipients
 * are those whose RCPT got 2xx since its MAIL got 2xx; they are acknowledged when the end
 * of its DATA gets 2xx.
 */
async function play(s: { steps: Step[]; ending: Ending; wellFormedStart: boolean }): Promise<string[]> {
  const c = await RawSmtp.open(petrel.smtp);
  const acked: string[] = [];
  let rcpts: string[] = [];
  try {
    const banner = await c.reply();
    if (!banner) return acked;
    const steps: Step[] = s.wellFormedStart ? [{ kind: 'ehlo', verb: 'EHLO', name: 'fuzz.example' }, { kind: 'mail', addr: 'sender@example.com', params: '' }, { kind: 'rcpt', addr: null, count: 1 }, ...s.steps] : s.steps;
    for (const st of steps) {
      if (c.closed) break;
      if (st.kind === 'ehlo' || st.kind === 'mail' || (st.kind === 'cmd' && /^RSET/i.test(st.line))) rcpts = [];
      switch (st.kind) {
        case 'ehlo':
          await c.command(`${st.verb} ${st.name}`);
          break;
        case 'mail':
          await c.command(`MAIL FROM:<${st.addr}>${st.params}`);
          break;
        case 'rcpt':
          for (let i = 0; i < st.count; i++) {
            const addr = st.addr ?? fresh();
            const r = await c.command(`RCPT TO:<${addr}>`);
            if (st.addr === null && r && r.code === 250 && /accepted/i.test(r.text)) rcpts.push(addr);
          }
          break;
        case 'data': {
          const go = await c.command('DATA');
          if (!go || go.code !== 354) break;
          c.write(st.body);
          if (!st.dotEnd) {
            // A client that stops in the middle of DATA: end as this session ends.
            if (s.ending === 'reset-in-data') c.reset();
            return acked;
          }
          c.write('\r\n.\r\n');
          const r = await c.reply(10_000);
          if (r && r.code === 250 && /queued as/.test(r.text)) acked.push(...rcpts);
          rcpts = [];
          break;
        }
        case 'cmd':
          await c.command(st.line, 1_000);
          break;
        case 'raw':
          c.write(st.bytes);
          await c.drain(300);
          break;
      }
    }
    if (s.ending === 'quit') await c.quit();
    else if (s.ending === 'half-close') await c.halfClose();
    else if (s.ending === 'abandon') c.socket.destroy();
    else c.reset();
    return acked;
  } finally {
    c.socket.destroy();
  }
}

/** The server still answers: an SMTP greeting and EHLO, and the HTTP status. */
async function stillServing(): Promise<void> {
  expect(petrel.child.exitCode, `petrel run exited:\n${petrel.log()}`).toBeNull();
  const c = await RawSmtp.open(petrel.smtp);
  try {
    expect((await c.reply(5_000))?.code).toBe(220);
    expect((await c.command('EHLO health.example', 5_000))?.code).toBe(250);
    await c.quit();
  } finally {
    c.socket.destroy();
  }
  const status = await rawHttp(petrel.http, `GET /api/v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${API_KEY}`, new Uint8Array(), { ms: 5_000 });
  expect(status.status).toBe(200);
}

// ---------------------------------------------------------------------------------------
// HTTP requests

const methods = fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'HEAD', 'PATCH', 'BREW');
const paths = fc.oneof(
  fc.constantFrom('/api/v1/status', '/metrics', '/api/v1/messages', '/api/v1/pause', '/api/v1/resume', '/api/v1/policy', '/api/v1/policy/reload', '/api/v1/policy/rollback', '/api/v1/policy/artifact', '/api/v1/sources/enable', '/api/v1/sources/disable', '/api/v1/queue', '/api/v1/queue/x/retry', '/api/v1/suppression', '/api/v1/dkim/reload', '/dashboard', '/dashboard/static/app.js', '/dashboard/api/history', '/api/v1/messages?x=1', '/', '//api/v1/status', '/api/v1/status/../status', '/%00', '*'),
  junk.map((s) => `/${encodeURIComponent(s)}`),
);
const contentTypes = fc.constantFrom('application/json', 'application/json; charset=utf-8', 'text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', '');
const origins = fc.constantFrom('', 'http://evil.example', 'null', 'http://127.0.0.1');
const keys = fc.constantFrom('', 'Authorization: Bearer wrong-key-000000', `X-Api-Key: not-${API_KEY}`);
const jsonBody = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)),
  fc.constant('{"from":"a@example.com","to":["x@fuzz.test"],"subject":"s","text":"t"}'),
  fc.constant('{"queue":"default/fuzz.test"}'),
  fc.constant('{"to":"../../etc"}'),
  fc.constant('{"artifact":{"module":"process.exit(7)","moduleFile":"x.mjs","sourceMap":"","manifest":{"hash":"abcdef0123456789"}},"tests":[]}'),
  fc.string({ maxLength: 200 }),
);
const request = fc.record({
  method: methods,
  path: paths,
  contentType: contentTypes,
  origin: origins,
  key: keys,
  extraHeader: fc.oneof(fc.constant(''), junk.map((s) => `X-${s.replace(/[^A-Za-z]/g, 'a') || 'a'}: ${s.replace(/[\r\n]/g, ' ')}`)),
  body: fc.oneof(jsonBody.map((s) => new TextEncoder().encode(s)), fc.uint8Array({ maxLength: 2000 })),
  lie: fc.oneof(fc.constant(undefined), fc.integer({ min: 0, max: 10_000_000 })),
  ending: fc.constantFrom<HttpEnding>('complete', 'complete', 'truncate-end', 'truncate-reset'),
  // A valid, keyed submission in the same run, whose 202 is then an acknowledgement.
  submit: fc.boolean(),
});

async function submitValid(): Promise<void> {
  const rcpt = fresh();
  const body = new TextEncoder().encode(JSON.stringify({ from: 'api@example.com', to: [rcpt], subject: 'fuzz', text: 'hello' }));
  const r = await rawHttp(petrel.http, `POST /api/v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAuthorization: Bearer ${API_KEY}`, body, { ms: 10_000 });
  if (r.status === 202) acknowledged.add(rcpt);
}

// ---------------------------------------------------------------------------------------

describe('fuzz: petrel run under random SMTP and HTTP clients', () => {
  it(
    'survives random SMTP sessions and keeps serving',
    async () => {
      await fc.assert(
        fc.asyncProperty(session, async (s) => {
          for (const r of await play(s)) acknowledged.add(r);
          await stillServing();
        }),
        { numRuns: RUNS, interruptAfterTimeLimit: 150_000, ...seed },
      );
    },
    240_000,
  );

  it(
    'survives random HTTP requests and keeps serving',
    async () => {
      await fc.assert(
        fc.asyncProperty(request, async (q) => {
          const head = [`${q.method} ${q.path} HTTP/1.1`, 'Host: 127.0.0.1', q.contentType && `Content-Type: ${q.contentType}`, q.origin && `Origin: ${q.origin}`, q.key, q.extraHeader].filter(Boolean).join('\r\n');
          const r = await rawHttp(petrel.http, head, q.body, { ...(q.lie !== undefined ? { declaredLength: q.lie } : {}), ending: q.ending, ms: 2_000 });
          // No request without the key may change anything: nothing but reads answer 2xx.
          if (r.status >= 200 && r.status < 300) expect(['GET', 'HEAD'], `${q.method} ${q.path} answered ${r.status} without a key: ${r.body.slice(0, 200)}`).toContain(q.method);
          if (q.submit) await submitValid();
          await stillServing();
        }),
        { numRuns: RUNS, interruptAfterTimeLimit: 120_000, ...seed },
      );
    },
    240_000,
  );

  it(
    'delivered every acknowledged message exactly once, and nothing twice',
    async () => {
      expect(acknowledged.size, 'the fuzz runs acknowledged no message at all: the suite checks nothing').toBeGreaterThan(5);
      const count = () => {
        const seen = new Map<string, number>();
        for (const m of sink.received) for (const to of m.to) seen.set(to, (seen.get(to) ?? 0) + 1);
        return seen;
      };
      await until('every acknowledged recipient at the sink', () => [...acknowledged].every((r) => count().has(r)), 60_000);
      // Anything still in flight lands within a moment; then nothing may have arrived twice.
      await new Promise((r) => setTimeout(r, 500));
      const twice = [...count()].filter(([, n]) => n > 1);
      expect(twice).toEqual([]);
      expect(petrel.child.exitCode).toBeNull();
      expect(petrel.log()).not.toMatch(/Unhandled|uncaught|\n\s+at .+:\d+:\d+\)?\n/);
    },
    90_000,
  );
});
