/**
 * What a modelled provider decides, without any transport: per client IP and per network
 * it keeps sends in sliding windows, open connections, and deferral and block periods, and
 * answers each step of a session with the model's reply or nothing. The SMTP test peer
 * (test/fixtures/provider-peer.ts) wraps it in smtp-server; `petrel simulate`'s provider
 * (provider.ts) calls it from a `Transport` on a virtual clock — one decision logic for both.
 *
 * - over a message rate (per IP or per network) the IP is deferred for the model's
 *   duration: every attempt gets the deferral reply, except what `allowedRate` lets through;
 * - an IP that keeps sending while deferred (`penalty.attemptsWhileDeferred` refusals) is
 *   blocked for the penalty's duration: every attempt gets the block reply;
 * - too many connections (open per IP or network, or opened per window) get the
 *   connection reply at connect; unknown users, full mailboxes and greylisting at RCPT.
 *
 * INVARIANT: the clock it is given never goes back (sliding windows are searched by time).
 */
import { recipientFate, renderReply, type BehaviourReply, type ProviderBehaviour, type WindowLimit } from './behaviour.ts';
import type { ModelPhase } from './model.ts';

/** What a refusal was. */
export type RefusalKind = 'deferral' | 'block' | 'tooManyConnections' | 'unknownUser' | 'fullMailbox' | 'greylisted';

/** One refusal given: what, when, to whom, and the reply rendered (`code`, `lines`; `text` joined as on the wire). */
export interface Refusal {
  at: number;
  ip: string;
  kind: RefusalKind;
  phase: ModelPhase;
  /** The recipient (RCPT) or the first recipient of the transaction (DATA). */
  rcpt?: string;
  code: number;
  lines: string[];
  text: string;
}

/** A deferral or block period that started for an IP. */
export interface Period {
  ip: string;
  at: number;
  until: number;
}

/** What the provider has done, for tests and reports; `onRefusal`/`onPeriod` see each as it happens. */
export interface ProviderHooks {
  onRefusal?(r: Refusal): void;
  onDeferral?(p: Period): void;
  onBlock?(p: Period): void;
}

export interface ProviderState {
  readonly behaviour: ProviderBehaviour;
  /** Where the message rate is counted: at RCPT, or at end of DATA when the deferral is answered there. */
  readonly countPhase: ModelPhase;
  /** The block or deferral reply `ip` has earned at `phase`, if any (counts refusals; may escalate to a block). */
  gate(ip: string, phase: ModelPhase, rcpt?: string): Refusal | undefined;
  /** The connection limits at connect; counts the connect. */
  admitConnection(ip: string): Refusal | undefined;
  /** A connection was admitted (`+1`) or closed (`-1`). */
  opened(ip: string, delta: 1 | -1): void;
  /** Unknown, full, greylisted, or nothing, for one recipient from `ip` with sender `from`. */
  judgeRecipient(ip: string, from: string, rcpt: string): Refusal | undefined;
  /** Counts `n` sends at the counting phase, or starts a deferral when they would go over a rate. */
  countSends(ip: string, n: number, phase: ModelPhase, rcpt?: string): Refusal | undefined;
  /** Where an IP stands now. */
  stateOf(ip: string): 'normal' | 'deferred' | 'blocked';
}

/** At most this many client IPs and greylist triplets are remembered; the oldest go first. */
export const MAX_TRACKED = 100_000;
const PHASES: readonly ModelPhase[] = ['connect', 'mail', 'rcpt', 'data'];
const reached = (phase: ModelPhase, now: ModelPhase) => PHASES.indexOf(now) >= PHASES.indexOf(phase);

/**
 * Timestamps of recent events, at most `capacity` (as many as the limit needs to decide),
 * in time order: counting is a binary search, adding amortised O(1).
 */
