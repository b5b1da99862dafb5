/**
 * Issue 17 end to end: three real `petrel run` nodes share one redis-server on loopback
 * and one pool of three sources (127.0.0.2–4), delivering to real SMTP sinks.
 *
 * - `rate 3/s per source` on one provider, `global { rate 10/s; connections 9 }`: over
 *   the three nodes each source's rate and the global rate stay within 5 % of the limit
 *   (and reach 90 % of it), and the sinks never see more than 9 connections at once;
 * - a `suspend destination` triggered by a reply on one node holds on the other two
 *   within a second (their status shows it, and they send nothing there);
 * - a reload on one node goes live on all three; status on any node lists the three nodes
 *   and their versions, without skew;
 * - Redis killed mid-run and started again: every message is delivered exactly once,
 *   meanwhile each source's rate stays within the share of each node (limit ÷ 3 each), and
 *   the sinks never see more than churn.example's `connections 6` across the switch and
 *   back (a connection per message to a sink that holds each 600 ms, so the limit binds).
 */
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import nodemailer from 'nodemailer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Service } from '../global-setup.ts';
import { startSink, type Sink } from '../runtime/fixtures/sink.ts';
import { until } from '../runtime/fixtures/e2e.ts';
import { startRedis } from '../runtime/fixtures/redis.ts';
import { killAllPetrel, startPetrel, type PetrelProcess } from './petrel-process.ts';

const policy = (version: string) => `policy cluster version ${version}

global {
  rate 10/s
  connections 9
}

source s1 { address 127.0.0.2; ehlo s1.petrel.test }
source s2 { address 127.0.0.3; ehlo s2.petrel.test }
source s3 { address 127.0.0.4; ehlo s3.petrel.test }
pool all { s1, s2, s3 }
tenant shop { pool all }

provider persource {
  match domain persource.example
  rate 3/s per source
}

provider churn {
  match domain churn.example
  rate 3/s per source
  connections 6
  messages-per-connection 1
}

provider shared {
  match domain shared.example
}

provider blocky {
  match domain blocky.example
  on reply /\\[TSS04\\]/ {
    suspend destination 20s
    example "421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume or user complaints"
  }
}
`;

interface Status {
  policy: { hash: string; version: string };
  suspensions: { target: string; queue: string }[];
  cluster: { node: string; redis: string; liveNodes: number; nodes: { node: string; policy: { hash: string }; live: boolean }[]; skew: boolean };
}

let dir: string;
let redis: Service;
let sink: Sink;
let blockySink: Sink;
let churnSink: Sink;
const nodes: PetrelProcess[] = [];
/** Arrival time (ms) and source address of every delivery, by recipient. */
const arrivals = new Map<string, { at: number; from: string }[]>();
/** Connections open to both sinks at once, and the most ever. */
let open = 0;
let maxOpen = 0;
/** Every change of `open`: when, and how many were open after it. */
const timeline: { at: number; open: number }[] = [];

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'petrel-cluster-'));
  redis = await startRedis();
  const onSocket = (d: 1 | -1) => {
    open += d;
    maxOpen = Math.max(maxOpen, open);
    timeline.push({ at: Date.now(), open });
  };
  const record = (rcpt: string, remote: string) => {
    arrivals.set(rcpt, [...(arrivals.get(rcpt) ?? []), { at: Date.now(), from: remote }]);
    return undefined;
  };
  sink = await startSink({ refuse: record, onSocket });
  churnSink = await startSink({ refuse: record, onSocket, delayMs: 600 });
  blockySink = await startSink({ refuse: (rcpt) => ({ code: 421, text: '4.7.0 [TSS04] Messages from 127.0.0.2 temporarily deferred due to unexpected volume or user complaints' }) });
  writeFileSync(path.join(dir, 'mx.json'), JSON.stringify({ 'blocky.example': `127.0.0.1:${blockySink.port}`, 'churn.example': `127.0.0.1:${churnSink.port}`, '*': `127.0.0.1:${sink.port}` }));
  for (const n of [1, 2, 3]) {
    const own = path.join(dir, `n${n}`);
    mkdirSync(path.join(own, 'policies'), { recursive: true });
    writeFileSync(path.join(own, 'policies', 'cluster.policy'), policy('1'));
    writeFileSync(path.join(own, 'config.json'), JSON.stringify({ redis: { node: `n${n}` } }));
  }
  // One after the other: the first makes its version the cluster's, the others join it.
  for (const n of [1, 2, 3]) {
    const own = path.join(dir, `n${n}`);
    nodes.push(await startPetrel(['--config', path.join(own, 'config.json'), '--redis', `redis://127.0.0.1:${redis.port}`, '--policies', path.join(own, 'policies'), '--no-watch', '--spool', path.join(own, 'spool'), '--acct', path.join(own, 'acct'), '--artifact', path.join(own, 'artifact'), '--mx-override', path.join(dir, 'mx.json'), '--grace', '2']));
  }
  await until('three live nodes', async () => ((await nodes[0]!.get<Status>('/api/v1/status')).cluster.liveNodes === 3 ? true : undefined), 15_000);
}, 120_000);

