/**
 * Failed-AUTH throttling for SMTP submission, and the bound on password checks running at
 * once. A password guesser meets, in order: a delay before each `535` that grows with the
 * failures on its connection; a disconnect after `maxFailuresPerConnection`; and, after
 * `maxFailuresPerIp` failures from one client within `failureWindowMs`, a lockout of that
 * client (an IPv4 address, or an IPv6 /64) for `lockoutMs` during which AUTH is refused
 * without checking anything. Password checks (scrypt, on libuv's thread pool, which the
 * spool's file I/O shares) run at most `maxConcurrentChecks` at a time with at most
 * `maxQueuedChecks` waiting, and at most two of them for one client; past that, AUTH is
 * refused as busy (`454`, try later) without a check.
 */
import { isIPv4 } from 'node:net';

export interface AuthThrottleOptions {
  /** Delay before the `535` of the n-th failure on a connection: n × this (default 1000). */
  failureDelayMs?: number;
  /** Failures on one connection before it is closed with `421` (default 3). */
  maxFailuresPerConnection?: number;
  /** Failures from one client within `failureWindowMs` that lock it out (default 10). */
  maxFailuresPerIp?: number;
  /** Window for `maxFailuresPerIp` (default 15 min). */
  failureWindowMs?: number;
  /** How long a locked-out client's AUTH is refused (default 15 min). */
  lockoutMs?: number;
  /** Password checks running at once (default 1). */
  maxConcurrentChecks?: number;
  /** Password checks waiting for a turn; more are refused as busy (default 16). */
  maxQueuedChecks?: number;
}

export const AUTH_THROTTLE_DEFAULTS: Required<AuthThrottleOptions> = {
  failureDelayMs: 1000,
  maxFailuresPerConnection: 3,
  maxFailuresPerIp: 10,
  failureWindowMs: 15 * 60_000,
  lockoutMs: 15 * 60_000,
  maxConcurrentChecks: 1,
  maxQueuedChecks: 16,
};

/** Clients whose failures are remembered at once; the oldest is forgotten past it (bounds memory). */
const MAX_TRACKED_CLIENTS = 10_000;
/**
 * Checks one client may have running or waiting at once; more are refused as busy. So one
 * client pipelining AUTH on many connections cannot fill the queue others wait in.
 */
const MAX_CHECKS_PER_CLIENT = 2;

/**
 * The key a client's failures are counted under: the IPv4 address (also when IPv4-mapped),
 * or the /64 network of an IPv6 address (one host usually holds a whole /64).
 */
export function clientKey(address: string): string {
  const v4 = address.replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/i, '');
  if (isIPv4(v4)) return v4;
  const [head = '', tail] = address.toLowerCase().split('::');
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const groups = tail === undefined ? left : [...left, ...Array<string>(Math.max(0, 8 - left.length - right.length)).fill('0'), ...right];
  return `${groups.slice(0, 4).map((g) => g.replace(/^0+(?=.)/, '')).join(':')}::/64`;
}

/** What happens to an AUTH attempt before the password is checked. */
export type AuthAdmission = { ok: true; release: () => void } | { ok: false; reason: 'locked' | 'busy' };

/** After a failed check: wait `delayMs`, then answer `535`, and close the connection if `disconnect`. */
export interface AuthFailure {
  delayMs: number;
  disconnect: boolean;
  /** This failure locked the client out. */
  lockedOut: boolean;
}

export interface AuthThrottle {
  /** Admits one password check for `address`, or says why not; `release` when it is done. */
  admit(address: string): Promise<AuthAdmission>;
  /**
   * Records a failed AUTH; `failuresOnConnection` counts this one. `checked`: a password
   * was checked and was wrong (counts towards the client's lockout); else AUTH was refused
   * unchecked (locked out, busy), which still slows and ends the connection, so a refused
   * client cannot spin on instant answers.
   */
  failed(address: string, failuresOnConnection: number, checked: boolean): AuthFailure;
  /** Clients locked out now. */
  lockedOut(): number;
}

export function createAuthThrottle(options: AuthThrottleOptions = {}, now: () => number = Date.now): AuthThrottle {
  const o = { ...AUTH_THROTTLE_DEFAULTS, ...options };
  /** Per client: failure times within the window, and the end of its lockout. */
  const clients = new Map<string, { failures: number[]; lockedUntil: number }>();
  let running = 0;
  const waiting: (() => void)[] = [];
  /** Checks running or waiting, per client key. */
  const pending = new Map<string, number>();
  const locked = (key: string) => (clients.get(key)?.lockedUntil ?? 0) > now();
  const release = () => {
    const next = waiting.shift();
    if (next) next();
    else running--;
  };
  return {
    async admit(address) {
      const key = clientKey(address);
      if (locked(key)) return { ok: false, reason: 'locked' };
      const mine = pending.get(key) ?? 0;
      if (mine >= MAX_CHECKS_PER_CLIENT || (running >= o.maxConcurrentChecks && waiting.length >= o.maxQueuedChecks)) return { ok: false, reason: 'busy' };
      pending.set(key, mine + 1);
      if (running < o.maxConcurrentChecks) running++;
      // INVARIANT: a waiter is woken with the slot its releaser held, so `running` stays put.
      else await new Promise<void>((resolve) => waiting.push(resolve));
      let done = false;
      return {
        ok: true,
        release: () => {
          if (done) return;
          done = true;
          const n = pending.get(key)! - 1;
          if (n === 0) pending.delete(key);
          else pending.set(key, n);
          release();
        },
      };
    },
    failed(address, failuresOnConnection, checked) {
      const delayMs = o.failureDelayMs * failuresOnConnection;
      if (!checked) return { delayMs, disconnect: failuresOnConnection >= o.maxFailuresPerConnection, lockedOut: false };
      const key = clientKey(address);
      const t = now();
      const client = clients.get(key) ?? { failures: [], lockedUntil: 0 };
      clients.delete(key); // re-inserted last: the map's order is least recently failed first
      client.failures = [...client.failures.filter((f) => f > t - o.failureWindowMs), t].slice(-o.maxFailuresPerIp);
      const lockedOut = client.failures.length >= o.maxFailuresPerIp && client.lockedUntil <= t;
      if (lockedOut) {
        client.lockedUntil = t + o.lockoutMs;
        client.failures = [];
      }
      clients.set(key, client);
      if (clients.size > MAX_TRACKED_CLIENTS) clients.delete(clients.keys().next().value!);
      return { delayMs, disconnect: failuresOnConnection >= o.maxFailuresPerConnection || lockedOut, lockedOut };
    },
    lockedOut: () => [...clients.keys()].filter(locked).length,
  };
}