export class SlidingLog {
  private times: number[] = [];
  private head = 0;
  constructor(private readonly capacity: number) {}
  /** Events within `windowMs` before `now`. */
  count(now: number, windowMs: number): number {
    const after = now - windowMs;
    let lo = this.head;
    let hi = this.times.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.times[mid]! > after) hi = mid;
      else lo = mid + 1;
    }
    return this.times.length - lo;
  }
  add(now: number, n = 1): void {
    for (let i = 0; i < n; i++) this.times.push(now);
    if (this.times.length - this.head > this.capacity) this.head = this.times.length - this.capacity;
    if (this.head > 1024 && this.head * 2 > this.times.length) {
      this.times = this.times.slice(this.head);
      this.head = 0;
    }
  }
  clear(): void {
    this.times = [];
    this.head = 0;
  }
}

interface IpState {
  sends: SlidingLog;
  connects: SlidingLog;
  open: number;
  deferredUntil: number;
  refusedWhileDeferred: number;
  /** Sends let through while deferred (the model's allowedRate). */
  allowed: SlidingLog;
  blockedUntil: number;
}

interface NetworkState {
  sends: SlidingLog;
  open: number;
}

const capacity = (l: WindowLimit | null) => (l ? l.count + 1 : 1);

/** A provider's decisions for `behaviour` (simulate/behaviourOf, with its time scale) on `clock`. */
export function createProviderState(behaviour: ProviderBehaviour, clock: () => number, hooks: ProviderHooks = {}): ProviderState {
  const { limits, replies } = behaviour;
  const ips = new Map<string, IpState>();
  const networks = new Map<string, NetworkState>();
  const greylist = new Map<string, number>();
  const countPhase: ModelPhase = replies.deferral.phase === 'data' ? 'data' : 'rcpt';

  const remember = <V>(map: Map<string, V>, key: string, make: () => V): V => {
    let v = map.get(key);
    if (!v) {
      if (map.size >= MAX_TRACKED) map.delete(map.keys().next().value!);
      map.set(key, (v = make()));
    }
    return v;
  };
  const ipState = (ip: string) =>
    remember(ips, ip, () => ({ sends: new SlidingLog(capacity(limits.messagesPerIp)), connects: new SlidingLog(capacity(limits.connectsPerIp)), open: 0, deferredUntil: 0, refusedWhileDeferred: 0, allowed: new SlidingLog(capacity(behaviour.deferral.allowedRate)), blockedUntil: 0 }));
  const networkKeys = new Map<string, string>();
  const netState = (ip: string) => {
    const key = remember(networkKeys, ip, () => networkOf(ip, behaviour.networkPrefix));
    return remember(networks, key, () => ({ sends: new SlidingLog(capacity(limits.messagesPerNetwork)), open: 0 }));
  };

  function refuse(kind: RefusalKind, reply: BehaviourReply, ip: string, phase: ModelPhase, rcpt?: string): Refusal {
    const { code, lines } = renderReply(reply, { ip, ...(rcpt !== undefined ? { rcpt } : {}) });
    const text = lines.map((l, i) => `${code}${i < lines.length - 1 ? '-' : ' '}${l}`).join('\n');
    const r: Refusal = { at: clock(), ip, kind, phase, ...(rcpt !== undefined ? { rcpt } : {}), code, lines, text };
    hooks.onRefusal?.(r);
    return r;
  }

  return {
    behaviour,
    countPhase,
    gate(ip, phase, rcpt) {
      const s = ipState(ip);
      const now = clock();
      if (replies.block && s.blockedUntil > now && reached(replies.block.phase, phase)) return refuse('block', replies.block, ip, phase, rcpt);
      if (s.deferredUntil <= now || !reached(replies.deferral.phase, phase)) return undefined;
      const allowance = behaviour.deferral.allowedRate;
      if (allowance && phase === countPhase && s.allowed.count(now, allowance.windowMs) < allowance.count) return undefined;
      s.refusedWhileDeferred++;
      const penalty = behaviour.penalty;
      if (penalty && replies.block && s.refusedWhileDeferred >= penalty.attemptsWhileDeferred) {
        s.blockedUntil = now + penalty.durationMs;
        hooks.onBlock?.({ ip, at: now, until: s.blockedUntil });
        return refuse('block', replies.block, ip, phase, rcpt);
      }
      return refuse('deferral', replies.deferral, ip, phase, rcpt);
    },
    countSends(ip, n, phase, rcpt) {
      const s = ipState(ip);
      const net = netState(ip);
      const now = clock();
      if (s.deferredUntil > now) {
        s.allowed.add(now, n);
      } else {
        const over = (log: SlidingLog, l: WindowLimit | null) => l !== null && log.count(now, l.windowMs) + n > l.count;
        if (over(s.sends, limits.messagesPerIp) || over(net.sends, limits.messagesPerNetwork)) {
          s.deferredUntil = now + behaviour.deferral.durationMs;
          s.refusedWhileDeferred = 0;
          s.allowed.clear();
          hooks.onDeferral?.({ ip, at: now, until: s.deferredUntil });
          return refuse('deferral', replies.deferral, ip, phase, rcpt);
        }
      }
      s.sends.add(now, n);
      net.sends.add(now, n);
      return undefined;
    },
    admitConnection(ip) {
      const s = ipState(ip);
      const net = netState(ip);
      const now = clock();
      const tooMany =
        (limits.connectionsPerIp !== null && s.open >= limits.connectionsPerIp) ||
        (limits.connectionsPerNetwork !== null && net.open >= limits.connectionsPerNetwork) ||
        (limits.connectsPerIp !== null && s.connects.count(now, limits.connectsPerIp.windowMs) >= limits.connectsPerIp.count);
      s.connects.add(now);
      return tooMany ? refuse('tooManyConnections', replies.tooManyConnections, ip, 'connect') : undefined;
    },
    opened(ip, delta) {
      ipState(ip).open += delta;
      netState(ip).open += delta;
    },
    judgeRecipient(ip, from, rcpt) {
      const fate = recipientFate(behaviour.recipients, rcpt);
      if (fate === 'unknown') return refuse('unknownUser', replies.unknownUser, ip, 'rcpt', rcpt);
      if (fate === 'full') return refuse('fullMailbox', replies.fullMailbox, ip, 'rcpt', rcpt);
      if (behaviour.greylisting && replies.greylisted) {
        const now = clock();
        const first = remember(greylist, `${ip}|${from.toLowerCase()}|${rcpt.toLowerCase()}`, () => now);
        if (now - first < behaviour.greylisting.delayMs) return refuse('greylisted', replies.greylisted, ip, 'rcpt', rcpt);
      }
      return undefined;
    },
    stateOf(ip) {
      const s = ips.get(ip);
      const now = clock();
      return s && s.blockedUntil > now ? 'blocked' : s && s.deferredUntil > now ? 'deferred' : 'normal';
    },
  };
}

/** The network an address belongs to: its first `ipv4`/`ipv6` bits. */
export function networkOf(ip: string, prefix: { ipv4: number; ipv6: number }): string {
  if (ip.includes('.') && !ip.includes(':')) {
    const n = ip.split('.').reduce((acc, part) => acc * 256 + Number(part), 0);
    const kept = prefix.ipv4 === 0 ? 0 : Math.floor(n / 2 ** (32 - prefix.ipv4)) * 2 ** (32 - prefix.ipv4);
    return `${[24, 16, 8, 0].map((s) => Math.floor(kept / 2 ** s) % 256).join('.')}/${prefix.ipv4}`;
  }
  const [head = '', tail = ''] = ip.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = [...h, ...Array(8 - h.length - t.length).fill('0'), ...t].map((g) => parseInt(g, 16).toString(2).padStart(16, '0')).join('');
  return `${groups.slice(0, prefix.ipv6)}/${prefix.ipv6}`;
}
