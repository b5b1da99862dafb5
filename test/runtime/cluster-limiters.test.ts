/**
 * The Redis limiter store against a real redis-server: two stores (two nodes, each with its
 * own connection) share rates and connection slots; a node never holds more than its
 * share of a connection limit, so Redis stopped at any moment leaves the nodes' sum within
 * it; a dead node's slots come back with the lease TTL; with Redis stopped or hung each
 * node takes its share locally within the command timeout, and its slots count in Redis
 * again once it is back.
 */
import type { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { openRedisLink, RedisLimiterStore, type AcquireRequest, type Lease, type RedisLink } from '../../runtime/schedule/index.ts';
import type { Service } from '../global-setup.ts';
import { startRedis } from './fixtures/redis.ts';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function redis(): Promise<Service> {
  const s = await startRedis();
  cleanups.push(() => s.stop());
  return s;
}

async function node(port: number, nodeId: string, options: { liveNodes?: number; leaseTtlMs?: number; timeoutMs?: number } = {}): Promise<{ link: RedisLink; store: RedisLimiterStore }> {
  const link = await openRedisLink({ url: `redis://127.0.0.1:${port}`, prefix: 'test', timeoutMs: options.timeoutMs ?? 250 });
  const store = new RedisLimiterStore({ link, nodeId, liveNodes: () => options.liveNodes ?? 2, clock: () => performance.now(), ...(options.leaseTtlMs ? { leaseTtlMs: options.leaseTtlMs } : {}) });
  cleanups.push(async () => {
    await store.close();
    await link.close();
  });
  return { link, store };
}

const rate = (count: number, perSeconds = 1): AcquireRequest => ({ rates: [{ key: 'message-rate:global', count, perSeconds, cost: 1 }], concurrency: [] });
const slots = (max: number): AcquireRequest => ({ rates: [], concurrency: [{ key: 'connections:destination/source:gmail|ip1', max }] });

/** Asks both stores in turn for `ms`, as fast as they answer; returns how many each admitted. */
async function hammer(stores: RedisLimiterStore[], request: AcquireRequest, ms: number): Promise<number[]> {
  const admitted = stores.map(() => 0);
  const end = performance.now() + ms;
  await Promise.all(
    stores.map(async (s, i) => {
      while (performance.now() < end) if ((await s.tryAcquire(request)).ok) admitted[i]!++;
    }),
  );
  return admitted;
}

describe('RedisLimiterStore', () => {
  it('two nodes share one GCRA rate: together they admit its burst plus its rate, no more', async () => {
    const r = await redis();
    const a = await node(r.port, 'a');
    const b = await node(r.port, 'b');
    const admitted = await hammer([a.store, b.store], rate(20), 2000);
    const total = admitted[0]! + admitted[1]!;
    // burst 20 + 20/s × 2 s = 60 at most (one more for the admission on the boundary); both got some.
    expect(total).toBeLessThanOrEqual(61);
    expect(total).toBeGreaterThanOrEqual(55);
    expect(Math.min(...admitted)).toBeGreaterThan(5);
  });

  it('a request with nothing to take (a message on an open session, no rate limit) is admitted without a round trip', async () => {
    const r = await redis();
    const a = await node(r.port, 'a');
    const scripts = async () => Number(/cmdstat_evalsha:calls=(\d+)/.exec(await (a.link.client as Redis).info('commandstats'))?.[1] ?? 0);
    const before = await scripts();
    for (let i = 0; i < 20; i++) expect((await a.store.tryAcquire({ rates: [], concurrency: [] })).ok).toBe(true);
    expect(await scripts()).toBe(before);
  });

  it('a refusal says which key and how long to wait', async () => {
    const r = await redis();
    const a = await node(r.port, 'a');
    expect((await a.store.tryAcquire(rate(1, 10))).ok).toBe(true);
    const refused = await a.store.tryAcquire(rate(1, 10));
    expect(refused).toMatchObject({ ok: false, blockedBy: 'message-rate:global' });
    expect(!refused.ok && refused.retryAfterMs).toBeGreaterThan(9000);
  });

  it('connection slots are shared: never more than the max over the nodes, and a release frees one', async () => {
    const r = await redis();
    const a = await node(r.port, 'a', { liveNodes: 1 });
    const b = await node(r.port, 'b', { liveNodes: 1 });
    const leases: Lease[] = [];
    for (const s of [a.store, b.store, a.store]) {
      const got = await s.tryAcquire(slots(3));
      expect(got.ok).toBe(true);
      if (got.ok) leases.push(got.lease);
    }
    // Full in Redis: refused with a short poll time (a slot another node frees is not announced here).
    const full = await b.store.tryAcquire(slots(3));
    expect(full).toMatchObject({ ok: false, blockedBy: 'connections:destination/source:gmail|ip1' });
    expect(!full.ok && full.retryAfterMs).toBeGreaterThanOrEqual(100);
    expect(!full.ok && full.retryAfterMs).toBeLessThan(200);
    expect(await a.store.release(leases[0]!)).toBe(true);
    expect(await a.store.release(leases[0]!)).toBe(false);
    expect((await b.store.tryAcquire(slots(3))).ok).toBe(true);
    const snap = await b.store.snapshot();
    expect(snap.concurrency).toEqual([{ key: 'connections:destination/source:gmail|ip1', inFlight: 3, max: 3 }]);
  });

  it('a node holds at most its share of a connection limit, with Redis up: so Redis can go away at any moment', async () => {
    const r = await redis();
    const [a, b, c] = [await node(r.port, 'a', { liveNodes: 3 }), await node(r.port, 'b', { liveNodes: 3 }), await node(r.port, 'c', { liveNodes: 3 })];
    // a alone has work: it takes its share (6 ÷ 3) and no more, though Redis has room.
    const own: Lease[] = [];
    for (let i = 0; i < 2; i++) {
      const got = await a.store.tryAcquire(slots(6));
      if (got.ok) own.push(got.lease);
    }
    expect(own).toHaveLength(2);
    // Refused here, not by Redis: it frees when one of a's own closes (no time to wait for).
    expect(await a.store.tryAcquire(slots(6))).toEqual({ ok: false, blockedBy: 'connections:destination/source:gmail|ip1', retryAfterMs: null });
    // Several asked at once cannot pass the share together.
    await a.store.release(own.pop()!);
    const atOnce = await Promise.all([1, 2, 3].map(() => a.store.tryAcquire(slots(6))));
    expect(atOnce.filter((g) => g.ok)).toHaveLength(1);
    // Redis goes away: b and c take their shares on their own; a takes none more. Six in all.
    await r.stop();
    const taken = [];
    for (const s of [b.store, b.store, b.store, c.store, c.store, c.store, a.store]) taken.push((await s.tryAcquire(slots(6))).ok);
    expect(taken).toEqual([true, true, false, true, true, false, false]);
    expect(a.store.leases + b.store.leases + c.store.leases).toBe(6);
  });

  it('renewed leases outlive their TTL; a dead node’s slots come back within it', async () => {
    const r = await redis();
    const a = await node(r.port, 'a', { leaseTtlMs: 600, liveNodes: 1 });
    const b = await node(r.port, 'b', { leaseTtlMs: 600, liveNodes: 1 });
    expect((await a.store.tryAcquire(slots(2))).ok).toBe(true);
    expect((await a.store.tryAcquire(slots(2))).ok).toBe(true);
    await new Promise((resolve) => setTimeout(resolve, 1500)); // 2.5 TTLs: renewed meanwhile
    expect((await b.store.tryAcquire(slots(2))).ok).toBe(false);
    await a.link.close(); // the node dies: no more renewals, nothing given back
    await a.store.close();
    const died = performance.now();
    let freedAfter = -1;
    while (performance.now() - died < 3000) {
      if ((await b.store.tryAcquire(slots(2))).ok) {
        freedAfter = performance.now() - died;
        break;
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(freedAfter).toBeGreaterThanOrEqual(0);
    expect(freedAfter).toBeLessThan(600 + 400); // the TTL, plus the renewal interval it may have just had
  });

  it('a node that stops gives its slots back at once', async () => {
    const r = await redis();
    const a = await node(r.port, 'a', { liveNodes: 1 });
    const b = await node(r.port, 'b', { liveNodes: 1 });
    expect((await a.store.tryAcquire(slots(2))).ok).toBe(true);
    expect((await a.store.tryAcquire(slots(2))).ok).toBe(true);
    expect((await b.store.tryAcquire(slots(2))).ok).toBe(false);
    await a.store.close();
    // Not after the 6 s lease TTL: now.
    expect((await b.store.tryAcquire(slots(2))).ok).toBe(true);
    expect((await b.store.tryAcquire(slots(2))).ok).toBe(true);
  });

  it('Redis stopped: each node admits its share (limit ÷ live nodes) locally at once; back: its slots count in Redis again', async () => {
    const r = await redis();
    const a = await node(r.port, 'a', { liveNodes: 2 });
    const b = await node(r.port, 'b', { liveNodes: 2 });
    await r.stop();
    const started = performance.now();
    const first = await a.store.tryAcquire(rate(20));
    expect(performance.now() - started).toBeLessThan(250 + 200);
    expect(first.ok).toBe(true);
    const admitted = await hammer([a.store, b.store], rate(20), 2000);
    // each: a burst of 10 + 10/s × 2 s (the first admission above counts in a's)
    expect(admitted[0]! + 1).toBeLessThanOrEqual(31);
    expect(admitted[1]!).toBeLessThanOrEqual(31);
    expect(admitted[1]!).toBeGreaterThanOrEqual(27);
    // connections: 4 shared → 2 each
    const held = [await a.store.tryAcquire(slots(4)), await a.store.tryAcquire(slots(4)), await a.store.tryAcquire(slots(4))];
    expect(held.map((h) => h.ok)).toEqual([true, true, false]);

    const back = await startRedis(r.port);
    cleanups.push(() => back.stop());
    const end = performance.now() + 5000;
    while (!a.link.usable() && performance.now() < end) await new Promise((resolve) => setTimeout(resolve, 50));
    await new Promise((resolve) => setTimeout(resolve, 300)); // the adoption runs on recovery
    // a's two connections are in Redis now (it restarted empty): a node whose share is all
    // four (it counts one live node) gets the other two, not more.
    const c = await node(r.port, 'c', { liveNodes: 1 });
    const fromC = [await c.store.tryAcquire(slots(4)), await c.store.tryAcquire(slots(4)), await c.store.tryAcquire(slots(4))];
    expect(fromC.map((h) => h.ok)).toEqual([true, true, false]);
  });

  it('Redis hung (SIGSTOP): an admission waits no longer than the command timeout, then the node goes on locally', async () => {
    const r = await redis();
    const a = await node(r.port, 'a', { timeoutMs: 200 });
    expect((await a.store.tryAcquire(rate(100))).ok).toBe(true);
    process.kill(r.pid, 'SIGSTOP');
    cleanups.push(() => void process.kill(r.pid, 'SIGCONT'));
    const started = performance.now();
    const got = await a.store.tryAcquire(rate(100));
    const took = performance.now() - started;
    expect(got.ok).toBe(true);
    // 200 ms timeout; the margin is for a loaded machine.
    expect(took).toBeLessThan(200 + 300);
    expect(took).toBeGreaterThanOrEqual(150);
    // While it stays hung, the next admissions do not wait at all (the link is down for a while).
    const next = performance.now();
    await a.store.tryAcquire(rate(100));
    expect(performance.now() - next).toBeLessThan(50);
  });
});
