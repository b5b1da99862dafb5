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
 *
 * Needs root and the postfix, opendkim and opendkim-tools packages (installed with
 * apt-get, saying so, when missing).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { findTool } from '../test/global-setup.ts';
import { makeKey, verifyWithMailauth, zoneOf, type TestKey, type Zone } from '../test/runtime/fixtures/dkim.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const argv = process.argv.slice(2);
const asJson = argv.includes('--json');
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
const USAGE = 'usage: npx tsx bench/delivery-dkim.ts [--messages N (1..1000000)] [--sizes BYTES,... (1..10000000)] [--rounds N (1..20)] [--modes rsa,dual] [--json]\n';
if (argv.includes('--help')) {
  process.stdout.write(USAGE);
  process.exit(0);
}
/** Every argument is a known flag or the value after one that takes a value. */
const unknown = argv.filter((a, i) => !['--json', '--messages', '--sizes', '--rounds', '--modes'].includes(a) && !['--messages', '--sizes', '--rounds', '--modes'].includes(argv[i - 1] ?? ''));
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
const SESSIONS = 20;
const CONNECTIONS = 20;
const STALL_MS = 60_000;
const RUN_LIMIT_MS = 15 * 60_000;
/** Messages verified per run, spread over the sink's dump. */
const SAMPLES = 5;
const DOMAIN = 'shop.example';
const POLICY = `policy bench version 1\ndefault {\n  connections ${CONNECTIONS} per source\n  messages-per-connection 1000\n}\n`;
const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

