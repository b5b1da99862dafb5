/**
 * `npx tsx bench/spool.ts`: how many 4 KB messages per second the spool makes durable
 * (accept resolved = fsync'd) with 20 concurrent writers, group commit on and off, and
 * how long recovery of what was written takes.
 *
 * For reference it also runs the raw I/O pattern of the design the spool did not take,
 * one file per message (write a temporary file, fdatasync, rename, directory fsync shared
 * by a 2 ms group): the same syscalls without the bookkeeping, so an upper bound for it.
 *
 *   npx tsx bench/spool.ts            4 s per measurement
 *   npx tsx bench/spool.ts --quick    1 s per measurement
 *   npx tsx bench/spool.ts --json     the figures as JSON
 */
import { mkdtempSync, rmSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { openSpool, type Spool } from '../runtime/index.ts';

const asJson = process.argv.includes('--json');
const seconds = process.argv.includes('--quick') ? 1 : 4;
const WRITERS = 20;
const SIZE = 4096;
const work = mkdtempSync(path.join(tmpdir(), 'petrel-spool-bench-'));

interface Figure {
  perSecond: number;
  p50Ms: number;
  p99Ms: number;
  fsyncsPerMessage: number;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? 0;
}

/** Runs `once` from WRITERS concurrent loops for `seconds`; returns rate and latency. */
async function drive(once: (i: number) => Promise<void>): Promise<{ count: number; perSecond: number; p50Ms: number; p99Ms: number }> {
  const latencies: number[] = [];
  let next = 0;
  const started = performance.now();
  const until = started + seconds * 1000;
  await Promise.all(
    Array.from({ length: WRITERS }, async () => {
      while (performance.now() < until) {
        const t = performance.now();
        await once(next++);
        latencies.push(performance.now() - t);
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  return { count: latencies.length, perSecond: latencies.length / elapsed, p50Ms: percentile(latencies, 0.5), p99Ms: percentile(latencies, 0.99) };
}

function rawMessage(i: number): Buffer {
  const head = `From: bench@petrel.test\r\nTo: rcpt${i}@example.com\r\nSubject: bench ${i}\r\n\r\n`;
  const raw = Buffer.alloc(SIZE, 'x');
  raw.write(head);
  return raw;
}

async function measureSpool(dir: string, groupCommitMs: number): Promise<Figure & { count: number; spool: Spool }> {
  const spool = await openSpool(dir, { groupCommitMs });
  const before = spool.stats().fsyncs;
  const result = await drive(async (i) => {
    const raw = rawMessage(i);
    await spool.accept({ id: spool.newId(), envelope: { from: 'bench@petrel.test', to: [`rcpt${i}@example.com`] }, size: raw.length, receivedAt: Date.now() }, raw);
  });
  const fsyncs = spool.stats().fsyncs - before;
  return { ...result, fsyncsPerMessage: fsyncs / result.count, spool };
}

/** The I/O of a file-per-message spool, at its best: per-file fdatasync, one directory fsync per 2 ms group. */
async function measureFilePerMessage(dir: string): Promise<Figure> {
  await fsp.mkdir(dir, { recursive: true });
  let fsyncs = 0;
  let waiting: (() => void)[] = [];
  let timer: NodeJS.Timeout | undefined;
  let syncing: Promise<void> | undefined;
  const syncDirectory = async () => {
    const handle = await fsp.open(dir, 'r');
    await handle.sync();
    await handle.close();
    fsyncs++;
  };
  const flush = async () => {
    timer = undefined;
    while (waiting.length > 0) {
      const group = waiting;
      waiting = [];
      await syncDirectory();
      for (const done of group) done();
    }
    syncing = undefined;
  };
  const groupDirSync = () =>
    new Promise<void>((resolve) => {
      waiting.push(resolve);
      if (!timer && !syncing) timer = setTimeout(() => (syncing = flush()), 2);
    });
  const result = await drive(async (i) => {
    const file = path.join(dir, `${i}.msg`);
    const handle = await fsp.open(`${file}.tmp`, 'wx');
    await handle.write(rawMessage(i));
    await handle.datasync();
    fsyncs++;
    await handle.close();
    await fsp.rename(`${file}.tmp`, file);
    await groupDirSync();
  });
  return { perSecond: result.perSecond, p50Ms: result.p50Ms, p99Ms: result.p99Ms, fsyncsPerMessage: fsyncs / result.count };
}

const log = (line: string) => {
  if (!asJson) process.stdout.write(line + '\n');
};
const rate = (n: number) => Math.round(n).toLocaleString('en-US');
const row = (name: string, f: Figure) =>
  `  ${name.padEnd(34)} ${rate(f.perSecond).padStart(8)} msg/s   p50 ${f.p50Ms.toFixed(1).padStart(5)} ms   p99 ${f.p99Ms.toFixed(1).padStart(5)} ms   ${f.fsyncsPerMessage.toFixed(3)} fsync/msg`;

try {
  log(`spool: ${SIZE / 1024} KB messages, ${WRITERS} concurrent writers, ${seconds} s each, in ${work}`);
  const on = await measureSpool(path.join(work, 'on'), 2);
  log(row('group commit on (2 ms)', on));
  await on.spool.close();
  const off = await measureSpool(path.join(work, 'off'), 0);
  log(row('group commit off', off));
  await off.spool.close();
  log(`  ${'ratio on/off'.padEnd(34)} ${(on.perSecond / off.perSecond).toFixed(1).padStart(8)}x`);
  const files = await measureFilePerMessage(path.join(work, 'files'));
  log(row('reference: file per message', files));

  const started = performance.now();
  const reopened = await openSpool(path.join(work, 'on'));
  const recovery = { messages: reopened.recovery.messages, megabytes: reopened.recovery.bytesRead / 1e6, ms: performance.now() - started };
  await reopened.close();
  log(`  recovery: ${rate(recovery.messages)} messages (${recovery.megabytes.toFixed(0)} MB) in ${rate(recovery.ms)} ms`);

  const strip = ({ perSecond, p50Ms, p99Ms, fsyncsPerMessage }: Figure): Figure => ({ perSecond, p50Ms, p99Ms, fsyncsPerMessage });
  if (asJson) {
    process.stdout.write(
      JSON.stringify({ messageBytes: SIZE, writers: WRITERS, seconds, groupCommitOn: strip(on), groupCommitOff: strip(off), ratio: on.perSecond / off.perSecond, filePerMessage: files, recovery }, null, 2) + '\n',
    );
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
