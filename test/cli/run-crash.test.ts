/**
 * kill -9 of the real `petrel run` process while it accepts and delivers: after a restart,
 * every message it acknowledged is delivered. Duplicates (delivered before the crash but
 * not yet recorded) are counted and bounded.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import nodemailer from 'nodemailer';
import { afterEach, describe, expect, it } from 'vitest';
import { killAll, startPetrelProcess } from '../runtime/fixtures/e2e.ts';
import { startSink, type Sink } from '../runtime/fixtures/sink.ts';

const children: ChildProcess[] = [];
let sink: Sink | undefined;
let dir: string | undefined;
afterEach(async () => {
  await killAll(children);
  await sink?.close();
  sink = undefined;
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const startPetrel = (dir: string) => startPetrelProcess(['--spool', path.join(dir, 'spool'), '--acct', path.join(dir, 'acct'), '--artifact', path.join(dir, 'artifact'), '--mx-override', path.join(dir, 'mx.json')], children);

describe('petrel run under kill -9', () => {
  it('delivers every acknowledged message after a crash and restart', async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'petrel-crash-'));
    // A little latency, so deliveries are in flight when the process dies.
    sink = await startSink({ delayMs: 5 });
    const received = () => sink!.received.flatMap((m) => /^Message-ID:\s*(<[^>]+>)/im.exec(m.raw)?.[1] ?? []);
    writeFileSync(path.join(dir, 'mx.json'), JSON.stringify({ '*': `127.0.0.1:${sink.port}` }));

    const first = await startPetrel(dir);
    const acknowledged: string[] = [];
    const transport = nodemailer.createTransport({ host: '127.0.0.1', port: first.smtp, secure: false, ignoreTLS: true, pool: true, maxConnections: 10, maxMessages: 1000 });
    transport.on('error', () => undefined);
    const total = 1200;
    let next = 0;
    let killed = false;
    const kill = () => {
      if (!killed) {
        killed = true;
        first.child.kill('SIGKILL');
      }
    };
    const killAfter = 300 + Math.floor(Math.random() * 400);
    await Promise.all(
      Array.from({ length: 10 }, async () => {
        while (!killed && next < total) {
          const n = next++;
          const messageId = `<crash-${n}@petrel.test>`;
          try {
            await transport.sendMail({ from: 'news@shop.example', to: `user${n % 50}@d${n % 7}.example`, subject: `n${n}`, text: 'x'.repeat(2000), messageId });
            acknowledged.push(messageId);
            if (acknowledged.length >= killAfter) kill();
          } catch {
            // Not acknowledged: the process died before answering 250. Nothing was promised.
          }
        }
      }),
    );
    transport.close();
    expect(killed).toBe(true);
    await first.exited();

    await startPetrel(dir);
    const end = Date.now() + 60_000;
    const missing = () => {
      const got = new Set(received());
      return acknowledged.filter((id) => !got.has(id));
    };
    while (missing().length > 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
    expect(missing()).toEqual([]);
    const duplicates = received().length - new Set(received()).size;
    // At-least-once: only a delivery in flight when the process died (its outcome not yet
    // durable) can go again, so duplicates never exceed the in-flight limit (100 by default).
    expect(duplicates).toBeLessThanOrEqual(100);
    process.stderr.write(`kill -9 after ${acknowledged.length} acknowledged of ${total}: 0 lost, ${duplicates} delivered twice\n`);
  }, 120_000);
});
