/**
 * A reputation block on the long tail (issue 13): a receiver that blocks one of our IPs
 * with a 5xx "your IP has been blocked" reply, on a route with nothing but the stdlib's
 * generic rules. The runtime used to bounce the recipient — and then every following
 * recipient of the queue. Now the block keeps the mail, stops that source for that domain,
 * and the other source of the pool delivers everything.
 */
import nodemailer from 'nodemailer';
import { describe, expect, it } from 'vitest';
import { e2eCase, readAccounting, until } from './fixtures/e2e.ts';

const POLICY = `policy blocks version 1.0.0
use stdlib/bounces
use stdlib/retry

default {
  retry standard
  rules bounces
}

source blocked {
  address 127.0.0.2
  ehlo blocked.petrel.test
}

source clean {
  address 127.0.0.3
  ehlo clean.petrel.test
}
`;

const IP_BLOCK = '5.7.28 [127.0.0.2] Our system has detected an unusual rate of unsolicited mail originating from your IP address. To protect our users from spam, mail sent from your IP address has been blocked.';

const t = e2eCase('blocks');

describe('petrel run: a block keeps the mail and stops the source', () => {
  it('bounces no valid recipient, stops the blocked source for that domain, and delivers everything through the other', async () => {
    const tried: string[] = [];
    const sink = await t.sink({
      refuse: (rcpt, remote) => {
        tried.push(remote);
        return remote === '127.0.0.2' ? { code: 550, text: IP_BLOCK } : undefined;
      },
    });
    const runtime = await t.start(POLICY, { mxOverride: { '*': `127.0.0.1:${sink.port}` } });
    const transport = nodemailer.createTransport({ host: '127.0.0.1', port: runtime.smtpPort, secure: false, ignoreTLS: true, pool: true, maxConnections: 4 });
    const total = 120;
    await Promise.all(Array.from({ length: total }, (_, n) => transport.sendMail({ from: 'news@shop.example', to: `r${n}@long-tail.example`, subject: `m${n}`, text: 'x' })));
    transport.close();
    await until(`${total} delivered`, () => runtime.status().delivered === total, 60_000);

    const delivered = sink.received.flatMap((m) => m.to);
    expect(new Set(delivered).size).toBe(total);
    expect(delivered).toHaveLength(total);
    expect(sink.received.every((m) => m.remote === '127.0.0.3')).toBe(true);
    expect(runtime.status().bounced).toBe(0);

    // The blocked source stopped at its first refusals: only the transactions already under
    // way on its connections met the block, not the rest of the queue.
    const refusals = tried.filter((ip) => ip === '127.0.0.2').length;
    expect(refusals).toBeGreaterThan(0);
    expect(refusals).toBeLessThanOrEqual(20);
    const suspension = runtime.status().suspensions.find((s) => s.key === 'source|default/long-tail.example|blocked');
    expect(suspension, JSON.stringify(runtime.status().suspensions)).toBeDefined();
    const minutes = (Date.parse(suspension!.until) - Date.now()) / 60_000;
    expect(minutes).toBeGreaterThan(13);
    expect(minutes).toBeLessThanOrEqual(15);

    await runtime.stop(2000);
    t.runtime = undefined;
    const rows = readAccounting(`${t.dir}/acct`);
    expect(rows.filter((r) => r.type === 'b')).toEqual([]);
    const deferred = rows.filter((r) => r.type === 't');
    expect(deferred).toHaveLength(refusals);
    for (const r of deferred) expect(r).toMatchObject({ bounceCat: 'spam-related', vmta: 'blocked' });
    expect(deferred[0]!.policyRule).toMatch(/stdlib\/bounces\.policy:\d+$/);
  }, 90_000);
});
