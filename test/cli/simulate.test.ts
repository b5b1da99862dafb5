/**
 * `petrel simulate` through the CLI (in this process, as the binary runs it): usage and
 * campaign errors name what and where (exit 2); a campaign to a Yahoo model that tolerates
 * less than the policy sends meets TSS04 deferrals, and the shipped rule's suspensions are
 * reported with its file:line; every recipient ends delivered or bounced as the model
 * decides it; the timeline adds up to the totals; the same seed gives the same run.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../cli/main.ts';
import { MODELS_DIR, recipientFate, type SimulationReport } from '../../simulate/index.ts';
import { ROOT } from '../helpers.ts';

const SENDERS = `policy senders version 1

source a {
  address 192.0.2.10
  ehlo a.example.com
}

source b {
  address 192.0.2.11
  ehlo b.example.com
}

pool bulk {
  a, b
}

tenant shop {
  pool bulk
}
`;

let dir = '';
beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'petrel-simulate-cli-'));
  writeFileSync(path.join(dir, 'senders.policy'), SENDERS);
  // Yahoo tolerates 50 messages an hour per IP here; the policy sends 3600/h per source.
  cpSync(MODELS_DIR, path.join(dir, 'models'), { recursive: true });
  const yahoo = JSON.parse(readFileSync(path.join(dir, 'models', 'yahoo.json'), 'utf8'));
  yahoo.limits.messagesPerIp.count = 50;
  writeFileSync(path.join(dir, 'models', 'yahoo.json'), JSON.stringify(yahoo));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function simulate(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await main(['simulate', path.join(ROOT, 'policies/yahoo.policy'), path.join(ROOT, 'stdlib'), path.join(dir, 'senders.policy'), ...args], { out: (t) => (out += t), err: (t) => (err += t), cwd: dir });
  return { code, out, err };
}

function campaign(name: string, value: unknown): string {
  const file = path.join(dir, name);
  writeFileSync(file, typeof value === 'string' ? value : JSON.stringify(value));
  return file;
}

const YAHOO_CAMPAIGN = { format: 1, name: 'yahoo', streams: [{ count: 400, domains: { 'yahoo.com': 1 }, tenant: 'shop', overSeconds: 1800 }] };

describe('petrel simulate', () => {
  it('refuses bad usage and bad campaigns with exit 2, naming the file and the field', async () => {
    expect((await simulate([])).err).toMatch(/`--campaign FILE` is required/);
    expect((await simulate(['--campaign', 'x.json', '--format', 'pdf'])).code).toBe(2);
    expect((await simulate(['--campaign', 'x.json', '--seed', '1.5'])).err).toMatch(/--seed `1.5` must be a whole number/);
    const cases: [unknown, RegExp][] = [
      ['{ nope', /bad1\.json: not JSON/],
      [{ format: 1, streams: [{ count: 1, provider: 'yahoo', colour: 'red' }] }, /bad2\.json: unknown field `streams\.0\.colour`/],
      [{ format: 1, streams: [{ count: 0, provider: 'yahoo' }] }, /bad3\.json: `streams\.0\.count` must be >= 1/],
      [{ format: 1, streams: [{ count: 1, provider: 'yahoo', domains: { 'a.example': 1 } }] }, /bad4\.json: `streams\.0` must name either `provider` or `domains`, not both/],
      [{ format: 1, streams: [{ count: 1, provider: 'hotmale' }] }, /bad5\.json: `streams\.0\.provider` `hotmale` is no model; the models are .*`yahoo`/],
      [{ format: 1, streams: [{ count: 1, provider: 'yahoo', pool: 'warm' }] }, /bad6\.json: `streams\.0\.pool` `warm` is not a pool of the policy; its pools are `bulk`/],
      [{ format: 1, streams: [{ count: 1, provider: 'yahoo' }], warmup: { a: { ageDays: 3 } } }, /bad7\.json: `warmup\.a`: source `a` has no warmup in the policy/],
      [{ format: 1, streams: [{ count: 3000000, provider: 'yahoo' }, { count: 3000000, provider: 'yahoo' }] }, /bad8\.json: `streams` hold 6000000 messages, more than the 5000000/],
    ];
    for (const [i, [value, message]] of cases.entries()) {
      const r = await simulate(['--campaign', campaign(`bad${i + 1}.json`, value)]);
      expect(r.code, r.err).toBe(2);
      expect(r.err).toMatch(message);
    }
    const noModels = await simulate(['--campaign', campaign('ok.json', YAHOO_CAMPAIGN), '--model', path.join(dir, 'nowhere')]);
    expect(noModels.code).toBe(2);
    expect(noModels.err).toMatch(/--model `.*nowhere`: cannot read the directory/);
  });

  it('reports per provider and source, with the suspensions the shipped TSS04 rule started, and repeats with the same seed', async () => {
    const file = campaign('yahoo.json', YAHOO_CAMPAIGN);
    const run = () => simulate(['--campaign', file, '--model', path.join(dir, 'models'), '--format', 'json', '--seed', '7']);
    const first = await run();
    expect(first.code, first.err).toBe(0);
    const r = JSON.parse(first.out) as SimulationReport;
    expect(r.finished).toBe(true);
    expect([r.messages, r.recipients, r.open]).toEqual([400, 400, 0]);

    // Every recipient ends as the model decides it: unknown users and full mailboxes bounce.
    const model = JSON.parse(readFileSync(path.join(dir, 'models', 'yahoo.json'), 'utf8'));
    const fractions = { unknownFraction: model.recipients.unknownFraction.fraction, fullMailboxFraction: model.recipients.fullMailboxFraction.fraction };
    const fates = Array.from({ length: 400 }, (_, n) => recipientFate(fractions, `s0m${n}r0@yahoo.com`));
    const yahoo = r.providers.find((p) => p.provider === 'yahoo')!;
    expect(yahoo.delivered).toBe(fates.filter((f) => f === 'deliverable').length);
    expect(yahoo.bounced).toBe(fates.filter((f) => f !== 'deliverable').length);
    expect(yahoo.sources.map((s) => s.source)).toEqual(['a', 'b']);

    // Over its rate the provider deferred the IPs with TSS04; the shipped rule suspended the source.
    expect(yahoo.providerDeferrals).toBeGreaterThan(0);
    expect(yahoo.deferred).toBeGreaterThan(0);
    const suspensions = r.events.filter((e) => e.kind === 'suspension');
    expect(suspensions.length).toBeGreaterThan(0);
    for (const e of suspensions) {
      expect(e).toMatchObject({ target: 'source', queue: 'provider:yahoo', reason: expect.stringContaining('[TSS04]') });
      const [file, line] = e.rule!.split(':');
      expect(path.basename(file!)).toBe('yahoo.policy');
      expect(readFileSync(path.join(ROOT, 'policies/yahoo.policy'), 'utf8').split('\n')[Number(line) - 1]).toMatch(/on reply .*TSS0/);
    }

    // The timeline adds up to the totals.
    const series = r.timeline.providers.find((p) => p.provider === 'yahoo')!;
    const sum = (a: number[]) => a.reduce((s, v) => s + v, 0);
    expect([sum(series.delivered), sum(series.deferred), sum(series.bounced)]).toEqual([yahoo.delivered, yahoo.deferred, yahoo.bounced]);

    // The same seed, the same run (wall-clock figures aside).
    const again = JSON.parse((await run()).out) as SimulationReport;
    const timeless = (x: SimulationReport) => ({ ...x, wallSeconds: 0, ratio: 0 });
    expect(timeless(again)).toEqual(timeless(r));

    const human = await simulate(['--campaign', file, '--model', path.join(dir, 'models')]);
    expect(human.out).toMatch(/^yahoo: 400 recipients, \d+ delivered/m);
    expect(human.out).toMatch(/suspension source provider:yahoo [ab] until .* by .*yahoo\.policy:\d+: 421 4\.7\.0 \[TSS04\]/);
    expect(human.out).toMatch(/simulated in [\d.]+ s of wall time: \d+× real time\n$/);
  });
});
