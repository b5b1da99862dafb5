/**
 * `npm run bench:simulate`: `petrel simulate` on the shipped policies (and stdlib) with a
 * campaign of a million messages to the big providers, injected over one simulated day,
 * from a pool of 40 sources (written here as a policy file of its own: the shipped
 * policies define none). Prints the wall time, the simulated time and their ratio, and the
 * outcome counts; writes the HTML report next to the JSON one in a temp directory.
 * The target (issue 15): ≤ 60 s of wall time on the project's machine.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { main } from '../cli/main.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SOURCES = 40;
const MESSAGES = Number(process.env.BENCH_MESSAGES ?? 1_000_000);
/** Share of the campaign per shipped model: the big providers. */
const MIX: Record<string, number> = { google: 0.4, microsoft: 0.25, yahoo: 0.2, apple: 0.1, comcast: 0.05 };

const dir = mkdtempSync(path.join(tmpdir(), 'petrel-bench-simulate-'));
try {
  const sources = Array.from({ length: SOURCES }, (_, i) => `source ip${i + 1} {\n  address 198.51.100.${i + 1}\n  ehlo mta${i + 1}.bench.example\n}\n`).join('\n');
  writeFileSync(path.join(dir, 'senders.policy'), `policy bench-senders version 1\n\n${sources}\npool bulk {\n  ${Array.from({ length: SOURCES }, (_, i) => `ip${i + 1}`).join(', ')}\n}\n\ntenant shop {\n  pool bulk\n}\n`);
  const streams = Object.entries(MIX).map(([provider, share]) => ({ name: provider, provider, count: Math.round(MESSAGES * share), tenant: 'shop', overSeconds: 86_400 }));
  writeFileSync(path.join(dir, 'campaign.json'), JSON.stringify({ format: 1, name: `bench: ${MESSAGES} messages over a day`, streams }, null, 2));
  const out = path.join(dir, 'report.json');
  const err: string[] = [];
  /** The machine's load (1-minute average): on the shared machine it decides the wall time, not the CPU time. */
  const load = () => loadavg()[0]!.toFixed(1);
  const loadBefore = load();
  const started = performance.now();
  const cpuStart = process.cpuUsage();
  const code = await main(['simulate', 'policies', 'stdlib', path.join(dir, 'senders.policy'), '--campaign', path.join(dir, 'campaign.json'), '--format', 'json', '--out', out], { out: (t) => process.stdout.write(t), err: (t) => err.push(t), cwd: ROOT });
  const wall = (performance.now() - started) / 1000;
  const cpuUsed = process.cpuUsage(cpuStart);
  const cpu = (cpuUsed.user + cpuUsed.system) / 1e6;
  if (code !== 0) throw new Error(`petrel simulate exited ${code}: ${err.join('')}`);
  const r = JSON.parse(readFileSync(out, 'utf8'));
  console.log(`bench:simulate  ${r.messages} messages (${r.recipients} recipients) to ${Object.keys(MIX).join(', ')} from ${SOURCES} sources, injected over 24 h`);
  console.log(`  outcome       ${r.totals.delivered} delivered, ${r.totals.bounced} bounced, ${r.open} open; ${r.totals.deferred} deferrals (${r.totals.blocked} judged blocks); ${r.eventCount} backoffs and suspensions; finished: ${r.finished}`);
  for (const p of r.providers) console.log(`  ${p.provider.padEnd(12)}  ${p.delivered} delivered, ${p.deferred} deferred, ${p.bounced} bounced; done in ${p.timeToCompleteSeconds === null ? 'not finished' : `${(p.timeToCompleteSeconds / 3600).toFixed(1)} h`}; peak ${Math.round(p.peakPerHour)}/h`);
  console.log(`  simulated     ${(r.simulatedSeconds / 3600).toFixed(1)} h in ${r.wallSeconds.toFixed(1)} s of simulation (${wall.toFixed(1)} s with compiling and writing the report), ${r.timers} virtual timers`);
  console.log(`  cpu           ${cpu.toFixed(1)} s of CPU for the whole command (a loaded machine stretches wall time, not this)`);
  console.log(`  ratio         ${Math.round(r.ratio)}× real time (simulated / wall); ${Math.round(r.simulatedSeconds / cpu)}× per CPU second; load average ${loadBefore} before, ${load()} after (2 cores)`);
  console.log(`  target        ≤ 60 s wall: ${wall <= 60 ? 'met' : 'MISSED'}`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
