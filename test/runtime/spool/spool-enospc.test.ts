/**
 * A full disk is survivable (issue 11): the spool on a real, small tmpfs — ENOSPC comes
 * from the kernel, nothing is faked. New messages are refused with `no-space` and leave
 * nothing behind; outcomes of accepted messages are still recorded (from the reserve, or
 * once room returns); room returning is noticed without a restart; a restart loses
 * nothing acknowledged and brings nothing finished back. End to end: `petrel run`'s
 * runtime answers 452 4.3.1 and delivers every acknowledged message exactly once.
 *
 * Mounting needs root (or CAP_SYS_ADMIN); without it the file is skipped, loudly.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statfsSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import nodemailer from 'nodemailer';
import { afterEach, describe, expect, it } from 'vitest';
import { openSpool, SpoolError, type Spool, type SpoolOptions } from '../../../runtime/spool/spool.ts';
import { e2eCase, until } from '../fixtures/e2e.ts';

/** Why tmpfs cannot be mounted here, or undefined when it can (tried once, with a 64 KiB mount). */
function tmpfsUnavailable(): string | undefined {
  const probe = mkdtempSync(path.join(tmpdir(), 'petrel-tmpfs-probe-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', probe], { stdio: 'pipe', timeout: 10_000 });
    execFileSync('umount', [probe], { stdio: 'pipe', timeout: 10_000 });
    return undefined;
  } catch (error) {
    return `cannot mount tmpfs (${(error as Error).message.split('\n')[0]}): run as root (or with CAP_SYS_ADMIN) to test a full disk`;
  } finally {
    rmSync(probe, { recursive: true, force: true });
  }
}

const unavailable = tmpfsUnavailable();
if (unavailable) console.warn(`\n!!! SKIPPING test/runtime/spool/spool-enospc.test.ts: ${unavailable} !!!\n`);

/** Mount points to take away after each test (lazily: a runtime being stopped may still hold files). */
const mounts: string[] = [];
const spools: Spool[] = [];

