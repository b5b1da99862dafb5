/**
 * The limiter store several nodes share: the same {@link LimiterStore} as
 * `MemoryLimiterStore`, kept in Redis by the Lua of `limiters-redis-scripts.ts` — rates
 * as GCRA on the Redis server's clock, connections as leases with a TTL that this node
 * renews every TTL/3, so the slots of a node that dies come back within the TTL (a node
 * that stops gives them back at once). One admission is one EVALSHA: one round trip; none
 * when it has nothing to take (a message on an open session under no rate limit).
 *
 * Connections: a node holds at most its *share* of every connection limit — the limit
 * divided by the last known number of live nodes (`liveNodes`), rounded down, at least
 * one — whether Redis is up or down. Redis keeps the nodes' sum within the limit while it
 * answers; the share is what keeps it there when Redis goes away at any moment: no node
 * can then hold another node's slots, so each may open up to its share on its own and
 * the sum stays within the limit (before, a node holding 5 of 6 slots when Redis died
 * kept them while the other two each opened their share of 2: 9 at the receiver).
 *
 * When Redis is down (the link is not usable, or a command fails or times out) the rates
 * go to a local `MemoryLimiterStore` on this node's share of each (the limit and its
 * burst divided by the live nodes), and connections are counted here against the share
 * as always. When Redis comes back, every slot this node holds is put into Redis
 * (ADOPT_SCRIPT) before any new admission goes there.
 *
 * A command that times out may still have run in Redis: the budget it took is spent and
 * its slot, never renewed, expires with the lease TTL. That errs towards sending less.
 */
import { randomBytes } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';
import { MemoryLimiterStore, type AcquireRequest, type AcquireResult, type ConcurrencyUsage, type Lease, type LimiterSnapshot, type LimiterStore, type RateUsage, defaultBurst } from './limiters.ts';
import { ACQUIRE_SCRIPT, ADOPT_SCRIPT, RELEASE_SCRIPT, RENEW_SCRIPT } from './limiters-redis-scripts.ts';
import type { RedisLink } from './limiters-redis-connection.ts';

export interface RedisLimiterStoreOptions {
  link: RedisLink;
  /** This node's name: lease ids start with it. */
  nodeId: string;
  /** The live nodes last seen (at least 1): the divisor of this node's share of a connection limit, and of every rate while Redis is down. */
  liveNodes: () => number;
  /** The clock of the local fallback store (monotonic ms). */
  clock: () => number;
  /** How long a connection slot lives without renewal (default 6 s). */
  leaseTtlMs?: number;
  warn?: (line: string) => void;
}

/** A lease of this store: its slots are in Redis, or (taken while Redis was down) only counted here. */
interface SharedLease extends Lease {
  /** False while its slots are not in Redis (taken while Redis was down, not adopted yet). */
  inRedis: boolean;
  /** The max of each key, for adoption. */
  readonly maxima: readonly number[];
}

const NO_SLOTS: SharedLease = Object.freeze({ id: '', keys: Object.freeze([]) as readonly string[], maxima: Object.freeze([]) as readonly number[], inRedis: true });

type ScriptClient = (Redis | Cluster) & {
  petrelAcquire(...args: (string | number)[]): Promise<[number, string?, number?]>;
  petrelRelease(...args: (string | number)[]): Promise<number>;
  petrelRenew(...args: (string | number)[]): Promise<number>;
  petrelAdopt(...args: (string | number)[]): Promise<number>;
};

/**
 * How soon a node asks again for a full connection limiter (plus up to as much again at
 * random, so nodes do not ask in step): slots are freed by other nodes too.
 */
const SLOT_POLL_MS = 100;

/** The most limiter keys a snapshot reads from Redis. */
const SNAPSHOT_KEYS = 1000;

