/**
 * Work that is not due yet, as a binary min-heap by `notBefore`: the scheduler's pass looks
 * only at its top instead of scanning every waiting item (a simulation's day holds tens of
 * thousands of retries waiting while each delivery ends in a pass of its own).
 *
 * INVARIANT: heap order holds for the `notBefore` values as they were when pushed. Code
 * that moves an item's `notBefore` earlier from outside (an operator's "retry now") must
 * call `rescue`, which takes out every item due by then and restores the order.
 */
import type { Work } from './work.ts';

export class WorkHeap {
  private items: Work[] = [];

  get size(): number {
    return this.items.length;
  }

  /** Every waiting item, in no particular order (a copy). */
  all(): Work[] {
    return this.items.slice();
  }

  /** The earliest `notBefore` waiting, or Infinity. */
  earliest(): number {
    return this.items[0]?.notBefore ?? Infinity;
  }

  push(w: Work): void {
    const h = this.items;
    let i = h.push(w) - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (h[parent]!.notBefore <= w.notBefore) break;
      h[i] = h[parent]!;
      i = parent;
    }
    h[i] = w;
  }

  /** Removes and returns every item due at `now` (notBefore ≤ now), earliest first. */
  takeDue(now: number, into: Work[]): void {
    while (this.items.length > 0 && this.items[0]!.notBefore <= now) into.push(this.pop());
  }

  /** After `notBefore`s were moved from outside: takes out (into `into`) every item due at `now`, and restores the order of the rest. O(n). */
  rescue(now: number, into: Work[]): void {
    const rest: Work[] = [];
    for (const w of this.items) (w.notBefore <= now ? into : rest).push(w);
    this.items = rest;
    for (let i = (rest.length >> 1) - 1; i >= 0; i--) this.siftDown(i);
  }

  private pop(): Work {
    const h = this.items;
    const top = h[0]!;
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      this.siftDown(0);
    }
    return top;
  }

  private siftDown(i: number): void {
    const h = this.items;
    const w = h[i]!;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = l < h.length && h[l]!.notBefore < w.notBefore ? l : -1;
      if (r < h.length && h[r]!.notBefore < (m === -1 ? w.notBefore : h[m]!.notBefore)) m = r;
      if (m === -1) break;
      h[i] = h[m]!;
      i = m;
    }
    h[i] = w;
  }
}
