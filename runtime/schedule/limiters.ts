/**
 * The limiter store: shared counters that decide whether a connection or a message may go
 * now. A delivery is admitted only when every limiter on its path allows it (global,
 * source, tenant, route, route × source, route × tenant), and then it takes from all of
 * them at once, or from none.
 *
 * Two kinds of limiter:
 * - **rate** (`connect-rate`, `message-rate`, `data-rate`): GCRA, the generic cell rate
 *   algorithm. One number per key, the *theoretical arrival time* (TAT): the time at
 *   which the limiter would be idle again if nothing else came. Admitting cost `c` moves
 *   it `c × T` later, where `T = perSeconds × 1000 / count` ms is the emission interval,
 *   so the long-run rate is exactly `count / perSeconds`. See {@link defaultBurst} for
 *   how much may go at once.
 * - **concurrency** (`connections`): an in-flight count below a maximum, taken with a
 *   {@link Lease} and given back with `release`.
 *
 * Messages-per-connection and recipients-per-transaction are not here: they count within
 * one connection or one transaction, which a single worker owns, so they need no shared
 * state.
 *
 * {@link LimiterStore} is the interface the scheduler uses; {@link MemoryLimiterStore}
 * implements it in process; `limiters-redis.ts` keeps the same limiters in Redis for
 * several nodes (keys as {@link limiterKey} makes them, Lua in `limiters-redis-scripts.ts`).
 *
 * No module state, and no clock of its own: a store is given one.
 */
import type { EffectiveSettings, LimitScope, RateLimit } from '../abi.ts';

/** What a limiter counts. */
export type LimiterKind = 'connections' | 'connect-rate' | 'message-rate' | 'data-rate';

/** Where a delivery goes: its route, the source it leaves from, and the tenant of the message. */
export interface LimiterPath {
  route: string;
  source?: string | undefined;
  tenant?: string | undefined;
}

const KINDS: readonly LimiterKind[] = ['connections', 'connect-rate', 'message-rate', 'data-rate'];
const SCOPES: readonly LimitScope[] = ['global', 'source', 'tenant', 'destination', 'destination/source', 'destination/tenant'];

const RESERVED = /[%:|{}]/;
const RESERVED_ALL = /[%:|{}]/g;
const ESCAPES: Record<string, string> = { '%': '%25', ':': '%3A', '|': '%7C', '{': '%7B', '}': '%7D' };

function escapeName(name: string): string {
  // Almost every name is plain; the test avoids a replace (and a new string) on the hot path.
  return RESERVED.test(name) ? name.replace(RESERVED_ALL, (c) => ESCAPES[c]!) : name;
}

/**
 * The store key of one limiter: a stable string that a Redis store uses as it is (after
 * its own prefix).
 *
 * ```
 * key   = kind ":" scope [ ":" name [ "|" name ] ]
 * kind  = "connections" | "connect-rate" | "message-rate" | "data-rate"
 * scope = "global" | "source" | "tenant" | "destination" | "destination/source" | "destination/tenant"
 * name  = any text, with "%" ":" "|" "{" "}" written %25 %3A %7C %7B %7D
 * ```
 *
 * The names follow the scope: none for `global`; the source, the tenant or the route for
 * `source`, `tenant` and `destination`; route then source (or tenant) for the pairs. So
 * `rate 3600/h per source` on yahoo from `ip1` is
 * `message-rate:destination/source:provider%3Ayahoo|ip1`.
 *
 * Why this shape:
 * - `:` and `|` are escaped, so a key splits without context (see {@link parseLimiterKey})
 *   and tools that group Redis keys by `:` show kind, then scope, then names.
 * - `{` and `}` are escaped so no name can form a Redis Cluster hash tag: the Redis store
 *   adds the one tag itself, because one acquisition touches keys of every scope
 *   atomically and they must share a slot.
 * - The limit's value is not in the key. Settings hold one limit per kind and scope, so
 *   the key is unique; and when a backoff or a new policy version changes `rate 3600/h per
 *   source` to `600/h`, the new rate continues from the old state instead of starting
 *   with a fresh burst.
 *
 * Throws a `RangeError` when the scope names a source or tenant that `path` lacks: decide
 * first whether the limit applies (see {@link connectionRequest}).
 */
