/**
 * `npx tsx bench/delivery.ts`: end-to-end delivery throughput of the real `petrel run`
 * process, and of Debian's Postfix relaying the same load to the same sink for reference,
 * at two message sizes in one run: 4 KB (a notification) and 100 KB (a newsletter).
 *
 * For each size, N messages with one recipient each are submitted over SMTP by 20 parallel
 * sessions to the MTA, which delivers them (spool fsync'd as always) to a receiving sink
 * on loopback:
 *
 * - submitter: Postfix's `smtp-source -d -s 20 -l SIZE -N` when installed (sessions stay
 *   open between messages, distinct recipients), else a nodemailer pooled transport with
 *   20 connections;
 * - sink: Postfix's `smtp-sink` when installed (counts DATA completions), else the
 *   smtp-server test fixture (test/runtime/fixtures/sink.ts) in this process;
 * - Petrel: `node bin/petrel.js run --policies DIR --smtp 127.0.0.1:0 --http 127.0.0.1:0
 *   --mx-override` to the sink, with the policy below (connections 20 per source,
 *   messages-per-connection 1000: the same 20 reused connections as Postfix's);
 * - Postfix (reference): a private instance in a temporary config directory (`postfix -c
 *   DIR start`), relayhost = the sink, smtp concurrency 20 (connection reuse is Postfix's
 *   default for a busy destination), TLS off, logging to a file, otherwise Debian's
 *   defaults (queue files fsync'd, in_flow_delay 1s). Needs root and the `postfix`
 *   package; otherwise the table says "Postfix: not available (reason)".
 *
 * Figures per MTA and size: accepted/s (N / submitter wall time), delivered/s and MB/s
 * end to end (submitter start to the sink counting the N-th message; MB = 10^6 bytes of
 * message payload), CPU milliseconds per message (Petrel: the node process's
 * utime+stime from /proc, worker threads included; Postfix: master + every child,
 * including reaped ones via cutime/cstime), and peak memory (Petrel: VmHWM, the peak
 * RSS; Postfix: the peak of the summed PSS of all its processes, sampled every 500 ms).
 * Ratios Petrel/Postfix are printed for each. The submitter and the sink run on the same
 * machine and take CPU from the MTA under test: on a 2-core box read the ratio, not the
 * absolute numbers. Every run is bounded: it fails after STALL_MS without a delivery, or
 * after RUN_LIMIT_MS in all.
 *
 *   npx tsx bench/delivery.ts                  4 KB × 10,000 and 100 KB × 4,000
 *   npx tsx bench/delivery.ts --messages 5000  N for every size
 *   npx tsx bench/delivery.ts --sizes 4096     only these sizes (bytes, comma-separated)
 *   npx tsx bench/delivery.ts --json           the figures as JSON
 *   npx tsx bench/delivery.ts --no-postfix     Petrel alone
 *   npx tsx bench/delivery.ts --delivery-threads N
 *                                              Petrel with N delivery worker threads (0: none)
 *   npx tsx bench/delivery.ts --cpu-prof       also profile Petrel (node --cpu-prof, worker
 *                                              threads included); the profiles are kept
 *                                              and their top functions printed
 *   npx tsx bench/delivery.ts --per-byte       no MTA: the per-byte steps Petrel changed, old
 *                                              and new side by side, CPU µs per message
 *                                              (process.cpuUsage over 2,000 messages)
 */
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  BENCH_POLICY,
  benchProcesses,
  freePort,
  CAVEAT,
  CONNECTIONS,
  hostInfo,
  hostLine,
  postfixVersion,
  procStat,
  procStatusKb,
  processTree,
  pssKb,
  ratio,
  ROOT,
  SESSIONS,
  sizeName,
  smtpSource,
  startPetrelRun,
  startPostfix,
  startSmtpSink,
  stopChild,
  treeCpu,
  waitDelivered,
  which,
  type SinkHandle,
  type Submitted,
} from './mta-bench.ts';

