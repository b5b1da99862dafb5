/**
 * `npx tsx bench/delivery-dkim.ts` (`npm run bench:delivery-dkim`): delivery throughput
 * with DKIM signing on — the real `petrel run` signing with its `dkim` config against
 * Debian's Postfix signing through OpenDKIM as a milter — at 4 KB and 100 KB, in two
 * signing modes: RSA-2048 alone, and dual RSA-2048 + Ed25519 (RFC 8463).
 *
 * Same load as bench/delivery.ts: `smtp-source -d -s 20 -l SIZE -N` submits N messages
 * (From news@shop.example, one recipient each) over 20 sessions; the MTA relays them over
 * 20 connections to Postfix's `smtp-sink` on loopback, which dumps every message to a file
 * (`-d`) so a sample can be checked. Petrel: policy `connections 20 per source`,
 * `messages-per-connection 1000`, keys in `--config`'s `dkim` section. Postfix: a private
 * instance (`postfix -c DIR start`), relayhost = the sink, smtp concurrency 20,
 * `smtpd_milters = inet:127.0.0.1:PORT`, `milter_default_action = tempfail`; OpenDKIM in
 * the foreground (`opendkim -f -x CONF`) on a free loopback port with a KeyTable and a
 * SigningTable for shop.example, relaxed/relaxed, From/Subject/To over-signed as Petrel
 * does; for the dual mode a second OpenDKIM (Ed25519) chained as a second milter, as
 * OpenDKIM 2.11 signs with one algorithm per instance; stopped by PID.
 *
 * A run only counts when its output is signed: after each run 5 messages spread over the
 * dump are verified with mailauth against the TXT records the bench publishes (a resolver
 * override), and every expected selector must pass on each; otherwise the bench fails.
 *
 * The two MTAs run alternately within each round (Petrel, then Postfix+OpenDKIM, per size
 * and mode), for several rounds, so both see the same background load; the ratio
 * Petrel/Postfix is taken per round and given as median with min–max. Figures: delivered/s
 * end to end (submitter start to the sink's N-th message) and CPU ms per message (Petrel:
 * the node process, worker threads included; Postfix: master and every child, reaped ones
 * too, plus the opendkim process).
 *
 *   npx tsx bench/delivery-dkim.ts                    4 KB × 3,000 and 100 KB × 1,000, 3 rounds
 *   npx tsx bench/delivery-dkim.ts --messages 2000    N for every size
 *   npx tsx bench/delivery-dkim.ts --sizes 4096       only these sizes (bytes, comma-separated)
 *   npx tsx bench/delivery-dkim.ts --rounds 5         rounds (1..20)
 *   npx tsx bench/delivery-dkim.ts --modes rsa        signing modes: rsa, dual (comma-separated)
 *   npx tsx bench/delivery-dkim.ts --json             the figures as JSON
 *   npx tsx bench/delivery-dkim.ts --cpu-prof         also a V8 profile of each petrel run (its main
 *                                                     thread), in a directory the bench names
 *   npx tsx bench/delivery-dkim.ts --sign             no MTA: CPU µs per signed message — mailauth's
 *                                                     stream, the plain-message shortcut, and the
 *                                                     shortcut through the 2 signing threads
 *
 * Needs root and the postfix, opendkim and opendkim-tools packages (installed with
 * apt-get, saying so, when missing).
 */
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadDkimKeyring, signMessage, signMessageStreamed, type DkimKeyring } from '../runtime/intake/dkim.ts';
import { createDkimSigning } from '../runtime/intake/dkim-signing.ts';
import { makeKey, verifyWithMailauth, zoneOf, type TestKey, type Zone } from '../test/runtime/fixtures/dkim.ts';
import { BENCH_POLICY, benchProcesses, CAVEAT, CONNECTIONS, freePort, hostInfo, hostLine, SESSIONS, sizeName, smtpSource, startPetrelRun, startPostfix, startSmtpSink, stopChild, treeCpu, waitDelivered, waitListening, which, type SinkHandle } from './mta-bench.ts';

