/**
 * Event webhooks across kill -9 of the real `petrel run` process (issue 18.6): mail is
 * delivered and bounced while the tenant's receiver refuses every request, so the events
 * wait in the outbox; the process is killed with SIGKILL; after a restart the receiver
 * (now failing only some requests) gets every event — each id once after dedup, in order
 * per message. (An outcome's event is durable before the outcome itself — the judge
 * awaits the loop — so a kill between the two only repeats the outcome, same event id.)
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import nodemailer from 'nodemailer';
import { afterEach, describe, expect, it } from 'vitest';
import { until } from '../runtime/fixtures/e2e.ts';
import { startSink, type Sink } from '../runtime/fixtures/sink.ts';
import { firstArrivals, flakyReceiver, type FlakyReceiver } from '../runtime/fixtures/webhook-receiver.ts';
import { killAllPetrel, startPetrel } from './petrel-process.ts';

const POLICY = `policy hooks version 1.0.0
use stdlib/bounces
use stdlib/retry

default {
  retry standard
  rules bounces
}
`;
const SECRET = 'crash-test-webhook-secret';

let sink: Sink | undefined;
let receiver: FlakyReceiver | undefined;
let dir: string | undefined;
afterEach(async () => {
  await killAllPetrel();
  await sink?.close();
  await receiver?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
  sink = receiver = dir = undefined;
});

describe('webhooks under kill -9', () => {
  it('sends every event waiting in the outbox after a SIGKILL and restart, once per id after dedup, in order per message', async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'petrel-webhooks-crash-'));
    sink = await startSink({ refuse: (rcpt) => (rcpt.startsWith('gone') ? { code: 550, text: '5.1.1 User unknown' } : undefined) });
    let down = true;
    receiver = await flakyReceiver(SECRET, (n) => (down ? '500' : n % 4 === 1 ? '500' : n % 7 === 3 ? 'drop' : 'ok'));
    writeFileSync(path.join(dir, 'p.policy'), POLICY);
    writeFileSync(
      path.join(dir, 'config.json'),
      JSON.stringify({
        mxOverride: { '*': `127.0.0.1:${sink.port}` },
        tenants: { '*': { dsn: false, webhook: { url: receiver.url, secret: SECRET } } },
        webhooks: { allowPrivateTargets: true },
      }),
    );
    const args = ['--config', path.join(dir, 'config.json'), '--policies', path.join(dir, 'p.policy'), '--policies', path.join(process.cwd(), 'stdlib'), '--no-watch', '--spool', path.join(dir, 'spool'), '--acct', path.join(dir, 'acct'), '--artifact', path.join(dir, 'artifact')];
    const first = await startPetrel(args);

    const smtp = nodemailer.createTransport({ host: '127.0.0.1', port: first.smtp, secure: false, ignoreTLS: true });
    const ok = Array.from({ length: 12 }, (_, n) => `ok${n}@x.example`);
    const gone = Array.from({ length: 4 }, (_, n) => `gone${n}@x.example`);
    for (const to of [...ok, ...gone]) await smtp.sendMail({ from: 'news@shop.example', to, subject: to, text: 'x', headers: { 'X-Petrel-Tenant': 'shop' } });
    smtp.close();
    // Every message's first event has been tried (and refused) at least once: it is in the outbox.
    await until('all deliveries', () => sink!.received.length === ok.length, 30_000);
    await until('an attempt for every message', () => new Set(receiver!.tried).size === ok.length + gone.length, 30_000);
    expect(receiver.events).toEqual([]);
    first.child.kill('SIGKILL');
    await first.exited();

    down = false;
    await startPetrel(args);
    const expected = ok.length + 2 * gone.length;
    await until(`${expected} distinct events`, () => new Set(receiver!.events.map((e) => e.id)).size >= expected, 60_000);
    const unique = firstArrivals(receiver.events);
    expect(unique).toHaveLength(expected);
    expect(receiver.badSignatures).toBe(0);
    expect(unique.filter((e) => e.type === 'delivered').map((e) => e.rcpt).sort()).toEqual([...ok].sort());
    for (const rcpt of gone) expect(unique.filter((e) => e.rcpt === rcpt).map((e) => e.type)).toEqual(['bounced', 'suppressed']);
    // Nothing was delivered twice to the MX by the restart: the outcomes were durable.
    expect(sink.received).toHaveLength(ok.length);
  }, 120_000);
});
