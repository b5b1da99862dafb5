/**
 * runtime/schedule/virtual-time.ts's timer heap, as petrel simulate leans on it: timers fire
 * in time order, equal times in the order set, whatever order they were set in; a cancelled
 * timer never fires, a fired or cancelled one cancelled again changes nothing; `pending`
 * counts the live ones; a timer set while firing at the current time fires in the same run.
 */
import { describe, expect, it } from 'vitest';
import { VirtualTime } from '../../runtime/schedule/index.ts';

describe('VirtualTime', () => {
  it('fires thousands of timers in (time, order set) order, skipping the cancelled, with pending counting the live', async () => {
    const time = new VirtualTime(0, 7);
    const fired: number[] = [];
    const expected: { at: number; n: number }[] = [];
    const handles = [];
    for (let n = 0; n < 5000; n++) {
      const at = Math.floor(time.random() * 1000);
      handles.push(time.setTimeout(() => fired.push(n), at));
      expected.push({ at, n });
    }
    // Cancel every third; cancelling twice, or a handle from nowhere, is ignored.
    for (let n = 0; n < 5000; n += 3) {
      time.clearTimeout(handles[n]);
      time.clearTimeout(handles[n]);
    }
    time.clearTimeout({ id: 999_999 });
    time.clearTimeout(undefined);
    expect(time.pending).toBe(5000 - Math.ceil(5000 / 3));
    const count = await time.runUntil(500, { maxTimers: 10_000 });
    const want = expected.filter((e) => e.n % 3 !== 0).sort((a, b) => a.at - b.at || a.n - b.n);
    expect(fired).toEqual(want.filter((e) => e.at <= 500).map((e) => e.n));
    expect(count).toBe(fired.length);
    expect(time.now()).toBe(500);
    // A fired timer cancelled afterwards changes nothing.
    time.clearTimeout(handles[want[0]!.n]);
    expect(time.pending).toBe(want.length - fired.length);
    await time.runUntil(2000, { maxTimers: 10_000 });
    expect(fired).toEqual(want.map((e) => e.n));
    expect(time.pending).toBe(0);
  });

  it('runs a timer set at the current time by a firing timer in the same run, after those already due then', async () => {
    const time = new VirtualTime(1000);
    const order: string[] = [];
    time.setTimeout(() => {
      order.push('a');
      time.setTimeout(() => order.push('c'), 0);
    }, 10);
    time.setTimeout(() => order.push('b'), 10);
    time.setTimeout(() => order.push('d'), 11);
    await time.runUntil(1011);
    expect(order).toEqual(['a', 'b', 'c', 'd']);
  });
});