export function limiterKey(kind: LimiterKind, scope: LimitScope, path: LimiterPath): string {
  switch (scope) {
    case 'global':
      return `${kind}:global`;
    case 'source':
      return `${kind}:source:${escapeName(need(path.source, scope))}`;
    case 'tenant':
      return `${kind}:tenant:${escapeName(need(path.tenant, scope))}`;
    case 'destination':
      return `${kind}:destination:${escapeName(path.route)}`;
    case 'destination/source':
      return `${kind}:destination/source:${escapeName(path.route)}|${escapeName(need(path.source, scope))}`;
    case 'destination/tenant':
      return `${kind}:destination/tenant:${escapeName(path.route)}|${escapeName(need(path.tenant, scope))}`;
  }
}

function need(name: string | undefined, scope: LimitScope): string {
  if (name === undefined) throw new RangeError(`a limit scoped \`${scope}\` needs a ${scope.endsWith('tenant') ? 'tenant' : 'source'}`);
  return name;
}

/** A key taken apart again (for status pages). */
export interface ParsedLimiterKey {
  kind: LimiterKind;
  scope: LimitScope;
  route?: string;
  source?: string;
  tenant?: string;
}

/** The inverse of {@link limiterKey}; undefined for a string it could not have made. */
export function parseLimiterKey(key: string): ParsedLimiterKey | undefined {
  const parts = key.split(':');
  const kind = parts[0] as LimiterKind;
  const scope = parts[1] as LimitScope;
  if (!KINDS.includes(kind) || !SCOPES.includes(scope)) return undefined;
  if (scope === 'global') return parts.length === 2 ? { kind, scope } : undefined;
  if (parts.length !== 3) return undefined;
  const names = parts[2]!.split('|').map(unescapeName);
  if (names.some((n) => n === undefined)) return undefined;
  const [first, second] = names as string[];
  const paired = scope === 'destination/source' || scope === 'destination/tenant';
  if (names.length !== (paired ? 2 : 1)) return undefined;
  switch (scope) {
    case 'source':
      return { kind, scope, source: first! };
    case 'tenant':
      return { kind, scope, tenant: first! };
    case 'destination':
      return { kind, scope, route: first! };
    case 'destination/source':
      return { kind, scope, route: first!, source: second! };
    case 'destination/tenant':
      return { kind, scope, route: first!, tenant: second! };
  }
}