/** Mounts a tmpfs of `bytes` on `dir` (created if needed). */
function mountTmpfs(dir: string, bytes: number): string {
  mkdirSync(dir, { recursive: true });
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${bytes}`, 'tmpfs', dir], { stdio: 'pipe', timeout: 10_000 });
  mounts.push(dir);
  return dir;
}

const freeBytes = (dir: string) => {
  const s = statfsSync(dir);
  return s.bavail * s.bsize;
};

/** Every file under `dir` with its size, `name size` sorted: what a refused write must not change. */
function listing(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)))
    .map((name) => `${name} ${statSync(path.join(dir, name)).size}`)
    .sort();
}

async function open(dir: string, options: SpoolOptions): Promise<Spool> {
  const spool = await openSpool(dir, options);
  spools.push(spool);
  return spool;
}

const codeOf = (error: unknown) => (error instanceof SpoolError ? error.code : String(error));

/** A message of `size` bytes for recipients `to`, as chunks (as SMTP DATA arrives). */
function message(spool: Spool, to: string[], size: number) {
  const chunks = [Buffer.from(`Subject: ${to[0]}\r\n\r\n`), Buffer.alloc(size / 2, 'a'), Buffer.alloc(size / 2, 'b')];
  const bytes = chunks.reduce((n, c) => n + c.length, 0);
  return { message: { id: spool.newId(), envelope: { from: 'a@example.com', to }, size: bytes, receivedAt: Date.now() }, chunks };
}

/** Accepts 8 KiB messages of two recipients each until the spool says `no-space`; returns the accepted ids. */
async function fillUp(spool: Spool, limit = 2000): Promise<string[]> {
  const accepted: string[] = [];
  for (let i = 0; i < limit; i++) {
    const m = message(spool, [`a${i}@x.test`, `b${i}@x.test`], 8192);
    try {
      await spool.accept(m.message, m.chunks);
      accepted.push(m.message.id);
    } catch (error) {
      expect(codeOf(error)).toBe('no-space');
      return accepted;
    }
  }
  throw new Error(`the disk did not fill up in ${limit} messages`);
}

describe.skipIf(unavailable !== undefined)('spool on a full disk (real tmpfs)', () => {
  afterEach(async () => {
    await Promise.allSettled(spools.splice(0).map((s) => s.close()));
    for (const dir of mounts.splice(0)) {
      execFileSync('umount', ['-l', dir], { stdio: 'pipe', timeout: 10_000 });
      rmSync(path.dirname(dir), { recursive: true, force: true });
    }
  });

  it('refuses without debris, records every outcome from the reserve, accepts again when room returns, and reopens exactly', async () => {
    const fs = mountTmpfs(path.join(mkdtempSync(path.join(tmpdir(), 'petrel-enospc-')), 'fs'), 4 * 1024 * 1024);
    writeFileSync(path.join(fs, 'filler'), Buffer.alloc(1024 * 1024, 'f'));
    const dir = path.join(fs, 'spool');
    const spool = await open(dir, { reserveBytes: 256 * 1024, segmentBytes: 512 * 1024 });
    expect(statSync(path.join(dir, 'reserve')).size).toBe(256 * 1024);

    const accepted = await fillUp(spool);
    expect(accepted.length).toBeGreaterThan(200);
    // Refused again and again: no file, no byte more.
    const before = { files: listing(dir), free: freeBytes(fs) };
    for (let i = 0; i < 50; i++) {
      const m = message(spool, ['late@x.test'], 8192);
      await expect(spool.accept(m.message, m.chunks)).rejects.toMatchObject({ code: 'no-space' });
    }
    expect({ files: listing(dir), free: freeBytes(fs) }).toEqual(before);
    // No empty segment, no partial record: the segment files hold exactly the records written.
    const segmentSizes = before.files.filter((f) => f.startsWith('segments/')).map((line) => Number(line.split(' ')[1]));
    expect(segmentSizes.every((size) => size > 0)).toBe(true);
    expect(segmentSizes.reduce((a, b) => a + b, 0)).toBe(spool.stats().diskBytes);
    expect(spool.stats()).toMatchObject({ spaceShort: true, refusedNoSpace: 51 });

    // Outcomes (and deferrals) of every accepted message still record: more bytes than the disk had left.
    const free = freeBytes(fs);
    const half = accepted.slice(0, accepted.length / 2);
    await Promise.all(half.map((id, i) => spool.recordDeferral(id, `b${i}@x.test`, Date.now() + 60_000)));
    await Promise.all(accepted.map((id, i) => spool.recordOutcome(id, [`a${i}@x.test`, `b${i}@x.test`], i % 2 ? 'delivered' : 'bounced')));
    expect(spool.pending()).toEqual([]);
    expect(spool.stats()).toMatchObject({ spaceShort: true, reserveBytes: 0, waitingForSpace: 0 });
    expect(accepted.length * 2 * 90).toBeGreaterThan(free);

    // Room returns: within a few looks (one a second) the reserve is whole and messages go in, without reopening.
    rmSync(path.join(fs, 'filler'));
    await until('the spool to take messages again', () => !spool.stats().spaceShort, 10_000);
    expect(statSync(path.join(dir, 'reserve')).size).toBe(256 * 1024);
    const later = message(spool, ['later@x.test'], 8192);
    await spool.accept(later.message, later.chunks);

    await spool.close();
    const reopened = await open(dir, { reserveBytes: 256 * 1024, segmentBytes: 512 * 1024 });
    expect(reopened.recovery).toMatchObject({ tornBytes: 0, corrupt: [], unknownFiles: [] });
    expect(reopened.pending().map((m) => m.id)).toEqual([later.message.id]);
    expect((await reopened.read(later.message.id)).equals(Buffer.concat(later.chunks))).toBe(true);
  });

  it('keeps outcomes beyond the reserve waiting (out of pending) until room returns; reopens on the full disk losing nothing', async () => {
    const fs = mountTmpfs(path.join(mkdtempSync(path.join(tmpdir(), 'petrel-enospc-')), 'fs'), 4 * 1024 * 1024);
    writeFileSync(path.join(fs, 'filler'), Buffer.alloc(512 * 1024, 'f'));
    const dir = path.join(fs, 'spool');
    // One segment (it is never deleted while appended to): finishing messages frees nothing.
    const options = { reserveBytes: 8 * 1024 };
    let spool = await open(dir, options);
    const accepted = await fillUp(spool);

    // Reopened while full: everything acknowledged is there, and it is still refusing.
    await spool.close();
    spool = await open(dir, options);
    expect(spool.recovery).toMatchObject({ messages: accepted.length, tornBytes: 0, corrupt: [] });
    const probe = message(spool, ['probe@x.test'], 8192);
    expect(await spool.accept(probe.message, probe.chunks).then(() => 'accepted', codeOf)).toBe('no-space');

    let settled = 0;
    const outcomes = accepted.map((id, i) => spool.recordOutcome(id, [`a${i}@x.test`, `b${i}@x.test`], 'delivered').finally(() => settled++));
    await until('outcomes to wait for room', () => spool.stats().waitingForSpace > 0, 10_000);
    expect(settled).toBeLessThan(accepted.length);
    expect(spool.pending()).toEqual([]);
    expect(accepted.every((id) => spool.get(id) === undefined)).toBe(true);

    rmSync(path.join(fs, 'filler'));
    await Promise.all(outcomes);
    expect(spool.stats().waitingForSpace).toBe(0);
    await spool.close();
    spool = await open(dir, options);
    expect(spool.pending()).toEqual([]);
  });

  it('killed (closed) while outcomes wait for room: reopens on the disk with no byte free, those recipients open again (at least once), the rest done', async () => {
    const fs = mountTmpfs(path.join(mkdtempSync(path.join(tmpdir(), 'petrel-enospc-')), 'fs'), 4 * 1024 * 1024);
    const dir = path.join(fs, 'spool');
    // One segment (it is never deleted while appended to): finishing messages frees nothing.
    const options = { reserveBytes: 8 * 1024 };
    let spool = await open(dir, options);
    const accepted = await fillUp(spool);
    const written = new Set<string>();
    const outcomes = accepted.map((id, i) =>
      spool.recordOutcome(id, [`a${i}@x.test`, `b${i}@x.test`], 'delivered').then(
        () => written.add(id),
        (error: unknown) => expect(codeOf(error)).toBe('no-space'),
      ),
    );
    await until('outcomes to wait for room', () => spool.stats().waitingForSpace > 0, 10_000);
    await spool.close();
    await Promise.all(outcomes);
    expect(written.size).toBeGreaterThan(0);
    expect(written.size).toBeLessThan(accepted.length);
    expect(freeBytes(fs)).toBe(0);

    spool = await open(dir, options);
    expect(spool.recovery).toMatchObject({ tornBytes: 0, corrupt: [] });
    expect(spool.pending().map((m) => m.id)).toEqual(accepted.filter((id) => !written.has(id)));
    expect(spool.stats().spaceShort).toBe(true);
  });
});

const POLICY = `policy full version 1.0.0

default {
  retry {
    after 1s
    then every 1s
    expire 1h
  }
}
`;

describe.skipIf(unavailable !== undefined)('petrel run on a full disk (real tmpfs)', () => {
  const t = e2eCase('enospc');
  // Registered after e2eCase's, so it runs first: stop the runtime, then take its disk away.
  afterEach(async () => {
    await t.runtime?.stop(5_000);
    t.runtime = undefined;
    for (const dir of mounts.splice(0)) execFileSync('umount', ['-l', dir], { stdio: 'pipe', timeout: 10_000 });
  });

  it('answers 452 4.3.1 when full and delivers every acknowledged message exactly once while it stays full', async () => {
    let open = false;
    const sink = await t.sink({ refuse: () => (open ? undefined : { code: 451, text: '4.7.1 not yet' }) });
    mountTmpfs(path.join(t.dir, 'spool'), 10 * 1024 * 1024);
    const r = await t.start(POLICY, { mxOverride: { '*': `127.0.0.1:${sink.port}` } }, 'full.policy');
    const transport = nodemailer.createTransport({ host: '127.0.0.1', port: r.smtpPort, secure: false, ignoreTLS: true, pool: true, maxConnections: 4 });
    const body = 'x'.repeat(76).concat('\r\n').repeat(200);
    const acked: string[] = [];
    let refusal: { responseCode?: number; response?: string } | undefined;
    try {
      const submitter = async (w: number) => {
        for (let i = 0; !refusal && i < 1000; i++) {
          const rcpt = `w${w}n${i}@full.example`;
          try {
            await transport.sendMail({ from: 'news@shop.example', to: rcpt, subject: rcpt, text: body });
            acked.push(rcpt);
          } catch (error) {
            refusal ??= error as typeof refusal;
          }
        }
      };
      await Promise.all([0, 1, 2, 3].map(submitter));
    } finally {
      transport.close();
    }
    expect(refusal).toMatchObject({ responseCode: 452 });
    expect(refusal!.response).toMatch(/^452 4\.3\.1 /);
    expect(acked.length).toBeGreaterThan(20);

    // Deferrals (a retry a second for each recipient) use up what little room was left,
    // until the spool gives up its reserve for them: only then does the receiver take mail,
    // so every delivery's outcome has to be recorded on a disk with no room left.
    await until('the reserve given up for deferrals', () => statSync(path.join(t.dir, 'spool', 'reserve')).size === 0, 30_000);
    open = true;
    await until('every acknowledged message delivered', () => r.status().delivered >= acked.length, 60_000);
    // Retries come every second: a recipient whose outcome was lost would come again within this.
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    const perRecipient = new Map<string, number>();
    for (const m of sink.received) for (const rcpt of m.to) perRecipient.set(rcpt, (perRecipient.get(rcpt) ?? 0) + 1);
    expect([...perRecipient.keys()].sort()).toEqual([...acked].sort());
    expect([...perRecipient.values()].every((n) => n === 1)).toBe(true);
    expect(r.status()).toMatchObject({ delivered: acked.length, queued: 0 });
    // Still full: a new message is still refused.
    const again = nodemailer.createTransport({ host: '127.0.0.1', port: r.smtpPort, secure: false, ignoreTLS: true });
    await expect(again.sendMail({ from: 'news@shop.example', to: 'late@full.example', subject: 'late', text: body })).rejects.toMatchObject({ responseCode: 452 });
  });
});
