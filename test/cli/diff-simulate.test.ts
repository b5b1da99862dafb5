/**
 * `petrel diff --simulate`: copies of the shipped policies, the head with Yahoo's rate per
 * source halved, run through the simulator on the same small campaign (virtual time) —
 * Yahoo takes twice as long and peaks at half the rate, flagged `slower`, and every other
 * provider is unchanged; identical sides report no outcome change; a bad campaign is
 * refused naming the file, exit 3. Human (the binary), markdown and JSON.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { OutcomeComparison } from '../../cli/diff-simulate.ts';
import { main } from '../../cli/main.ts';
import type { PolicyDiff } from '../../compiler/diff.ts';
import { MODELS_DIR } from '../../simulate/index.ts';
import { ROOT, runPetrel } from '../helpers.ts';

/** 4 000 messages over ten minutes to three providers: Yahoo's share takes 25 minutes at 3600/h. */
const CAMPAIGN = {
  format: 1,
  name: 'small',
  streams: [
    { name: 'yahoo', count: 1500, provider: 'yahoo', overSeconds: 600 },
    { name: 'google', count: 1500, provider: 'google', overSeconds: 600 },
    { name: 'microsoft', count: 1000, provider: 'microsoft', overSeconds: 600 },
  ],
};
const YAHOO_RATE = /^ {2}rate 3600\/h per source$/m;

let dir = '';
beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'petrel-diff-simulate-'));
  // policies/ only: `use stdlib/…` reads the package's stdlib, the same on both sides.
  for (const side of ['base', 'head', 'same', 'slow']) cpSync(path.join(ROOT, 'policies'), path.join(dir, side, 'policies'), { recursive: true });
  edit(path.join(dir, 'head/policies/yahoo.policy'), YAHOO_RATE, '  rate 1800/h per source');
  edit(path.join(dir, 'slow/policies/yahoo.policy'), YAHOO_RATE, '  rate 600/h per source');
  edit(path.join(dir, 'same/policies/yahoo.policy'), /^policy yahoo version \S+/m, 'policy yahoo version 2027.1.1\n# no behaviour changed');
  // The shipped models with no full mailboxes: a full mailbox is retried with jitter, drawn
  // from the run's one seeded sequence, so a change to Yahoo's sending moves other
  // providers' retries by a little (docs/simulate.md, "Comparing two versions"). Without
  // retried recipients, every other provider must come out exactly the same.
  cpSync(MODELS_DIR, path.join(dir, 'models'), { recursive: true });
  for (const name of ['yahoo', 'google', 'microsoft', 'long-tail']) {
    const file = path.join(dir, 'models', `${name}.json`);
    const model = JSON.parse(readFileSync(file, 'utf8'));
    model.recipients.fullMailboxFraction.fraction = 0;
    writeFileSync(file, JSON.stringify(model));
  }
  writeFileSync(path.join(dir, 'small.json'), JSON.stringify(CAMPAIGN));
  writeFileSync(path.join(dir, 'hour.json'), JSON.stringify({ ...CAMPAIGN, name: 'one hour', horizonSeconds: 3600 }));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function edit(file: string, from: RegExp, to: string): void {
  const text = readFileSync(file, 'utf8');
  expect(from.test(text), `edit of ${file}`).toBe(true);
  writeFileSync(file, text.replace(from, to));
}

async function petrel(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await main(['diff', ...argv], { out: (t) => (out += t), err: (t) => (err += t), cwd: dir });
  return { code, out, err };
}

const SIMULATE = ['--simulate', 'small.json', '--model', 'models'];
/** Each diff runs two simulations (2-4 s of CPU each); on the shared, loaded machine a test of two diffs took 25 s of wall time. */
const SLOW = { timeout: 180_000 };

