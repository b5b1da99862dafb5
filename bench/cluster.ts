/**
 * `npm run bench:cluster`: what sharing limits through Redis costs (issue 17).
 *
 * 1. Admissions per second through the Redis limiter store (schedule/limiters-redis.ts),
 *    a request of three rate limiters and one connection limiter (high limits: every one
 *    is admitted, so each is one full EVALSHA that writes), for 3 s:
 *    - one node, one admission at a time: the latency of one admission (p50, p99) against
 *      the in-process MemoryLimiterStore (the added latency per admission);
 *    - one node, 64 in flight; three nodes (three connections, each its own store, in this
 *      process), 64 in flight each: admissions per second in all.
 * 2. End to end: N messages (BENCH_MESSAGES, 600) through one `petrel run` node, one node
 *    on Redis (what Redis costs one node), three nodes each on its own, and three nodes
 *    sharing one Redis (timed once every node sees the other two), each to the same smtp-server sink, under a policy whose limits do not
 *    bind (connections BENCH_CONNECTIONS, 20, no rate): messages per second, submission to
 *    the last delivery. The three set-ups run in turn BENCH_ROUNDS times (3) and the
 *    medians are compared, since a shared machine's load moves between runs; with the
 *    Redis commands each delivered message cost.
 *
 * Everything on loopback, on this machine's cores (the nodes compete for them as well).
 * BENCH_END_TO_END_ONLY=1 skips part 1.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import nodemailer from 'nodemailer';
import { MemoryLimiterStore, openRedisLink, RedisLimiterStore, type AcquireRequest, type LimiterStore } from '../runtime/schedule/index.ts';
import { killAllPetrel, startPetrel, type PetrelProcess } from '../test/cli/petrel-process.ts';
import { startRedis } from '../test/runtime/fixtures/redis.ts';
import { startSink } from '../test/runtime/fixtures/sink.ts';

const SECONDS = 3;
const MESSAGES = Number(process.env.BENCH_MESSAGES ?? 600);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

const request: AcquireRequest = {
  rates: [
    { key: 'message-rate:global', count: 1e9, perSeconds: 1, cost: 1 },
    { key: 'message-rate:destination:provider%3Agmail', count: 1e9, perSeconds: 1, cost: 1 },
    { key: 'message-rate:destination/source:provider%3Agmail|ip1', count: 1e9, perSeconds: 1, cost: 1 },
  ],
  concurrency: [{ key: 'connections:global', max: 1e9 }],
};

/** One admission (and its release) at a time for SECONDS: latencies in ms, sorted. */
async function latencies(store: LimiterStore): Promise<number[]> {
  const out: number[] = [];
  const end = performance.now() + SECONDS * 1000;
  while (performance.now() < end) {
    const t = performance.now();
    const got = await store.tryAcquire(request);
    out.push(performance.now() - t);
    if (got.ok) await store.release(got.lease);
  }
  return out.sort((a, b) => a - b);
}

/** `inFlight` admissions at a time per store, all stores at once, for SECONDS: admissions per second in all. */
async function throughput(stores: LimiterStore[], inFlight: number): Promise<number> {
  let admitted = 0;
  const end = performance.now() + SECONDS * 1000;
  const loop = async (store: LimiterStore) => {
    while (performance.now() < end) {
      const got = await store.tryAcquire(request);
      if (got.ok) {
        admitted++;
        void store.release(got.lease);
      }
    }
  };
  await Promise.all(stores.flatMap((s) => Array.from({ length: inFlight }, () => loop(s))));
  return admitted / SECONDS;
}

const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;
const ms = (n: number) => `${n.toFixed(3)} ms`;

async function limiterFigures(redisPort: number): Promise<void> {
  const links = await Promise.all([1, 2, 3].map(() => openRedisLink({ url: `redis://127.0.0.1:${redisPort}`, prefix: 'bench', timeoutMs: 1000 })));
  const stores = links.map((link, i) => new RedisLimiterStore({ link, nodeId: `n${i + 1}`, liveNodes: () => 3, clock: () => performance.now() }));
  const memory = await latencies(new MemoryLimiterStore({ clock: () => performance.now() }));
  const redis = await latencies(stores[0]!);
  console.log(`admission latency, one at a time: memory p50 ${ms(pct(memory, 0.5))} p99 ${ms(pct(memory, 0.99))}; redis p50 ${ms(pct(redis, 0.5))} p99 ${ms(pct(redis, 0.99))}; added p50 ${ms(pct(redis, 0.5) - pct(memory, 0.5))}`);
  console.log(`admissions/s through redis, one node, 64 in flight: ${(await throughput([stores[0]!], 64)).toFixed(0)}`);
  console.log(`admissions/s through redis, three nodes, 64 in flight each: ${(await throughput(stores, 64)).toFixed(0)}`);
  for (const s of stores) await s.close();
  await Promise.all(links.map((l) => l.close()));
}

const POLICY = `policy bench version 1

default {
  connections ${Number(process.env.BENCH_CONNECTIONS ?? 20)}
  messages-per-connection 1000
}
`;

/**
 * Messages per second through `count` nodes (MESSAGES in all, split evenly), submission to
 * the last delivery; the nodes share limits through Redis when `redisPort` is given.
 */