export class RedisLimiterStore implements LimiterStore {
  private readonly link: RedisLink;
  private readonly redis: ScriptClient;
  private readonly prefix: string;
  private readonly maximaKey: string;
  private readonly ttlMs: number;
  private readonly local: MemoryLimiterStore;
  private readonly held = new Set<SharedLease>();
  /**
   * Slots this node holds or is taking, per connection key.
   * INVARIANT: at most this node's share of the key's limit (see {@link slotShare}), counted
   * before the store is asked, so admissions in flight at once cannot pass it together.
   */
  private readonly holding = new Map<string, number>();
  private readonly renewTimer: NodeJS.Timeout;
  private nextLease = 1;
  /**
   * Whether admissions go to Redis: false from the first failure until every slot held
   * here is back in Redis (after it returns), so Redis never admits against a count that
   * lacks this node's open connections.
   */
  private inSync: boolean;
  /** Lease ids are `node:boot:n`: a restarted node never reuses an id its last run may still hold. */
  private readonly leasePrefix = `${randomBytes(4).toString('hex')}:`;

  constructor(private readonly options: RedisLimiterStoreOptions) {
    this.link = options.link;
    this.redis = options.link.client as ScriptClient;
    this.prefix = `${options.link.keyPrefix}lim:`;
    this.maximaKey = `${this.prefix}max`;
    this.ttlMs = options.leaseTtlMs ?? 6000;
    this.local = new MemoryLimiterStore({ clock: options.clock });
    for (const [name, lua] of [['petrelAcquire', ACQUIRE_SCRIPT], ['petrelRelease', RELEASE_SCRIPT], ['petrelRenew', RENEW_SCRIPT], ['petrelAdopt', ADOPT_SCRIPT]] as const) this.redis.defineCommand(name, { lua });
    this.renewTimer = setInterval(() => void this.renewAll(), Math.max(100, Math.floor(this.ttlMs / 3)));
    this.renewTimer.unref();
    this.inSync = this.link.usable();
    this.link.onRecovered(() => {
      // Even with no admission during the outage: Redis may have lost this node's slots.
      this.inSync = false;
      void this.adoptLocal();
    });
  }

  async tryAcquire(request: AcquireRequest): Promise<AcquireResult> {
    // Nothing to take (a message on an open session, with no rate limit): no round trip.
    if (request.rates.length === 0 && request.concurrency.length === 0) return { ok: true, lease: NO_SLOTS };
    const full = this.fullShare(request);
    if (full !== undefined) return { ok: false, blockedBy: full, retryAfterMs: null };
    this.count(request.concurrency, 1);
    let got: AcquireResult | undefined;
    try {
      if (this.inSync && this.link.usable()) {
        try {
          got = await this.acquireShared(request);
        } catch (e) {
          this.link.failed(e as Error);
        }
      }
      if (got === undefined) {
        this.inSync = false;
        got = this.acquireLocal(request);
      }
      return got;
    } finally {
      if (!got?.ok) this.count(request.concurrency, -1);
    }
  }

  /** The live nodes last seen, at least one. */
  private nodes(): number {
    return Math.max(1, Math.floor(this.options.liveNodes()));
  }

  /** This node's share of a connection limit of `max`: rounded down, at least one. */
  private slotShare(max: number): number {
    return Math.max(1, Math.floor(max / this.nodes()));
  }

  /** The first connection key whose share this node holds already, if any. */
  private fullShare(request: AcquireRequest): string | undefined {
    for (const c of request.concurrency) if ((this.holding.get(c.key) ?? 0) >= this.slotShare(c.max)) return c.key;
    return undefined;
  }

  private count(slots: readonly { key: string }[], delta: 1 | -1): void {
    for (const { key } of slots) this.countKey(key, delta);
  }

  private countKey(key: string, delta: 1 | -1): void {
    const n = (this.holding.get(key) ?? 0) + delta;
    if (n > 0) this.holding.set(key, n);
    else this.holding.delete(key);
  }

