/**
 * Work by `notBefore`, equal times in the order pushed: one lane's work (work-lanes.ts),
 * so the scheduler looks only at a lane's first item instead of scanning its waiting ones.
 *
 * INVARIANT: heap order holds for the `notBefore` values as they were when pushed. Code
 * that moves an item's `notBefore` from outside (an operator's "retry now") must call
 * `rescue` or `reorder`, which restore the order.
 */
import { TimeHeap } from './time-heap.ts';
import type { Work } from './work.ts';

export class WorkHeap {
  private readonly heap = new TimeHeap<Work>();

  get size(): number {
    return this.heap.size;
  }

  /** Every item, in no particular order (a copy). */
  all(): Work[] {
    return this.heap.values().slice();
  }

  /** Every item, in no particular order (the heap's own array: do not change it). */
  values(): readonly Work[] {
    return this.heap.values();
  }

  /** The earliest `notBefore` waiting, or Infinity. */
  earliest(): number {
    return this.heap.earliest();
  }

  /** The earliest item (undefined when empty). */
  peek(): Work | undefined {
    return this.heap.peek();
  }

  /** Adds `w` by its `notBefore`; `seq` (from `lastSeq`) puts an item taken by `pop` back in its place among equal times. */
  push(w: Work, seq?: number): void {
    this.heap.push(w, w.notBefore, seq);
  }

  /** Removes and returns the earliest item; its place among equal times is in `lastSeq` until the next pop. */
  pop(): Work | undefined {
    return this.heap.pop();
  }

  get lastSeq(): number {
    return this.heap.lastSeq;
  }

  /** Removes and returns every item due at `now` (notBefore ≤ now), earliest first. */
  takeDue(now: number, into: Work[]): void {
    while (this.heap.size > 0 && this.heap.earliest() <= now) into.push(this.heap.pop()!);
  }

  /** After `notBefore`s were moved from outside: takes out (into `into`) every item due at `now`, and restores the order of the rest. O(n). */
  rescue(now: number, into: Work[]): void {
    for (const w of this.heap.values()) if (w.notBefore <= now) into.push(w);
    this.heap.rebuild((w) => w.notBefore, (w) => w.notBefore > now);
  }

  /** After `notBefore`s were moved from outside: restores the order of every item. O(n). */
  reorder(): void {
    this.heap.rebuild((w) => w.notBefore);
  }
}
