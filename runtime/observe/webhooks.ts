/**
 * Event webhooks: delivered, bounced, deferred, expired, complained and suppressed events
 * POSTed as JSON to each tenant's URL, from the durable outbox (outbox.ts).
 *
 * - At least once: an event leaves the outbox only once its receiver answered 2xx; a
 *   failure (non-2xx, timeout, refused connection) is tried again after 1 s, 2 s, 4 s, …
 *   (±20 % jitter) up to 10 minutes between tries; after `maxAgeMs` (default 3 days) an
 *   event is given up with a warning. Receivers dedup by `id` (stable across restarts).
 * - In order per message: the events of one message (tenant + queue id) are sent one
 *   after the other, the next only once the one before was taken; different messages go
 *   in parallel (`concurrency`, default 4).
 * - Signed: `Petrel-Signature: t=UNIXSECONDS,v1=HEX` where HEX is
 *   HMAC-SHA256(secret, `${t}.${body}`) — the receiver recomputes it and rejects old `t`
 *   (replays). `Petrel-Event-Id` repeats the id.
 * - SSRF: a URL's host is resolved at every request and the connection goes to the
 *   address that was checked; loopback, private (RFC 1918, ULA), link-local and
 *   unspecified addresses are refused unless `allowPrivateTargets` is set.
 */
import { createHmac } from 'node:crypto';
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { LookupFunction } from 'node:net';
import { networkMatcher } from '../intake/index.ts';
import type { Outbox, WebhookEvent } from './outbox.ts';
import { printable } from './text.ts';

/** Where one tenant's events go. */
export interface WebhookTarget {
  url: string;
  secret: string;
}

export interface WebhookOptions {
  /** Tenant (`''` for messages without one, `*` for every tenant without its own) → target. */
  targets: Record<string, WebhookTarget>;
  allowPrivateTargets?: boolean;
  concurrency?: number;
  maxAgeMs?: number;
  timeoutMs?: number;
  /** First retry delay (tests shorten it). */
  baseDelayMs?: number;
  maxDelayMs?: number;
  clock?: () => number;
  warn(line: string): void;
}

export interface WebhookSender {
  /** Whether a tenant's events go anywhere (no target: no events are kept). */
  wants(tenant: string): boolean;
  /** Makes events durable in the outbox (rejects when it is full), then sends them in turn. */
  add(events: readonly WebhookEvent[]): Promise<void>;
  stats(): { pending: number; sent: number; failures: number; givenUp: number };
  close(): void;
}

const PRIVATE = networkMatcher(['0.0.0.0/8', '10.0.0.0/8', '100.64.0.0/10', '127.0.0.0/8', '169.254.0.0/16', '172.16.0.0/12', '192.168.0.0/16', '::/128', '::1/128', 'fc00::/7', 'fe80::/10']);

/** A lookup that refuses private addresses: the connection uses exactly the address checked. */
const publicLookup: LookupFunction = (hostname, options, callback) => {
  dnsLookup(hostname, { ...options, all: true }, (err, addresses: LookupAddress[]) => {
    if (err) return callback(err, '', 0);
    const bad = addresses.find((a) => PRIVATE(a.address));
    if (bad) return callback(Object.assign(new Error(`webhook target ${hostname} resolves to ${bad.address}, a private or loopback address (webhooks.allowPrivateTargets allows it)`), { code: 'EPRIVATE' }), '', 0);
    if (options.all) return (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, addresses);
    callback(null, addresses[0]!.address, addresses[0]!.family);
  });
};

/** Checks a target URL at configuration time; returns the problem, if any. */
export function webhookUrlProblem(url: string): string | undefined {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return `\`${url.slice(0, 200)}\` is not a URL`;
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return `\`${url.slice(0, 200)}\` is not http or https`;
  if (u.username || u.password) return 'a webhook URL must not hold credentials (the signature authenticates Petrel)';
  return undefined;
}

/** `t=…,v1=…` for a body sent at `nowMs`. */
export function webhookSignature(secret: string, body: string, nowMs: number): string {
  const t = Math.floor(nowMs / 1000);
  return `t=${t},v1=${createHmac('sha256', secret).update(`${t}.${body}`).digest('hex')}`;
}

