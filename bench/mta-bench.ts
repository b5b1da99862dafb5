/**
 * What the MTA benches (bench/delivery.ts, bench/delivery-dkim.ts) share: the child
 * processes they start and stop by PID, CPU and memory of a process tree from /proc,
 * Postfix's `smtp-sink` and `smtp-source` runs, a private Postfix instance relaying to a
 * sink (optionally through milters), the real `petrel run`, waiting for the N-th
 * delivery, and the report's common parts (sizes, ratios, the host line).
 *
 * INVARIANT: every process a bench starts is tracked here and stopped by PID before it
 * exits (on SIGINT/SIGTERM too); nothing is killed by name.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { findTool, freePort } from '../test/global-setup.ts';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
/** Submitting sessions, and connections to the destination, for every MTA (Petrel's policy, Postfix's destination concurrency). */
export const SESSIONS = 20;
export const CONNECTIONS = 20;
/** A run fails after this long without a delivery… */
export const STALL_MS = 60_000;
/** …or after this long in all, from submission to the last delivery. */
export const RUN_LIMIT_MS = 15 * 60_000;
/** The policy both benches run Petrel under: the same 20 reused connections as Postfix's. */
export const BENCH_POLICY = `policy bench version 1\ndefault {\n  connections ${CONNECTIONS} per source\n  messages-per-connection 1000\n}\n`;
export const CAVEAT = "caveat: submitter, sink and MTA share this machine's CPUs; compare the ratio, not absolute figures.";
const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** An executable on PATH or in the system's sbin directories (where Debian puts Postfix's and OpenDKIM's). */
export const which = (cmd: string): string | undefined => findTool(cmd, process.env.PATH ?? '');

export { freePort };

/** Resolves when something listens on 127.0.0.1:port; throws after `ms`, or once `alive` says the process is gone. */
export async function waitListening(port: number, what: string, ms: number, alive: () => boolean = () => true): Promise<void> {
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

/** The children a bench started and what to undo, last first. */
export interface BenchProcesses {
  track(child: ChildProcess): ChildProcess;
  /** Something to undo at the next `cleanupTo` at or below the current mark. */
  onCleanup(f: () => Promise<void> | void): void;
  /** How many cleanups are registered now: a mark to undo back to. */
  mark(): number;
  /** Runs the cleanups registered since `mark` (last first, a failure logged); at 0 also stops every child left. */
  cleanupTo(mark: number): Promise<void>;
}

/** SIGTERM, then SIGKILL after `waitMs`; resolves once the child has exited. */
export async function stopChild(child: ChildProcess, waitMs = 10_000): Promise<void> {
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

/** The bench's process registry; SIGINT and SIGTERM stop everything and exit 130. */
export function benchProcesses(log: (line: string) => void): BenchProcesses {
  const children = new Set<ChildProcess>();
  const cleanups: (() => Promise<void> | void)[] = [];
  const procs: BenchProcesses = {
    track(child) {
      children.add(child);
      child.once('exit', () => children.delete(child));
      return child;
    },
    onCleanup: (f) => void cleanups.push(f),
    mark: () => cleanups.length,
    async cleanupTo(mark) {
      while (cleanups.length > mark) {
        try {
          await cleanups.pop()!();
        } catch (e) {
          log(`cleanup: ${(e as Error).message}`);
        }
      }
      if (mark === 0) for (const c of children) await stopChild(c);
    },
  };
  let interrupted = false;
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => {
      if (interrupted) return;
      interrupted = true;
      log(`${sig}: stopping everything`);
      void procs.cleanupTo(0).finally(() => process.exit(130));
    });
  }
  return procs;
}

// ---------- /proc: CPU and memory of a process tree ----------

export interface ProcStat {
  ppid: number;
  /** utime + stime, seconds. */
  self: number;
  /** cutime + cstime (reaped children), seconds. */
  children: number;
}

