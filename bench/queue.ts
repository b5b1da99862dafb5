/**
 * `npm run bench:queue`: what a big queue costs the real `petrel run` process — memory per
 * queued recipient, the time a restart takes to accept mail and to deliver again, and the
 * accept rate with the queue full against an empty one.
 *
 * For each size of the curve (default 100,000, 300,000 and 1,000,000 recipients):
 *
 * 1. **Fill.** A child process (`tsx bench/queue.ts --fill DIR FROM COUNT`) adds messages
 *    to the spool directly through the spool API (`openSpool`, `accept`,
 *    `recordDeferral`): 2 KB messages, `--per-message` recipients each (default 1), over
 *    500 recipient domains, every recipient deferred 6 hours, so nothing of it is due.
 *    Each fill also adds 5 messages to `due.example` that are due at once. The spool
 *    grows from one size to the next (the fill is not the intake: it only saves time).
 *    The empty spool gets 5 new due messages before each of its restarts.
 * 2. **Restart.** `node bin/petrel.js run` (the bundled CLI: `npm run bench:queue` builds
 *    it first) on that spool, MX of every domain overridden to an accepting smtp-server
 *    in this process. Measured from spawn: *listening* (its log line), *accepting* (the
 *    first message submitted over SMTP gets its 250), *first delivery* (the sink receives
 *    one of the due messages).
 * 3. **Memory.** RSS of the process (`VmRSS`, worker threads included) once its status
 *    reports the whole queue and 3 s have passed; `VmHWM` is its peak so far.
 * 4. **Accept rate.** Postfix's `smtp-source` (8 sessions, 2 KB messages, distinct
 *    recipients) submits `--accept` messages through the real SMTP intake; these are due
 *    and delivered to the sink meanwhile, the same in every run. The rate of the empty
 *    spool (5 due messages) is the reference.
 *
 *   npm run bench:queue                          the curve 100k, 300k, 1M
 *   npx tsx bench/queue.ts --sizes 10000,30000   other sizes (recipients)
 *   npx tsx bench/queue.ts --per-message 10      10 recipients a message
 *   npx tsx bench/queue.ts --accept 4000         messages submitted for the accept rate
 *   npx tsx bench/queue.ts --json                the figures as JSON
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const POLICY = 'policy bench version 1\ndefault {\n  connections 20 per source\n  messages-per-connection 1000\n}\n';
const DUE_PER_FILL = 5;
const DOMAINS = 500;
const DEFER_MS = 6 * 3600_000;
const BODY_BYTES = 2048;
const SETTLE_MS = 3000;
const TIMEOUT_MS = 180_000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const log = (s: string) => process.stderr.write(`queue-bench: ${s}\n`);

function option(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i === -1 ? undefined : process.argv[i + 1];
}

/** A 2 KB message with headers; `i` makes it distinct. */
function rawMessage(i: number, to: string): Buffer {
  const head = `From: news@shop.example\r\nTo: ${to}\r\nSubject: queued ${i}\r\nMessage-ID: <q${i}@shop.example>\r\n\r\n`;
  const line = 'x'.repeat(76) + '\r\n';
  return Buffer.from(head + line.repeat(Math.ceil((BODY_BYTES - head.length) / line.length)));
}

// ---------- fill (child process) ----------

/** Adds `count` recipients' worth of deferred messages, and DUE_PER_FILL due ones, to the spool in `dir`. */
async function fill(dir: string, from: number, count: number, perMessage: number): Promise<void> {
  const { openSpool } = await import('../runtime/index.ts');
  const spool = await openSpool(dir);
  const until = Date.now() + DEFER_MS;
  const messages = Math.ceil(count / perMessage);
  let next = 0;
  const one = async (i: number, to: string[], defer: boolean) => {
    const id = spool.newId();
    const raw = rawMessage(from + i, to[0]!);
    await spool.accept({ id, envelope: { from: 'news@shop.example', to }, size: raw.length, receivedAt: Date.now() }, raw);
    if (defer) await spool.recordDeferral(id, to, until);
  };
  for (let d = 0; d < DUE_PER_FILL; d++) await one(-1 - d, [`due${from}-${d}@due.example`], false);
  await Promise.all(
    Array.from({ length: 1000 }, async () => {
      while (next < messages) {
        const i = next++;
        const n = Math.min(perMessage, count - i * perMessage);
        const to = Array.from({ length: n }, (_, j) => `u${from + i * perMessage + j}@d${(from + i) % DOMAINS}.example`);
        await one(i, to, true);
        if ((i + 1) % 100_000 === 0) log(`  filled ${i + 1} messages`);
      }
    }),
  );
  await spool.close();
}

// ---------- processes ----------

const children = new Set<ChildProcess>();

function procStatusKb(pid: number, field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : 0;
}

