/**
 * openSpoolRecovering: a spool that accepts while it still reads its segments, and hands
 * out the recovered messages only once every segment is read, each with its whole state.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { openSpool, openSpoolRecovering, type Spool, type SpoolFs } from '../../../runtime/spool/spool.ts';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'petrel-spool-recovering-'));
  dirs.push(dir);
  return dir;
}

const raw = (text: string) => Buffer.from(`Subject: ${text}\r\n\r\n${text}\r\n`);

async function put(spool: Spool, to: string[], text: string): Promise<string> {
  const id = spool.newId();
  const bytes = raw(text);
  await spool.accept({ id, envelope: { from: 'a@x.test', to }, size: bytes.length, receivedAt: 1 }, bytes);
  return id;
}

/** File operations whose opening of a segment for reading waits for `gate`: recovery stays in progress until the test opens it. */
function gatedFs(): { fs: SpoolFs; open: () => void } {
  let open!: () => void;
  const gate = new Promise<void>((r) => (open = r));
  const gated = async (...args: Parameters<typeof fsp.open>) => {
    if (String(args[0]).endsWith('.seg') && args[1] === 'r') await gate;
    return fsp.open(...args);
  };
  const fs = { ...fsp, open: gated } as unknown as SpoolFs;
  return { fs, open };
}

describe('openSpoolRecovering', () => {
  it('accepts while recovering; recovered messages join only when every segment is read, with outcomes from later segments applied', async () => {
    const dir = tempDir();
    // Segment 1 holds the messages; a later segment (after a reopen) the outcome and the deferral.
    const first = await openSpool(dir, { segmentBytes: 4096 });
    const a = await put(first, ['1@x.test', '2@x.test'], 'a');
    const b = await put(first, ['3@x.test'], 'b');
    await first.close();
    const second = await openSpool(dir, { segmentBytes: 4096 });
    await second.recordOutcome(a, '1@x.test', 'delivered');
    await second.recordDeferral(a, '2@x.test', 5000);
    await second.recordOutcome(b, '3@x.test', 'bounced');
    await second.close();

    const gated = gatedFs();
    const { spool, recovered } = await openSpoolRecovering(dir, { fs: gated.fs });
    let c = '';
    try {
      c = await put(spool, ['4@x.test'], 'c');
      expect(spool.pending().map((m) => m.id)).toEqual([c]);
      expect(spool.counts()).toEqual({ messages: 1, recipients: 1 });
      expect(spool.get(a)).toBeUndefined();
      await expect(spool.compact()).rejects.toMatchObject({ code: 'recovering' });
      gated.open();
      const { report, messages } = await recovered;
      expect(report).toMatchObject({ messages: 1, recipients: 1 });
      // Only what recovery found: not c, not b (finished by a later segment), a with its deferral.
      expect([...messages].map((m) => ({ id: m.id, recipients: m.recipients }))).toEqual([{ id: a, recipients: [{ rcpt: '2@x.test', attempts: 1, nextAttemptAt: 5000 }] }]);
      expect(new Set(spool.pending().map((m) => m.id))).toEqual(new Set([a, c]));
      expect(spool.counts()).toEqual({ messages: 2, recipients: 2 });
      expect((await spool.read(c)).toString()).toContain('Subject: c');
    } finally {
      await spool.close();
    }
    // Both the recovered and the new message survive a reopen.
    const again = await openSpool(dir);
    expect(new Set(again.pending().map((m) => m.id))).toEqual(new Set([a, c]));
    await again.close();
  });

  it('close while recovering waits for the reading and releases the lock', async () => {
    const dir = tempDir();
    const first = await openSpool(dir);
    await put(first, ['1@x.test'], 'a');
    await first.close();
    const gated = gatedFs();
    const { spool, recovered } = await openSpoolRecovering(dir, { fs: gated.fs });
    const closing = spool.close();
    gated.open();
    await closing;
    await recovered;
    const again = await openSpool(dir);
    expect(again.counts()).toEqual({ messages: 1, recipients: 1 });
    await again.close();
  });

  it('a recovery that cannot read rejects `recovered` and closes the spool', async () => {
    const dir = tempDir();
    const first = await openSpool(dir);
    await put(first, ['1@x.test'], 'a');
    await first.close();
    const eio = () => Promise.reject(Object.assign(new Error('EIO: i/o error'), { code: 'EIO' }));
    // Reading a segment fails; every other file operation works.
    const failing = { ...fsp, open: async (...args: Parameters<typeof fsp.open>) => (String(args[0]).endsWith('.seg') && args[1] === 'r' ? eio() : fsp.open(...args)) } as unknown as SpoolFs;
    const { spool, recovered } = await openSpoolRecovering(dir, { fs: failing });
    await expect(recovered).rejects.toThrow(/EIO/);
    await expect(put(spool, ['2@x.test'], 'b')).rejects.toMatchObject({ code: 'closed' });
    const again = await openSpool(dir);
    expect(again.counts()).toEqual({ messages: 1, recipients: 1 });
    await again.close();
  });
});
