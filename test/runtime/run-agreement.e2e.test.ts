/**
 * `petrel test` and the runtime give one meaning to a reaction (issue 13): a
 * `when N in T { reroute … }` rule moves nothing before its Nth match, in a policy's test
 * block and in real delivery alike. (The runtime used to reroute on every match, while
 * `petrel test` honoured only the actions that fired.)
 */
import nodemailer from 'nodemailer';
import { describe, expect, it } from 'vitest';
import { runTests } from '../../compiler/run-tests.ts';
import { compileFiles, loadArtifact } from '../helpers.ts';
import { e2eCase, until } from './fixtures/e2e.ts';

const POLICY = `policy agreement version 1.0.0

default {
  retry {
    then every 1h
  }
  on reply 451 /try the warm pool/ when 2 in 1h {
    reroute pool warm
    example "451 4.7.1 try the warm pool"
  }
}

source cold {
  address 127.0.0.2
}

source hot {
  address 127.0.0.3
}

pool coldpool {
  cold
}

pool warm {
  hot
}

tenant shop {
  pool coldpool
}
`;

const TESTS = `
test "the reroute waits for its second match" {
  deliver to a@partner.example source cold tenant shop
  reply "451 4.7.1 try the warm pool"
  expect reroute pool warm
}

test "and then moves the recipient" {
  deliver to a@partner.example source cold tenant shop
  reply "451 4.7.1 try the warm pool" 2 times
  expect reroute pool warm
  expect retry 1h
}
`;

const t = e2eCase('agreement');

describe('petrel test and petrel run agree', () => {
  it('on a `when 2 in 1h { reroute pool … }` rule: nothing moves at the first match, the second reroutes', async () => {
    // petrel test: the first expectation fails (nothing fired yet), the second passes.
    const built = await compileFiles({ 'p.policy': POLICY + TESTS });
    const results = runTests(built.ir!.tests, await loadArtifact(built));
    expect(results.map((r) => [r.name, r.passed])).toEqual([
      ['the reroute waits for its second match', false],
      ['and then moves the recipient', true],
    ]);
    expect(results[0]!.failures.map((f) => f.actual)).toEqual(['no reroute']);

    // The runtime: the cold source meets the reply; the first message waits for its retry
    // (an hour), the second is rerouted at once through the warm pool and delivered.
    const sink = await t.sink({ refuse: (_rcpt, remote) => (remote === '127.0.0.2' ? { code: 451, text: '4.7.1 try the warm pool' } : undefined) });
    const runtime = await t.start(POLICY, { mxOverride: { '*': `127.0.0.1:${sink.port}` } });
    const transport = nodemailer.createTransport({ host: '127.0.0.1', port: runtime.smtpPort, secure: false, ignoreTLS: true });
    const send = (to: string) => transport.sendMail({ from: 'news@shop.example', to, subject: to, text: 'x', headers: { 'X-Petrel-Tenant': 'shop' } });
    await send('first@partner.example');
    await until('the first deferral', () => runtime.status().deferred === 1);
    await send('second@partner.example');
    await until('the second delivered', () => runtime.status().delivered === 1, 20_000);
    transport.close();
    expect(sink.received.map((m) => [m.to, m.remote])).toEqual([[['second@partner.example'], '127.0.0.3']]);
    // The first is still waiting for its hour, not rerouted.
    await new Promise((r) => setTimeout(r, 500));
    expect(runtime.status()).toMatchObject({ delivered: 1, deferred: 2, queued: 1 });
  }, 60_000);
});
