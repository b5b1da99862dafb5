/**
 * Dashboard login with the SMTP users' passwords (config `dashboard.users`: which of
 * `smtp.users` may log in; none by default), besides the API key:
 *
 *   POST /dashboard/api/login    {"user", "password"} → a session cookie
 *   POST /dashboard/api/logout   ends the session the cookie names
 *   GET  /dashboard/api/session  who is logged in, until when (401 without a session)
 *
 * The password is checked by SMTP AUTH's own `verifyPassword` against the same scrypt
 * hashes, behind an instance of AUTH's throttle (intake/auth-throttle.ts, with the
 * `smtp.auth` settings): a delay before each refusal, a lockout of the client after
 * `maxFailuresPerIp` failures, a bound on checks at once.
 *
 * INVARIANTS: the cookie is HttpOnly, SameSite=Strict, Secure on a TLS connection, and
 * holds 256 random bits; the server keeps only their SHA-256, with an absolute expiry
 * (`sessionMinutes`) and at most {@link MAX_SESSIONS} sessions (the oldest go first).
 * A session admits what a key admits except artifact upload, and a change (`write`) only
 * with an `Origin` header — which the access check has already required to be this
 * server's own: a cross-site POST carrying the cookie is refused 403.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { setTimeout as sleep } from 'node:timers/promises';
import { createAuthThrottle, verifyPassword, type AuthThrottleOptions, type SubmissionUser } from '../../intake/index.ts';
import type { Access } from '../http-access.ts';
import type { HttpHelpers } from '../http-api.ts';

/** Who may log in and for how long. */
export interface LoginOptions {
  /** The SMTP users (`smtp.users`): names and password hashes. */
  users: readonly SubmissionUser[];
  /** The names of those who may log in (`dashboard.users`); each must be an SMTP user. */
  allowed: readonly string[];
  /** AUTH's throttle settings (`smtp.auth`). */
  throttle?: AuthThrottleOptions | undefined;
  /** A session's life from its login (default 480: eight hours). */
  sessionMinutes?: number | undefined;
  clock?: () => number;
}

export interface Logins {
  /** Answers the login, logout and session routes; false for any other URL. */
  routes(req: IncomingMessage, res: ServerResponse, url: string, helpers: HttpHelpers): boolean;
  /** Whether a live session cookie admits `access` for this request (the access check refused it for want of a key). */
  admits(req: IncomingMessage, access: Access): boolean;
}

const COOKIE = 'petrel_session';
const MAX_SESSIONS = 1000;
const LOGIN_BODY_BYTES = 4096;
/** A user name or password longer than this is refused unchecked (scrypt would hash any length). */
const MAX_FIELD = 1024;

const digest = (token: string) => createHash('sha256').update(token).digest('hex');