const argv = process.argv.slice(2);
const asJson = argv.includes('--json');
const noPostfix = argv.includes('--no-postfix');
const cpuProf = argv.includes('--cpu-prof');
const perByte = argv.includes('--per-byte');
const optionValue = (name: string) => {
  const i = argv.indexOf(name);
  return i >= 0 ? (argv[i + 1] ?? '') : undefined;
};
/** Messages per size when `--messages` is not given: about as long a run for each. */
const DEFAULT_MESSAGES: Record<number, number> = { 4096: 10_000, 102_400: 4_000 };
const messagesOption = optionValue('--messages');
const SIZES = (optionValue('--sizes') ?? '4096,102400').split(',').map(Number);
const threads = optionValue('--delivery-threads');
const MAX_SIZE = 10_000_000;
if (
  (messagesOption !== undefined && !(Number.isInteger(Number(messagesOption)) && Number(messagesOption) > 0 && Number(messagesOption) <= 1_000_000)) ||
  !SIZES.every((s) => Number.isInteger(s) && s > 0 && s <= MAX_SIZE) ||
  (threads !== undefined && !/^\d{1,2}$/.test(threads))
) {
  process.stderr.write('usage: npx tsx bench/delivery.ts [--messages N (1..1000000)] [--sizes BYTES,... (1..10000000)] [--delivery-threads N] [--json] [--no-postfix] [--cpu-prof]\n');
  process.exit(2);
}
const messagesFor = (size: number) => (messagesOption !== undefined ? Number(messagesOption) : (DEFAULT_MESSAGES[size] ?? Math.max(1_000, Math.round(400_000_000 / size))));
const isRoot = process.getuid?.() === 0;

const log = (s: string) => process.stderr.write(`delivery-bench: ${s}\n`);
const procs = benchProcesses(log);

// ---------- sink ----------

/** Postfix's `smtp-sink` when installed (counts DATA completions), else the smtp-server test fixture in this process. */
async function startSinkProcess(): Promise<SinkHandle> {
  const bin = which('smtp-sink');
  if (bin) return startSmtpSink(procs, bin);
  const { startSink } = await import('../test/runtime/fixtures/sink.ts');
  const sink = await startSink();
  return {
    kind: 'smtp-server fixture (in the bench process)',
    port: sink.port,
    count: () => sink.received.length,
    close: async () => {
      await sink.close();
      sink.received.length = 0;
    },
  };
}

// ---------- submitter ----------

/** Postfix's `smtp-source` when installed, else a nodemailer pooled transport with 20 connections. */
async function submit(port: number, messages: number, size: number): Promise<Submitted> {
  const bin = which('smtp-source');
  if (bin) return smtpSource(procs, bin, port, messages, size);
  const nodemailer = (await import('nodemailer')).default;
  const transport = nodemailer.createTransport({ pool: true, maxConnections: SESSIONS, maxMessages: Infinity, host: '127.0.0.1', port, secure: false, ignoreTLS: true });
  const body = 'x'.repeat(76) + '\r\n';
  const text = body.repeat(Math.ceil(size / body.length)).slice(0, size);
  let failures = 0;
  let next = 0;
  const startedAt = performance.now();
  await Promise.all(
    Array.from({ length: SESSIONS * 4 }, async () => {
      while (next < messages) {
        const i = next++;
        try {
          await transport.sendMail({ from: 'news@shop.example', to: `${i}user@bench.example`, subject: 'bench', text });
        } catch {
          failures++;
        }
      }
    }),
  );
  const endedAt = performance.now();
  transport.close();
  return { tool: 'nodemailer pooled transport (20 connections)', startedAt, endedAt, failures };
}

// ---------- a run ----------

/** One size's load: N messages of `size` bytes each. */
interface Load {
  size: number;
  messages: number;
}

interface Result {
  mta: string;
  messages: number;
  sizeBytes: number;
  acceptedPerSecond: number;
  deliveredPerSecond: number;
  /** Message payload delivered per second, end to end, in 10^6 bytes. */
  deliveredMBPerSecond: number;
  submitSeconds: number;
  endToEndSeconds: number;
  cpuSecondsPerMessage: number;
  cpuSeconds: number;
  peakMemoryMB: number;
  memoryNote: string;
  submitFailures: number;
  notes: string[];
}