afterAll(async () => {
  for (const n of nodes) await n.stop(10_000);
  await killAllPetrel();
  await sink?.close();
  await blockySink?.close();
  await churnSink?.close();
  await redis?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Submits `count` messages to `domain` through each node (one recipient each); returns the recipients. */
async function submit(prefix: string, domain: string, count: number, through = nodes): Promise<string[]> {
  const rcpts: string[] = [];
  await Promise.all(
    through.map(async (node, i) => {
      const transport = nodemailer.createTransport({ host: '127.0.0.1', port: node.smtp, secure: false, ignoreTLS: true, pool: true, maxConnections: 2 });
      const mine = Array.from({ length: count }, (_, k) => `${prefix}-n${i + 1}-${k}@${domain}`);
      rcpts.push(...mine);
      await Promise.all(mine.map((to) => transport.sendMail({ from: 'news@shop.example', to, subject: to, text: 'x', headers: { 'X-Petrel-Tenant': 'shop' } })));
      transport.close();
    }),
  );
  return rcpts;
}

const delivered = (rcpts: string[]) => () => (rcpts.every((r) => arrivals.has(r)) ? true : undefined);

/**
 * Deliveries per second after the burst: the slope of a least-squares line through
 * (arrival time, number) of those after the `burst`th. GCRA spaces the admissions
 * exactly; the sink sees each later by as long as its connection and SMTP dialogue took
 * on a loaded machine, noise that a line through all of them averages out and two end
 * points do not (first to last, this measured up to 3.16/s under `rate 3/s`).
 */
function steadyRate(times: number[], burst: number): number {
  const seconds = [...times].sort((a, b) => a - b).slice(burst).map((t) => t / 1000);
  const meanT = seconds.reduce((a, b) => a + b, 0) / seconds.length;
  const meanN = (seconds.length - 1) / 2;
  let covariance = 0;
  let variance = 0;
  seconds.forEach((t, n) => {
    covariance += (t - meanT) * (n - meanN);
    variance += (t - meanT) ** 2;
  });
  return covariance / variance;
}

describe('three petrel run nodes on one Redis', () => {
  it('keep each source within 5 % of `rate 3/s per source` together, from every node, and each reaches 90 % of it', async () => {
    const rcpts = await submit('ps', 'persource.example', 24);
    await until('72 deliveries', delivered(rcpts), 60_000);
    // Every source carries a stream: `connections 9` over three nodes gives each node 3
    // slots, one per source, so its round-robin never waits for a slot held by another
    // source's session. (With `connections 6`, 2 slots a node, the sessions stayed with
    // the sources they were opened from: six runs split the 72 as 33/28/11, 36/36/0 three
    // times, 33/20/19 and 32/30/10; only the busiest source reached the rate.)
    for (const address of ['127.0.0.2', '127.0.0.3', '127.0.0.4']) {
      const sent = rcpts.flatMap((r) => arrivals.get(r)!).filter((a) => a.from === address);
      expect(sent.length, address).toBeGreaterThanOrEqual(15);
      const rate = steadyRate(sent.map((a) => a.at), 3); // GCRA burst of 3/s: 3
      expect(rate, address).toBeLessThanOrEqual(3 * 1.05);
      // Seven runs at load 6–12 on 2 cores: 23 to 25 messages a source; by this line each
      // source at 2.84 to 3.02/s in the last three (the busiest at 2.5–3.1/s, the others
      // less or nothing, before each node kept to its connection share); 10 % below leaves
      // room for a heavier load.
      expect(rate, address).toBeGreaterThanOrEqual(3 * 0.9);
    }
    expect(maxOpen).toBeLessThanOrEqual(9);
  }, 90_000);

  it('keep the global rate within 5 % of `global { rate 10/s }`, with never more than 9 connections', async () => {
    const rcpts = await submit('gl', 'shared.example', 40);
    await until('120 deliveries', delivered(rcpts), 60_000);
    const times = rcpts.map((r) => arrivals.get(r)![0]!.at);
    const rate = steadyRate(times, 10);
    expect(rate).toBeLessThanOrEqual(10 * 1.05);
    // Reaching the limit takes three nodes with work and free connection slots at every
    // moment: three runs at load 6–8 on 2 cores gave 9.99 to 10.01/s by this line (7.8 to
    // 10.0/s before each node kept to its share: a node whose slots were all held in Redis
    // polled every 100–200 ms; now its own full share wakes it when its own session
    // closes). 10 % below the limit leaves room for a heavier load.
    expect(rate).toBeGreaterThanOrEqual(10 * 0.9);
    expect(new Set(rcpts.map((r) => arrivals.get(r)![0]!.from)).size).toBeGreaterThan(1);
    expect(maxOpen).toBeLessThanOrEqual(9);
  }, 90_000);

  it('a suspension triggered on one node holds on the other two within a second', async () => {
    await submit('trigger', 'blocky.example', 1, [nodes[0]!]);
    const seen = await until('the suspension on node 1', async () => ((await nodes[0]!.get<Status>('/api/v1/status')).suspensions.some((s) => s.target === 'destination') ? Date.now() : undefined), 30_000);
    const heldOn = await Promise.all(
      [nodes[1]!, nodes[2]!].map((n) => until('the suspension on another node', async () => ((await n.get<Status>('/api/v1/status')).suspensions.some((s) => s.target === 'destination' && s.queue === 'provider:blocky') ? Date.now() : undefined), 5_000)),
    );
    for (const at of heldOn) expect(at - seen).toBeLessThan(1000 + 250); // a second, plus the status poll's own time
    // And they act on it: mail to the suspended destination waits on every node.
    const before = blockySink.connections;
    await submit('held', 'blocky.example', 2, [nodes[1]!, nodes[2]!]);
    await new Promise((resolve) => setTimeout(resolve, 2000));
    expect(blockySink.connections).toBe(before);
  }, 60_000);

  it('a reload on one node goes live on all three; every node shows the three and no skew', async () => {
    const before = (await nodes[0]!.get<Status>('/api/v1/status')).policy.hash;
    writeFileSync(path.join(dir, 'n1', 'policies', 'cluster.policy'), policy('2'));
    const res = await fetch(`http://127.0.0.1:${nodes[0]!.http}/api/v1/policy/reload`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    const outcome = (await res.json()) as { result: string; entry: { hash: string } };
    expect(outcome.result).toBe('live');
    const hash = outcome.entry.hash;
    expect(hash).not.toBe(before);
    const liveAt = Date.now();
    for (const n of nodes) await until('the new version everywhere', async () => ((await n.get<Status>('/api/v1/status')).policy.hash === hash ? true : undefined), 10_000);
    expect(Date.now() - liveAt).toBeLessThan(5000);
    for (const n of nodes) {
      const { cluster } = await until('fresh heartbeats', async () => {
        const s = await n.get<Status>('/api/v1/status');
        return s.cluster.nodes.every((m) => m.policy.hash === hash) ? s : undefined;
      }, 5_000);
      expect(cluster.nodes.map((m) => m.node)).toEqual(['n1', 'n2', 'n3']);
      expect(cluster.skew).toBe(false);
      expect(cluster.redis).toBe('up');
    }
  }, 60_000);

  it('Redis killed mid-run and restarted: every message delivered once, each node on its share meanwhile, never more than its 6 connections', async () => {
    const rcpts = await submit('rk', 'churn.example', 30);
    const startedAt = Date.now();
    await new Promise((resolve) => setTimeout(resolve, 2000));
    const port = redis.port;
    await redis.stop();
    const downAt = Date.now();
    await new Promise((resolve) => setTimeout(resolve, 6000));
    const upAt = Date.now();
    redis = await startRedis(port);
    await until('90 deliveries', delivered(rcpts), 90_000);
    for (const r of rcpts) expect(arrivals.get(r)!.length, r).toBe(1);
    // While Redis was down: each node sends from each source at 3/s ÷ 3 nodes, so 3/s over the
    // three (plus one message of burst per node); the first 500 ms allow for the switch.
    let duringAll = 0;
    for (const address of ['127.0.0.2', '127.0.0.3', '127.0.0.4']) {
      const during = rcpts.map((r) => arrivals.get(r)![0]!).filter((a) => a.from === address && a.at >= downAt + 500 && a.at < upAt);
      expect(during.length, address).toBeLessThanOrEqual(3 + Math.ceil(((upAt - downAt - 500) / 1000) * 3 * 1.05));
      duringAll += during.length;
    }
    expect(duringAll).toBeGreaterThan(0); // delivery went on without Redis
    // Connections, measured at the sinks (only churn.example has traffic now): a new one for
    // every message (its sink holds each 600 ms), so its `connections 6` binds and slots
    // change hands across the switch to each node's share and back. Before each node kept
    // to its share with Redis up, a node that held 5 of the 6 slots when Redis died kept
    // them while the others opened theirs: 7 to 9 (under `global { connections 6 }`).
    const opened = (from: number, to: number) => timeline.filter((e, i) => e.at >= from && e.at < to && e.open > (timeline[i - 1]?.open ?? 0)).length;
    expect(opened(downAt, upAt)).toBeGreaterThan(0);
    expect(opened(upAt, upAt + 3000)).toBeGreaterThan(0);
    const peak = Math.max(...timeline.filter((e) => e.at >= startedAt).map((e) => e.open));
    expect(peak).toBeLessThanOrEqual(6);
    const back = await until('the cluster back', async () => {
      const s = await nodes[2]!.get<Status>('/api/v1/status');
      return s.cluster.redis === 'up' && s.cluster.liveNodes === 3 ? s : undefined;
    }, 15_000);
    expect(back.cluster.nodes).toHaveLength(3);
  }, 150_000);
});