/** A process's figures, or with `thread` one thread's (`/proc/PID/task/TID/stat`). */
export function procStat(pid: number, thread?: number): ProcStat | undefined {
  try {
    const s = readFileSync(thread === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${thread}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return { ppid: Number(f[1]), self: (Number(f[11]) + Number(f[12])) / CLK_TCK, children: (Number(f[13]) + Number(f[14])) / CLK_TCK };
  } catch {
    return undefined;
  }
}

export function procStatusKb(pid: number, field: string): number | undefined {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

export function pssKb(pid: number): number {
  try {
    const m = /^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** The PID and every descendant of it now alive. */
export function processTree(root: number): number[] {
  const parent = new Map<number, number>();
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    const st = procStat(Number(e));
    if (st) parent.set(Number(e), st.ppid);
  }
  const out = [root];
  for (let i = 0; i < out.length; i++) for (const [pid, pp] of parent) if (pp === out[i]) out.push(pid);
  return out;
}

/** CPU seconds of the trees under `roots`: every live process's own time plus what it reaped. */
export function treeCpu(...roots: number[]): number {
  let total = 0;
  for (const pid of roots.flatMap(processTree)) {
    const st = procStat(pid);
    if (st) total += st.self + st.children;
  }
  return total;
}

// ---------- Postfix's smtp-sink and smtp-source ----------

/** A receiving sink and how many messages it has taken. */
export interface SinkHandle {
  kind: string;
  port: number;
  count(): number;
  close(): Promise<void>;
}

/** `smtp-sink` on a free loopback port (as `nobody` when root); with `dumpDir`, every message dumped to a file there. */
export async function startSmtpSink(procs: BenchProcesses, bin: string, dumpDir?: string): Promise<SinkHandle> {
  if (dumpDir) {
    mkdirSync(dumpDir, { recursive: true });
    chmodSync(dumpDir, 0o777);
  }
  const port = await freePort();
  const args = [...(process.getuid?.() === 0 ? ['-u', 'nobody'] : []), ...(dumpDir ? ['-d', `${dumpDir}/%H%M%S.`] : []), '-c', `127.0.0.1:${port}`, '1024'];
  const child = procs.track(spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] }));
  let count = 0;
  let tail = '';
  let errors = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    tail = (tail + d).slice(-200);
    const all = [...tail.matchAll(/mesg=(\d+)/g)];
    if (all.length) count = Number(all[all.length - 1]![1]);
  });
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (errors = (errors + d).slice(-2000)));
  await waitListening(port, 'smtp-sink', 5_000, () => child.exitCode === null).catch((e: Error) => {
    throw new Error(`${e.message}: ${errors.trim()}`);
  });
  return { kind: 'Postfix smtp-sink', port, count: () => count, close: () => stopChild(child) };
}

/** A submitter's run: its wall time span and the problems it reported. */
export interface Submitted {
  tool: string;
  startedAt: number;
  endedAt: number;
  failures: number;
}

/** `smtp-source -d -s 20 -l SIZE -N`: N messages from news@shop.example over 20 sessions kept open, distinct recipients. */
export async function smtpSource(procs: BenchProcesses, bin: string, port: number, messages: number, size: number): Promise<Submitted> {
  const startedAt = performance.now();
  const child = procs.track(spawn(bin, ['-d', '-s', String(SESSIONS), '-m', String(messages), '-l', String(size), '-N', '-f', 'news@shop.example', '-t', 'user@bench.example', '-M', 'bench.client', `127.0.0.1:${port}`], { stdio: ['ignore', 'ignore', 'pipe'] }));
  let errors = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (errors += d));
  const code = await new Promise<number>((r) => child.once('exit', (c) => r(c ?? 1)));
  const endedAt = performance.now();
  if (code !== 0) throw new Error(`smtp-source exited ${code}: ${errors.trim().split('\n').slice(-3).join(' | ')}`);
  const failures = (errors.match(/error|fatal|warning/gi) ?? []).length;
  return { tool: `Postfix smtp-source (-d -s ${SESSIONS})`, startedAt, endedAt, failures };
}

