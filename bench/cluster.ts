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
 * 2. End to end: N messages through three real `petrel run` nodes sharing one Redis against
 *    one node alone, each to the same smtp-server sink, under a policy whose limits do not
 *    bind (connections 20, no rate): throughput in messages per second, submission to the
 *    last delivery.
 *
 * Everything on loopback, on this machine's cores (the nodes compete for them as well).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import nodemailer from 'nodemailer';
import { MemoryLimiterStore, openRedisLink, RedisLimiterStore, type AcquireRequest, type LimiterStore } from '../runtime/schedule/index.ts';
import { killAllPetrel, startPetrel, type PetrelProcess } from '../test/cli/petrel-process.ts';
import { startRedis } from '../test/runtime/fixtures/redis.ts';
import { startSink } from '../test/runtime/fixtures/sink.ts';

const SECONDS = 3;
const MESSAGES = Number(process.env.BENCH_MESSAGES ?? 600);

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
  for (const s of stores) s.close();
  await Promise.all(links.map((l) => l.close()));
}

const POLICY = `policy bench version 1

default {
  connections 20
  messages-per-connection 1000
}
`;

/** Messages per second through `count` nodes (MESSAGES in all, split evenly), submission to the last delivery. */
async function endToEnd(dir: string, redisPort: number, count: number): Promise<number> {
  let delivered = 0;
  const sink = await startSink({ refuse: () => void delivered++ });
  writeFileSync(path.join(dir, 'mx.json'), JSON.stringify({ '*': `127.0.0.1:${sink.port}` }));
  const nodes: PetrelProcess[] = [];
  try {
    for (let n = 0; n < count; n++) {
      const own = path.join(dir, `${count}-${n}`);
      mkdirSync(path.join(own, 'policies'), { recursive: true });
      writeFileSync(path.join(own, 'policies', 'bench.policy'), POLICY);
      const shared = count > 1 ? ['--redis', `redis://127.0.0.1:${redisPort}`] : [];
      nodes.push(await startPetrel([...shared, '--policies', path.join(own, 'policies'), '--no-watch', '--spool', path.join(own, 'spool'), '--acct', path.join(own, 'acct'), '--artifact', path.join(own, 'artifact'), '--mx-override', path.join(dir, 'mx.json')]));
    }
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

async function main(): Promise<void> {
  const redis = await startRedis();
  const dir = mkdtempSync(path.join(tmpdir(), 'petrel-bench-cluster-'));
  try {
    await limiterFigures(redis.port);
    const one = await endToEnd(dir, redis.port, 1);
    const three = await endToEnd(dir, redis.port, 3);
    console.log(`end to end, ${MESSAGES} messages of 4 KB: one node ${one.toFixed(0)} msg/s; three nodes on redis ${three.toFixed(0)} msg/s (${(three / one).toFixed(2)}x)`);
  } finally {
    await killAllPetrel();
    await redis.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