const log = (s: string) => process.stderr.write(`delivery-dkim-bench: ${s}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const tool = (name: string) => findTool(name, process.env.PATH ?? '');

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/** Resolves when something listens on 127.0.0.1:port; throws after `ms`. */
async function waitListening(port: number, what: string, ms: number, alive: () => boolean = () => true): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    const taken = await new Promise<boolean>((r) => {
      const s = createServer();
      s.once('error', () => r(true));
      s.listen(port, '127.0.0.1', () => s.close(() => r(false)));
    });
    if (taken) return;
    if (!alive()) throw new Error(`${what} exited before listening`);
    if (Date.now() > end) throw new Error(`${what} did not listen on ${port} in ${ms} ms`);
    await sleep(50);
  }
}

// ---------- processes: every one started is stopped by PID ----------

const children = new Set<ChildProcess>();
const cleanups: (() => Promise<void> | void)[] = [];

function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

async function stopChild(child: ChildProcess, waitMs = 10_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  try {
    process.kill(child.pid, 'SIGTERM');
  } catch {
    return;
  }
  if ((await Promise.race([exited, sleep(waitMs).then(() => 'timeout' as const)])) === 'timeout') {
    try {
      process.kill(child.pid, 'SIGKILL');
    } catch {
      /* gone */
    }
    await exited;
  }
}

/** Runs the cleanups pushed since `mark` (last first), then stops any child left. */
async function cleanupTo(mark: number): Promise<void> {
  while (cleanups.length > mark) {
    try {
      await cleanups.pop()!();
    } catch (e) {
      log(`cleanup: ${(e as Error).message}`);
    }
  }
  if (mark === 0) for (const c of children) await stopChild(c);
}

let interrupted = false;
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    if (interrupted) return;
    interrupted = true;
    log(`${sig}: stopping everything`);
    void cleanupTo(0).finally(() => process.exit(130));
  });
}

// ---------- /proc: CPU of a process tree ----------

function procStat(pid: number): { ppid: number; cpu: number } | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return { ppid: Number(f[1]), cpu: (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / CLK_TCK };
  } catch {
    return undefined;
  }
}

/** The PID and every live descendant. */
function processTree(root: number): number[] {
  const parent = new Map<number, number>();
  for (const e of readdirSync('/proc')) if (/^\d+$/.test(e)) parent.set(Number(e), procStat(Number(e))?.ppid ?? 0);
  const out = [root];
  for (let i = 0; i < out.length; i++) for (const [pid, pp] of parent) if (pp === out[i]) out.push(pid);
  return out;
}

/** CPU seconds of the trees under `roots`: each live process's own time plus what it reaped. */
const treeCpu = (...roots: number[]) => roots.flatMap(processTree).reduce((a, p) => a + (procStat(p)?.cpu ?? 0), 0);

// ---------- sink and submitter (Postfix's smtp-sink / smtp-source) ----------

interface Sink {
  port: number;
  dumpDir: string;
  count(): number;
}

/** smtp-sink on a free port, dumping each message to a file in `dumpDir` (so a sample can be verified). */
async function startSink(dumpDir: string): Promise<Sink> {
  mkdirSync(dumpDir, { recursive: true });
  chmodSync(dumpDir, 0o777);
  const port = await freePort();
  const child = track(spawn(tool('smtp-sink')!, ['-u', 'nobody', '-d', `${dumpDir}/%H%M%S.`, '-c', `127.0.0.1:${port}`, '1024'], { stdio: ['ignore', 'pipe', 'pipe'] }));
  cleanups.push(() => stopChild(child));
  let count = 0;
  let tail = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    tail = (tail + d).slice(-200);
    const all = [...tail.matchAll(/mesg=(\d+)/g)];
    if (all.length) count = Number(all[all.length - 1]![1]);
  });
  child.stderr!.resume();
  await waitListening(port, 'smtp-sink', 5_000, () => child.exitCode === null);
  return { port, dumpDir, count: () => count };
}

/** smtp-source: N messages of `size` bytes over 20 sessions kept open; resolves with its wall time span. */
async function submit(port: number, messages: number, size: number): Promise<{ startedAt: number; endedAt: number }> {
  const startedAt = performance.now();
  const child = track(spawn(tool('smtp-source')!, ['-d', '-s', String(SESSIONS), '-m', String(messages), '-l', String(size), '-N', '-f', `news@${DOMAIN}`, '-t', 'user@bench.example', '-M', 'bench.client', `127.0.0.1:${port}`], { stdio: ['ignore', 'ignore', 'pipe'] }));
  let errors = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (errors = (errors + d).slice(-2000)));
  const code = await new Promise<number>((r) => child.once('exit', (c) => r(c ?? 1)));
  if (code !== 0) throw new Error(`smtp-source exited ${code}: ${errors.trim().split('\n').slice(-3).join(' | ')}`);
  return { startedAt, endedAt: performance.now() };
}

/** When the sink counted `target`; throws after STALL_MS without progress or RUN_LIMIT_MS in all. */
async function waitDelivered(sink: Sink, target: number, what: string, startedAt: number): Promise<number> {
  let last = -1;
  let lastChange = performance.now();
  for (;;) {
    const c = sink.count();
    const now = performance.now();
    if (c >= target) return now;
    if (now - startedAt > RUN_LIMIT_MS) throw new Error(`${what}: ${c} of ${target} delivered after ${RUN_LIMIT_MS / 60_000} min`);
    if (c !== last) [last, lastChange] = [c, now];
    else if (now - lastChange > STALL_MS) throw new Error(`${what}: stalled at ${c} of ${target} for ${STALL_MS / 1000} s`);
    await sleep(20);
  }
}

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
  writeFileSync(path.join(dir, 'bench.policy'), POLICY);
  const config = {
    spool: path.join(dir, 'spool'),
    acct: path.join(dir, 'acct'),
    artifact: path.join(dir, 'artifact'),
    graceSeconds: 5,
    mxOverride: { '*': `127.0.0.1:${sink.port}` },
    dkim: { keys: keys.map((k) => ({ domain: k.domain, selector: k.selector, keyFile: k.file })) },
  };
  writeFileSync(path.join(dir, 'petrel.config.json'), JSON.stringify(config));
  const args = [path.join(ROOT, 'bin', 'petrel.js'), 'run', '--config', path.join(dir, 'petrel.config.json'), '--policies', path.join(dir, 'bench.policy'), '--smtp', '127.0.0.1:0', '--http', '127.0.0.1:0'];
  const child = track(spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] }));
  cleanups.push(() => stopChild(child));
  let stderr = '';
  const smtp = await new Promise<number>((resolve, reject) => {
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      stderr = (stderr + d).slice(-4000);
      const m = /SMTP on 127\.0\.0\.1:(\d+)/.exec(stderr);
      if (m) resolve(Number(m[1]));
    });
    child.once('exit', (c) => reject(new Error(`petrel run exited ${c}: ${stderr.trim()}`)));
    setTimeout(() => reject(new Error(`petrel run did not start in 60 s: ${stderr.trim()}`)), 60_000);
  });
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
  const child = track(spawn(tool('opendkim')!, ['-f', '-x', path.join(dir, 'opendkim.conf')], { stdio: ['ignore', 'ignore', 'pipe'] }));
  cleanups.push(() => stopChild(child));
  let errors = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (errors = (errors + d).slice(-2000)));
  await waitListening(port, `opendkim (${errors.trim()})`, 10_000, () => child.exitCode === null).catch((e: Error) => {
    throw new Error(`${e.message}: ${errors.trim()}`);
  });
  return { port, pid: child.pid! };
}

/** main.cf and master.cf of a private Postfix instance relaying to the sink through the milter. */
function writePostfixConfig(etc: string, dir: string, port: number, sinkPort: number, milterPorts: number[]): void {
  const main = [
    'compatibility_level = 3.6',
    `queue_directory = ${dir}/queue`,
    `data_directory = ${dir}/data`,
    'mail_owner = postfix',
    'setgid_group = postdrop',
    'myhostname = bench.localdomain',
    'mydestination =',
    'inet_interfaces = 127.0.0.1',
    'inet_protocols = ipv4',
    'mynetworks = 127.0.0.0/8',
    `relayhost = [127.0.0.1]:${sinkPort}`,
    'smtp_tls_security_level = none',
    'smtpd_tls_security_level = none',
    'default_process_limit = 200',
    `smtp_destination_concurrency_limit = ${CONNECTIONS}`,
    'alias_maps =',
    'alias_database =',
    'smtpd_peername_lookup = no',
    'biff = no',
    `smtpd_milters = ${milterPorts.map((p) => `inet:127.0.0.1:${p}`).join(', ')}`,
    'non_smtpd_milters =',
    'milter_default_action = tempfail',
    'milter_protocol = 6',
    `maillog_file = ${dir}/maillog`,
    `maillog_file_prefixes = ${dir}`,
    '',
  ];
  const svc = (name: string, type: string, priv: string, wakeup: string, limit: string, cmd: string) => `${name} ${type} ${priv} - n ${wakeup} ${limit} ${cmd}`;
  const master = [
    svc(`127.0.0.1:${port}`, 'inet', 'n', '-', '-', 'smtpd'),
    svc('pickup', 'unix', 'n', '60', '1', 'pickup'),
    svc('cleanup', 'unix', 'n', '-', '0', 'cleanup'),
    svc('qmgr', 'unix', 'n', '300', '1', 'qmgr'),
    svc('rewrite', 'unix', '-', '-', '-', 'trivial-rewrite'),
    ...['bounce', 'defer', 'trace'].map((s) => svc(s, 'unix', '-', '-', '0', 'bounce')),
    svc('verify', 'unix', '-', '-', '1', 'verify'),
    svc('flush', 'unix', 'n', '1000?', '0', 'flush'),
    svc('proxymap', 'unix', '-', '-', '-', 'proxymap'),
    svc('smtp', 'unix', '-', '-', '-', 'smtp'),
    svc('relay', 'unix', '-', '-', '-', 'smtp'),
    svc('showq', 'unix', 'n', '-', '-', 'showq'),
    ...['error', 'retry'].map((s) => svc(s, 'unix', '-', '-', '-', 'error')),
    svc('discard', 'unix', '-', '-', '-', 'discard'),
    svc('anvil', 'unix', '-', '-', '1', 'anvil'),
    svc('scache', 'unix', '-', '-', '1', 'scache'),
    svc('postlog', 'unix-dgram', 'n', '-', '1', 'postlogd'),
  ];
  writeFileSync(path.join(etc, 'main.cf'), main.join('\n'));
  writeFileSync(path.join(etc, 'master.cf'), master.join('\n') + '\n');
}

/** Starts the instance; resolves with the master's PID once smtpd listens. Stopping it is pushed to `cleanups`. */
async function startPostfix(dir: string, port: number, sinkPort: number, milterPorts: number[]): Promise<number> {
  const postfix = tool('postfix')!;
  const etc = path.join(dir, 'etc');
  for (const d of [etc, path.join(dir, 'queue'), path.join(dir, 'data')]) mkdirSync(d, { recursive: true });
  chmodSync(dir, 0o755);
  spawnSync('chown', ['postfix', path.join(dir, 'data')]);
  writePostfixConfig(etc, dir, port, sinkPort, milterPorts);
  let masterPid: number | undefined;
  cleanups.push(async () => {
    spawnSync(postfix, ['-c', etc, 'stop'], { stdio: 'ignore', timeout: 30_000 });
    if (masterPid === undefined) return;
    const end = Date.now() + 10_000;
    while (procStat(masterPid) && Date.now() < end) await sleep(100);
    for (const p of procStat(masterPid) ? processTree(masterPid).reverse() : []) {
      try {
        process.kill(p, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  });
  const started = spawnSync(postfix, ['-c', etc, 'start'], { encoding: 'utf8', timeout: 60_000 });
  if (started.status !== 0) throw new Error(`postfix -c DIR start failed: ${(started.stderr || '').trim() || `exit ${started.status}`}`);
  const pidFile = path.join(dir, 'queue', 'pid', 'master.pid');
  const end = Date.now() + 15_000;
  while (!existsSync(pidFile)) {
    if (Date.now() > end) throw new Error('postfix master wrote no pid file');
    await sleep(100);
  }
  masterPid = Number(readFileSync(pidFile, 'utf8').trim());
  await waitListening(port, 'postfix smtpd', 15_000);
  return masterPid;
}

async function runPostfix(dir: string, size: number, n: number, keys: TestKey[], zone: Zone): Promise<Run> {
  mkdirSync(dir, { recursive: true });
  chmodSync(dir, 0o755);
  const milters: { port: number; pid: number }[] = [];
  for (const k of keys) milters.push(await startOpenDkim(path.join(dir, `opendkim-${k.selector}`), k));
  const sink = await startSink(path.join(dir, 'dump'));
  const port = await freePort();
  const masterPid = await startPostfix(path.join(dir, 'postfix'), port, sink.port, milters.map((m) => m.port));
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
const sizeName = (b: number) => (b % 1024 === 0 ? `${b / 1024} KB` : `${b} B`);
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

async function main(): Promise<number> {
  provision();
  const work = mkdtempSync(path.join(tmpdir(), 'petrel-dkim-bench-'));
  chmodSync(work, 0o755);
  cleanups.push(() => rmSync(work, { recursive: true, force: true }));
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
          const mark = cleanups.length;
          log(`round ${round}/${ROUNDS}: ${who}, ${sizeName(c.size)} × ${c.messages}, ${modeName(c.mode)}`);
          try {
            const r = await run(dir, c.size, c.messages, keysFor(keys, c.mode), zone);
            into.push(r);
            log(`  ${r.deliveredPerSecond.toFixed(0)} delivered/s, ${r.cpuMsPerMessage.toFixed(2)} CPU ms/message; ${r.verified}`);
          } catch (e) {
            failed = true;
            log(`  ${who} failed: ${(e as Error).message}`);
          } finally {
            await cleanupTo(mark);
            rmSync(dir, { recursive: true, force: true });
          }
        }
      }
    }
  } finally {
    await cleanupTo(0);
  }
  const os = await import('node:os');
  const host = { cpus: os.cpus().length, model: os.cpus()[0]?.model ?? '?', node: process.version, loadavg: os.loadavg().map((l) => Number(l.toFixed(2))) };
  if (asJson) {
    const summary = cells.map((c) => ({ ...c, ratioDeliveredPerSecond: ratios(c, (r) => r.deliveredPerSecond), ratioCpuPerMessage: ratios(c, (r) => r.cpuMsPerMessage) }));
    process.stdout.write(JSON.stringify({ sessions: SESSIONS, connections: CONNECTIONS, rounds: ROUNDS, host, cells: summary }, null, 2) + '\n');
  } else {
    process.stdout.write(report(cells));
    process.stdout.write(`host: ${host.cpus} × ${host.model}, ${host.node}, load average after the run ${host.loadavg.join(' ')}\n`);
    process.stdout.write("caveat: submitter, sink and MTA share this machine's CPUs; compare the ratio, not absolute figures.\n");
  }
  return failed ? 1 : 0;
}

process.exitCode = await main().catch(async (e) => {
  log(`error: ${(e as Error).stack ?? e}`);
  await cleanupTo(0);
  return 1;
});