describe('petrel diff --simulate', () => {
  it('Yahoo\'s rate halved: Yahoo completes later and peaks lower, flagged slower; Google and Microsoft unchanged (JSON)', SLOW, async () => {
    const r = await petrel(['base', 'head', ...SIMULATE, '--format', 'json']);
    expect(r.code, r.err).toBe(1);
    const d = JSON.parse(r.out) as PolicyDiff & { simulation: OutcomeComparison };
    expect(d.routes.map((x) => x.route)).toEqual(['provider:yahoo']);
    const s = d.simulation;
    expect(Object.keys(s)).toEqual(['campaign', 'seed', 'base', 'head', 'delta']);
    expect([s.campaign, s.seed]).toEqual(['small', 1]);
    const side = (which: 'base' | 'head', provider: string) => s[which].providers.find((p) => p.provider === provider)!;
    const [yahooBase, yahooHead] = [side('base', 'yahoo'), side('head', 'yahoo')];
    // The same recipients, the same fates; only the pace differs.
    expect({ ...yahooHead, timeToCompleteSeconds: 0, timeToHalfSeconds: 0, peakPerHour: 0 }).toEqual({ ...yahooBase, timeToCompleteSeconds: 0, timeToHalfSeconds: 0, peakPerHour: 0 });
    expect(yahooHead.timeToHalfSeconds!).toBeGreaterThan(yahooBase.timeToHalfSeconds! * 1.1);
    expect(yahooBase).toMatchObject({ recipients: 1500, open: 0 });
    expect(yahooHead.timeToCompleteSeconds! / yahooBase.timeToCompleteSeconds!).toBeGreaterThan(1.8);
    expect(yahooHead.timeToCompleteSeconds! / yahooBase.timeToCompleteSeconds!).toBeLessThan(2.2);
    expect(yahooHead.peakPerHour).toBeLessThan(yahooBase.peakPerHour * 0.6);
    expect(yahooHead.peakPerHour).toBeLessThanOrEqual(1800 * 1.01);

    const yahoo = s.delta.providers.find((p) => p.provider === 'yahoo')!;
    expect(yahoo.flags).toEqual(['slower']);
    expect(yahoo.changes.map((c) => c.figure)).toEqual(['time to complete', 'time to 50 % settled', 'peak per hour']);
    const done = yahoo.changes[0]!;
    expect(done).toEqual({ figure: 'time to complete', base: yahooBase.timeToCompleteSeconds, head: yahooHead.timeToCompleteSeconds, change: yahooHead.timeToCompleteSeconds! - yahooBase.timeToCompleteSeconds!, percent: expect.closeTo(((yahooHead.timeToCompleteSeconds! - yahooBase.timeToCompleteSeconds!) / yahooBase.timeToCompleteSeconds!) * 100, 6) });
    for (const other of ['google', 'microsoft']) {
      expect(s.delta.providers.find((p) => p.provider === other)).toEqual({ provider: other, changes: [], flags: [] });
      const [b, h] = [side('base', other), side('head', other)];
      expect({ ...h, peakPerHour: 0 }).toEqual({ ...b, peakPerHour: 0 });
      expect(Math.abs(h.peakPerHour - b.peakPerHour)).toBeLessThanOrEqual(0.01 * b.peakPerHour);
    }
    expect(s.delta.total.flags).toEqual(['slower']);
    expect(s.delta.changed).toBe(true);
  });

  it('markdown: the policy change, then an Outcomes table with a row per changed figure, the unchanged providers named', SLOW, async () => {
    const r = await petrel(['base', 'head', ...SIMULATE, '--format', 'markdown']);
    expect(r.code, r.err).toBe(1);
    const [policy, outcomes] = r.out.split(/\n(?=## Outcomes)/);
    expect(policy).toMatch(/^## petrel diff: 1 destination changed\n/);
    expect(policy).toContain('| rate per source | `3600/h per source` | `1800/h per source` |');
    const lines = outcomes!.split('\n');
    // The campaign as a whole ends when Yahoo's share does: the total is slower too.
    expect(lines[0]).toBe('## Outcomes: 1 provider changed; flagged: yahoo slower; total slower');
    expect(lines).toContain('Campaign `small`, seed 1, simulated on each side.');
    expect(lines.filter((l) => l.startsWith('- base: ') || l.startsWith('- head: '))).toEqual([expect.stringMatching(/^- base: 4000 recipients, \d+ delivered, \d+ bounced, 0 open; finished in /), expect.stringMatching(/^- head: 4000 recipients, /)]);
    const rows = lines.filter((l) => l.startsWith('| '));
    expect(rows[0]).toBe('| provider | figure | base | head | change |');
    expect(rows.slice(1)).toEqual([
      expect.stringMatching(/^\| `yahoo` ⚠️ slower \| time to complete \| 2\d\.\d min \| [45]\d\.\d min \| \+2\d\.\d min \(\+\d+%\) \|$/),
      expect.stringMatching(/^\| {2}\| time to 50 % settled \| \d+\.\d min \| \d+\.\d min \| \+\d+\.\d min \(\+\d+%\) \|$/),
      expect.stringMatching(/^\| {2}\| peak per hour \| 3\d{3}\/h \| 1\d{3}\/h \| -1\d{3}\/h \(-\d+%\) \|$/),
      expect.stringMatching(/^\| \*\*total\*\* ⚠️ slower \| time to complete \| 30\.0 min \| [45]\d\.\d min \| /),
      expect.stringMatching(/^\| {2}\| peak per hour \| /),
    ]);
    expect(lines).toContain('Unchanged: `google`, `microsoft`.');
  });

  it('prints the Outcomes section for a terminal, after the policy change (the binary, another seed)', SLOW, () => {
    const r = runPetrel(['diff', 'base', 'head', ...SIMULATE, '--seed', '7'], { cwd: dir });
    expect(r.code, r.stderr).toBe(1);
    const outcomes = r.stdout.split('\n1 destination changed\n\n')[1]!;
    const lines = outcomes.split('\n');
    expect(lines[0]).toBe('outcomes of campaign `small` (seed 7): 1 provider changed; flagged: yahoo slower; total slower');
    expect(lines.slice(3)).toEqual([
      '',
      'yahoo  [slower]',
      expect.stringMatching(/^ {2}time to complete +2\d\.\d min → [45]\d\.\d min +\+2\d\.\d min \(\+\d+%\)$/),
      expect.stringMatching(/^ {2}time to 50 % settled +\d+\.\d min → \d+\.\d min +\+\d+\.\d min \(\+\d+%\)$/),
      expect.stringMatching(/^ {2}peak per hour +3\d{3}\/h → 1\d{3}\/h +-1\d{3}\/h \(-\d+%\)$/),
      'total  [slower]',
      expect.stringMatching(/^ {2}time to complete {2}30\.0 min → [45]\d\.\d min /),
      expect.stringMatching(/^ {2}peak per hour /),
      'unchanged: google, microsoft',
      '',
    ]);
  });

  it('identical behaviour on both sides (a version bump and a comment): no outcome change, exit 0', SLOW, async () => {
    const r = await petrel(['base', 'same', ...SIMULATE]);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/\nno effective change\n\noutcomes of campaign `small` \(seed 1\): no change in outcomes\n {2}base: 4000 recipients, .*\n {2}head: 4000 recipients, .*\n\nunchanged: google, microsoft, yahoo\n$/);
    const json = await petrel(['base', 'same', ...SIMULATE, '--format', 'json']);
    const s = (JSON.parse(json.out) as { simulation: OutcomeComparison }).simulation;
    expect(s.delta).toEqual({ changed: false, total: { provider: 'total', changes: [], flags: [] }, providers: ['google', 'microsoft', 'yahoo'].map((provider) => ({ provider, changes: [], flags: [] })) });
    // Not within a tolerance: the very same figures (the run is deterministic).
    expect(s.head.providers).toEqual(s.base.providers);
    expect(s.head.total).toEqual(s.base.total);
  });

  it('Yahoo at 600/h cannot send its 1 500 within the campaign\'s hour: flagged no longer finishes, its open recipients counted', SLOW, async () => {
    const r = await petrel(['base', 'slow', '--simulate', 'hour.json', '--model', 'models', '--format', 'json']);
    expect(r.code, r.err).toBe(1);
    const s = (JSON.parse(r.out) as { simulation: OutcomeComparison }).simulation;
    expect([s.base.finished, s.head.finished]).toEqual([true, false]);
    const yahoo = s.delta.providers.find((p) => p.provider === 'yahoo')!;
    expect(yahoo.flags).toEqual(['no longer finishes']);
    const open = yahoo.changes.find((c) => c.figure === 'open')!;
    // About 600 sent in the hour, of 1 500.
    expect(open.base).toBe(0);
    expect(open.head).toBeGreaterThan(800);
    expect(open.head).toBeLessThan(1000);
    expect(yahoo.changes.find((c) => c.figure === 'time to complete')).toMatchObject({ base: expect.any(Number), head: null, change: null, percent: null });
    expect(s.delta.total.flags).toEqual(['no longer finishes']);
    expect(s.delta.providers.filter((p) => p.changes.length > 0).map((p) => p.provider)).toEqual(['yahoo']);
  });

  it('a bad campaign or models: every problem naming the file, exit 3, nothing printed on stdout', async () => {
    const write = (name: string, value: unknown) => (writeFileSync(path.join(dir, name), typeof value === 'string' ? value : JSON.stringify(value)), name);
    const cases: [string[], RegExp][] = [
      [['--simulate', write('bad1.json', '{ nope')], /^petrel diff: .*bad1\.json: not JSON/],
      [['--simulate', write('bad2.json', { format: 1, streams: [{ count: 1, provider: 'yahoo', colour: 'red' }] })], /^petrel diff: .*bad2\.json: unknown field `streams\.0\.colour`/],
      [['--simulate', write('bad3.json', { format: 1, streams: [{ count: 3_000_000, provider: 'yahoo' }, { count: 3_000_000, provider: 'yahoo' }] })], /bad3\.json: `streams` hold 6000000 messages, more than the 5000000/],
      [['--simulate', 'missing.json'], /^petrel diff: .*missing\.json: /],
      // Judged against each side's policy: a pool neither side has, named per side.
      [['--simulate', write('bad4.json', { format: 1, streams: [{ count: 1, provider: 'yahoo', pool: 'warm' }] })], /^petrel diff: base: bad4\.json: `streams\.0\.pool` `warm` is not a pool of the policy[^\n]*\npetrel diff: head: bad4\.json: /],
      [['--simulate', write('bad5.json', { format: 1, streams: [{ count: 1, provider: 'hotmale' }] }), '--model', 'models'], /bad5\.json: `streams\.0\.provider` `hotmale` is no model/],
      [['--simulate', 'small.json', '--model', 'nowhere'], /^petrel diff: --model `.*nowhere`: cannot read the directory/],
    ];
    for (const [args, message] of cases) {
      const r = await petrel(['base', 'head', ...args]);
      expect(r, args.join(' ')).toMatchObject({ code: 3, out: '' });
      expect(r.err, args.join(' ')).toMatch(message);
    }
  });

  it('usage errors exit 2: --model or --seed without --simulate, a bad seed', async () => {
    expect(await petrel(['base', 'head', '--seed', '3'])).toMatchObject({ code: 2, err: expect.stringContaining('`--model` and `--seed` go with `--simulate CAMPAIGN`') });
    expect(await petrel(['base', 'head', '--model', 'models'])).toMatchObject({ code: 2 });
    expect(await petrel(['base', 'head', '--simulate', 'small.json', '--seed', 'x'])).toMatchObject({ code: 2, err: expect.stringContaining('--seed `x` must be a whole number') });
  });

  it('--help names --simulate, --model and --seed and what the exit codes mean with them', () => {
    const r = runPetrel(['diff', '--help']);
    expect(r.stdout).toContain('--simulate <campaign>');
    expect(r.stdout).toContain('--model <dir>');
    expect(r.stdout).toContain('--seed <n>');
    expect(r.stdout).toMatch(/1 changes: in the policies, or with --simulate in the\noutcomes/);
  });
});