/** One MTA's figures from its submission, the moment the sink had all N, CPU and memory. */
function figures(mta: string, load: Load, sub: Submitted, doneAt: number, cpuSeconds: number, memoryKb: number, memoryNote: string, notes: string[]): Result {
  const submitSeconds = (sub.endedAt - sub.startedAt) / 1000;
  const endToEndSeconds = (doneAt - sub.startedAt) / 1000;
  const n = load.messages;
  return {
    mta,
    messages: n,
    sizeBytes: load.size,
    acceptedPerSecond: n / submitSeconds,
    deliveredPerSecond: n / endToEndSeconds,
    deliveredMBPerSecond: (n * load.size) / endToEndSeconds / 1e6,
    submitSeconds,
    endToEndSeconds,
    cpuSeconds,
    cpuSecondsPerMessage: cpuSeconds / n,
    peakMemoryMB: memoryKb / 1024,
    memoryNote,
    submitFailures: sub.failures,
    notes: [`submitter: ${sub.tool}`, ...notes],
  };
}

async function runPetrel(work: string, load: Load, sinkTool: { kind: string }): Promise<Result> {
  const dir = path.join(work, `petrel-${load.size}`);
  mkdirSync(dir);
  writeFileSync(path.join(dir, 'bench.policy'), BENCH_POLICY);
  const sink = await startSinkProcess();
  sinkTool.kind = sink.kind;
  procs.onCleanup(() => sink.close());
  writeFileSync(path.join(dir, 'mx.json'), JSON.stringify({ '*': `127.0.0.1:${sink.port}` }));
  const profDir = cpuProf ? mkdtempSync(path.join(tmpdir(), 'petrel-delivery-prof-')) : undefined;
  const { child, ...ports } = await startPetrelRun(
    procs,
    ['--policies', path.join(dir, 'bench.policy'), '--spool', path.join(dir, 'spool'), '--acct', path.join(dir, 'acct'), '--artifact', path.join(dir, 'artifact'), '--mx-override', path.join(dir, 'mx.json'), '--grace', '5', ...(threads !== undefined ? ['--delivery-threads', threads] : [])],
    profDir ? ['--cpu-prof', '--cpu-prof-dir', profDir] : [],
  );
  const pid = child.pid!;
  const cpu0 = treeCpu(pid);
  // The main thread (its TID is the PID) runs intake, spool and scheduling alone: the one a busy machine starves first.
  const main0 = procStat(pid, pid)?.self ?? 0;
  log(`Petrel (pid ${pid}) listening on ${ports.smtp}; submitting ${load.messages} messages of ${load.size} bytes`);
  const sub = await submit(ports.smtp, load.messages, load.size);
  log(`Petrel: submitted in ${((sub.endedAt - sub.startedAt) / 1000).toFixed(1)} s; ${sink.count()} delivered so far`);
  const doneAt = await waitDelivered(sink, load.messages, 'Petrel', sub.startedAt);
  const cpu1 = treeCpu(pid);
  const main1 = procStat(pid, pid)?.self ?? 0;
  const hwm = procStatusKb(pid, 'VmHWM') ?? 0;
  const notes: string[] = [`delivery threads: ${threads ?? 'the default'}`, `main thread CPU ms per message: ${(((main1 - main0) * 1000) / load.messages).toFixed(3)} (of ${(((cpu1 - cpu0) * 1000) / load.messages).toFixed(3)} in all threads)`];
  try {
    const st = (await (await fetch(`http://127.0.0.1:${ports.http}/api/v1/status`)).json()) as Record<string, unknown>;
    notes.push(`status: accepted ${st.accepted}, delivered ${st.delivered}, deferred ${st.deferred}, bounced ${st.bounced}`);
  } catch (e) {
    notes.push(`status API: ${(e as Error).message}`);
  }
  await stopChild(child);
  if (profDir) notes.push(...summarizeProfile(profDir));
  return figures('Petrel', load, sub, doneAt, cpu1 - cpu0, hwm, 'VmHWM of the node process', notes);
}

