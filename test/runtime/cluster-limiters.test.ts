/**
 * The Redis limiter store against a real redis-server: two stores (two nodes, each with its
 * own connection) share rates and connection slots; a dead node's slots come back with the
 * lease TTL; with Redis stopped or hung each node takes its share locally within the
 * command timeout, and its slots count in Redis again once it is back.
 */
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
    store.close();
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

  it('a refusal says which key and how long to wait', async () => {
    const r = await redis();
    const a = await node(r.port, 'a');
    expect((await a.store.tryAcquire(rate(1, 10))).ok).toBe(true);
    const refused = await a.store.tryAcquire(rate(1, 10));
    expect(refused).toMatchObject({ ok: false, blockedBy: 'message-rate:global' });
    expect(!refused.ok && refused.retryAfterMs).toBeGreaterThan(9000);
  });

  it('connection slots are shared: never more than the max over both nodes, and a release frees one', async () => {
    const r = await redis();
    const a = await node(r.port, 'a');
    const b = await node(r.port, 'b');
    const leases: Lease[] = [];
    for (const s of [a.store, b.store, a.store]) {
      const got = await s.tryAcquire(slots(3));
      expect(got.ok).toBe(true);
      if (got.ok) leases.push(got.lease);
    }
    // Full: refused with a short poll time (a slot another node frees is not announced here).
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

  it('renewed leases outlive their TTL; a dead node’s slots come back within it', async () => {
    const r = await redis();
    const a = await node(r.port, 'a', { leaseTtlMs: 600 });
    const b = await node(r.port, 'b', { leaseTtlMs: 600 });
    expect((await a.store.tryAcquire(slots(2))).ok).toBe(true);
    expect((await a.store.tryAcquire(slots(2))).ok).toBe(true);
    await new Promise((resolve) => setTimeout(resolve, 1500)); // 2.5 TTLs: renewed meanwhile
    expect((await b.store.tryAcquire(slots(2))).ok).toBe(false);
    a.store.close(); // the node dies: no more renewals
    await a.link.close();
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
    // a's two connections are in Redis now: b gets the other two of four, not more.
    const fromB = [await b.store.tryAcquire(slots(4)), await b.store.tryAcquire(slots(4)), await b.store.tryAcquire(slots(4))];
    expect(fromB.map((h) => h.ok)).toEqual([true, true, false]);
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