function unescapeName(text: string): string | undefined {
  if (RESERVED.test(text.replace(/%(25|3A|7C|7B|7D)/g, ''))) return undefined;
  return text.replace(/%(25|3A|7C|7B|7D)/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}

/**
 * How many units (messages, connections, bytes) a rate limit lets through at once, from
 * idle: `max(1, count × min(1, 1 s / window))`.
 *
 * - A window of a second or less keeps its count: `20/s` may send 20 at once, then one
 *   every 50 ms, which is what "20 a second" means to a receiver.
 * - A longer window allows one second's worth of its average rate: `3600/h` sends one a
 *   second, never 3600 in the first second and then nothing for an hour: receivers that
 *   allow "3600 an hour" rarely allow a burst of it, and a greedy sender would otherwise
 *   spend its hour's budget in its first second. Give a request an explicit `burst` to
 *   choose otherwise.
 * - Never below one unit, so `50/day` can send one message now (and the next 28.8 min later).
 *
 * The long-run rate does not depend on the burst: over a window of `W` seconds at most
 * `burst + count × W / perSeconds` units pass (plus one oversize cost, below).
 */
export function defaultBurst(count: number, perSeconds: number): number {
  return Math.max(1, count * Math.min(1, 1 / perSeconds));
}

/** One rate limiter to take from. */
export interface RateTake {
  /** From {@link limiterKey} with a `*-rate` kind. */
  key: string;
  /** `count` units per `perSeconds` seconds. */
  count: number;
  perSeconds: number;
  /** What this delivery takes: 1 message, 1 connection, or the message's bytes. */
  cost: number;
  /** Units that may pass at once from idle; {@link defaultBurst} when absent. */
  burst?: number;
}

/** One concurrency limiter to take a slot from. */
export interface ConcurrencyTake {
  /** From {@link limiterKey} with kind `connections`. */
  key: string;
  max: number;
}

/**
 * What one admission needs: every rate limiter must have budget for its cost and every
 * concurrency limiter a free slot. Keys must be distinct within each list.
 */
export interface AcquireRequest {
  rates: readonly RateTake[];
  concurrency: readonly ConcurrencyTake[];
}

/** Concurrency slots held; give them back with `release`. */
export interface Lease {
  /** Unique within the store that issued it ('' for a lease that holds no slots). */
  readonly id: string;
  /** The concurrency keys it holds a slot in. */
  readonly keys: readonly string[];
}

/** The answer of `tryAcquire`: admitted with a lease, or refused with who refused and when to try again. */
export type AcquireResult =
  | { ok: true; lease: Lease }
  | {
      ok: false;
      /** The key that refused: the rate limiter that frees up last, else a full concurrency limiter. */
      blockedBy: string;
      /**
       * Whole milliseconds until the request can pass if nobody else takes from these
       * limiters: the latest of the blocking rate limiters' times, since all must allow
       * it at once. null when only concurrency blocks: that frees on a release, not at a
       * known time.
       */
      retryAfterMs: number | null;
    };

/** State of one rate limiter, for status APIs. */
export interface RateUsage {
  key: string;
  /** The limit of the latest acquisition through this key. */
  count: number;
  perSeconds: number;
  burst: number;
  /** Milliseconds of traffic admitted and not yet "paid for" at the limit's rate (0 when idle). */
  backlogMs: number;
  /** When a cost-1 acquisition would next pass (now, if it would pass now). */
  nextFreeAt: number;
}

/** State of one concurrency limiter, for status APIs. */
export interface ConcurrencyUsage {
  key: string;
  inFlight: number;
  /** The maximum of the latest acquisition through this key. */
  max: number;
}

/** Every limiter in use at `at` (idle ones are left out), each list sorted by key. */
export interface LimiterSnapshot {
  at: number;
  rates: RateUsage[];
  concurrency: ConcurrencyUsage[];
}

/**
 * A limiter store. Each operation is atomic over all the keys it is given: no other
 * caller sees a partial take, and concurrency limiters never exceed their maximum.
 *
 * The operations return promises because a store shared between nodes (Redis) answers
 * over the network. {@link MemoryLimiterStore} answers synchronously inside the call, so
 * its promises are already settled and awaiting one costs a single microtask; it also
 * offers synchronous twins for callers that hold a memory store directly.
 */
export interface LimiterStore {
  /** Takes from every limiter in the request, or from none. */
  tryAcquire(request: AcquireRequest): Promise<AcquireResult>;
  /** Gives back a lease's concurrency slots. False if it was already released (or is not this store's). */
  release(lease: Lease): Promise<boolean>;
  snapshot(): Promise<LimiterSnapshot>;
}

/** Options of {@link MemoryLimiterStore}. */
export interface MemoryLimiterStoreOptions {
  /** Milliseconds; use a monotonic clock, since a clock that jumps back stalls every rate limiter by the jump. */
  clock: () => number;
  /** How often (in clock time) idle keys are dropped; 60 s by default. */
  sweepIntervalMs?: number;
}

/** Float rounding allowance when comparing times, in ms (timestamps near 1.7e12 ms have ~0.25 µs resolution). */
const EPSILON_MS = 0.01;

interface RateState {
  /** Theoretical arrival time, ms. INVARIANT: at or below `now + max(burst, cost) × interval` after each admission. */
  tat: number;
  count: number;
  perSeconds: number;
  burst: number;
}

interface ConcurrencyState {
  /** INVARIANT: 0 ≤ inFlight ≤ the max of every acquisition that took a slot while it was below it. */
  inFlight: number;
  max: number;
}

interface MemoryLease extends Lease {
  readonly states: readonly ConcurrencyState[];
}

const NO_SLOTS: Lease = Object.freeze({ id: '', keys: Object.freeze([]) as readonly string[] });

/**
 * The in-process limiter store: one `Map` per kind of limiter, keyed by
 * {@link limiterKey} strings.
 *
 * Memory stays bounded by the limiters in use: a rate limiter whose TAT has passed is
 * exactly as if it had never been used, and a concurrency limiter with nothing in flight
 * likewise, so both are dropped at the next sweep (every `sweepIntervalMs` of clock time,
 * at the start of an acquisition, or by calling {@link sweep}).
 */
export class MemoryLimiterStore implements LimiterStore {
  private readonly clock: () => number;
  private readonly sweepIntervalMs: number;
  private readonly rateStates = new Map<string, RateState>();
  private readonly concurrencyStates = new Map<string, ConcurrencyState>();
  private readonly held = new Set<Lease>();
  private lastSweep: number;
  private nextLeaseId = 1;
  // Scratch arrays reused by every acquisition so the hot path does not allocate for them.
  private readonly seenRates: RateState[] = [];
  private readonly seenSlots: ConcurrencyState[] = [];

  constructor(options: MemoryLimiterStoreOptions) {
    this.clock = options.clock;
    this.sweepIntervalMs = options.sweepIntervalMs ?? 60_000;
    this.lastSweep = this.clock();
  }

  tryAcquire(request: AcquireRequest): Promise<AcquireResult> {
    try {
      return Promise.resolve(this.tryAcquireSync(request));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  release(lease: Lease): Promise<boolean> {
    return Promise.resolve(this.releaseSync(lease));
  }

  snapshot(): Promise<LimiterSnapshot> {
    return Promise.resolve(this.snapshotSync());
  }

  /** {@link LimiterStore.tryAcquire}, answered at once. */
  tryAcquireSync(request: AcquireRequest): AcquireResult {
    const now = this.clock();
    if (now - this.lastSweep >= this.sweepIntervalMs) this.sweepAt(now);

    // Check every limiter first; take only when all allow.
    const rates = request.rates;
    const seenRates = this.seenRates;
    let waitMs = 0;
    let rateBlocker: string | undefined;
    for (let i = 0; i < rates.length; i++) {
      const take = rates[i]!;
      checkRate(take);
      let state = this.rateStates.get(take.key);
      if (state === undefined) {
        state = { tat: now, count: take.count, perSeconds: take.perSeconds, burst: 0 };
        this.rateStates.set(take.key, state);
      }
      for (let j = 0; j < i; j++) if (seenRates[j] === state) throw new RangeError(`rate key \`${take.key}\` appears twice in one request`);
      seenRates[i] = state;
      const interval = (take.perSeconds * 1000) / take.count;
      const burst = take.burst ?? defaultBurst(take.count, take.perSeconds);
      // Passes when tat − (burst − cost) × interval ≤ now. A cost above the burst (a
      // message bigger than a second's data rate) passes once the limiter is idle, and
      // its debt then holds back what follows, so the long-run rate still holds.
      const wait = (state.tat > now ? state.tat : now) - Math.max(0, burst - take.cost) * interval - now;
      if (wait > EPSILON_MS && wait > waitMs) {
        waitMs = wait;
        rateBlocker = take.key;
      }
    }
    // Rounded up to whole ms, less the rounding allowance: a wait of 1000.000001 ms (float
    // noise on a true 1000) is 1000, and one millisecond less is always refused.
    if (rateBlocker !== undefined) return { ok: false, blockedBy: rateBlocker, retryAfterMs: Math.ceil(waitMs - EPSILON_MS) };

    const slots = request.concurrency;
    const seenSlots = this.seenSlots;
    for (let i = 0; i < slots.length; i++) {
      const take = slots[i]!;
      if (!(take.max >= 0)) throw new RangeError(`concurrency limit \`${take.key}\` has max ${take.max}`);
      let state = this.concurrencyStates.get(take.key);
      if (state === undefined) {
        state = { inFlight: 0, max: take.max };
        this.concurrencyStates.set(take.key, state);
      }
      for (let j = 0; j < i; j++) if (seenSlots[j] === state) throw new RangeError(`concurrency key \`${take.key}\` appears twice in one request`);
      seenSlots[i] = state;
      if (state.inFlight >= take.max) return { ok: false, blockedBy: take.key, retryAfterMs: null };
    }

    // Everything allows it: take all.
    for (let i = 0; i < rates.length; i++) {
      const take = rates[i]!;
      const state = seenRates[i]!;
      const interval = (take.perSeconds * 1000) / take.count;
      state.tat = (state.tat > now ? state.tat : now) + take.cost * interval;
      state.count = take.count;
      state.perSeconds = take.perSeconds;
      state.burst = take.burst ?? defaultBurst(take.count, take.perSeconds);
    }
    if (slots.length === 0) return { ok: true, lease: NO_SLOTS };
    const keys: string[] = new Array(slots.length);
    const states: ConcurrencyState[] = new Array(slots.length);
    for (let i = 0; i < slots.length; i++) {
      const state = seenSlots[i]!;
      state.inFlight++;
      state.max = slots[i]!.max;
      keys[i] = slots[i]!.key;
      states[i] = state;
    }
    const lease: MemoryLease = { id: String(this.nextLeaseId++), keys, states };
    this.held.add(lease);
    return { ok: true, lease };
  }

  /** {@link LimiterStore.release}, answered at once. */
  releaseSync(lease: Lease): boolean {
    // Releasing twice must not free a slot someone else holds.
    if (!this.held.delete(lease)) return false;
    // INVARIANT: a state with inFlight > 0 is never swept, so these are still the live ones.
    for (const state of (lease as MemoryLease).states) state.inFlight--;
    return true;
  }

  /** {@link LimiterStore.snapshot}, answered at once. */
  snapshotSync(): LimiterSnapshot {
    const now = this.clock();
    const rates: RateUsage[] = [];
    for (const [key, s] of this.rateStates) {
      if (s.tat <= now) continue;
      const interval = (s.perSeconds * 1000) / s.count;
      rates.push({ key, count: s.count, perSeconds: s.perSeconds, burst: s.burst, backlogMs: s.tat - now, nextFreeAt: Math.max(now, s.tat - Math.max(0, s.burst - 1) * interval) });
    }
    const concurrency: ConcurrencyUsage[] = [];
    for (const [key, s] of this.concurrencyStates) if (s.inFlight > 0) concurrency.push({ key, inFlight: s.inFlight, max: s.max });
    const byKey = (a: { key: string }, b: { key: string }) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);
    return { at: now, rates: rates.sort(byKey), concurrency: concurrency.sort(byKey) };
  }

  /** Drops idle limiters now; returns how many. */
  sweep(): number {
    return this.sweepAt(this.clock());
  }

  private sweepAt(now: number): number {
    this.lastSweep = now;
    let dropped = 0;
    for (const [key, s] of this.rateStates) {
      if (s.tat <= now) {
        this.rateStates.delete(key);
        dropped++;
      }
    }
    for (const [key, s] of this.concurrencyStates) {
      if (s.inFlight === 0) {
        this.concurrencyStates.delete(key);
        dropped++;
      }
    }
    return dropped;
  }

  /** Keys held in memory (idle ones included until the next sweep). */
  get size(): number {
    return this.rateStates.size + this.concurrencyStates.size;
  }
}

function checkRate(take: RateTake): void {
  // Written as negations so NaN fails too. The compiler rejects such limits; reaching here is a bug.
  if (!(take.count > 0) || !(take.perSeconds > 0) || !(take.cost >= 0) || (take.burst !== undefined && !(take.burst > 0))) {
    throw new RangeError(`rate limit \`${take.key}\` is not usable: ${take.count}/${take.perSeconds}s, cost ${take.cost}, burst ${take.burst}`);
  }
}

/**
 * What opening one connection on `path` needs: a slot in every `connections` limiter and
 * one unit of every `connect-rate` limiter. Build it once per queue and settings version
 * and pass the same object every time: keys made afresh cost more than the acquisition.
 *
 * A limit scoped to a tenant does not apply when `path` has no tenant (a connection, or a
 * message without one, has nothing to key it by). A limit scoped to a source on a path
 * without one throws: queues are per route and source, so the caller lost it.
 */
export function connectionRequest(settings: EffectiveSettings, path: LimiterPath): AcquireRequest {
  return {
    rates: applicable(settings.connectRate, path).map((l) => ({ key: limiterKey('connect-rate', l.scope, path), count: l.count, perSeconds: l.perSeconds, cost: 1, ...burstOf(l) })),
    concurrency: applicable(settings.connections, path).map((l) => ({ key: limiterKey('connections', l.scope, path), max: l.max })),
  };
}

/**
 * What sending one message on `path` needs, as a function of its size: one unit of every
 * `message-rate` limiter and `bytes` of every `data-rate` limiter. The keys are made once,
 * here; keep the function per queue and settings version. Scopes apply as in
 * {@link connectionRequest}.
 */
export function messageRequests(settings: EffectiveSettings, path: LimiterPath): (bytes: number) => AcquireRequest {
  const messages: readonly RateTake[] = applicable(settings.messageRate, path).map((l) => ({ key: limiterKey('message-rate', l.scope, path), count: l.count, perSeconds: l.perSeconds, cost: 1, ...burstOf(l) }));
  const data = applicable(settings.dataRate, path).map((l) => ({ key: limiterKey('data-rate', l.scope, path), count: l.count, perSeconds: l.perSeconds }));
  const none: readonly ConcurrencyTake[] = [];
  if (data.length === 0) {
    const request: AcquireRequest = { rates: messages, concurrency: none };
    return () => request;
  }
  return (bytes) => ({ rates: [...messages, ...data.map((d) => ({ key: d.key, count: d.count, perSeconds: d.perSeconds, cost: bytes }))], concurrency: none });
}

/**
 * A rate may carry its own burst: the limits of a backoff or a recovery ramp do (1: no
 * burst at all), so the end of a pause is paced from its first message (decide/recovery.ts).
 */
function burstOf(limit: RateLimit & { burst?: number }): { burst?: number } {
  return limit.burst !== undefined ? { burst: limit.burst } : {};
}

function applicable<T extends { scope: LimitScope }>(limits: readonly T[], path: LimiterPath): T[] {
  return limits.filter((l) => path.tenant !== undefined || (l.scope !== 'tenant' && l.scope !== 'destination/tenant'));
}