async function stopChild(child: ChildProcess, waitMs = 30_000): Promise<number> {
  if (child.exitCode !== null || child.signalCode !== null) return 0;
  const started = performance.now();
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), waitMs);
  await exited;
  clearTimeout(timer);
  return performance.now() - started;
}

async function runFill(dir: string, from: number, count: number, perMessage: number): Promise<number> {
  const started = performance.now();
  const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--fill', dir, String(from), String(count), String(perMessage)], { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'] });
  children.add(child);
  const code = await new Promise<number | null>((r) => child.once('exit', r));
  children.delete(child);
  if (code !== 0) throw new Error(`the fill child exited ${code}`);
  return performance.now() - started;
}

// ---------- SMTP ----------

/** Submits one message over SMTP; resolves when it is accepted (250). */
async function submitOne(port: number, to: string): Promise<void> {
  const nodemailer = (await import('nodemailer')).default;
  const transport = nodemailer.createTransport({ host: '127.0.0.1', port, secure: false, ignoreTLS: true });
  try {
    await transport.sendMail({ envelope: { from: 'probe@shop.example', to: [to] }, raw: rawMessage(0, to) });
  } finally {
    transport.close();
  }
}

/** Messages per second accepted through the SMTP intake: smtp-source, 8 sessions, 2 KB. */
function acceptRate(port: number, messages: number): number {
  const started = performance.now();
  const r = spawnSync('smtp-source', ['-d', '-s', '8', '-m', String(messages), '-l', String(BODY_BYTES), '-N', '-f', 'news@shop.example', '-t', 'user@accept.example', '-M', 'bench.client', `127.0.0.1:${port}`], { encoding: 'utf8', timeout: TIMEOUT_MS });
  if (r.status !== 0) throw new Error(`smtp-source exited ${r.status}: ${(r.stderr ?? '').trim().split('\n').slice(-3).join(' | ')}`);
  return messages / ((performance.now() - started) / 1000);
}

// ---------- one restart ----------

interface Figures {
  queued: number;
  listeningMs: number;
  acceptingMs: number;
  firstDeliveryMs: number;
  rssMb: number;
  peakRssMb: number;
  bytesPerRecipient: number;
  acceptPerSecond: number;
  stopMs: number;
}

interface Sink {
  port: number;
  received: { to: string[] }[];
}