/** The top self-time functions of every profile in `dir`: the main thread's and each worker thread's. */
function summarizeProfile(dir: string): string[] {
  const files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'));
  if (files.length === 0) return [`cpu profile: none written in ${dir}`];
  return files.flatMap((file) => {
    const prof = JSON.parse(readFileSync(path.join(dir, file), 'utf8')) as { nodes: { id: number; hitCount?: number; callFrame: { functionName: string; url: string; lineNumber: number } }[]; startTime: number; endTime: number; samples: number[] };
    const total = prof.samples.length || 1;
    const by = new Map<string, number>();
    for (const n of prof.nodes) {
      const url = n.callFrame.url.replace(/^file:\/\//, '').replace(ROOT + '/', '');
      const key = `${n.callFrame.functionName || '(anonymous)'} ${url ? `${url.split('/node_modules/').pop()}:${n.callFrame.lineNumber + 1}` : ''}`.trim();
      by.set(key, (by.get(key) ?? 0) + (n.hitCount ?? 0));
    }
    const top = [...by].sort((a, b) => b[1] - a[1]).slice(0, 15);
    const seconds = (prof.endTime - prof.startTime) / 1e6;
    return [`cpu profile kept: ${path.join(dir, file)} (${total} samples over ${seconds.toFixed(1)} s; top self time, whole thread life):`, ...top.map(([k, v]) => `  ${((100 * v) / total).toFixed(1).padStart(5)}%  ${k}`)];
  });
}

async function runPostfix(work: string, load: Load): Promise<Result> {
  if (!isRoot) throw new Error('needs root to start a Postfix instance');
  const postfix = which('postfix');
  if (!postfix || !existsSync('/usr/lib/postfix/sbin/master')) throw new Error('the postfix package is not installed (apt-get install postfix)');
  const dir = path.join(work, `postfix-${load.size}`);
  // Postfix daemons run as `postfix` and must reach the queue through the temp dir.
  chmodSync(work, 0o755);
  const sink = await startSinkProcess();
  procs.onCleanup(() => sink.close());
  const port = await freePort();
  const masterPid = await startPostfix(procs, postfix, dir, { port, sinkPort: sink.port });
  const maillog = path.join(dir, 'maillog');
  const cpu0 = treeCpu(masterPid);
  let peakPss = 0;
  const sampler = setInterval(() => {
    const s = processTree(masterPid).reduce((a, p) => a + pssKb(p), 0);
    if (s > peakPss) peakPss = s;
  }, 500);
  procs.onCleanup(() => clearInterval(sampler));
  log(`Postfix (master pid ${masterPid}) listening on ${port}; submitting ${load.messages} messages of ${load.size} bytes`);
  const sub = await submit(port, load.messages, load.size);
  log(`Postfix: submitted in ${((sub.endedAt - sub.startedAt) / 1000).toFixed(1)} s; ${sink.count()} delivered so far`);
  const doneAt = await waitDelivered(sink, load.messages, 'Postfix', sub.startedAt);
  clearInterval(sampler);
  const cpu1 = treeCpu(masterPid);
  const sent = existsSync(maillog) ? (readFileSync(maillog, 'utf8').match(/status=sent/g) ?? []).length : 0;
  return figures('Postfix', load, sub, doneAt, cpu1 - cpu0, peakPss, 'peak of summed PSS over master + children, sampled every 500 ms', [`${postfixVersion(postfix)}; maillog status=sent lines: ${sent}`]);
}

// ---------- report ----------

/** One size's figures: Petrel's, Postfix's, or why a run has none. */
interface SizeRun {
  load: Load;
  petrel?: Result;
  petrelWhy?: string;
  postfix?: Result;
  postfixWhy?: string;
}


function table(run: SizeRun, sinkKind: string): string {
  const { petrel, postfix, load } = run;
  // The ratio column is Petrel/Postfix for every row that has one: above 1 is more (of throughput, of CPU, of memory).
  const rows: [string, (r: Result) => number, number][] = [
    ['accepted/s (submission)', (r) => r.acceptedPerSecond, 0],
    ['delivered/s (end to end)', (r) => r.deliveredPerSecond, 0],
    ['MB/s delivered', (r) => r.deliveredMBPerSecond, 2],
    ['submission time, s', (r) => r.submitSeconds, 1],
    ['end to end, s', (r) => r.endToEndSeconds, 1],
    ['CPU s total', (r) => r.cpuSeconds, 1],
    ['CPU ms per message', (r) => r.cpuSecondsPerMessage * 1000, 3],
    ['peak memory, MB', (r) => r.peakMemoryMB, 0],
    ['submission failures', (r) => r.submitFailures, 0],
  ];
  const cells = rows.map(([name, f, digits]) => [name, petrel ? f(petrel).toFixed(digits) : '—', postfix ? f(postfix).toFixed(digits) : '—', petrel && postfix && name !== 'submission failures' ? ratio(f(petrel), f(postfix)) : '']);
  const head = [`${sizeName(load.size)} × ${load.messages}, 1 rcpt`, 'Petrel', 'Postfix', 'Petrel/Postfix'];
  const w = [Math.max(head[0]!.length, ...cells.map((r) => r[0]!.length)), 10, 10, 15];
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(w[0]!) : c.padStart(w[i]!))).join('  ');
  const out = [line(head), ...cells.map(line)];
  if (!petrel) out.push(`Petrel: failed (${run.petrelWhy ?? 'not run'})`);
  if (!postfix) out.push(`Postfix: not available (${run.postfixWhy ?? 'not run'})`);
  out.push(`sink: ${sinkKind}`);
  for (const r of [petrel, postfix]) if (r) out.push(`${r.mta}: memory = ${r.memoryNote}`, ...r.notes.map((n) => `${r.mta}: ${n}`));
  return out.join('\n') + '\n';
}

