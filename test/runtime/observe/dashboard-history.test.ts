/**
 * The dashboard's per-minute counters (runtime/observe/dashboard/history.ts): rates are
 * the change of a total over the last minute of samples, scaled to a minute; the queue
 * depth is the sample's; at most an hour of samples is kept. Samples are taken by hand
 * on a clock the test moves (the sampling timer is stopped at once).
 */
import { describe, expect, it } from 'vitest';
import { counterHistory, type Totals } from '../../../runtime/observe/dashboard/history.ts';

function history() {
  let now = 1_000_000;
  const totals: Totals = { accepted: 0, delivered: 0, deferred: 0, bounced: 0, queued: 0 };
  const h = counterHistory(() => totals, () => now, 3_600_000);
  h.stop();
  return { h, totals, step: (ms: number) => (now += ms) };
}

describe('dashboard counter history', () => {
  it('is empty until the second sample, then gives rates per minute and the queue depth', () => {
    const { h, totals, step } = history();
    expect(h.points()).toEqual([]);
    step(30_000);
    totals.accepted = 10;
    totals.delivered = 5;
    totals.queued = 5;
    h.sample();
    // 10 in 30 s: 20 a minute.
    expect(h.points()).toEqual([{ t: 1030, accepted: 20, delivered: 10, deferred: 0, bounced: 0, queued: 5 }]);
  });

  it('counts over the last minute only', () => {
    const { h, totals, step } = history();
    for (let i = 1; i <= 10; i++) {
      step(20_000);
      totals.delivered += i === 10 ? 60 : 1;
      h.sample();
    }
    // The last sample looks back to the one 60 s before it: 1 + 1 + 60 delivered in 60 s.
    expect(h.points().at(-1)).toMatchObject({ delivered: 62, accepted: 0 });
    expect(h.points()).toHaveLength(10);
  });

  it('keeps an hour of samples at most', () => {
    const { h, step } = history();
    for (let i = 0; i < 2000; i++) {
      step(5000);
      h.sample();
    }
    expect(h.points()).toHaveLength(719);
  });
});