  private async acquireShared(request: AcquireRequest): Promise<AcquireResult> {
    const id = `${this.options.nodeId}:${this.leasePrefix}${this.nextLease++}`;
    const keys: string[] = [];
    const args: (string | number)[] = [request.rates.length, id, this.ttlMs];
    for (const r of request.rates) {
      keys.push(this.prefix + r.key);
      args.push(r.count, r.perSeconds, r.cost, r.burst ?? defaultBurst(r.count, r.perSeconds));
    }
    for (const c of request.concurrency) {
      keys.push(this.prefix + c.key);
      args.push(c.max);
    }
    keys.push(this.maximaKey);
    const answer = await this.redis.petrelAcquire(keys.length, ...keys, ...args);
    if (answer[0] !== 1) {
      const blockedBy = String(answer[1]).slice(this.prefix.length);
      // A slot freed by another node is not announced here: look again shortly instead of waiting for a local release.
      return { ok: false, blockedBy, retryAfterMs: answer[2] === -1 ? SLOT_POLL_MS + Math.floor(Math.random() * SLOT_POLL_MS) : Number(answer[2]) };
    }
    return { ok: true, lease: this.newLease(id, request, true) };
  }

  /**
   * This node's share of every rate, from the local store (the connection share is
   * checked in {@link tryAcquire}, the same as with Redis).
   */
  private acquireLocal(request: AcquireRequest): AcquireResult {
    const n = this.nodes();
    const rates = request.rates.map((r) => ({ ...r, count: r.count / n, burst: Math.max(1, (r.burst ?? defaultBurst(r.count, r.perSeconds)) / n) }));
    const got = this.local.tryAcquireSync({ rates, concurrency: [] });
    if (!got.ok) return got;
    return { ok: true, lease: this.newLease(`${this.options.nodeId}:${this.leasePrefix}${this.nextLease++}`, request, false) };
  }

  private newLease(id: string, request: AcquireRequest, inRedis: boolean): SharedLease {
    if (request.concurrency.length === 0) return NO_SLOTS;
    const lease: SharedLease = { id, keys: request.concurrency.map((c) => c.key), maxima: request.concurrency.map((c) => c.max), inRedis };
    this.held.add(lease);
    return lease;
  }

  async release(lease: Lease): Promise<boolean> {
    const shared = lease as SharedLease;
    if (!this.held.delete(shared)) return false;
    for (const key of shared.keys) this.countKey(key, -1);
    if (!shared.inRedis) return true;
    if (!this.link.usable()) return true; // not renewed any more: its slots expire with the TTL
    try {
      await this.redis.petrelRelease(shared.keys.length + 1, ...shared.keys.map((k) => this.prefix + k), this.maximaKey, shared.id);
    } catch (e) {
      this.link.failed(e as Error);
    }
    return true;
  }

  /** Keeps this node's Redis leases alive; says so when one was lost (expired while Redis was slow). */
  private async renewAll(): Promise<void> {
    if (!this.link.usable()) return;
    const leases = [...this.held].filter((l) => l.inRedis);
    if (leases.length === 0) return;
    const pipeline = this.redis.pipeline();
    for (const l of leases) (pipeline as unknown as ScriptClient).petrelRenew(l.keys.length, ...l.keys.map((k) => this.prefix + k), l.id, this.ttlMs);
    try {
      const answers = (await pipeline.exec()) ?? [];
      // A lease Redis lost (it restarted empty, or the lease expired while Redis was slow)
      // is still an open connection: it goes back in.
      const lost = leases.filter((l, i) => !answers[i]![0] && Number(answers[i]![1]) < l.keys.length);
      for (const lease of lost) await this.adopt(lease);
    } catch (e) {
      this.link.failed(e as Error);
    }
  }

  /**
   * Redis is back: every slot this node holds goes (again) into Redis — those taken
   * locally meanwhile, and those Redis may have lost (a restart without persistence) —
   * and is renewed there from now on.
   */
  private async adoptLocal(): Promise<void> {
    for (const lease of [...this.held]) if (!(await this.adopt(lease))) return;
    this.inSync = this.link.usable();
  }