const argv = process.argv.slice(2);
const asJson = argv.includes('--json');
const cpuProf = argv.includes('--cpu-prof');
const signOnly = argv.includes('--sign');
const optionValue = (name: string) => {
  const i = argv.indexOf(name);
  return i >= 0 ? (argv[i + 1] ?? '') : undefined;
};
const DEFAULT_MESSAGES: Record<number, number> = { 4096: 3_000, 102_400: 1_000 };
const messagesOption = optionValue('--messages');
const SIZES = (optionValue('--sizes') ?? '4096,102400').split(',').map(Number);
const ROUNDS = Number(optionValue('--rounds') ?? 3);
const MODES = (optionValue('--modes') ?? 'rsa,dual').split(',') as Mode[];
type Mode = 'rsa' | 'dual';
const USAGE = 'usage: npx tsx bench/delivery-dkim.ts [--messages N (1..1000000)] [--sizes BYTES,... (1..10000000)] [--rounds N (1..20)] [--modes rsa,dual] [--json] [--cpu-prof] [--sign]\n';
if (argv.includes('--help')) {
  process.stdout.write(USAGE);
  process.exit(0);
}
/** Every argument is a known flag or the value after one that takes a value. */
const unknown = argv.filter((a, i) => !['--json', '--cpu-prof', '--sign', '--messages', '--sizes', '--rounds', '--modes'].includes(a) && !['--messages', '--sizes', '--rounds', '--modes'].includes(argv[i - 1] ?? ''));
if (
  unknown.length > 0 ||
  (messagesOption !== undefined && !(Number.isInteger(Number(messagesOption)) && Number(messagesOption) > 0 && Number(messagesOption) <= 1_000_000)) ||
  !SIZES.every((s) => Number.isInteger(s) && s > 0 && s <= 10_000_000) ||
  !(Number.isInteger(ROUNDS) && ROUNDS >= 1 && ROUNDS <= 20) ||
  !MODES.every((m) => m === 'rsa' || m === 'dual')
) {
  process.stderr.write(`${unknown.length ? `delivery-dkim-bench: unknown argument ${unknown[0]}\n` : ''}${USAGE}`);
  process.exit(2);
}
const messagesFor = (size: number) => (messagesOption !== undefined ? Number(messagesOption) : (DEFAULT_MESSAGES[size] ?? Math.max(500, Math.round(100_000_000 / size))));
/** Messages verified per run, spread over the sink's dump. */
const SAMPLES = 5;
const DOMAIN = 'shop.example';
/** Where `--cpu-prof` writes the petrel runs' profiles (kept after the bench). */
const profDir = cpuProf ? mkdtempSync(path.join(tmpdir(), 'petrel-dkim-prof-')) : undefined;

const log = (s: string) => process.stderr.write(`delivery-dkim-bench: ${s}\n`);
const procs = benchProcesses(log);
const tool = which;

// ---------- sink and submitter (Postfix's smtp-sink / smtp-source) ----------

type Sink = SinkHandle & { dumpDir: string };

/** smtp-sink on a free port, dumping each message to a file in `dumpDir` (so a sample can be verified). */
async function startSink(dumpDir: string): Promise<Sink> {
  const sink = await startSmtpSink(procs, tool('smtp-sink')!, dumpDir);
  procs.onCleanup(() => sink.close());
  return { ...sink, dumpDir };
}

/** smtp-source: N messages of `size` bytes over 20 sessions kept open; resolves with its wall time span. */
const submit = (port: number, messages: number, size: number) => smtpSource(procs, tool('smtp-source')!, port, messages, size);

/**
 * Verifies SAMPLES messages spread over the dump with mailauth against `zone`: each must
 * carry a passing signature from every expected selector. Returns what was checked; throws if not.
 */
