/**
 * `npm run bench:reload` (`npx tsx bench/reload.ts`): how fast a pushed policy goes live,
 * and what reloading costs delivery.
 *
 * Setup: a bare git repository in a temporary directory holding the shipped policies and
 * one provider of the benchmark's own, with the hook `petrel hook install` writes, the real `petrel run --policy-git … --poll 0` following it, a loopback
 * smtp-server sink as every domain's MX (test/runtime/fixtures/sink.ts).
 *
 * 1. Push → live: 20 pushes, one after another, each changing the provider's rate. Timed
 *    from `git push` returning to GET /api/v1/policy showing the pushed commit as current
 *    (polled every 5 ms). The runtime's delivery code holds no policy of its own (workers
 *    do I/O only; every decision is made on the main thread), so "live in every worker" is
 *    the moment `swapPolicy` ran, which is what the API reports. p50 and p99 (of 20, the
 *    p99 is the maximum).
 * 2. Throughput: N messages (default 5,000; 1 KB; one recipient each) submitted by 10
 *    nodemailer sessions and delivered to the sink, once with no reloads and once with a
 *    push every 500 ms for as long as delivery runs. Delivered/s end to end for both, and
 *    the ratio.
 *
 *   npx tsx bench/reload.ts [--messages N] [--pushes K] [--json]
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import nodemailer from 'nodemailer';
import { ROOT } from '../test/helpers.ts';
import { killAllPetrel, startPetrel, type PetrelProcess } from '../test/cli/petrel-process.ts';
import { policyRepo, ratePolicy } from '../test/cli/policy-repo.ts';
import { until } from '../test/runtime/fixtures/e2e.ts';
import { startSink } from '../test/runtime/fixtures/sink.ts';

const argv = process.argv.slice(2);
const flag = (name: string, fallback: number) => {
  const i = argv.indexOf(name);
  const n = i >= 0 ? Number(argv[i + 1]) : fallback;
  if (!Number.isInteger(n) || n <= 0) {
    process.stderr.write('usage: npx tsx bench/reload.ts [--messages N] [--pushes K] [--json]\n');
    process.exit(2);
  }
  return n;
};
const N = flag('--messages', 5000);
const PUSHES = flag('--pushes', 20);
const asJson = argv.includes('--json');
/** The benchmark's own provider (the shipped default policy's tests use example.com). */
const DOMAIN = 'reload.example';

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;

async function main(): Promise<void> {
  spawnSync(process.execPath, [path.join(ROOT, 'scripts', 'build.mjs')], { stdio: 'inherit' });
  const dir = mkdtempSync(path.join(tmpdir(), 'petrel-bench-reload-'));
  const received = new Set<string>();
  const sink = await startSink({
    refuse: (rcpt) => {
      received.add(rcpt);
      return undefined;
    },
  });
  let petrel: PetrelProcess | undefined;
  try {
    writeFileSync(path.join(dir, 'mx.json'), JSON.stringify({ '*': `127.0.0.1:${sink.port}` }));
    let serial = 0;
    const nextPolicy = () => ratePolicy(++serial % 2 ? '4000/s' : '5000/s', `push ${serial}`, { withDefault: false, domain: DOMAIN });
    // The shipped policies (25 files, ~300 test blocks) plus one of ours: a push builds and
    // tests a realistic set.
    const shipped = Object.fromEntries(readdirSync(path.join(ROOT, 'policies')).filter((f) => f.endsWith('.policy')).map((f) => [f, readFileSync(path.join(ROOT, 'policies', f), 'utf8')]));
    const repo = policyRepo(dir, { ...shipped, 'example.policy': nextPolicy() });
    petrel = await startPetrel(['--policy-git', repo.bare, '--poll', '0', '--keep', '5', '--artifact', path.join(dir, 'artifact'), '--spool', path.join(dir, 'spool'), '--acct', path.join(dir, 'acct'), '--mx-override', path.join(dir, 'mx.json')]);
    const p = petrel;
    const hook = spawnSync(process.execPath, [path.join(ROOT, 'bin', 'petrel.js'), 'hook', 'install', repo.bare, '--notify', `http://127.0.0.1:${p.http}`], { encoding: 'utf8' });
    if (hook.status !== 0) throw new Error(`hook install failed: ${hook.stderr}`);

    const liveCommit = async () => (await p.get<{ current: { commit?: string } }>('/api/v1/policy')).current.commit;
    const pushAndWait = async () => {
      const { commit, pushedAt } = repo.push({ 'example.policy': nextPolicy() }, `push ${serial}`);
      await until('the pushed commit to go live', async () => ((await liveCommit()) === commit ? true : undefined), 30_000);
      return Date.now() - pushedAt;
    };

    // 1. push → live
    const latencies: number[] = [];
    for (let i = 0; i < PUSHES; i++) latencies.push(await pushAndWait());
    latencies.sort((a, b) => a - b);

    // 2. throughput with and without reloads
    let batch = 0;
    const deliver = async (withReloads: boolean) => {
      const prefix = `b${++batch}-`;
      const transport = nodemailer.createTransport({ host: '127.0.0.1', port: p.smtp, secure: false, ignoreTLS: true, pool: true, maxConnections: 10, maxMessages: Infinity });
      const started = Date.now();
      let done = false;
      let reloads = 0;
      const reloader = (async () => {
        while (withReloads && !done) {
          await pushAndWait();
          reloads++;
          await new Promise((r) => setTimeout(r, 500));
        }
      })();
      await Promise.all(Array.from({ length: N }, (_, n) => transport.sendMail({ from: 'news@shop.example', to: `${prefix}${n}@${DOMAIN}`, subject: `m${n}`, text: 'x'.repeat(1024) })));
      transport.close();
      await until('every delivery', () => (Array.from({ length: N }, (_, n) => `${prefix}${n}@${DOMAIN}`).every((r) => received.has(r)) ? true : undefined), 600_000);
      const seconds = (Date.now() - started) / 1000;
      done = true;
      await reloader;
      return { perSecond: N / seconds, reloads };
    };
    const quiet = await deliver(false);
    const busy = await deliver(true);

    const figures = {
      pushToLive: { pushes: PUSHES, p50Ms: percentile(latencies, 50), p99Ms: percentile(latencies, 99), minMs: latencies[0]!, maxMs: latencies.at(-1)! },
      throughput: { messages: N, noReloadsPerSecond: Math.round(quiet.perSecond), withReloadsPerSecond: Math.round(busy.perSecond), reloadsDuringRun: busy.reloads, ratio: Number((busy.perSecond / quiet.perSecond).toFixed(2)) },
    };
    if (asJson) process.stdout.write(JSON.stringify(figures, null, 2) + '\n');
    else {
      const t = figures.throughput;
      const l = figures.pushToLive;
      process.stdout.write(
        [
          `push → live over ${l.pushes} pushes: p50 ${l.p50Ms} ms, p99 ${l.p99Ms} ms (min ${l.minMs}, max ${l.maxMs})`,
          `delivery of ${t.messages} messages: ${t.noReloadsPerSecond}/s without reloads, ${t.withReloadsPerSecond}/s with ${t.reloadsDuringRun} reloads during the run (×${t.ratio})`,
          '',
        ].join('\n'),
      );
    }
  } finally {
    if (petrel) await petrel.stop();
    await killAllPetrel();
    await sink.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
