/**
 * simulate/compare.ts's rules on figures made for them (the simulations behind them are in
 * test/cli/diff-simulate.test.ts): what is a change, and which changes are flagged.
 */
import { describe, expect, it } from 'vitest';
import { compareOutcomes, type OutcomeFigures, type OutcomeSide } from '../../simulate/index.ts';

const FIGURES: OutcomeFigures = { recipients: 1000, delivered: 970, deferred: 40, blocked: 0, bounced: 30, bouncedByCategory: { 'bad-mailbox': 30 }, open: 0, timeToCompleteSeconds: 3600, timeToHalfSeconds: 1800, peakPerHour: 1000, backoffs: 0, suspensions: 0 };

function side(providers: Record<string, Partial<OutcomeFigures>>): OutcomeSide {
  const rows = Object.entries(providers).map(([provider, f]) => ({ provider, ...FIGURES, ...f }));
  return { policy: { name: 'p', version: '1', hash: 'h' }, finished: true, simulatedSeconds: 3600, wallSeconds: 1, eventsCounted: 0, eventCount: 0, total: FIGURES, providers: rows, warnings: [] };
}

const delta = (base: Partial<OutcomeFigures>, head: Partial<OutcomeFigures>) => compareOutcomes(side({ a: base }), side({ a: head })).providers[0]!;

describe('compareOutcomes', () => {
  it('the same figures: no change', () => {
    const d = compareOutcomes(side({ a: {}, b: {} }), side({ a: {}, b: {} }));
    expect(d).toEqual({ changed: false, total: { provider: 'total', changes: [], flags: [] }, providers: [{ provider: 'a', changes: [], flags: [] }, { provider: 'b', changes: [], flags: [] }] });
  });

  it('counts change at one; times and rates at 1 %', () => {
    expect(delta({}, { deferred: 41 }).changes).toEqual([{ figure: 'deferred', base: 40, head: 41, change: 1, percent: 2.5 }]);
    expect(delta({}, { timeToCompleteSeconds: 3630, peakPerHour: 1009 }).changes).toEqual([]);
    expect(delta({}, { timeToCompleteSeconds: 3690, peakPerHour: 980 }).changes.map((c) => [c.figure, c.change])).toEqual([
      ['time to complete', 90],
      ['peak per hour', -20],
    ]);
  });

  it('a bounce category that moved is listed by name, from or to none', () => {
    const d = delta({}, { bouncedByCategory: { 'bad-mailbox': 28, 'message-expired': 2 } });
    expect(d.changes).toEqual([
      { figure: 'bounced bad-mailbox', base: 30, head: 28, change: -2, percent: expect.closeTo(-6.667, 2) },
      { figure: 'bounced message-expired', base: 0, head: 2, change: 2, percent: null },
    ]);
    expect(d.flags).toEqual([]);
  });

  it('flags: slower past 10 %, more blocks from none, more bounces past 1 % of the recipients, no longer finishes', () => {
    expect(delta({}, { timeToCompleteSeconds: 3960 }).flags).toEqual([]);
    expect(delta({}, { timeToCompleteSeconds: 3961 }).flags).toEqual(['slower']);
    // The bulk slower while the tail of bounded retries sets the same end: still slower.
    expect(delta({}, { timeToHalfSeconds: 1981 }).flags).toEqual(['slower']);
    expect(delta({}, { timeToHalfSeconds: 1981 }).changes.map((c) => [c.figure, c.change])).toEqual([['time to 50 % settled', 181]]);
    expect(delta({}, { timeToHalfSeconds: 1900 }).flags).toEqual([]);
    expect(delta({}, { blocked: 1 }).flags).toEqual(['more blocks']);
    expect(delta({ blocked: 50 }, { blocked: 60 }).flags).toEqual([]);
    expect(delta({ blocked: 50 }, { blocked: 61 }).flags).toEqual(['more blocks']);
    expect(delta({}, { bounced: 40 }).flags).toEqual([]);
    expect(delta({}, { bounced: 41 }).flags).toEqual(['more bounces']);
    expect(delta({ bounced: 0 }, { bounced: 1 }).flags).toEqual(['more bounces']);
    const unfinished = delta({}, { timeToCompleteSeconds: null, open: 5 });
    expect(unfinished.flags).toEqual(['no longer finishes']);
    expect(unfinished.changes).toEqual([
      { figure: 'open', base: 0, head: 5, change: 5, percent: null },
      { figure: 'time to complete', base: 3600, head: null, change: null, percent: null },
    ]);
    // Fewer blocks, faster, finishing now: changes, not flags.
    expect(delta({ blocked: 9, timeToCompleteSeconds: null }, { blocked: 0, timeToCompleteSeconds: 1800 }).flags).toEqual([]);
  });

  it('a provider on one side only is listed with its figures against none, unflagged', () => {
    const d = compareOutcomes(side({ a: {} }), side({ a: {}, b: {} }));
    expect(d.changed).toBe(true);
    expect(d.providers.map((p) => p.provider)).toEqual(['a', 'b']);
    expect(d.providers[1]!.changes.find((c) => c.figure === 'delivered')).toEqual({ figure: 'delivered', base: 0, head: 970, change: 970, percent: null });
    expect(d.providers[1]!.flags).toEqual([]);
  });
});
