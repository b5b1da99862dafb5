/**
 * Sources, pools and warmup in `petrel run`: a cold source is capped by its ramp, the
 * excess goes out through the ramp's overflow pool, and each source binds its own address
 * and EHLO name.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import nodemailer from 'nodemailer';
import { afterEach, describe, expect, it } from 'vitest';
import { loadArtifact } from '../../runtime/loader.ts';
import { startRuntime, type Runtime } from '../../runtime/runtime.ts';
import { compileFiles, writeArtifact } from '../helpers.ts';
import { startSink, type Sink } from './fixtures/sink.ts';

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

let dir: string;
let runtime: Runtime | undefined;
let sink: Sink | undefined;
afterEach(async () => {
  await runtime?.stop(5_000);
  runtime = undefined;
  await sink?.close();
  sink = undefined;
  rmSync(dir, { recursive: true, force: true });
});

describe('petrel run: sources, pools and warmup', () => {
  it('caps the cold source at its ramp and overflows the rest to the warm pool, each from its own address', async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'petrel-sources-'));
    sink = await startSink();
    const built = await compileFiles({ 'sources.policy': POLICY });
    expect(built.artifact!.manifest.delivery).toEqual({
      sources: [
        { name: 'fresh', address: '127.0.0.2', ehlo: 'fresh.petrel.test', warmup: { ramp: 'cold', since: '2026-11-29', overflowPool: 'warm' } },
        { name: 'seasoned', address: '127.0.0.3', ehlo: 'seasoned.petrel.test', warmup: null },
      ],
      pools: { rotation: ['fresh', 'seasoned'], warm: ['seasoned'] },
      tenants: { shop: 'rotation' },
    });
    const art = await writeArtifact(dir, built);
    const { artifact, manifest } = await loadArtifact(art);
    // Day 1 of the ramp (2026-11-29): the cold source may send 2 messages to this route.
    const started = Date.now();
    const clock = () => Date.UTC(2026, 10, 29, 12, 0, 0) + (Date.now() - started);
    runtime = await startRuntime({ artifact, manifest, spoolDir: path.join(dir, 'spool'), accountingDir: path.join(dir, 'acct'), smtp: { host: '127.0.0.1', port: 0 }, http: { host: '127.0.0.1', port: 0 }, mxOverride: { '*': `127.0.0.1:${sink.port}` }, clock });
    const transport = nodemailer.createTransport({ host: '127.0.0.1', port: runtime.smtpPort, secure: false, ignoreTLS: true });
    for (let n = 0; n < 6; n++) {
      await transport.sendMail({ from: 'news@shop.example', to: `r${n}@long-tail.example`, subject: `m${n}`, text: 'x', headers: { 'X-Petrel-Tenant': 'shop' } });
    }
    const end = Date.now() + 20_000;
    while (runtime.status().delivered < 6 && Date.now() < end) await new Promise((r) => setTimeout(r, 25));
    expect(runtime.status().delivered).toBe(6);
    const fromFresh = sink.received.filter((s) => s.remote === '127.0.0.2');
    const fromSeasoned = sink.received.filter((s) => s.remote === '127.0.0.3');
    expect(fromFresh).toHaveLength(2);
    expect(fromSeasoned).toHaveLength(4);
    expect(new Set(fromFresh.map((s) => s.ehlo))).toEqual(new Set(['fresh.petrel.test']));
    expect(new Set(fromSeasoned.map((s) => s.ehlo))).toEqual(new Set(['seasoned.petrel.test']));
  });
});