async function verifySample(dumpDir: string, zone: Zone, selectors: string[], what: string): Promise<string> {
  const files = readdirSync(dumpDir).sort();
  if (files.length === 0) throw new Error(`${what}: the sink dumped no message`);
  const picks = [...new Set(Array.from({ length: SAMPLES }, (_, i) => files[Math.floor((i * (files.length - 1)) / Math.max(1, SAMPLES - 1))]!))];
  for (const f of picks) {
    // smtp-sink's dump starts with its own X-Client-*/Received lines: unsigned, they do not break a signature.
    const verdicts = await verifyWithMailauth(readFileSync(path.join(dumpDir, f)), zone);
    const missing = selectors.filter((s) => !verdicts.some((v) => v.s === s && v.d === DOMAIN && v.pass));
    if (missing.length) throw new Error(`${what}: message ${f} has no passing signature from ${missing.join(', ')} (verdicts: ${JSON.stringify(verdicts)})`);
  }
  return `${picks.length} of ${files.length} delivered messages verified (mailauth): ${selectors.map((s) => `s=${s} d=${DOMAIN} pass`).join(', ')}`;
}

// ---------- the two MTAs ----------

interface Run {
  deliveredPerSecond: number;
  cpuMsPerMessage: number;
  verified: string;
}

const keysFor = (keys: Record<Mode, TestKey[]>, mode: Mode) => keys[mode];

async function runPetrel(dir: string, size: number, n: number, keys: TestKey[], zone: Zone): Promise<Run> {
  mkdirSync(dir, { recursive: true });
  const sink = await startSink(path.join(dir, 'dump'));
  writeFileSync(path.join(dir, 'bench.policy'), BENCH_POLICY);
  const config = {
    spool: path.join(dir, 'spool'),
    acct: path.join(dir, 'acct'),
    artifact: path.join(dir, 'artifact'),
    graceSeconds: 5,
    mxOverride: { '*': `127.0.0.1:${sink.port}` },
    dkim: { keys: keys.map((k) => ({ domain: k.domain, selector: k.selector, keyFile: k.file })) },
  };
  writeFileSync(path.join(dir, 'petrel.config.json'), JSON.stringify(config));
  const { child, smtp } = await startPetrelRun(procs, ['--config', path.join(dir, 'petrel.config.json'), '--policies', path.join(dir, 'bench.policy')], profDir ? ['--cpu-prof', '--cpu-prof-dir', profDir] : []);
  const cpu0 = treeCpu(child.pid!);
  const sub = await submit(smtp, n, size);
  const doneAt = await waitDelivered(sink, n, 'Petrel', sub.startedAt);
  const cpu = treeCpu(child.pid!) - cpu0;
  const verified = await verifySample(sink.dumpDir, zone, keys.map((k) => k.selector), 'Petrel');
  return { deliveredPerSecond: n / ((doneAt - sub.startedAt) / 1000), cpuMsPerMessage: (cpu * 1000) / n, verified };
}

/**
 * OpenDKIM in the foreground on a free loopback port, signing *@DOMAIN with `key`. One
 * instance signs with one algorithm (`SignatureAlgorithm` is global in OpenDKIM 2.11: an
 * Ed25519 key in an rsa-sha256 instance fails every message), so dual signing is two
 * instances chained as two milters, the usual OpenDKIM set-up for it.
 */
async function startOpenDkim(dir: string, key: TestKey): Promise<{ port: number; pid: number }> {
  mkdirSync(dir, { recursive: true });
  const port = await freePort();
  writeFileSync(path.join(dir, 'KeyTable'), `${key.selector} ${key.domain}:${key.selector}:${key.file}\n`);
  writeFileSync(path.join(dir, 'SigningTable'), `*@${key.domain} ${key.selector}\n`);
  const conf = [
    'Syslog no',
    'Mode s',
    `Socket inet:${port}@127.0.0.1`,
    `KeyTable file:${dir}/KeyTable`,
    `SigningTable refile:${dir}/SigningTable`,
    `SignatureAlgorithm ${key.record.includes('k=ed25519') ? 'ed25519-sha256' : 'rsa-sha256'}`,
    'Canonicalization relaxed/relaxed',
    'OversignHeaders From,Subject,To',
    'InternalHosts 127.0.0.0/8',
    // The keys sit under /tmp, which others may write: OpenDKIM's path check would refuse them (tempfail every message).
    'RequireSafeKeys false',
    '',
  ].join('\n');
  writeFileSync(path.join(dir, 'opendkim.conf'), conf);
  const child = procs.track(spawn(tool('opendkim')!, ['-f', '-x', path.join(dir, 'opendkim.conf')], { stdio: ['ignore', 'ignore', 'pipe'] }));
  procs.onCleanup(() => stopChild(child));
  let errors = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (errors = (errors + d).slice(-2000)));
  await waitListening(port, `opendkim (${errors.trim()})`, 10_000, () => child.exitCode === null).catch((e: Error) => {
    throw new Error(`${e.message}: ${errors.trim()}`);
  });
  return { port, pid: child.pid! };
}

