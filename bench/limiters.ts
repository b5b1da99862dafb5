/**
 * `npx tsx bench/limiters.ts`: how many admissions a second the in-memory limiter store
 * answers on a typical path: 5 rate limiters (global, tenant, route, route × source
 * message rates and a route data rate) and 3 concurrency limiters (global, source,
 * route × source connections), a tryAcquire and its release per admission.
 *
 * Rows:
 * - sync: `tryAcquireSync` + `releaseSync`, as a scheduler holding the memory store would.
 * - async: `await tryAcquire` + `await release`, through the `LimiterStore` interface.
 * - refused: a request that a full rate limiter refuses (the scheduler's busy-queue case).
 * - messageRequests: the message limits of the same path (4 message rates, 1 data rate,
 *   no connections) from a `messageRequests` function kept per queue, as the scheduler
 *   should; and the same with the function (so the keys) made afresh for every message,
 *   to show what keeping it saves.
 * Each figure is the median of 5 runs of about 0.5 s after 0.3 s of warm-up, on the real clock.
 *
 *   npx tsx bench/limiters.ts           a table
 *   npx tsx bench/limiters.ts --json    the same figures as JSON
 */
import { cpus } from 'node:os';
import { limiterKey, messageRequests, MemoryLimiterStore, type AcquireRequest, type EffectiveSettings } from '../runtime/index.ts';

const asJson = process.argv.includes('--json');
const clock = () => performance.timeOrigin + performance.now();
const path = { route: 'provider:yahoo', source: 'ip1', tenant: 'bigcorp' };
// Limits high enough that the admitted path is measured, not the refusals.
const HUGE = 1e15;

const typical: AcquireRequest = {
  rates: [
    { key: limiterKey('message-rate', 'global', path), count: HUGE, perSeconds: 1, cost: 1 },
    { key: limiterKey('message-rate', 'tenant', path), count: HUGE, perSeconds: 86400, cost: 1 },
    { key: limiterKey('message-rate', 'destination', path), count: HUGE, perSeconds: 1, cost: 1 },
    { key: limiterKey('message-rate', 'destination/source', path), count: HUGE, perSeconds: 3600, cost: 1 },
    { key: limiterKey('data-rate', 'destination', path), count: HUGE, perSeconds: 60, cost: 40_000 },
  ],
  concurrency: [
    { key: limiterKey('connections', 'global', path), max: 1000 },
    { key: limiterKey('connections', 'source', path), max: 100 },
    { key: limiterKey('connections', 'destination/source', path), max: 10 },
  ],
};

const refused: AcquireRequest = {
  rates: [...typical.rates.slice(0, 4), { key: 'message-rate:destination/source:exhausted|ip1', count: 1, perSeconds: 86400, cost: 1 }],
  concurrency: typical.concurrency,
};

const settings: EffectiveSettings = {
  route: 'provider:yahoo',
  connections: [],
  connectRate: [],
  messageRate: typical.rates.slice(0, 4).map((r, i) => ({ count: r.count, perSeconds: r.perSeconds, scope: (['global', 'tenant', 'destination', 'destination/source'] as const)[i]! })),
  dataRate: [{ count: HUGE, perSeconds: 60, scope: 'destination' }],
  messagesPerConnection: 20,
  recipientsPerTransaction: null,
  tls: 'opportunistic',
  retry: 'bulk',
  retryJitter: 0,
  expireSeconds: 86400,
  source: null,
  tenant: null,
};

function fail(message: string): never {
  throw new Error(message);
}

async function measure(name: string, batch: number, run: (n: number) => void | Promise<void>): Promise<{ name: string; opsPerSecond: number; nsPerOp: number }> {
  for (const start = performance.now(); performance.now() - start < 300; ) await run(batch); // warm up (JIT)
  const rates: number[] = [];
  for (let round = 0; round < 5; round++) {
    let ops = 0;
    const start = performance.now();
    while (performance.now() - start < 500) {
      await run(batch);
      ops += batch;
    }
    rates.push(ops / ((performance.now() - start) / 1000));
  }
  rates.sort((a, b) => a - b);
  const opsPerSecond = rates[2]!;
  return { name, opsPerSecond, nsPerOp: 1e9 / opsPerSecond };
}

const store = new MemoryLimiterStore({ clock });
const forMessage = messageRequests(settings, path);
const exhaust = store.tryAcquireSync(refused);
if (!exhaust.ok) fail('setup: the refused request should pass once');
store.releaseSync(exhaust.lease);

const results = [
  await measure('sync tryAcquire + release', 10_000, (n) => {
    for (let i = 0; i < n; i++) {
      const r = store.tryAcquireSync(typical);
      if (!r.ok) fail(`refused by ${r.blockedBy}`);
      store.releaseSync(r.lease);
    }
  }),
  await measure('async tryAcquire + release', 10_000, async (n) => {
    for (let i = 0; i < n; i++) {
      const r = await store.tryAcquire(typical);
      if (!r.ok) fail(`refused by ${r.blockedBy}`);
      await store.release(r.lease);
    }
  }),
  await measure('sync refused (one rate full)', 10_000, (n) => {
    for (let i = 0; i < n; i++) if (store.tryAcquireSync(refused).ok) fail('should be refused');
  }),
  await measure('messageRequests(bytes) + sync tryAcquire', 10_000, (n) => {
    for (let i = 0; i < n; i++) {
      const r = store.tryAcquireSync(forMessage(40_000 + (i & 1023)));
      if (!r.ok) fail(`refused by ${r.blockedBy}`);
    }
  }),
  await measure('keys rebuilt each time + sync tryAcquire', 10_000, (n) => {
    for (let i = 0; i < n; i++) {
      const r = store.tryAcquireSync(messageRequests(settings, path)(40_000));
      if (!r.ok) fail(`refused by ${r.blockedBy}`);
    }
  }),
];

if (asJson) {
  process.stdout.write(JSON.stringify({ node: process.version, cpu: cpus()[0]?.model ?? 'unknown', results }, null, 2) + '\n');
} else {
  process.stdout.write(`limiter store, memory — 5 rate keys + 3 concurrency keys (node ${process.version}, ${cpus()[0]?.model ?? 'unknown cpu'})\n`);
  for (const r of results) process.stdout.write(`  ${r.name.padEnd(46)} ${Math.round(r.opsPerSecond).toLocaleString('en-US').padStart(12)} /s  ${r.nsPerOp.toFixed(0).padStart(6)} ns\n`);
}