/** When the sink counted `target`; throws after STALL_MS without a delivery or RUN_LIMIT_MS in all. */
export async function waitDelivered(sink: { count(): number }, target: number, what: string, startedAt: number): Promise<number> {
  let last = -1;
  let lastChange = performance.now();
  for (;;) {
    const c = sink.count();
    const now = performance.now();
    if (c >= target) return now;
    if (now - startedAt > RUN_LIMIT_MS) throw new Error(`${what}: not done after ${RUN_LIMIT_MS / 60_000} min, ${c} of ${target} delivered`);
    if (c !== last) {
      last = c;
      lastChange = now;
    } else if (now - lastChange > STALL_MS) throw new Error(`${what}: no delivery for ${STALL_MS / 1000} s, ${c} of ${target} delivered`);
    await sleep(20);
  }
}

// ---------- the MTAs: Petrel and a private Postfix instance ----------

/** `node [nodeArgs] bin/petrel.js run ARGS --smtp 127.0.0.1:0 --http 127.0.0.1:0`; resolves with its ports once it listens (60 s at most). */
export async function startPetrelRun(procs: BenchProcesses, args: string[], nodeArgs: string[] = []): Promise<{ child: ChildProcess; smtp: number; http: number }> {
  const child = procs.track(spawn(process.execPath, [...nodeArgs, path.join(ROOT, 'bin', 'petrel.js'), 'run', ...args, '--smtp', '127.0.0.1:0', '--http', '127.0.0.1:0'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] }));
  procs.onCleanup(() => stopChild(child));
  let stderr = '';
  const ports = await new Promise<{ smtp: number; http: number }>((resolve, reject) => {
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      stderr = (stderr + d).slice(-4000);
      const m = /SMTP on 127\.0\.0\.1:(\d+), HTTP on 127\.0\.0\.1:(\d+)/.exec(stderr);
      if (m) resolve({ smtp: Number(m[1]), http: Number(m[2]) });
    });
    child.once('exit', (c) => reject(new Error(`petrel run exited ${c}: ${stderr.trim()}`)));
    setTimeout(() => reject(new Error(`petrel run did not start in 60 s: ${stderr.trim()}`)), 60_000);
  });
  return { child, ...ports };
}

/** main.cf and master.cf of a private Postfix instance in `dir` relaying to the sink, through `milterPorts` when given. */
function writePostfixConfig(dir: string, port: number, sinkPort: number, milterPorts: number[]): void {
  const milters = milterPorts.length ? [`smtpd_milters = ${milterPorts.map((p) => `inet:127.0.0.1:${p}`).join(', ')}`, 'non_smtpd_milters =', 'milter_default_action = tempfail', 'milter_protocol = 6'] : [];
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
    ...milters,
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
    svc('tlsmgr', 'unix', '-', '1000?', '1', 'tlsmgr'),
    svc('rewrite', 'unix', '-', '-', '-', 'trivial-rewrite'),
    ...['bounce', 'defer', 'trace'].map((s) => svc(s, 'unix', '-', '-', '0', 'bounce')),
    svc('verify', 'unix', '-', '-', '1', 'verify'),
    svc('flush', 'unix', 'n', '1000?', '0', 'flush'),
    svc('proxymap', 'unix', '-', '-', '-', 'proxymap'),
    svc('proxywrite', 'unix', '-', '-', '1', 'proxymap'),
    svc('smtp', 'unix', '-', '-', '-', 'smtp'),
    svc('relay', 'unix', '-', '-', '-', 'smtp'),
    svc('showq', 'unix', 'n', '-', '-', 'showq'),
    ...['error', 'retry'].map((s) => svc(s, 'unix', '-', '-', '-', 'error')),
    svc('discard', 'unix', '-', '-', '-', 'discard'),
    svc('anvil', 'unix', '-', '-', '1', 'anvil'),
    svc('scache', 'unix', '-', '-', '1', 'scache'),
    svc('postlog', 'unix-dgram', 'n', '-', '1', 'postlogd'),
    '',
  ];
  writeFileSync(path.join(dir, 'etc', 'main.cf'), main.join('\n'));
  writeFileSync(path.join(dir, 'etc', 'master.cf'), master.join('\n'));
}