async function runPostfix(dir: string, size: number, n: number, keys: TestKey[], zone: Zone): Promise<Run> {
  mkdirSync(dir, { recursive: true });
  chmodSync(dir, 0o755);
  const milters: { port: number; pid: number }[] = [];
  for (const k of keys) milters.push(await startOpenDkim(path.join(dir, `opendkim-${k.selector}`), k));
  const sink = await startSink(path.join(dir, 'dump'));
  const port = await freePort();
  const masterPid = await startPostfix(procs, tool('postfix')!, path.join(dir, 'postfix'), { port, sinkPort: sink.port, milterPorts: milters.map((m) => m.port) });
  const cpu0 = treeCpu(masterPid, ...milters.map((m) => m.pid));
  const sub = await submit(port, n, size);
  const doneAt = await waitDelivered(sink, n, 'Postfix+OpenDKIM', sub.startedAt);
  const cpu = treeCpu(masterPid, ...milters.map((m) => m.pid)) - cpu0;
  const verified = await verifySample(sink.dumpDir, zone, keys.map((k) => k.selector), 'Postfix+OpenDKIM');
  return { deliveredPerSecond: n / ((doneAt - sub.startedAt) / 1000), cpuMsPerMessage: (cpu * 1000) / n, verified };
}

// ---------- rounds and report ----------

interface Cell {
  size: number;
  mode: Mode;
  messages: number;
  petrel: Run[];
  postfix: Run[];
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const spread = (xs: number[], digits: number) => `${median(xs).toFixed(digits)} (${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)})`;
const modeName = (m: Mode) => (m === 'rsa' ? 'RSA-2048' : 'RSA-2048 + Ed25519');

/** Per-round ratios Petrel/Postfix of one figure (rounds where both ran). */
const ratios = (c: Cell, f: (r: Run) => number) => c.petrel.slice(0, c.postfix.length).map((p, i) => f(p) / f(c.postfix[i]!));

function report(cells: Cell[]): string {
  const out: string[] = [];
  for (const c of cells) {
    out.push(`${sizeName(c.size)} × ${c.messages}, ${modeName(c.mode)} — ${c.petrel.length} Petrel and ${c.postfix.length} Postfix+OpenDKIM rounds; median (min–max)`);
    const row = (name: string, p: number[], x: number[], r: number[], d: number) => out.push(`  ${name.padEnd(22)} Petrel ${p.length ? spread(p, d) : '—'}   Postfix+OpenDKIM ${x.length ? spread(x, d) : '—'}   Petrel/Postfix ${r.length ? `×${spread(r, 2)}` : '—'}`);
    row('delivered/s', c.petrel.map((r) => r.deliveredPerSecond), c.postfix.map((r) => r.deliveredPerSecond), ratios(c, (r) => r.deliveredPerSecond), 0);
    row('CPU ms per message', c.petrel.map((r) => r.cpuMsPerMessage), c.postfix.map((r) => r.cpuMsPerMessage), ratios(c, (r) => r.cpuMsPerMessage), 2);
    for (const [who, runs] of [['Petrel', c.petrel], ['Postfix+OpenDKIM', c.postfix]] as const) if (runs[0]) out.push(`  ${who}: ${runs[0].verified} (first round)`);
  }
  return out.join('\n') + '\n';
}

/** Installs what the bench needs from Debian when it is missing, saying so. */
function provision(): void {
  if (process.getuid?.() !== 0) throw new Error('needs root (a private Postfix instance, smtp-sink -u nobody)');
  const missing = [
    ['postfix', 'postfix'],
    ['smtp-source', 'postfix'],
    ['opendkim', 'opendkim'],
    ['opendkim-genkey', 'opendkim-tools'],
  ].filter(([t]) => !tool(t!));
  if (missing.length === 0) return;
  const packages = [...new Set(missing.map(([, p]) => p!))];
  log(`installing ${packages.join(', ')} with apt-get (missing: ${missing.map(([t]) => t).join(', ')})`);
  const r = spawnSync('apt-get', ['install', '-y', '--no-install-recommends', ...packages], { encoding: 'utf8', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }, timeout: 600_000 });
  if (r.status !== 0) throw new Error(`apt-get install ${packages.join(' ')} failed: ${(r.stderr || '').trim().split('\n').slice(-2).join(' | ')}`);
}