/** Waits until `check` returns a value (polling every 10 ms), up to TIMEOUT_MS. */
async function until<T>(what: string, check: () => T | undefined | Promise<T | undefined>): Promise<T> {
  const end = performance.now() + TIMEOUT_MS;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (performance.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

async function restart(work: string, sink: Sink, queued: number, acceptMessages: number): Promise<Figures> {
  const args = ['run', '--policies', path.join(work, 'bench.policy'), '--no-watch', '--spool', path.join(work, 'spool'), '--acct', path.join(work, 'acct'), '--artifact', path.join(work, 'artifact'), '--smtp', '127.0.0.1:0', '--http', '127.0.0.1:0', '--mx-override', path.join(work, 'mx.json'), '--grace', '5'];
  const seen = sink.received.length;
  const t0 = performance.now();
  const child = spawn(process.execPath, [path.join(ROOT, 'bin', 'petrel.js'), ...args], { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
  children.add(child);
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-20_000)));
  try {
    const ports = await until('petrel run to listen', () => {
      if (child.exitCode !== null) throw new Error(`petrel run exited ${child.exitCode}: ${stderr.trim()}`);
      const m = /SMTP on 127\.0\.0\.1:(\d+), HTTP on 127\.0\.0\.1:(\d+)/.exec(stderr);
      return m ? { smtp: Number(m[1]), http: Number(m[2]) } : undefined;
    });
    const listeningMs = performance.now() - t0;
    await submitOne(ports.smtp, 'probe@accept.example');
    const acceptingMs = performance.now() - t0;
    await until('the first delivery', () => (sink.received.slice(seen).some((r) => r.to.some((t) => t.endsWith('@due.example'))) ? true : undefined));
    const firstDeliveryMs = performance.now() - t0;
    await until('the status to report the queue', async () => {
      const st = (await (await fetch(`http://127.0.0.1:${ports.http}/api/v1/status`)).json()) as { queued: number };
      return st.queued >= queued ? true : undefined;
    });
    await sleep(SETTLE_MS);
    const rssKb = procStatusKb(child.pid!, 'VmRSS');
    const peakKb = procStatusKb(child.pid!, 'VmHWM');
    const acceptPerSecond = acceptRate(ports.smtp, acceptMessages);
    const stopMs = await stopChild(child);
    return { queued, listeningMs, acceptingMs, firstDeliveryMs, rssMb: rssKb / 1024, peakRssMb: peakKb / 1024, bytesPerRecipient: 0, acceptPerSecond, stopMs };
  } finally {
    await stopChild(child);
    children.delete(child);
  }
}

// ---------- main ----------

function printTable(rows: { empty: Figures; full: Figures }[]): void {
  const out = (s: string) => process.stdout.write(s + '\n');
  const sec = (ms: number) => (ms / 1000).toFixed(2);
  out('recipients queued | RSS MB (empty) | peak RSS MB | bytes/recipient | listening s (empty) | accepting s | first delivery s | accepted msgs/s (empty) | vs empty');
  for (const { empty, full: f } of rows) {
    const vs = `${(((f.acceptPerSecond - empty.acceptPerSecond) / empty.acceptPerSecond) * 100).toFixed(0)}%`;
    out(`${String(f.queued).padStart(17)} | ${`${f.rssMb.toFixed(0)} (${empty.rssMb.toFixed(0)})`.padStart(14)} | ${f.peakRssMb.toFixed(0).padStart(11)} | ${f.bytesPerRecipient.toFixed(0).padStart(15)} | ${`${sec(f.listeningMs)} (${sec(empty.listeningMs)})`.padStart(19)} | ${sec(f.acceptingMs).padStart(11)} | ${sec(f.firstDeliveryMs).padStart(16)} | ${`${f.acceptPerSecond.toFixed(0)} (${empty.acceptPerSecond.toFixed(0)})`.padStart(23)} | ${vs.padStart(8)}`);
  }
}

/** The spool directories of `work`: `full` grows along the curve; `empty` holds only due messages (filled before each restart). */
async function prepare(work: string, sink: Sink, perMessage: number): Promise<void> {
  writeFileSync(path.join(work, 'bench.policy'), POLICY);
  writeFileSync(path.join(work, 'mx.json'), JSON.stringify({ '*': `127.0.0.1:${sink.port}` }));
  for (const name of ['full', 'empty']) mkdirSync(path.join(work, name, 'spool'), { recursive: true });
  for (const name of ['full', 'empty']) for (const f of ['bench.policy', 'mx.json']) writeFileSync(path.join(work, name, f), readFileSync(path.join(work, f)));
}

async function main(): Promise<void> {
  const sizes = (option('--sizes') ?? '100000,300000,1000000').split(',').map(Number);
  const perMessage = Number(option('--per-message') ?? 1);
  const acceptMessages = Number(option('--accept') ?? 4000);
  if (!sizes.every((n) => Number.isInteger(n) && n > 0) || !(perMessage >= 1) || !(acceptMessages >= 1)) throw new Error('--sizes takes positive integers, comma-separated; --per-message and --accept a positive integer');
  if (!existsSync(path.join(ROOT, 'dist', 'petrel.mjs'))) throw new Error('dist/ is not built: run `node scripts/build.mjs` (npm run bench:queue does)');
  const work = mkdtempSync(path.join(tmpdir(), 'petrel-queue-bench-'));
  const { startSink } = await import('../test/runtime/fixtures/sink.ts');
  const sink = await startSink();
  try {
    await prepare(work, sink, perMessage);
    const rows: { empty: Figures; full: Figures }[] = [];
    let filled = 0;
    for (const size of [...sizes].sort((a, b) => a - b)) {
      const fillMs = await runFill(path.join(work, 'full', 'spool'), filled, size - filled, perMessage);
      log(`filled to ${size} recipients in ${(fillMs / 1000).toFixed(1)} s`);
      filled = size;
      // The empty spool's due messages were delivered by its last restart: new ones, so that
      // this restart has a first delivery to wait for too (without them the second size of
      // a curve timed out waiting for it).
      await runFill(path.join(work, 'empty', 'spool'), size, 0, perMessage);
      // Back to back, so both see the same load on the machine.
      const empty = await restart(path.join(work, 'empty'), sink, 0, acceptMessages);
      const full = await restart(path.join(work, 'full'), sink, size, acceptMessages);
      full.bytesPerRecipient = ((full.rssMb - empty.rssMb) * 1024 * 1024) / size;
      rows.push({ empty, full });
      log(`${size}: RSS ${full.rssMb.toFixed(0)} MB (empty ${empty.rssMb.toFixed(0)}), accepting after ${(full.acceptingMs / 1000).toFixed(2)} s`);
    }
    if (process.argv.includes('--json')) process.stdout.write(JSON.stringify({ perMessage, messageBytes: BODY_BYTES, rows }, null, 2) + '\n');
    else printTable(rows);
  } finally {
    for (const c of children) await stopChild(c);
    await sink.close();
    rmSync(work, { recursive: true, force: true });
  }
}

if (process.argv[2] === '--fill') {
  await fill(process.argv[3]!, Number(process.argv[4]), Number(process.argv[5]), Number(process.argv[6]));
} else {
  await main();
}
