/**
 * The queue and suppression API (issue 18.2 and 18.4), as extra HTTP routes of the
 * runtime's API. Every route goes through the access check (http-access.ts): reads are
 * `read`, changes are `write` (POST, JSON only).
 *
 *   GET  /api/v1/queue?route=&domain=&source=&tenant=&older=SECONDS&rcpt=GLOB&offset=&limit=
 *   GET  /api/v1/queue/ID                       one message and its accounting trail
 *   POST /api/v1/queue/retry|delete|bounce      {"ids":[…]} and/or filter fields, or {"all":true}
 *   GET  /api/v1/suppression?tenant=&offset=&limit=
 *   GET  /api/v1/suppression/export?tenant=     NDJSON, one entry a line
 *   POST /api/v1/suppression/add                {"tenant","entries":[{"address","reason"?,"detail"?}]} (import)
 *   POST /api/v1/suppression/remove             {"tenant","addresses":[…]}
 *
 * Bounds: a page is at most 1000 messages or entries (default 100); a change names at most
 * 100,000 addresses or ids; a request body is at most 16 MiB.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { QueueFilter, QueueOps } from '../decide/index.ts';
import type { SuppressionList } from '../intake/index.ts';
import { SUPPRESSION_REASONS, type SuppressionReason } from '../intake/index.ts';
import type { HttpHelpers, HttpRoutes } from './http-api.ts';
import { percentDecoded } from './text.ts';

export interface QueueApiDeps {
  ops: QueueOps;
  suppression: SuppressionList;
  /** The accounting lines of a message (accounting-trail.ts). */
  trail(id: string): Promise<string[]>;
  /** An operator suppressed addresses: their events. */
  suppressed(tenant: string, rcpt: string, reason: SuppressionReason, detail: string): Promise<void>;
  clock(): number;
}

const MAX_PAGE = 1000;
const MAX_ITEMS = 100_000;
const MAX_BODY = 16 * 1024 * 1024;
const NAME = /^[\x21-\x7e]{0,256}$/;

type Parsed<T> = { ok: true; value: T } | { ok: false; error: string };

/** Filter fields from query parameters or a JSON body; strings only, each bounded. */
function filterOf(get: (k: string) => unknown): Parsed<QueueFilter> {
  const f: QueueFilter = {};
  for (const k of ['route', 'domain', 'source', 'tenant', 'rcpt'] as const) {
    const v = get(k);
    if (v === undefined || v === null) continue;
    if (typeof v !== 'string' || !NAME.test(v)) return { ok: false, error: `\`${k}\` must be up to 256 printable characters` };
    f[k] = v;
  }
  const older = get('older');
  if (older !== undefined && older !== null) {
    const n = Number(older);
    if (!(n >= 0)) return { ok: false, error: '`older` takes seconds (a number ≥ 0)' };
    f.olderThanSeconds = n;
  }
  const ids = get('ids');
  if (ids !== undefined) {
    if (!Array.isArray(ids) || ids.length > MAX_ITEMS || !ids.every((i) => typeof i === 'string' && NAME.test(i))) return { ok: false, error: `\`ids\` must be a list of at most ${MAX_ITEMS} queue ids` };
    f.ids = ids as string[];
  }
  return { ok: true, value: f };
}

function page(q: URLSearchParams): Parsed<{ offset: number; limit: number }> {
  const offset = Number(q.get('offset') ?? 0);
  const limit = Number(q.get('limit') ?? 100);
  if (!Number.isInteger(offset) || offset < 0) return { ok: false, error: '`offset` takes a whole number ≥ 0' };
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE) return { ok: false, error: `\`limit\` takes a whole number from 1 to ${MAX_PAGE}` };
  return { ok: true, value: { offset, limit } };
}