function summary(runs: SizeRun[]): string {
  const parts = runs.filter((r) => r.petrel && r.postfix).map((r) => `${sizeName(r.load.size)} ${ratio(r.petrel!.deliveredPerSecond, r.postfix!.deliveredPerSecond)}`);
  return [
    ...(parts.length ? [`delivered/s Petrel/Postfix: ${parts.join(', ')}`] : []),
    CAVEAT,
  ].join('\n') + '\n';
}

/** Petrel then Postfix at one size, each with its own sink; everything they started is stopped before the next. */
async function runSize(work: string, load: Load, sinkTool: { kind: string }): Promise<SizeRun> {
  const run: SizeRun = { load };
  try {
    run.petrel = await runPetrel(work, load, sinkTool);
  } catch (e) {
    run.petrelWhy = (e as Error).message;
    log(`Petrel run failed: ${run.petrelWhy}`);
  }
  // The first cleanup removes the work directory; the rest are this run's processes.
  await procs.cleanupTo(1);
  if (noPostfix) run.postfixWhy = '--no-postfix';
  else {
    try {
      run.postfix = await runPostfix(work, load);
    } catch (e) {
      run.postfixWhy = (e as Error).message;
      log(`Postfix: ${run.postfixWhy}`);
    }
    await procs.cleanupTo(1);
  }
  return run;
}

// ---------- per-byte steps, old and new ----------

/** CPU microseconds (user + system, all threads) per call of `step`, over `n` calls after a warm-up. */
async function cpuMicros(step: () => unknown, n = 2_000): Promise<number> {
  for (let i = 0; i < n / 10; i++) await step();
  const before = process.cpuUsage();
  for (let i = 0; i < n; i++) await step();
  const used = process.cpuUsage(before);
  return (used.user + used.system) / n;
}

/** Parses one message in data mode with `feed` as smtp-server's DATA parser, fed as the socket gave it: 64 KB chunks. */
async function parseData(SMTPStream: typeof import('smtp-server/lib/smtp-stream').SMTPStream, feed: unknown, wire: Buffer): Promise<void> {
  const stream = new SMTPStream();
  stream._feedDataStream = feed as typeof stream._feedDataStream;
  stream.oncommand = (_c: Buffer, cb?: () => void) => cb?.();
  const data = stream.startDataMode();
  data.on('data', () => undefined);
  const ended = new Promise((r) => data.once('end', r));
  for (let at = 0; at < wire.length; at += 65_536) stream.write(wire.subarray(at, at + 65_536));
  await ended;
}