/**
 * A private Postfix instance in `dir` (`postfix -c DIR/etc start`): smtpd on `port`,
 * relayhost the sink, smtp concurrency CONNECTIONS, TLS off, logging to DIR/maillog,
 * otherwise Debian's defaults. Resolves with the master's PID once smtpd listens;
 * stopping it (postfix stop, then SIGKILL to what is left) is registered with `procs`.
 */
export async function startPostfix(procs: BenchProcesses, postfix: string, dir: string, options: { port: number; sinkPort: number; milterPorts?: number[] }): Promise<number> {
  const etc = path.join(dir, 'etc');
  for (const d of [etc, path.join(dir, 'queue'), path.join(dir, 'data')]) mkdirSync(d, { recursive: true });
  // Postfix daemons run as `postfix` and must reach the queue through the temp dir.
  chmodSync(dir, 0o755);
  spawnSync('chown', ['postfix', path.join(dir, 'data')]);
  writePostfixConfig(dir, options.port, options.sinkPort, options.milterPorts ?? []);
  let masterPid: number | undefined;
  procs.onCleanup(async () => {
    spawnSync(postfix, ['-c', etc, 'stop'], { stdio: 'ignore', timeout: 30_000 });
    // `postfix stop` signals the master; make sure it and its children are gone.
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
  const maillog = path.join(dir, 'maillog');
  const started = spawnSync(postfix, ['-c', etc, 'start'], { encoding: 'utf8', timeout: 60_000 });
  if (started.status !== 0) {
    const why = existsSync(maillog) ? readFileSync(maillog, 'utf8').trim().split('\n').slice(-2).join(' | ') : (started.stderr || '').trim();
    throw new Error(`postfix -c DIR start failed: ${why || `exit ${started.status}`}`);
  }
  const pidFile = path.join(dir, 'queue', 'pid', 'master.pid');
  const end = Date.now() + 15_000;
  while (!existsSync(pidFile)) {
    if (Date.now() > end) throw new Error('postfix master wrote no pid file');
    await sleep(100);
  }
  masterPid = Number(readFileSync(pidFile, 'utf8').trim());
  await waitListening(options.port, 'postfix smtpd', 15_000);
  return masterPid;
}

export function postfixVersion(bin: string): string {
  const r = spawnSync(bin.replace(/postfix$/, 'postconf'), ['-d', 'mail_version'], { encoding: 'utf8' });
  return `Postfix ${(r.stdout ?? '').split('=')[1]?.trim() ?? '?'}`;
}

// ---------- report ----------

export const sizeName = (bytes: number) => (bytes % 1024 === 0 ? `${bytes / 1024} KB` : `${bytes} B`);
/** Petrel/Postfix as `×1.23`; `—` without a denominator. */
export const ratio = (a: number, b: number) => (b > 0 ? `×${(a / b).toFixed(2)}` : '—');

/** The machine the figures were taken on, with its load average after the run. */
export function hostInfo(): { cpus: number; model: string; node: string; loadavg: number[] } {
  return { cpus: os.cpus().length, model: os.cpus()[0]?.model ?? '?', node: process.version, loadavg: os.loadavg().map((l) => Number(l.toFixed(2))) };
}

export const hostLine = (host: ReturnType<typeof hostInfo>) => `host: ${host.cpus} × ${host.model}, ${host.node}, load average after the run ${host.loadavg.join(' ')}\n`;