export function queueApiRoutes(deps: QueueApiDeps): HttpRoutes {
  return (req, res, h) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const p = url.pathname;
    if (p === '/api/v1/queue') return get(req, res, h, () => listQueue(res, h, url.searchParams));
    const op = /^\/api\/v1\/queue\/(retry|delete|bounce)$/.exec(p);
    if (op) return post(req, res, h, (body) => queueOp(res, h, op[1] as 'retry' | 'delete' | 'bounce', body));
    const one = /^\/api\/v1\/queue\/([\x21-\x7e]{1,256})$/.exec(p);
    if (one) {
      const id = percentDecoded(one[1]!);
      return get(req, res, h, () => (id === undefined ? h.send(res, 400, { error: 'the queue id is not valid percent-encoding' }) : showMessage(res, h, id)));
    }
    if (p === '/api/v1/suppression') return get(req, res, h, () => listSuppression(res, h, url.searchParams));
    if (p === '/api/v1/suppression/export') return get(req, res, h, () => exportSuppression(res, url.searchParams));
    if (p === '/api/v1/suppression/add') return post(req, res, h, (body) => addSuppression(res, h, body));
    if (p === '/api/v1/suppression/remove') return post(req, res, h, (body) => removeSuppression(res, h, body));
    return false;
  };

  function get(req: IncomingMessage, res: ServerResponse, h: HttpHelpers, answer: () => void | Promise<void>): true {
    if (req.method !== 'GET') h.send(res, 405, { error: 'use GET' });
    else if (h.admit(req, res, 'read')) void Promise.resolve(answer()).catch((e: Error) => h.send(res, 500, { error: e.message }));
    return true;
  }
  function post(req: IncomingMessage, res: ServerResponse, h: HttpHelpers, answer: (body: Record<string, unknown>) => Promise<void> | void): true {
    if (req.method !== 'POST') h.send(res, 405, { error: 'use POST' });
    else if (h.admit(req, res, 'write'))
      void h.readJson(req, res, MAX_BODY).then(async (body) => {
        if (body === undefined) return;
        if (typeof body !== 'object' || body === null || Array.isArray(body)) return h.send(res, 400, { error: 'the body must be a JSON object' });
        try {
          await answer(body as Record<string, unknown>);
        } catch (e) {
          h.send(res, 400, { error: (e as Error).message });
        }
      });
    return true;
  }

  function listQueue(res: ServerResponse, h: HttpHelpers, q: URLSearchParams): void {
    const f = filterOf((k) => q.get(k) ?? undefined);
    const pg = page(q);
    if (!f.ok || !pg.ok) return h.send(res, 400, { error: !f.ok ? f.error : !pg.ok ? pg.error : '' });
    h.send(res, 200, { offset: pg.value.offset, ...deps.ops.list(f.value, pg.value.offset, pg.value.limit) });
  }
  async function showMessage(res: ServerResponse, h: HttpHelpers, id: string): Promise<void> {
    const m = deps.ops.show(id);
    if (!m) return h.send(res, 404, { error: `no message \`${id}\` in the queue (finished, or never accepted)` });
    h.send(res, 200, { ...m, accounting: await deps.trail(id) });
  }
  async function queueOp(res: ServerResponse, h: HttpHelpers, op: 'retry' | 'delete' | 'bounce', body: Record<string, unknown>): Promise<void> {
    const f = filterOf((k) => body[k]);
    if (!f.ok) return h.send(res, 400, { error: f.error });
    const known = new Set(['route', 'domain', 'source', 'tenant', 'rcpt', 'older', 'ids', 'all']);
    const unknown = Object.keys(body).find((k) => !known.has(k));
    if (unknown) return h.send(res, 400, { error: `unknown field \`${unknown.slice(0, 60)}\`` });
    if (Object.keys(f.value).length === 0 && body.all !== true) return h.send(res, 400, { error: 'name the messages (`ids` or a filter), or give `"all": true` for every queued message' });
    h.send(res, 200, { [op === 'retry' ? 'retried' : op === 'delete' ? 'deleted' : 'bounced']: await deps.ops[op](f.value) });
  }
  function listSuppression(res: ServerResponse, h: HttpHelpers, q: URLSearchParams): void {
    const pg = page(q);
    if (!pg.ok) return h.send(res, 400, { error: pg.error });
    h.send(res, 200, { offset: pg.value.offset, ...deps.suppression.list(q.get('tenant') ?? undefined, pg.value.offset, pg.value.limit) });
  }
  function exportSuppression(res: ServerResponse, q: URLSearchParams): void {
    res.writeHead(200, { 'content-type': 'application/x-ndjson' });
    const tenant = q.get('tenant') ?? undefined;
    // In pages, yielding to the event loop between them: a million entries do not block it.
    const next = (offset: number) => {
      const { entries } = deps.suppression.list(tenant, offset, 10_000);
      if (entries.length === 0 || res.destroyed) return void res.end();
      res.write(entries.map((e) => JSON.stringify(e)).join('\n') + '\n');
      setImmediate(() => next(offset + entries.length));
    };
    next(0);
  }
  async function addSuppression(res: ServerResponse, h: HttpHelpers, body: Record<string, unknown>): Promise<void> {
    const tenant = body.tenant ?? '';
    const entries = body.entries;
    if (typeof tenant !== 'string' || !NAME.test(tenant)) return h.send(res, 400, { error: '`tenant` must be up to 256 printable characters (empty: messages without a tenant)' });
    if (!Array.isArray(entries) || entries.length === 0 || entries.length > MAX_ITEMS) return h.send(res, 400, { error: `\`entries\` must be a list of 1 to ${MAX_ITEMS} {"address", "reason"?, "detail"?}` });
    const at = deps.clock();
    const list = entries.map((e: unknown, i) => {
      const x = (typeof e === 'string' ? { address: e } : e) as { address?: unknown; reason?: unknown; detail?: unknown };
      if (typeof x?.address !== 'string') throw new Error(`\`entries.${i}.address\` is missing`);
      const reason = x.reason ?? 'manual';
      if (!SUPPRESSION_REASONS.includes(reason as SuppressionReason)) throw new Error(`\`entries.${i}.reason\` must be one of ${SUPPRESSION_REASONS.join(', ')}`);
      return { tenant, address: x.address, reason: reason as SuppressionReason, at, detail: typeof x.detail === 'string' ? x.detail : 'added by operator' };
    });
    await deps.suppression.add(list);
    for (const e of list) await deps.suppressed(tenant, e.address, e.reason, e.detail);
    h.send(res, 200, { added: list.length, total: deps.suppression.size });
  }
  async function removeSuppression(res: ServerResponse, h: HttpHelpers, body: Record<string, unknown>): Promise<void> {
    const tenant = body.tenant ?? '';
    const addresses = body.addresses;
    if (typeof tenant !== 'string' || !NAME.test(tenant)) return h.send(res, 400, { error: '`tenant` must be up to 256 printable characters' });
    if (!Array.isArray(addresses) || addresses.length > MAX_ITEMS || !addresses.every((a) => typeof a === 'string')) return h.send(res, 400, { error: `\`addresses\` must be a list of at most ${MAX_ITEMS} addresses` });
    h.send(res, 200, { removed: await deps.suppression.remove(tenant, addresses as string[]) });
  }
}