// ---------- signing alone (--sign) ----------

/** CPU µs per message (all threads of this process) of `step` run `n` times, `parallel` at once. */
async function cpuMicros(step: () => Promise<unknown>, n: number, parallel = 1): Promise<number> {
  const before = process.cpuUsage();
  for (let i = 0; i < n; i += parallel) await Promise.all(Array.from({ length: Math.min(parallel, n - i) }, step));
  const used = process.cpuUsage(before);
  return (used.user + used.system) / n;
}

/**
 * CPU µs per signed message of the shape smtp-source sends (a few header fields, lines of
 * 78 X), per size and mode: mailauth's stream (`signMessageStreamed`, every message before
 * the shortcut), the plain-message shortcut (`signMessage`), both on this thread, and the
 * shortcut through createDkimSigning's 2 threads (20 at a time: the copy into a
 * transferred buffer, piscina, the answer). Interleaved for `ROUNDS` rounds (at least 5), median.
 */
async function signTable(keys: Record<Mode, TestKey[]>): Promise<string> {
  const head = `Received: from bench by petrel; ${new Date().toUTCString()}\r\nFrom: <news@${DOMAIN}>\r\nTo: <someone@receiver.test>\r\nDate: ${new Date().toUTCString()}\r\nMessage-Id: <1@${DOMAIN}>\r\nSubject: bench\r\n\r\n`;
  const rows: string[][] = [];
  for (const size of SIZES) {
    const message = Buffer.from(head + `${'X'.repeat(78)}\r\n`.repeat(Math.ceil(size / 80)).slice(0, size));
    const n = Math.max(200, Math.min(2_000, Math.round(50_000_000 / size)));
    for (const mode of MODES) {
      const ring: DkimKeyring = loadDkimKeyring({ keys: keys[mode].map((k) => ({ domain: k.domain, selector: k.selector, keyFile: k.file })) }, (f) => readFileSync(f));
      const pool = createDkimSigning(ring, Date.now(), { threads: 2 });
      await pool.ready();
      const ways: [string, () => Promise<unknown>, number][] = [
        ['mailauth stream', () => signMessageStreamed(ring, [message], undefined, new Date()), 1],
        ['shortcut', () => signMessage(ring, [message], undefined, new Date()), 1],
        ['shortcut, 2 threads', () => pool.sign([message], undefined, Date.now()), 20],
      ];
      const figures: number[][] = ways.map(() => []);
      for (const [, step, parallel] of ways) await cpuMicros(step, n / 10, parallel);
      for (let round = 0; round < Math.max(5, ROUNDS); round++) for (const [i, [, step, parallel]] of ways.entries()) figures[i]!.push(await cpuMicros(step, n, parallel));
      await pool.close();
      const [stream, shortcut, threaded] = figures.map(median) as [number, number, number];
      rows.push([`${sizeName(size)} ${modeName(mode)}`, stream.toFixed(0), shortcut.toFixed(0), threaded.toFixed(0), `×${(stream / shortcut).toFixed(2)}`]);
    }
  }
  const w = [Math.max(...rows.map((r) => r[0]!.length)), 16, 10, 20, 16];
  const fmt = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(w[0]!) : c.padStart(w[i]!))).join('  ');
  return [fmt(['CPU µs per message', 'mailauth stream', 'shortcut', 'shortcut, 2 threads', 'stream/shortcut']), ...rows.map(fmt)].join('\n') + '\n';
}

