/**
 * Who may call the HTTP API: the one access decision every route makes before it reads a
 * body. docs/runtime.md, "Threat model and API security", states the rules; in short:
 *
 * - A request with an `Origin` other than the server's own (a browser page elsewhere) is
 *   refused (403), whatever it carries.
 * - A valid API key (`Authorization: Bearer KEY` or `X-Api-Key: KEY`, compared in
 *   constant time) admits any route. A wrong key is refused (401).
 * - Without a key: artifact upload never; `GET /metrics` when metrics are public; anything
 *   else only from a loopback address, addressed by a loopback `Host` (a DNS-rebinding page
 *   names its own host), and only when keyless loopback is on — by default when no API
 *   key is configured, and off once one is unless the operator turns it on.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { DEFAULT_CLIENT_NETWORKS, networkMatcher } from '../intake/index.ts';

/** What a route does: reads state, changes it, uploads code, or serves metrics. */
export type Access = 'read' | 'write' | 'deploy' | 'metrics';

export interface AccessOptions {
  apiKeys?: readonly string[] | undefined;
  /** Keyless calls from loopback; default: on without API keys, off with any. */
  keylessLoopback?: boolean | undefined;
  /** `GET /metrics` without a key, from anywhere (for a Prometheus scraper). */
  publicMetrics?: boolean | undefined;
}

export type AccessVerdict = { ok: true } | { ok: false; status: 401 | 403; error: string };

const isLoopbackAddress = networkMatcher(DEFAULT_CLIENT_NETWORKS);
/** `localhost`, `127.x.x.x` or `[::1]`, with or without a port. */
const LOOPBACK_HOST = /^(?:localhost|127(?:\.\d{1,3}){3}|\[::1\])(?::\d{1,5})?$/i;

const digest = (key: string) => createHash('sha256').update(key).digest();

/** Builds the access check for one server's settings. */
export function accessCheck(options: AccessOptions): (req: IncomingMessage, access: Access) => AccessVerdict {
  const keys = (options.apiKeys ?? []).map(digest);
  const keyless = options.keylessLoopback ?? keys.length === 0;
  /** Equal-length digests, every key compared: the time says nothing about which key or how much of it matched. */
  const knownKey = (given: string) => {
    const d = digest(given);
    let found = false;
    for (const k of keys) found = timingSafeEqual(k, d) || found;
    return found;
  };
  return (req, access) => {
    const host = req.headers.host ?? '';
    const origin = req.headers.origin;
    if (origin !== undefined && origin.toLowerCase() !== `http://${host.toLowerCase()}`) return { ok: false, status: 403, error: 'cross-origin requests are refused' };
    const given = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '')?.[1] ?? headerValue(req.headers['x-api-key']);
    if (given !== undefined) return keys.length > 0 && knownKey(given) ? { ok: true } : { ok: false, status: 401, error: 'missing or unknown API key' };
    if (access === 'deploy') return { ok: false, status: 401, error: 'artifact upload needs an API key' };
    if (access === 'metrics' && options.publicMetrics) return { ok: true };
    if (!keyless || !isLoopbackAddress(req.socket.remoteAddress)) return { ok: false, status: 401, error: keys.length > 0 ? 'missing or unknown API key' : 'no API key is configured: only loopback callers may use the API' };
    if (!LOOPBACK_HOST.test(host)) return { ok: false, status: 403, error: 'a call without an API key must address the server as localhost, 127.0.0.1 or [::1]' };
    return { ok: true };
  };
}

function headerValue(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}