export function startWebhooks(outbox: Outbox, options: WebhookOptions): WebhookSender {
  const clock = options.clock ?? Date.now;
  const concurrency = options.concurrency ?? 4;
  const base = options.baseDelayMs ?? 1000;
  const maxDelay = options.maxDelayMs ?? 600_000;
  const maxAge = options.maxAgeMs ?? 3 * 86_400_000;
  const targetOf = (tenant: string) => options.targets[tenant] ?? options.targets['*'];
  const keyOf = (e: WebhookEvent) => `${e.tenant}\n${e.messageId || e.id}`;
  /** Per message (tenant + queue id), its events in order; the head is the one to send. */
  const queues = new Map<string, WebhookEvent[]>();
  /** Messages whose head may be sent now, oldest first; the others are busy or waiting in `retry`. */
  const ready = new Set<string>();
  /** Messages whose head failed: failures so far and when to try again. */
  const retry = new Map<string, { failures: number; at: number }>();
  const busy = new Set<string>();
  const stats = { sent: 0, failures: 0, givenUp: 0 };
  let timer: NodeJS.Timeout | undefined;
  let closed = false;

  function enqueue(e: WebhookEvent): void {
    const key = keyOf(e);
    const q = queues.get(key);
    if (q) return void q.push(e);
    queues.set(key, [e]);
    ready.add(key);
  }

  /** Starts heads of ready messages up to `concurrency`; moves due retries to ready. Work per call: the messages it starts or moves. */
  function kick(): void {
    if (closed) return;
    clearTimeout(timer);
    timer = undefined;
    const now = clock();
    let next = Infinity;
    for (const [key, r] of retry) {
      // Due: ready once (its `at` is set again when this try fails, the entry dropped when it succeeds).
      if (r.at <= now) (ready.add(key), (r.at = Infinity));
      else if (r.at !== Infinity) next = Math.min(next, r.at);
    }
    // INVARIANT: a message is in at most one of ready and busy, so its head is never sent twice at once.
    for (const key of ready) {
      if (busy.size >= concurrency) break;
      ready.delete(key);
      if (busy.has(key)) continue;
      busy.add(key);
      const e = queues.get(key)![0]!;
      void send(e).then((ok) => finished(key, e, ok));
    }
    if (next !== Infinity) timer = setTimeout(kick, Math.max(10, next - now));
  }

  function finished(key: string, e: WebhookEvent, ok: boolean): void {
    busy.delete(key);
    const done = () => {
      retry.delete(key);
      outbox.ack(e.id);
      const q = queues.get(key)!;
      q.shift();
      if (q.length === 0) queues.delete(key);
      else ready.add(key);
    };
    if (ok) {
      stats.sent++;
      done();
    } else if (clock() - e.at > maxAge) {
      stats.givenUp++;
      options.warn(`petrel webhooks: gave up event ${e.id} (${e.type}) after ${Math.round(maxAge / 3_600_000)} h of failures`);
      done();
    } else {
      stats.failures++;
      const failures = (retry.get(key)?.failures ?? 0) + 1;
      const delay = Math.min(maxDelay, base * 2 ** Math.min(failures - 1, 30)) * (0.8 + Math.random() * 0.4);
      retry.set(key, { failures, at: clock() + delay });
    }
    kick();
  }

  /** One POST; resolves true on 2xx. */
  function send(e: WebhookEvent): Promise<boolean> {
    const target = targetOf(e.tenant);
    if (!target) return Promise.resolve(true); // its target was removed from the config: nothing to send to
    const body = JSON.stringify(e);
    const url = new URL(target.url);
    const request = url.protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise((resolve) => {
      const req = request(
        url,
        {
          method: 'POST',
          timeout: options.timeoutMs ?? 10_000,
          ...(options.allowPrivateTargets ? {} : { lookup: publicLookup }),
          headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'user-agent': 'petrel-webhooks/1', 'petrel-event-id': e.id, 'petrel-signature': webhookSignature(target.secret, body, clock()) },
        },
        (res) => {
          res.resume(); // the answer's body is not needed
          res.once('end', () => resolve((res.statusCode ?? 0) >= 200 && (res.statusCode ?? 0) < 300));
          res.once('error', () => resolve(false));
        },
      );
      req.once('timeout', () => req.destroy(new Error('timed out')));
      req.once('error', (err: Error & { code?: string }) => {
        if (err.code === 'EPRIVATE') options.warn(`petrel webhooks: ${printable(err.message, 500)}`);
        resolve(false);
      });
      req.end(body);
    });
  }

  for (const e of outbox.pending()) enqueue(e);
  kick();
  return {
    wants: (tenant) => targetOf(tenant) !== undefined,
    async add(events) {
      await outbox.add(events);
      for (const e of events) if (!queues.get(keyOf(e))?.some((q) => q.id === e.id)) enqueue(e);
      kick();
    },
    stats: () => ({ pending: outbox.size, ...stats }),
    close() {
      closed = true;
      clearTimeout(timer);
    },
  };
}