async function main(): Promise<number> {
  if (signOnly) {
    const work = mkdtempSync(path.join(tmpdir(), 'petrel-dkim-sign-'));
    try {
      const rsa = makeKey(work, DOMAIN, 'rsa2026', 'rsa');
      const ed = makeKey(work, DOMAIN, 'ed2026', 'ed25519');
      process.stdout.write(await signTable({ rsa: [rsa], dual: [rsa, ed] }));
      process.stdout.write(hostLine(hostInfo()));
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
    return 0;
  }
  provision();
  const work = mkdtempSync(path.join(tmpdir(), 'petrel-dkim-bench-'));
  chmodSync(work, 0o755);
  procs.onCleanup(() => rmSync(work, { recursive: true, force: true }));
  const rsa = makeKey(work, DOMAIN, 'rsa2026', 'rsa');
  const ed = makeKey(work, DOMAIN, 'ed2026', 'ed25519');
  const zone = zoneOf([rsa, ed]);
  const keys: Record<Mode, TestKey[]> = { rsa: [rsa], dual: [rsa, ed] };
  const cells: Cell[] = SIZES.flatMap((size) => MODES.map((mode) => ({ size, mode, messages: messagesFor(size), petrel: [], postfix: [] })));
  let failed = false;
  try {
    for (let round = 1; round <= ROUNDS; round++) {
      for (const c of cells) {
        for (const [who, run, into] of [['Petrel', runPetrel, c.petrel], ['Postfix+OpenDKIM', runPostfix, c.postfix]] as const) {
          const dir = path.join(work, `r${round}-${c.size}-${c.mode}-${who === 'Petrel' ? 'petrel' : 'postfix'}`);
          const mark = procs.mark();
          log(`round ${round}/${ROUNDS}: ${who}, ${sizeName(c.size)} × ${c.messages}, ${modeName(c.mode)}`);
          try {
            const r = await run(dir, c.size, c.messages, keysFor(keys, c.mode), zone);
            into.push(r);
            log(`  ${r.deliveredPerSecond.toFixed(0)} delivered/s, ${r.cpuMsPerMessage.toFixed(2)} CPU ms/message; ${r.verified}`);
          } catch (e) {
            failed = true;
            log(`  ${who} failed: ${(e as Error).message}`);
          } finally {
            await procs.cleanupTo(mark);
            rmSync(dir, { recursive: true, force: true });
          }
        }
      }
    }
  } finally {
    await procs.cleanupTo(0);
  }
  const host = hostInfo();
  if (profDir) log(`CPU profiles of the petrel runs: ${profDir}`);
  if (asJson) {
    const summary = cells.map((c) => ({ ...c, ratioDeliveredPerSecond: ratios(c, (r) => r.deliveredPerSecond), ratioCpuPerMessage: ratios(c, (r) => r.cpuMsPerMessage) }));
    process.stdout.write(JSON.stringify({ sessions: SESSIONS, connections: CONNECTIONS, rounds: ROUNDS, host, cells: summary }, null, 2) + '\n');
  } else {
    process.stdout.write(report(cells));
    process.stdout.write(hostLine(host));
    process.stdout.write(`${CAVEAT}\n`);
  }
  return failed ? 1 : 0;
}

process.exitCode = await main().catch(async (e) => {
  log(`error: ${(e as Error).stack ?? e}`);
  await procs.cleanupTo(0);
  return 1;
});