  /** Puts one held lease's slots into Redis; false when Redis failed. */
  private async adopt(lease: SharedLease): Promise<boolean> {
    if (!this.link.usable()) return false;
    try {
      await this.redis.petrelAdopt(lease.keys.length + 1, ...lease.keys.map((k) => this.prefix + k), this.maximaKey, lease.id, this.ttlMs, ...lease.maxima);
    } catch (e) {
      this.link.failed(e as Error);
      return false;
    }
    // Released meanwhile: its slot in Redis expires with the TTL.
    if (this.held.has(lease)) lease.inRedis = true;
    return true;
  }

  /** What Redis holds (up to {@link SNAPSHOT_KEYS} keys), or this node's own while Redis is down. */
  async snapshot(): Promise<LimiterSnapshot> {
    if (!this.link.usable()) return this.localSnapshot();
    try {
      return await this.sharedSnapshot();
    } catch (e) {
      this.link.failed(e as Error);
      return this.localSnapshot();
    }
  }

  /** The local store's rates and the slots this node holds (against the whole limit). */
  private localSnapshot(): LimiterSnapshot {
    const snap = this.local.snapshotSync();
    const maxima = new Map<string, number>();
    for (const lease of this.held) lease.keys.forEach((key, i) => maxima.set(key, lease.maxima[i]!));
    const concurrency = [...this.holding].filter(([key]) => maxima.has(key)).map(([key, inFlight]) => ({ key, inFlight, max: maxima.get(key)! }));
    return { ...snap, concurrency: concurrency.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)) };
  }

  private async sharedSnapshot(): Promise<LimiterSnapshot> {
    const keys: string[] = [];
    let cursor = '0';
    do {
      const [next, batch] = await (this.redis as Redis).scan(cursor, 'MATCH', `${this.prefix}*`, 'COUNT', 200);
      cursor = next;
      keys.push(...batch.filter((k) => k !== this.maximaKey));
    } while (cursor !== '0' && keys.length < SNAPSHOT_KEYS);
    const [seconds, micros] = await this.redis.time();
    const now = Number(seconds) * 1000 + Number(micros) / 1000;
    const maxima = await this.redis.hgetall(this.maximaKey);
    const rates: RateUsage[] = [];
    const concurrency: ConcurrencyUsage[] = [];
    for (const full of keys.slice(0, SNAPSHOT_KEYS)) {
      const key = full.slice(this.prefix.length);
      if (key.startsWith('connections:')) {
        const inFlight = await this.redis.zcount(full, `(${now}`, '+inf');
        if (inFlight > 0) concurrency.push({ key, inFlight, max: Number(maxima[full] ?? 0) });
        continue;
      }
      const h = await this.redis.hgetall(full);
      const tat = Number(h.tat);
      if (!(tat > now)) continue;
      const count = Number(h.count);
      const perSeconds = Number(h.per);
      const burst = Number(h.burst);
      const interval = (perSeconds * 1000) / count;
      rates.push({ key, count, perSeconds, burst, backlogMs: tat - now, nextFreeAt: Math.max(now, tat - Math.max(0, burst - 1) * interval) });
    }
    const byKey = (a: { key: string }, b: { key: string }) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);
    return { at: now, rates: rates.sort(byKey), concurrency: concurrency.sort(byKey) };
  }

  /** Leases held now (in Redis and locally). */
  get leases(): number {
    return this.held.size;
  }

  /**
   * Stops renewing and gives back the slots this node still holds in Redis (call it once
   * its connections are closed), so the other nodes need not wait out the lease TTL for
   * them; with Redis down they expire within the TTL.
   */
  async close(): Promise<void> {
    clearInterval(this.renewTimer);
    const leases = [...this.held].filter((l) => l.inRedis);
    this.held.clear();
    this.holding.clear();
    if (leases.length === 0 || !this.link.usable()) return;
    const pipeline = this.redis.pipeline();
    for (const l of leases) (pipeline as unknown as ScriptClient).petrelRelease(l.keys.length + 1, ...l.keys.map((k) => this.prefix + k), this.maximaKey, l.id);
    await pipeline.exec().catch(() => undefined);
  }
}
