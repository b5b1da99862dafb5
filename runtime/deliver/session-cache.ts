/**
 * Idle SMTP sessions, by source, MX host and TLS mode, reused up to messages-per-connection.
 * An idle session keeps its connection slot (a limiter lease) and closes after `idleMs`,
 * giving the slot back once the connection is gone: until QUIT is answered the receiver
 * still counts it.
 */
import type { Lease, LimiterStore } from '../schedule/index.ts';
import type { Time, TimerHandle } from '../schedule/index.ts';
import type { SmtpSession } from './smtp-client.ts';

/** An open session waiting for its next message; it keeps its connection slot. */
export interface IdleSession {
  session: SmtpSession;
  slot: Lease;
  /** Messages sent on it so far. */
  sent: number;
  timer?: TimerHandle;
}

export interface SessionCache {
  /** An open idle session under `key`, out of the cache; closed ones found on the way are dropped. */
  take(key: string): IdleSession | undefined;
  /** Keeps a session under `key` until it is taken or `idleMs` pass. */
  put(key: string, idle: IdleSession): void;
  /** Closes every idle session (at stop; their slots are not given back). */
  closeAll(): Promise<void>;
}

/** The cache key: a session is reused only from the same source, to the same host, under the same TLS mode. */
export const sessionKey = (source: { name: string }, target: { host: string; port: number }, tls: string) => `${source.name}|${target.host}:${target.port}|${tls}`;

/** `released` is called after an idle session closed on its own and gave its slot back (the scheduler looks again). */
export function createSessionCache(deps: { time: Time; limiters: LimiterStore; idleMs?: number; released: () => void }): SessionCache {
  const { time, limiters } = deps;
  const idleMs = deps.idleMs ?? 5_000;
  const byKey = new Map<string, IdleSession[]>();
  return {
    take(key) {
      const list = byKey.get(key);
      while (list && list.length > 0) {
        const p = list.pop()!;
        time.clearTimeout(p.timer);
        if (!p.session.closed) return p;
        void p.session.close();
        void limiters.release(p.slot);
      }
      return undefined;
    },
    put(key, p) {
      const list = byKey.get(key) ?? [];
      byKey.set(key, list);
      p.timer = time.setTimeout(() => {
        const i = list.indexOf(p);
        if (i !== -1) list.splice(i, 1);
        void p.session.close().finally(() => {
          void limiters.release(p.slot);
          deps.released();
        });
      }, idleMs);
      list.push(p);
    },
    async closeAll() {
      for (const list of byKey.values()) {
        for (const p of list.splice(0)) {
          time.clearTimeout(p.timer);
          await p.session.close();
        }
      }
    },
  };
}
