/**
 * The shared reaction state (decide/shared-state.ts) against a real redis-server: three
 * nodes' PolicyStates merged through Redis. `when 3 in 10m` counts the matches of every
 * node; a backoff started on one node holds on the others and the later end wins; an
 * operator's resume on one node removes the pause everywhere; warmup counts add up; a
 * Redis that lost its data is written again from the nodes, not taken as removals; a
 * local change that leaves the shared fields as they were (a delivery judged without a
 * reaction) costs no Redis command.
 */
import type { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import type { Reaction } from '../../runtime/abi.ts';
import { activeBackoff, applyReaction, createPolicyState, type PolicyState } from '../../runtime/decide/policy-state.ts';
import { startSharedState, type SharedState } from '../../runtime/decide/shared-state.ts';
import { openRedisLink, type RedisLink } from '../../runtime/schedule/index.ts';
import type { Service } from '../global-setup.ts';
import { startRedis } from './fixtures/redis.ts';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface Node {
  state: PolicyState;
  paused: Set<string>;
  warmupSent: Map<string, number>;
  shared: SharedState;
  link: RedisLink;
}

let now = Date.now();
const clock = () => now;

async function node(redis: Service, nodeId: string): Promise<Node> {
  const link = await openRedisLink({ url: `redis://127.0.0.1:${redis.port}`, prefix: 'state-test' });
  const n = { state: createPolicyState(), paused: new Set<string>(), warmupSent: new Map<string, number>() };
  // No periodic resync and no pub/sub wake-ups matter here: each step syncs explicitly.
  const shared = startSharedState({ link, nodeId, ...n, clock, changed: () => undefined, warn: () => undefined, resyncMs: 60_000 });
  cleanups.push(async () => {
    await shared.close();
    await link.close();
  });
  return { ...n, shared, link };
}

const queue = { route: 'provider:yahoo', source: 'ip1' };
const backoff = (minutes: number, trigger?: { count: number; withinSeconds: number }): Reaction => ({
  category: 'policy-related',
  disposition: 'throttle',
  actions: [{ type: 'backoff', durationSeconds: minutes * 60, overrides: { messageRate: [{ count: 600, perSeconds: 3600, scope: 'destination/source' }] } }],
  rule: { file: 'y.policy', line: 3 },
  ...(trigger ? { trigger: { ...trigger, id: 7 } } : {}),
});

const syncAll = async (nodes: Node[]) => {
  for (const n of nodes) await n.shared.sync();
  for (const n of nodes) await n.shared.sync();
};

describe('shared reaction state', () => {
  it('counts `when 3 in 10m` over every node, and the backoff it starts holds on all of them', async () => {
    const redis = await startRedis();
    cleanups.push(() => redis.stop());
    const nodes = [await node(redis, 'a'), await node(redis, 'b'), await node(redis, 'c')];
    const rule = backoff(30, { count: 3, withinSeconds: 600 });
    expect(applyReaction(nodes[0]!.state, queue, rule, '421 a', now).fired).toBe(false);
    await syncAll(nodes);
    now += 1000;
    expect(applyReaction(nodes[1]!.state, queue, rule, '421 b', now).fired).toBe(false);
    await syncAll(nodes);
    now += 1000;
    // The third match anywhere fires: node c saw only this one itself.
    expect(applyReaction(nodes[2]!.state, queue, rule, '421 c', now).fired).toBe(true);
    await syncAll(nodes);
    for (const n of nodes) expect(activeBackoff(n.state, queue, now)?.until).toBe(now + 30 * 60_000);
    // Firing cleared the count everywhere: one more match on a is the first of a new count.
    expect(nodes[0]!.state.triggerHits.size).toBe(0);
    expect(applyReaction(nodes[0]!.state, queue, rule, '421 a', now).fired).toBe(false);
  });

  it('keeps the later end of two backoffs started at once; pauses and resumes reach every node; warmup counts add up', async () => {
    const redis = await startRedis();
    cleanups.push(() => redis.stop());
    const [a, b] = [await node(redis, 'a'), await node(redis, 'b')];
    applyReaction(a.state, queue, backoff(10), '421 a', now);
    applyReaction(b.state, queue, backoff(40), '421 b', now);
    a.paused.add('queue:provider:yahoo');
    a.warmupSent.set('ip2|provider:yahoo|20000', 5);
    b.warmupSent.set('ip2|provider:yahoo|20000', 7);
    await syncAll([a, b]);
    for (const n of [a, b]) {
      expect(activeBackoff(n.state, queue, now)?.until).toBe(now + 40 * 60_000);
      expect(n.paused.has('queue:provider:yahoo')).toBe(true);
      expect(n.warmupSent.get('ip2|provider:yahoo|20000')).toBe(12);
    }
    b.paused.delete('queue:provider:yahoo'); // an operator's resume on b
    b.warmupSent.set('ip2|provider:yahoo|20000', 13); // b sent one more
    await syncAll([a, b]);
    expect(a.paused.has('queue:provider:yahoo')).toBe(false);
    expect(a.warmupSent.get('ip2|provider:yahoo|20000')).toBe(13);
  });

  it('a Redis restarted empty is written again from the nodes, not taken as removals', async () => {
    const redis = await startRedis();
    const [a, b] = [await node(redis, 'a'), await node(redis, 'b')];
    applyReaction(a.state, queue, backoff(30), '421 a', now);
    await syncAll([a, b]);
    expect(activeBackoff(b.state, queue, now)).toBeDefined();
    const port = redis.port;
    await redis.stop();
    const again = await startRedis(port);
    cleanups.push(() => again.stop());
    const end = Date.now() + 5000;
    while (!(await a.shared.sync()) && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
    while (!(await b.shared.sync()) && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
    await syncAll([a, b]);
    expect(activeBackoff(a.state, queue, now)).toBeDefined();
    expect(activeBackoff(b.state, queue, now)).toBeDefined();
  });

  it('a local change that leaves the shared fields as they were reads nothing from Redis; one that changes them reaches the others', async () => {
    const redis = await startRedis();
    cleanups.push(() => redis.stop());
    const [a, b] = [await node(redis, 'a'), await node(redis, 'b')];
    await syncAll([a, b]);
    const reads = async () => Number(/cmdstat_hgetall:calls=(\d+)/.exec(await (a.link.client as Redis).info('commandstats'))?.[1] ?? 0);
    const before = await reads();
    // What the judge does after every reply: a delivered message changes no shared field.
    for (let i = 0; i < 10; i++) {
      a.shared.localChange();
      await new Promise((r) => setTimeout(r, 30));
    }
    expect(await reads()).toBe(before);
    applyReaction(a.state, queue, backoff(30), '421 a', now);
    a.shared.localChange();
    const end = Date.now() + 3000;
    while (!activeBackoff(b.state, queue, now) && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
    expect(activeBackoff(b.state, queue, now)).toBeDefined(); // pushed by a, pulled by b on a's message
  });
});
