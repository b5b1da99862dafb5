/**
 * The signing queue's bound, through the real runtime and real SMTP sessions: with one
 * signing thread and room for one waiting message, 30 clients sending 64 KB messages at
 * once get either `250` (spooled, delivered, signed) or `451 4.3.0 Busy` (nothing kept),
 * and every message a client resends after a 451 is taken: none is dropped, none is
 * delivered twice. The refusals are counted in `petrel_smtp_refused_total{reason="signing-busy"}`
 * and in the status's `dkim.busy`.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import nodemailer from 'nodemailer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadDkimKeyring } from '../../../runtime/intake/dkim.ts';
import { createDkimSigning } from '../../../runtime/intake/dkim-signing.ts';
import { e2eCase, until } from '../fixtures/e2e.ts';
import { makeKey, verifyWithMailauth, zoneOf, type TestKey } from '../fixtures/dkim.ts';

const POLICY = `policy busy version 1.0.0

default {
  connections 10 per source
}
`;

const t = e2eCase('dkim-busy', 15_000);
let keyDir: string;
let key: TestKey;
beforeAll(() => {
  keyDir = mkdtempSync(path.join(tmpdir(), 'petrel-dkim-busy-keys-'));
  key = makeKey(keyDir, 'shop.example', 'rsa2026', 'rsa');
});
afterAll(() => rmSync(keyDir, { recursive: true, force: true }));

/** Sends one message; resolves with the server's reply (`250 …` or the refusal's text). */
async function send(port: number, n: number, body: string): Promise<string> {
  const transport = nodemailer.createTransport({ host: '127.0.0.1', port, secure: false, ignoreTLS: true });
  try {
    const info = await transport.sendMail({ from: 'news@shop.example', to: `user${n}@receiver.test`, subject: `message ${n}`, text: body });
    return info.response;
  } catch (e) {
    return (e as { response?: string }).response ?? (e as Error).message;
  } finally {
    transport.close();
  }
}

describe('a full signing queue over SMTP', () => {
  it('answers 451 4.3.0 at once, keeps nothing it refused, and takes the message when sent again', async () => {
    const sink = await t.sink();
    const ring = loadDkimKeyring({ keys: [{ domain: key.domain, selector: key.selector, keyFile: key.file }] }, (f) => readFileSync(f));
    const dkim = createDkimSigning(ring, Date.now(), { threads: 1, maxQueue: 1 });
    const runtime = await t.start(POLICY, { mxOverride: { '*': `127.0.0.1:${sink.port}` }, dkim });
    const body = `${'x'.repeat(76)}\r\n`.repeat(830);
    const first = await Promise.all(Array.from({ length: 30 }, (_, n) => send(runtime.smtpPort, n, body)));
    const refused = first.flatMap((reply, n) => (reply.startsWith('451') ? [n] : []));
    for (const reply of first) expect(reply).toMatch(/^(250 2\.0\.0 queued as |451 4\.3\.0 Busy, try again later)/);
    console.log(`signing queue of 1, one thread: ${refused.length} of 30 messages sent at once answered 451 4.3.0`);
    // One signing and one waiting: a burst of 30 cannot all fit.
    expect(refused.length).toBeGreaterThan(0);
    expect(runtime.status()).toMatchObject({ accepted: 30 - refused.length, dkim: { busy: refused.length, signed: 30 - refused.length } });
    const metrics = await (await fetch(`http://127.0.0.1:${runtime.httpPort}/metrics`)).text();
    expect(metrics).toContain(`petrel_smtp_refused_total{reason="signing-busy"} ${refused.length}`);
    // What was refused is sent again, one at a time, as a client retrying later does.
    for (const n of refused) expect(await send(runtime.smtpPort, n, body)).toMatch(/^250 /);
    await until('all 30 delivered', () => sink.received.length >= 30);
    const subjects = sink.received.map((m) => /^Subject: (.*)$/m.exec(m.raw)?.[1]);
    expect(new Set(subjects).size).toBe(30);
    expect(sink.received).toHaveLength(30);
    for (const m of [sink.received[0]!, sink.received[29]!]) expect(await verifyWithMailauth(Buffer.from(m.raw), zoneOf([key]))).toEqual([{ d: 'shop.example', s: 'rsa2026', pass: true }]);
  }, 120_000);
});