async function endToEnd(dir: string, redisPort: number | undefined, count: number): Promise<number> {
  let delivered = 0;
  const sink = await startSink({ refuse: () => void delivered++ });
  writeFileSync(path.join(dir, 'mx.json'), JSON.stringify({ '*': `127.0.0.1:${sink.port}` }));
  const nodes: PetrelProcess[] = [];
  try {
    for (let n = 0; n < count; n++) {
      const own = path.join(dir, `${count}-${redisPort ?? 'alone'}-${n}`);
      mkdirSync(path.join(own, 'policies'), { recursive: true });
      writeFileSync(path.join(own, 'policies', 'bench.policy'), POLICY);
      const shared = redisPort !== undefined ? ['--redis', `redis://127.0.0.1:${redisPort}`] : [];
      nodes.push(await startPetrel([...shared, '--policies', path.join(own, 'policies'), '--no-watch', '--spool', path.join(own, 'spool'), '--acct', path.join(own, 'acct'), '--artifact', path.join(own, 'artifact'), '--mx-override', path.join(dir, 'mx.json')]));
    }
    // Timed from a formed cluster: a node counts the others only once it has heard from
    // them (a heartbeat a second), and until then takes a larger share of the connections.
    if (redisPort !== undefined) await clusterFormed(nodes);
    const started = performance.now();
    await Promise.all(
      nodes.map(async (node, i) => {
        const transport = nodemailer.createTransport({ host: '127.0.0.1', port: node.smtp, secure: false, ignoreTLS: true, pool: true, maxConnections: 10 });
        const mine = Math.floor(MESSAGES / count) + (i < MESSAGES % count ? 1 : 0);
        await Promise.all(Array.from({ length: mine }, (_, k) => transport.sendMail({ from: 'bench@shop.example', to: `r${i}-${k}@example.com`, subject: 'bench', text: 'x'.repeat(4000) })));
        transport.close();
      }),
    );
    const end = performance.now() + 120_000;
    while (delivered < MESSAGES && performance.now() < end) await new Promise((r) => setTimeout(r, 10));
    if (delivered < MESSAGES) throw new Error(`only ${delivered} of ${MESSAGES} delivered within 120 s`);
    return MESSAGES / ((performance.now() - started) / 1000);
  } finally {
    for (const n of nodes) await n.stop(10_000);
    await sink.close();
  }
}

/** Waits (up to 15 s) until every node counts all of them as live. */
async function clusterFormed(nodes: PetrelProcess[]): Promise<void> {
  const end = performance.now() + 15_000;
  const counts = async () => Promise.all(nodes.map(async (n) => (await n.get<{ cluster: { liveNodes: number } }>('/api/v1/status')).cluster.liveNodes));
  while ((await counts()).some((c) => c < nodes.length)) {
    if (performance.now() > end) throw new Error(`the ${nodes.length} nodes did not all see each other within 15 s`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Calls so far of every Redis command (INFO commandstats), from a connection of its own. */
async function commandCalls(port: number): Promise<Map<string, number>> {
  const link = await openRedisLink({ url: `redis://127.0.0.1:${port}`, prefix: 'bench', timeoutMs: 1000 });
  try {
    const info = await (link.client as import('ioredis').Redis).info('commandstats');
    return new Map([...info.matchAll(/^cmdstat_([\w|]+):calls=(\d+)/gm)].map((m) => [m[1]!, Number(m[2])]));
  } finally {
    await link.close();
  }
}

async function main(): Promise<void> {
  console.log(`load average at the start: ${loadavg().map((l) => l.toFixed(2)).join(' ')} (${cpus().length} cores)`);
  const redis = await startRedis();
  const dir = mkdtempSync(path.join(tmpdir(), 'petrel-bench-cluster-'));
  try {
    if (!process.env.BENCH_END_TO_END_ONLY) await limiterFigures(redis.port);
    // The three set-ups in turn, ROUNDS times: a loaded machine's load moves between runs,
    // and interleaving spreads it over all three; the medians are compared.
    const runs = { one: [] as number[], oneOnRedis: [] as number[], alone: [] as number[], three: [] as number[] };
    const commands = new Map<string, number>();
    for (let round = 0; round < ROUNDS; round++) {
      runs.one.push(await endToEnd(dir, undefined, 1));
      runs.oneOnRedis.push(await endToEnd(dir, redis.port, 1));
      runs.alone.push(await endToEnd(dir, undefined, 3));
      const before = await commandCalls(redis.port);
      runs.three.push(await endToEnd(dir, redis.port, 3));
      const after = await commandCalls(redis.port);
      for (const [name, calls] of after) commands.set(name, (commands.get(name) ?? 0) + calls - (before.get(name) ?? 0));
    }
    const perMessage = [...commands].map(([name, calls]) => [name, calls / (MESSAGES * ROUNDS)] as const).filter(([, n]) => n >= 0.01).sort((a, b) => b[1] - a[1]);
    console.log(`redis commands per message, three nodes: ${perMessage.map(([name, n]) => `${name} ${n.toFixed(2)}`).join(', ')}`);
    const one = median(runs.one);
    const figure = (name: string, all: number[]) => `${name} ${median(all).toFixed(0)} msg/s (${(median(all) / one).toFixed(2)}x; runs ${all.map((n) => n.toFixed(0)).join(', ')})`;
    console.log(`end to end, ${MESSAGES} messages of 4 KB, medians of ${ROUNDS} rounds: ${figure('one node', runs.one)}; ${figure('one node on redis', runs.oneOnRedis)}; ${figure('three nodes without redis', runs.alone)}; ${figure('three nodes on redis', runs.three)}`);
    console.log(`load average at the end: ${loadavg().map((l) => l.toFixed(2)).join(' ')} (${cpus().length} cores)`);
  } finally {
    await killAllPetrel();
    await redis.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
