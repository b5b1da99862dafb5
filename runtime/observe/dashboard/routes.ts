/**
 * The operator's live dashboard (issue 18 part 1), as routes of the runtime's HTTP API:
 *
 *   GET /dashboard                 the page (no data in it: every number comes from the API)
 *   GET /dashboard/static/NAME     its script, stylesheet and uPlot (assets.ts)
 *   GET /dashboard/api/history     counters per minute and queue depth over the last hour
 *
 * The page and its files hold no data and are served to anyone, with a Content-Security-
 * Policy that allows only this origin's scripts, styles and connections and no framing.
 * The data routes (this history, and the API the page calls) pass the API's access check:
 * reads are `read`; every change the page makes is a JSON POST from this origin with the
 * key the operator entered, which http-access.ts already requires.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { HttpHelpers } from '../http-api.ts';
import { dashboardAsset } from './assets.ts';
import { counterHistory, type Totals } from './history.ts';

/** Headers of every dashboard answer: no inline script, nothing framed, nothing sniffed. */
export const DASHBOARD_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy': "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
};

export interface Dashboard {
  /** Answers a dashboard request; false for any other URL. */
  routes(req: IncomingMessage, res: ServerResponse, helpers: HttpHelpers): boolean;
  /** Stops the sampling of the counters. */
  close(): void;
}

/** The dashboard over the runtime's status: its totals are sampled from now on. */
export function dashboard(status: () => unknown): Dashboard {
  const history = counterHistory(() => totalsOf(status()));
  const routes = (req: IncomingMessage, res: ServerResponse, { send, admit }: HttpHelpers): boolean => {
    const url = (req.url ?? '').split('?')[0]!;
    if (url !== '/dashboard' && !url.startsWith('/dashboard/')) return false;
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, { error: 'use GET' }, DASHBOARD_HEADERS), true;
    if (url === '/dashboard/api/history') {
      if (admit(req, res, 'read')) send(res, 200, { points: history.points() }, DASHBOARD_HEADERS);
      return true;
    }
    const name = url === '/dashboard' || url === '/dashboard/' ? 'index.html' : /^\/dashboard\/static\/([\w.-]{1,64})$/.exec(url)?.[1];
    const asset = name === undefined ? undefined : dashboardAsset(name);
    if (!asset) return send(res, 404, { error: 'not found' }, DASHBOARD_HEADERS), true;
    res.writeHead(200, { ...DASHBOARD_HEADERS, 'content-type': asset.type, 'content-length': String(asset.body.length) });
    res.end(req.method === 'HEAD' ? undefined : asset.body);
    return true;
  };
  return { routes, close: () => history.stop() };
}

/** The totals of a status (observe/status.ts's RuntimeStatus); a missing number counts 0. */
function totalsOf(status: unknown): Totals {
  const s = (status ?? {}) as Record<string, unknown>;
  const n = (k: string) => (typeof s[k] === 'number' ? (s[k] as number) : 0);
  return { accepted: n('accepted'), delivered: n('delivered'), deferred: n('deferred'), bounced: n('bounced'), queued: n('queued') };
}