/** The logins for these options; throws when `allowed` names someone who is not an SMTP user. */
export function dashboardLogins(options: LoginOptions): Logins {
  const clock = options.clock ?? Date.now;
  const hashes = new Map(options.users.map((u) => [u.user, u.passwordHash]));
  const stranger = options.allowed.find((u) => !hashes.has(u));
  if (stranger !== undefined) throw new Error(`dashboard.users: \`${stranger}\` is not one of smtp.users`);
  const allowed = new Set(options.allowed);
  // An unknown or not-allowed name is checked against an allowed user's hash, so the answer takes as long.
  const decoy = options.allowed.length > 0 ? hashes.get(options.allowed[0]!)! : undefined;
  const lifeMs = (options.sessionMinutes ?? 480) * 60_000;
  const throttle = createAuthThrottle(options.throttle);
  /** SHA-256 of the token → the session. Insertion order is age order. */
  const sessions = new Map<string, { user: string; expiresAt: number }>();

  const sessionOf = (req: IncomingMessage) => {
    const token = new RegExp(`(?:^|;\\s*)${COOKIE}=([0-9a-f]{64})(?:;|$)`).exec(req.headers.cookie ?? '')?.[1];
    if (token === undefined) return undefined;
    const key = digest(token);
    const s = sessions.get(key);
    if (s && s.expiresAt <= clock()) sessions.delete(key);
    return s && s.expiresAt > clock() ? { key, ...s } : undefined;
  };
  const cookie = (req: IncomingMessage, value: string, maxAgeSeconds: number) =>
    `${COOKIE}=${value}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${maxAgeSeconds}${(req.socket as TLSSocket).encrypted ? '; Secure' : ''}`;
  /** A browser page of another origin (the access check's rule): refused whatever it carries. */
  const foreign = (req: IncomingMessage) => req.headers.origin !== undefined && req.headers.origin.toLowerCase() !== `http://${(req.headers.host ?? '').toLowerCase()}`;

  async function login(req: IncomingMessage, res: ServerResponse, h: HttpHelpers): Promise<void> {
    const body = (await h.readJson(req, res, LOGIN_BODY_BYTES)) as { user?: unknown; password?: unknown } | undefined;
    if (body === undefined) return;
    const { user, password } = body ?? {};
    if (typeof user !== 'string' || typeof password !== 'string' || user.length > MAX_FIELD || password.length > MAX_FIELD) return h.send(res, 400, { error: `send {"user": NAME, "password": PASSWORD}, each at most ${MAX_FIELD} characters` });
    if (decoy === undefined) return h.send(res, 403, { error: 'dashboard login is off: no `dashboard.users` are configured (use an API key)' });
    const address = req.socket.remoteAddress ?? '';
    const admission = await throttle.admit(address);
    if (!admission.ok) return h.send(res, admission.reason === 'locked' ? 429 : 503, { error: admission.reason === 'locked' ? 'too many failed logins from this address: try again later' : 'too many logins being checked: try again later' }, { 'retry-after': '60' });
    let ok: boolean;
    try {
      ok = (await verifyPassword(password, allowed.has(user) ? hashes.get(user)! : decoy)) && allowed.has(user);
    } finally {
      admission.release();
    }
    if (!ok) {
      const failure = throttle.failed(address, 1, true);
      await sleep(failure.delayMs);
      return h.send(res, 401, { error: failure.lockedOut ? 'unknown user or wrong password; too many failures: this address is locked out for a while' : 'unknown user or wrong password' });
    }
    const token = randomBytes(32).toString('hex');
    const expiresAt = clock() + lifeMs;
    sessions.set(digest(token), { user, expiresAt });
    for (const [key, s] of sessions) if (sessions.size > MAX_SESSIONS || s.expiresAt <= clock()) sessions.delete(key);
    h.send(res, 200, { user, expiresAt: new Date(expiresAt).toISOString() }, { 'set-cookie': cookie(req, token, Math.floor(lifeMs / 1000)), 'cache-control': 'no-store' });
  }

  return {
    routes(req, res, url, h) {
      const action = /^\/dashboard\/api\/(login|logout|session)$/.exec(url)?.[1];
      if (action === undefined) return false;
      if (req.method !== (action === 'session' ? 'GET' : 'POST')) return h.send(res, 405, { error: action === 'session' ? 'use GET' : 'use POST' }), true;
      if (foreign(req)) return h.send(res, 403, { error: 'cross-origin requests are refused' }), true;
      const session = sessionOf(req);
      if (action === 'login') void login(req, res, h).catch((e: Error) => h.send(res, 500, { error: e.message }));
      else if (action === 'session') h.send(res, session ? 200 : 401, session ? { user: session.user, expiresAt: new Date(session.expiresAt).toISOString() } : { error: 'not logged in' });
      else {
        if (session) sessions.delete(session.key);
        h.send(res, 200, { loggedOut: session !== undefined }, { 'set-cookie': cookie(req, '', 0) });
      }
      return true;
    },
    admits(req, access) {
      if (access === 'deploy' || !sessionOf(req)) return false;
      return access !== 'write' || req.headers.origin !== undefined;
    },
  };
}
