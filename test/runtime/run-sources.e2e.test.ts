/**
 * Sources, pools and warmup in `petrel run`: a cold source is capped by its ramp, the
 * excess goes out through the ramp's overflow pool, and each source binds its own address
 * and EHLO name.
 */
import nodemailer from 'nodemailer';
import { describe, expect, it } from 'vitest';
import { e2eCase, until } from './fixtures/e2e.ts';

const POLICY = `policy sources version 1.0.0

warmup cold {
  schedule 2/day, 4/day
  overflow pool warm
}

source fresh {
  address 127.0.0.2
  ehlo fresh.petrel.test
  warmup cold since 2026-11-29
}

source seasoned {
  address 127.0.0.3
  ehlo seasoned.petrel.test
}

pool warm {
  seasoned
}

pool rotation {
  fresh, seasoned
}

tenant shop {
  pool rotation
}
`;

const t = e2eCase('sources');

describe('petrel run: sources, pools and warmup', () => {
  it('caps the cold source at its ramp and overflows the rest to the warm pool, each from its own address', async () => {
    const sink = await t.sink();
    // Day 1 of the ramp (2026-11-29): the cold source may send 2 messages to this route.
    const started = Date.now();
    const clock = () => Date.UTC(2026, 10, 29, 12, 0, 0) + (Date.now() - started);
    const runtime = await t.start(POLICY, { mxOverride: { '*': `127.0.0.1:${sink.port}` }, clock });
    expect(runtime.policy().manifest.delivery).toEqual({
      sources: [
        { name: 'fresh', address: '127.0.0.2', ehlo: 'fresh.petrel.test', warmup: { ramp: 'cold', since: '2026-11-29', overflowPool: 'warm' } },
        { name: 'seasoned', address: '127.0.0.3', ehlo: 'seasoned.petrel.test', warmup: null },
      ],
      pools: { rotation: ['fresh', 'seasoned'], warm: ['seasoned'] },
      tenants: { shop: 'rotation' },
    });
    const transport = nodemailer.createTransport({ host: '127.0.0.1', port: runtime.smtpPort, secure: false, ignoreTLS: true });
    for (let n = 0; n < 6; n++) {
      await transport.sendMail({ from: 'news@shop.example', to: `r${n}@long-tail.example`, subject: `m${n}`, text: 'x', headers: { 'X-Petrel-Tenant': 'shop' } });
    }
    await until('all 6 delivered', () => runtime.status().delivered === 6, 20_000);
    const fromFresh = sink.received.filter((s) => s.remote === '127.0.0.2');
    const fromSeasoned = sink.received.filter((s) => s.remote === '127.0.0.3');
    expect(fromFresh).toHaveLength(2);
    expect(fromSeasoned).toHaveLength(4);
    expect(new Set(fromFresh.map((s) => s.ehlo))).toEqual(new Set(['fresh.petrel.test']));
    expect(new Set(fromSeasoned.map((s) => s.ehlo))).toEqual(new Set(['seasoned.petrel.test']));
  });
});
