/**
 * Hot reload under load: 50 pushes go live one after another while 20,000 messages are
 * submitted and delivered over loopback by the real `petrel run`. Nothing is lost, nothing
 * is delivered twice, and every accounting record names exactly one version, one that was
 * live when the delivery was decided.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import nodemailer from 'nodemailer';
import { afterAll, describe, expect, it } from 'vitest';
import { runPetrel } from '../helpers.ts';
import { startSink, type Sink } from '../runtime/fixtures/sink.ts';
import { killAllPetrel, startPetrel, type PetrelProcess } from './petrel-process.ts';
import { policyRepo, ratePolicy } from './policy-repo.ts';
import { until } from '../runtime/fixtures/e2e.ts';

const MESSAGES = 20_000;
const RELOADS = 50;

let dir: string | undefined;
let sink: Sink | undefined;
let petrel: PetrelProcess | undefined;
afterAll(async () => {
  if (petrel) await petrel.stop();
  await killAllPetrel();
  await sink?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** PowerMTA's `YYYY-MM-DD HH:MM:SS+0000` (whole seconds). */
const parseTime = (t: string) => Date.parse(t.replace(' ', 'T').replace(/\+0000$/, 'Z'));

describe('hot reload under load', () => {
  it(`${RELOADS} reloads while ${MESSAGES} messages are delivered: 0 lost, 0 twice, every record names a version live then`, async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'petrel-reload-load-'));
    const seen = new Map<string, number>();
    sink = await startSink({
      refuse: (rcpt) => {
        seen.set(rcpt, (seen.get(rcpt) ?? 0) + 1);
        return undefined;
      },
    });
    writeFileSync(path.join(dir, 'mx.json'), JSON.stringify({ '*': `127.0.0.1:${sink.port}` }));
    const repo = policyRepo(dir, { 'example.policy': ratePolicy('5000/s', 'reload 0') });
    petrel = await startPetrel(['--policy-git', repo.bare, '--poll', '0', '--keep', String(RELOADS + 5), '--artifact', path.join(dir, 'artifact'), '--spool', path.join(dir, 'spool'), '--acct', path.join(dir, 'acct'), '--mx-override', path.join(dir, 'mx.json')]);
    const p = petrel;
    const hook = runPetrel(['hook', 'install', repo.bare, '--notify', `http://127.0.0.1:${p.http}`]);
    expect(hook.code, hook.stderr).toBe(0);

    // Submission: 10 sessions, one unique recipient per message.
    const transport = nodemailer.createTransport({ host: '127.0.0.1', port: p.smtp, secure: false, ignoreTLS: true, pool: true, maxConnections: 10, maxMessages: Infinity });
    const submitted = Promise.all(Array.from({ length: MESSAGES }, (_, n) => transport.sendMail({ from: 'news@shop.example', to: `r${n}@example.com`, subject: `m${n}`, text: 'x'.repeat(200) })));

    // Reloads: each push goes live before the next (two rates alternate, so limits change too).
    let live = 0;
    const pushes = (async () => {
      for (let i = 1; i <= RELOADS; i++) {
        const { commit } = repo.push({ 'example.policy': ratePolicy(i % 2 ? '4000/s' : '5000/s', `reload ${i}`) }, `reload ${i}`);
        await until(`reload ${i} live`, async () => ((await p.get<{ current: { commit: string } }>('/api/v1/policy')).current.commit === commit ? true : undefined), 10_000);
        live++;
      }
    })();
    await Promise.all([submitted, pushes]);
    transport.close();
    expect(live).toBe(RELOADS);
    await until('every delivery', () => (seen.size === MESSAGES ? true : undefined), 180_000);
    const status = await until('nothing in flight or queued', async () => {
      const s = await p.get<{ delivered: number; queued: number; inFlight: number; accepted: number }>('/api/v1/status');
      return s.queued === 0 && s.inFlight === 0 ? s : undefined;
    }, 30_000);

    // 0 lost, 0 delivered twice.
    const twice = [...seen].filter(([, n]) => n > 1);
    expect(twice).toEqual([]);
    expect(seen.size).toBe(MESSAGES);
    expect(status).toMatchObject({ accepted: MESSAGES, delivered: MESSAGES });

    // Every record names one version, and that version was live when the delivery was decided.
    const view = await p.get<{ current: { hash: string; activatedAt: string }; previous: { hash: string; activatedAt: string; replacedAt?: string }[] }>('/api/v1/policy');
    const versions = [view.current, ...view.previous];
    expect(versions).toHaveLength(RELOADS + 1);
    // Stopping flushes the accounting writer.
    expect(await p.stop()).toBe(0);
    const windowOf = new Map(versions.map((v: { hash: string; activatedAt: string; replacedAt?: string }) => [v.hash, { from: Date.parse(v.activatedAt), to: v.replacedAt ? Date.parse(v.replacedAt) : Infinity }]));
    const lines = readdirSync(path.join(dir, 'acct'))
      .flatMap((f) => readFileSync(path.join(dir!, 'acct', f), 'utf8').split('\n'))
      .filter((l) => l.startsWith('d,'));
    expect(lines).toHaveLength(MESSAGES);
    const used = new Set<string>();
    for (const line of lines) {
      const hashes = line.match(/\b[0-9a-f]{64}\b/g) ?? [];
      expect(hashes, line).toHaveLength(1);
      const window = windowOf.get(hashes[0]!);
      expect(window, `${line}: a version that never went live`).toBeDefined();
      used.add(hashes[0]!);
      // The delivery was decided (and its version taken) after the message was queued and
      // before the record was logged; the version must have been live at some moment in
      // between. Both times have whole seconds, hence the second of rounding each side.
      const [, logged, queued] = line.split(',').map(parseTime);
      expect(window!.from, line).toBeLessThanOrEqual(logged! + 1000);
      expect(window!.to, line).toBeGreaterThanOrEqual(queued! - 1000);
    }
    // The deliveries really spanned the reloads.
    expect(used.size).toBeGreaterThan(RELOADS / 5);
  }, 300_000);
});
