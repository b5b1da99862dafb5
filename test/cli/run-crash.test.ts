/**
 * kill -9 of the real `petrel run` process while it accepts and delivers: after a restart,
 * every message it acknowledged is delivered. Duplicates (delivered before the crash but
 * not yet recorded) are counted and bounded. Submitters: nodemailer, and Postfix's
 * `smtp-source` (Debian package postfix; .ci/run installs it).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import nodemailer from 'nodemailer';
import { afterEach, describe, expect, it } from 'vitest';
import { ROOT } from '../helpers.ts';
import { killAll } from '../runtime/fixtures/e2e.ts';
import { killAllPetrel, startPetrel } from './petrel-process.ts';
import { startSink, type Sink } from '../runtime/fixtures/sink.ts';

const children: ChildProcess[] = [];
let sink: Sink | undefined;
let dir: string | undefined;
afterEach(async () => {
  await killAll(children);
  await killAllPetrel();
  await sink?.close();
  sink = undefined;
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const startIn = (dir: string, extra: string[] = []) => startPetrel(['--spool', path.join(dir, 'spool'), '--acct', path.join(dir, 'acct'), '--artifact', path.join(dir, 'artifact'), '--mx-override', path.join(dir, 'mx.json'), ...extra]);

describe('petrel run under kill -9', () => {
  it('delivers every acknowledged message after a crash and restart', async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'petrel-crash-'));
    // A little latency, so deliveries are in flight when the process dies.
    sink = await startSink({ delayMs: 5 });
    const received = () => sink!.received.flatMap((m) => /^Message-ID:\s*(<[^>]+>)/im.exec(m.raw)?.[1] ?? []);
    writeFileSync(path.join(dir, 'mx.json'), JSON.stringify({ '*': `127.0.0.1:${sink.port}` }));

    const first = await startIn(dir);
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

    await startIn(dir);
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

  it('5,000 messages from Postfix smtp-source: kill -9 mid-run, restart, the rest submitted; every acknowledged one delivered', async () => {
    const smtpSource = ['/usr/sbin/smtp-source', ...(process.env.PATH ?? '').split(':').map((d) => path.join(d, 'smtp-source'))].find((p) => {
      try {
        accessSync(p, constants.X_OK);
        return true;
      } catch {
        return false;
      }
    });
    if (!smtpSource) throw new Error('smtp-source not found: install Debian\'s postfix package (see .ci/run)');
    dir = mkdtempSync(path.join(tmpdir(), 'petrel-crash-source-'));
    sink = await startSink({ delayMs: 2 });
    writeFileSync(path.join(dir, 'mx.json'), JSON.stringify({ '*': `127.0.0.1:${sink.port}` }));
    const clients = 8;
    // The shipped policies, plus a rate on the first run's domains (p0-p7) below what the
    // clients submit, so the kill leaves a backlog of acknowledged, undelivered mail for
    // the restart to recover; the second run's domains (q0-q7) are not limited.
    writeFileSync(path.join(dir, 'crash.policy'), `policy crash version 1\n\ndomain ${Array.from({ length: clients }, (_, k) => `p${k}.example`).join(', ')} {\n  rate 200/s\n}\n`);
    const policies = ['--policies', path.join(ROOT, 'policies'), '--policies', path.join(ROOT, 'stdlib'), '--policies', path.join(dir, 'crash.policy'), '--no-watch'];
    const total = 5000;
    /** Recipients whose end of DATA smtp-source saw answered 250: acknowledged, so promised. */
    const acknowledged = new Set<string>();

    /**
     * One smtp-source per client, one session each (`-s 1`), so its `-v` transcript is in
     * order: the last `RCPT TO` before a `.` answered `250` is an acknowledged message.
     * `-N` numbers the recipients (`17user@DOMAIN`); each client has its own domain.
     */
    const submit = (port: number, domainPrefix: string, messages: number, onAck: () => void) =>
      Array.from({ length: clients }, (_, k) => {
        const count = Math.floor(messages / clients) + (k < messages % clients ? 1 : 0);
        const child = spawn(smtpSource, ['-v', '-d', '-s', '1', '-m', String(count), '-l', '1024', '-N', '-M', 'client.test', '-f', 'news@shop.example', '-t', `user@${domainPrefix}${k}.example`, `127.0.0.1:${port}`], { stdio: ['ignore', 'ignore', 'pipe'] });
        children.push(child);
        let rcpt: string | undefined;
        let awaitingDot = false;
        let rest = '';
        child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
          const lines = (rest + chunk).split('\n');
          rest = lines.pop()!;
          for (const line of lines) {
            // Postfix prefixes its log lines with argv[0]: the full path here.
            const m = /^(?:\S*\/)?smtp-source: (.*)$/.exec(line);
            if (!m) continue;
            const text = m[1]!;
            const to = /^RCPT TO:<([^>]+)>/.exec(text);
            if (to) rcpt = to[1];
            else if (text === '.') awaitingDot = true;
            else if (awaitingDot && text.startsWith('<<< ')) {
              awaitingDot = false;
              if (text.startsWith('<<< 250 ') && rcpt) {
                acknowledged.add(rcpt);
                onAck();
              }
            }
          }
        });
        return new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      });

    const started = Date.now();
    const first = await startIn(dir, policies);
    const killAfter = 1500 + Math.floor(Math.random() * 1500);
    let killed = false;
    let deliveredAtKill = 0;
    let killedAt = 0;
    const readyAt = Date.now();
    const firstRun = submit(first.smtp, 'p', total, () => {
      if (!killed && acknowledged.size >= killAfter) {
        killed = true;
        first.child.kill('SIGKILL');
        killedAt = Date.now();
        deliveredAtKill = sink!.received.length;
      }
    });
    // smtp-source exits (fatal: lost connection) when petrel dies under it; bounded anyway.
    const exits = await Promise.race([Promise.all(firstRun), new Promise<null>((r) => setTimeout(() => r(null), 45_000))]);
    expect(exits, 'smtp-source did not exit after the kill').not.toBeNull();
    expect(killed).toBe(true);
    await first.exited();
    const beforeKill = acknowledged.size;
    expect(beforeKill).toBeLessThan(total);
    // It died delivering, not idle: mail had been going out, and acknowledged mail waited.
    expect(deliveredAtKill).toBeGreaterThan(0);
    const backlog = beforeKill - deliveredAtKill;
    expect(backlog).toBeGreaterThan(0);

    const again = await startIn(dir, policies);
    const restartedAt = Date.now();
    expect(await Promise.all(submit(again.smtp, 'q', total - beforeKill, () => undefined))).toEqual(Array(clients).fill(0));
    const submittedAt = Date.now();
    expect(acknowledged.size).toBe(total);

    const received = () => sink!.received.flatMap((m) => m.to);
    const missing = () => {
      const got = new Set(received());
      return [...acknowledged].filter((rcpt) => !got.has(rcpt));
    };
    const end = Date.now() + 60_000;
    while (missing().length > 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
    expect(missing()).toEqual([]);
    const all = received();
    // Nothing arrived that no client sent.
    expect(all.filter((rcpt) => !/^\d+user@[pq]\d\.example$/.test(rcpt))).toEqual([]);
    const duplicates = all.length - new Set(all).size;
    // At-least-once: only deliveries in flight at the kill (outcome not yet durable) go twice.
    expect(duplicates).toBeLessThanOrEqual(100);
    const at = (t: number) => `${((t - started) / 1000).toFixed(1)} s`;
    process.stderr.write(`smtp-source: kill -9 after ${beforeKill} acknowledged (${backlog} of them not yet delivered); ${total} acknowledged in all, 0 lost, ${duplicates} delivered twice; up ${at(readyAt)}, killed ${at(killedAt)}, restarted ${at(restartedAt)}, all submitted ${at(submittedAt)}, all delivered ${at(Date.now())}\n`);
  }, 120_000);
});
