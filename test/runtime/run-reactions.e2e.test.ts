/**
 * Reactions that send a recipient elsewhere: `reroute pool P` retries it at once through
 * another pool's source, `skip-mx` at once on the next MX host — and neither loops. And
 * what reactions and operators decided (suspensions, pauses) survives a restart.
 */
import path from 'node:path';
import nodemailer from 'nodemailer';
import { describe, expect, it } from 'vitest';
import type { Runtime } from '../../runtime/runtime.ts';
import { e2eCase, readAccounting, until } from './fixtures/e2e.ts';

const POLICY = `policy reactions version 1

source cold {
  address 127.0.0.2
  ehlo cold.petrel.test
}

source warm {
  address 127.0.0.3
  ehlo warm.petrel.test
}

pool coldpool {
  cold
}

pool warmpool {
  warm
}

tenant shop {
  pool coldpool
}

rules local {
  on reply 4xx "volume from this ip" {
    classify policy-related
    reroute pool warmpool
    retry after 1h
  }

  on reply 4xx "come back in an hour" {
    classify policy-related
    suspend destination 1h
  }

  on reply 4xx "try another host" {
    classify other
    skip-mx
    retry after 1h
  }
}

default {
  connections 10
  rules local
}
`;

const t = e2eCase('reactions');

const start = (mx: string): Promise<Runtime> => t.start(POLICY, { mxOverride: { '*': mx } });

/** Accounting rows of the final kinds (d, b, t), as CSV lines. */
const accounting = () => readAccounting(path.join(t.dir, 'acct')).filter((row) => ['d', 'b', 't'].includes(row.type));

describe('petrel run: reroute and skip-mx', () => {
  it('reroutes a deferral from the cold pool through the warm pool at once', async () => {
    const tried: string[] = [];
    const sink = await t.sink({
      refuse: (_rcpt, remote) => {
        tried.push(remote);
        return remote === '127.0.0.2' ? { code: 421, text: '4.7.0 Too much volume from this IP, try later' } : undefined;
      },
    });
    const r = await start(`127.0.0.1:${sink.port}`);
    const transport = nodemailer.createTransport({ host: '127.0.0.1', port: r.smtpPort, secure: false, ignoreTLS: true });
    const sent = Date.now();
    await transport.sendMail({ from: 'news@shop.example', to: 'someone@example.org', subject: 'hi', text: 'x', headers: { 'X-Petrel-Tenant': 'shop' } });
    await until('delivery through the warm pool', () => sink.received.length === 1);
    // At once, not after the rule's hour.
    expect(Date.now() - sent).toBeLessThan(5_000);
    expect(tried).toEqual(['127.0.0.2', '127.0.0.3']);
    expect(sink.received[0]).toMatchObject({ remote: '127.0.0.3', ehlo: 'warm.petrel.test' });
    // Stopping flushes accounting.
    await r.stop(5_000);
    t.runtime = undefined;
    const lines = accounting();
    expect(lines.map((row) => [row.type, row.bounceCat, row.vmta])).toEqual([
      ['t', 'policy-related', 'cold'],
      ['d', '', 'warm'],
    ]);
  });

  it('a deferral that rerouting cannot help waits for its retry instead of looping', async () => {
    const tried: string[] = [];
    const sink = await t.sink({
      refuse: (_rcpt, remote) => {
        tried.push(remote);
        return { code: 421, text: '4.7.0 Too much volume from this IP, try later' };
      },
    });
    const r = await start(`127.0.0.1:${sink.port}`);
    const transport = nodemailer.createTransport({ host: '127.0.0.1', port: r.smtpPort, secure: false, ignoreTLS: true });
    await transport.sendMail({ from: 'news@shop.example', to: 'someone@example.org', subject: 'hi', text: 'x', headers: { 'X-Petrel-Tenant': 'shop' } });
    await until('two attempts', () => tried.length >= 2);
    await new Promise((res) => setTimeout(res, 1500));
    // Cold, then warm once; the warm source is in the pool already, so the rule's hour applies.
    expect(tried).toEqual(['127.0.0.2', '127.0.0.3']);
    expect(r.status()).toMatchObject({ deferred: 2, delivered: 0, queued: 1 });
  });

  it('skip-mx moves a recipient to the next MX host at once, and not in circles', async () => {
    const busy = (rcpt: string) => (rcpt.startsWith('both') ? { code: 451, text: '4.3.0 Temporary problem, try another host' } : undefined);
    const first = await t.sink({ refuse: (rcpt) => ({ code: 451, text: `4.3.0 Temporary problem, try another host (${rcpt})` }) });
    const second = await t.sink({ refuse: (rcpt) => busy(rcpt) });
    const r = await start(`127.0.0.1:${first.port}, 127.0.0.1:${second.port}`);
    const transport = nodemailer.createTransport({ host: '127.0.0.1', port: r.smtpPort, secure: false, ignoreTLS: true });
    await transport.sendMail({ from: 'news@shop.example', to: 'someone@example.org', subject: 'hi', text: 'x' });
    await until('delivery on the second MX', () => second.received.length === 1);
    expect(first.received).toHaveLength(0);

    // Both hosts busy: each tried once, then the rule's hour.
    await transport.sendMail({ from: 'news@shop.example', to: 'both@example.net', subject: 'hi', text: 'x' });
    await until('both hosts tried', () => r.status().deferred >= 3);
    await new Promise((res) => setTimeout(res, 1500));
    expect(r.status()).toMatchObject({ delivered: 1, deferred: 3, queued: 1 });
    expect(first.connections + second.connections).toBeLessThanOrEqual(4);
  });

  it('keeps suspensions and pauses across a restart', async () => {
    const sink = await t.sink({ refuse: () => ({ code: 421, text: '4.7.0 Too many messages, come back in an hour' }) });
    let r = await start(`127.0.0.1:${sink.port}`);
    const transport = nodemailer.createTransport({ host: '127.0.0.1', port: r.smtpPort, secure: false, ignoreTLS: true });
    await transport.sendMail({ from: 'news@shop.example', to: 'someone@example.org', subject: 'hi', text: 'x' });
    await until('the suspension', () => r.status().suspensions.length === 1);
    const paused = await fetch(`http://127.0.0.1:${r.httpPort}/api/v1/pause`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ source: 'warm' }) });
    expect(paused.status).toBe(200);
    const before = r.status();
    await r.stop(5_000);
    t.runtime = undefined;

    r = await start(`127.0.0.1:${sink.port}`);
    const after = r.status();
    expect(after.suspensions).toEqual(before.suspensions);
    expect(after.suspensions[0]).toMatchObject({ key: 'destination|default/example.org', reason: expect.stringContaining('come back in an hour') });
    expect(after.paused).toEqual(['source:warm']);
    // Still suspended: the queued message is not tried again.
    await new Promise((res) => setTimeout(res, 1000));
    expect(sink.connections).toBe(1);
    expect(after.queued).toBe(1);
  });
});
