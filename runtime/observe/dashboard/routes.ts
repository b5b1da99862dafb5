/**
 * The operator's live dashboard (issue 18 part 1), as routes of the runtime's HTTP API:
 *
 *   GET /dashboard                 the page (no data in it: every number comes from the API)
 *   GET /dashboard/static/NAME     its script, stylesheet and uPlot (assets.ts)
 *   GET /dashboard/api/history     counters per minute and queue depth over the last hour
 *   GET /dashboard/api/policy-diff?from=HASH&to=HASH   two kept versions, file by file (policy-diff.ts)
 *   GET /dashboard/api/messages?id=|messageId=|rcpt=   messages queued or finished (search.ts)
 *   GET /dashboard/api/messages/ID one of them with its accounting trail
 *   POST /dashboard/api/login, /logout, GET /dashboard/api/session   (login.ts)
 *
 * The page and its files hold no data and are served to anyone, with a Content-Security-
 * Policy that allows only this origin's scripts, styles and connections and no framing.
 * The data routes (this history, and the API the page calls) pass the API's access check:
 * reads are `read`; every change the page makes is a JSON POST from this origin with the
 * key the operator entered, which http-access.ts already requires, or with the session
 * cookie of a login (login.ts), which the API admits through `admitsSession`.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { HttpHelpers } from '../http-api.ts';
import { dashboardAsset } from './assets.ts';
import { counterHistory, type Totals } from './history.ts';
import { dashboardLogins, type LoginOptions } from './login.ts';
import { PolicyDiffError, policyDiff } from './policy-diff.ts';
import { messageSearchRoutes, type MessageSearchDeps } from './search.ts';
import type { Access } from '../http-access.ts';

/** Headers of every dashboard answer: no inline script, nothing framed, nothing sniffed. */
export const DASHBOARD_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy': "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
};

/** What the dashboard reads besides the status; a part left out answers 404 saying what is missing. */
export interface DashboardDeps {
  status(): unknown;
  /**
   * The totals the per-minute history samples every 5 s, read cheaply (the runtime's
   * counters and the spool's count: O(1)). Without it they come from `status()`, which
   * walks every queued recipient — a few hundred milliseconds at a million queued.
   */
  totals?: (() => Totals) | undefined;
  /** The version store's directory (policy/policy-versions.ts), for the diff of two kept versions. */
  policyDir?: string | undefined;
  /** The message index and the accounting trail, for the search. */
  search?: MessageSearchDeps | undefined;
  /** Logins with the SMTP users' passwords; without them, only API keys. */
  login?: LoginOptions | undefined;
}

export interface Dashboard {
  /** Answers a dashboard request; false for any other URL. */
  routes(req: IncomingMessage, res: ServerResponse, helpers: HttpHelpers): boolean;
  /** Whether a login's session cookie admits `access` for a request the access check refused for want of a key. */
  admitsSession(req: IncomingMessage, access: Access): boolean;
  /** Stops the sampling of the counters. */
  close(): void;
}

/** The dashboard over the runtime's status (its totals are sampled from now on) and `deps`. Throws on a login setting that names no SMTP user. */
export function dashboard(deps: DashboardDeps): Dashboard {
  const history = counterHistory(deps.totals ?? (() => totalsOf(deps.status())));
  const logins = deps.login ? dashboardLogins(deps.login) : undefined;
  const search = deps.search ? messageSearchRoutes(deps.search) : undefined;
  const routes = (req: IncomingMessage, res: ServerResponse, helpers: HttpHelpers): boolean => {
    const { send, admit } = helpers;
    const url = (req.url ?? '').split('?')[0]!;
    if (url !== '/dashboard' && !url.startsWith('/dashboard/')) return false;
    if (logins?.routes(req, res, url, helpers)) return true;
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, { error: 'use GET' }, DASHBOARD_HEADERS), true;
    if (url === '/dashboard/api/history') {
      if (admit(req, res, 'read')) send(res, 200, { points: history.points() }, DASHBOARD_HEADERS);
      return true;
    }
    if (url === '/dashboard/api/policy-diff') {
      if (admit(req, res, 'read')) void diff(req, res, helpers);
      return true;
    }
    if (url === '/dashboard/api/messages' || url.startsWith('/dashboard/api/messages/')) {
      if (!search) send(res, 404, { error: 'message search is not wired in this runtime' }, DASHBOARD_HEADERS);
      else if (admit(req, res, 'read')) search(req, res, helpers);
      return true;
    }
    const name = url === '/dashboard' || url === '/dashboard/' ? 'index.html' : /^\/dashboard\/static\/([\w.-]{1,64})$/.exec(url)?.[1];
    const asset = name === undefined ? undefined : dashboardAsset(name);
    if (!asset) return send(res, 404, { error: 'not found' }, DASHBOARD_HEADERS), true;
    res.writeHead(200, { ...DASHBOARD_HEADERS, 'content-type': asset.type, 'content-length': String(asset.body.length) });
    res.end(req.method === 'HEAD' ? undefined : asset.body);
    return true;
  };
  const diff = async (req: IncomingMessage, res: ServerResponse, { send }: HttpHelpers) => {
    const q = new URL(req.url ?? '/', 'http://x').searchParams;
    if (deps.policyDir === undefined) return send(res, 404, { error: 'this runtime keeps no policy versions to compare' }, DASHBOARD_HEADERS);
    try {
      send(res, 200, await policyDiff(deps.policyDir, q.get('from') ?? '', q.get('to') ?? ''), DASHBOARD_HEADERS);
    } catch (e) {
      send(res, e instanceof PolicyDiffError ? e.status : 500, { error: (e as Error).message }, DASHBOARD_HEADERS);
    }
  };
  return { routes, admitsSession: (req, access) => logins?.admits(req, access) ?? false, close: () => history.stop() };
}

/** The totals of a status (observe/status.ts's RuntimeStatus); a missing number counts 0. */
function totalsOf(status: unknown): Totals {
  const s = (status ?? {}) as Record<string, unknown>;
  const n = (k: string) => (typeof s[k] === 'number' ? (s[k] as number) : 0);
  return { accepted: n('accepted'), delivered: n('delivered'), deferred: n('deferred'), bounced: n('bounced'), queued: n('queued') };
}