/** The three per-byte steps the delivery path changed, old and new, per message of each size. */
async function perByteTable(): Promise<string> {
  const { default: DataStream } = await import('nodemailer/lib/smtp-connection/data-stream');
  const { SMTPStream } = await import('smtp-server/lib/smtp-stream');
  const { ORIGINAL_FEED, feedDataStream } = await import('../runtime/intake/data-parser.ts');
  const { isWireForm } = await import('../runtime/deliver/wire-form.ts');
  const rows: string[][] = [];
  for (const size of SIZES) {
    const line = 'x'.repeat(76) + '\r\n';
    const body = Buffer.from(line.repeat(Math.ceil(size / line.length)).slice(0, size - (size % line.length)));
    const wire = Buffer.concat([body, Buffer.from('.\r\n')]);
    const encode = () => {
      const ds = new DataStream() as unknown as { _transform(c: Buffer, e: string, d: () => void): void };
      for (let at = 0; at < body.length; at += 65_536) ds._transform(body.subarray(at, at + 65_536), 'buffer', () => undefined);
    };
    const steps: [string, () => unknown, () => unknown][] = [
      ['intake: smtp-server DATA parser → data-parser.ts', () => parseData(SMTPStream, ORIGINAL_FEED, wire), () => parseData(SMTPStream, feedDataStream, wire)],
      ['send: nodemailer DataStream → isWireForm', encode, () => isWireForm(body)],
      // Tried, and kept out: no saving measured (the copy is the cost, not the zero fill).
      ['to the worker: zeroed copy → allocUnsafeSlow copy', () => new Uint8Array(body.length).set(body), () => body.copy(Buffer.allocUnsafeSlow(body.length))],
    ];
    for (const [name, before, after] of steps) {
      const [b, a] = [await cpuMicros(before), await cpuMicros(after)];
      rows.push([`${sizeName(size)} ${name}`, b.toFixed(1), a.toFixed(1), ratio(b, a)]);
    }
  }
  const w = [Math.max(...rows.map((r) => r[0]!.length)), 10, 10, 12];
  const fmt = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(w[0]!) : c.padStart(w[i]!))).join('  ');
  return [fmt(['CPU µs per message', 'before', 'after', 'before/after']), ...rows.map(fmt)].join('\n') + '\n';
}

async function main(): Promise<number> {
  if (perByte) {
    process.stdout.write(await perByteTable());
    return 0;
  }
  const work = mkdtempSync(path.join(tmpdir(), 'petrel-delivery-bench-'));
  procs.onCleanup(() => rmSync(work, { recursive: true, force: true }));
  const sinkTool = { kind: '?' };
  const runs: SizeRun[] = [];
  try {
    for (const size of SIZES) runs.push(await runSize(work, { size, messages: messagesFor(size) }, sinkTool));
  } finally {
    await procs.cleanupTo(0);
  }
  const host = hostInfo();
  if (asJson) {
    const sizes = runs.map((r) => ({ sizeBytes: r.load.size, messages: r.load.messages, petrel: r.petrel ?? null, petrelFailed: r.petrelWhy ?? null, postfix: r.postfix ?? null, postfixNotAvailable: r.postfixWhy ?? null, ratioDeliveredPerSecond: r.petrel && r.postfix ? r.petrel.deliveredPerSecond / r.postfix.deliveredPerSecond : null }));
    process.stdout.write(JSON.stringify({ sessions: SESSIONS, connections: CONNECTIONS, sink: sinkTool.kind, host, sizes }, null, 2) + '\n');
  } else process.stdout.write(runs.map((r) => table(r, sinkTool.kind)).join('\n') + '\n' + summary(runs) + hostLine(host));
  return runs.some((r) => !r.petrel) ? 1 : 0;
}

process.exitCode = await main().catch(async (e) => {
  log(`error: ${(e as Error).stack ?? e}`);
  await procs.cleanupTo(0);
  return 1;
});
