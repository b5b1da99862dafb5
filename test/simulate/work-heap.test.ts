/**
 * runtime/schedule/work-heap.ts, the scheduler's waiting work: items come out due-first in
 * notBefore order, never before they are due; `rescue` takes out items an operator moved
 * earlier and keeps the rest in order.
 */
import { describe, expect, it } from 'vitest';
import type { Work } from '../../runtime/schedule/index.ts';
import { WorkHeap } from '../../runtime/schedule/work-heap.ts';

const item = (n: number, notBefore: number): Work => ({ id: `m${n}`, domain: 'x.test', rcpts: [`r${n}@x.test`], notBefore });

describe('WorkHeap', () => {
  it('gives out exactly the due items, earliest first, over many pushes and takes', () => {
    const heap = new WorkHeap();
    const items = Array.from({ length: 2000 }, (_, n) => item(n, (n * 7919) % 1000));
    for (const w of items) heap.push(w);
    expect(heap.size).toBe(2000);
    const out: Work[] = [];
    heap.takeDue(499, out);
    expect(out.map((w) => w.notBefore)).toEqual(items.map((w) => w.notBefore).filter((t) => t <= 499).sort((a, b) => a - b));
    expect(heap.earliest()).toBe(500);
    const rest: Work[] = [];
    heap.takeDue(Infinity, rest);
    expect(rest.map((w) => w.notBefore)).toEqual(items.map((w) => w.notBefore).filter((t) => t > 499).sort((a, b) => a - b));
    expect(heap.size).toBe(0);
    expect(heap.earliest()).toBe(Infinity);
  });

  it('rescues items whose notBefore was moved earlier from outside, and keeps order for the rest', () => {
    const heap = new WorkHeap();
    const items = Array.from({ length: 100 }, (_, n) => item(n, 1000 + n));
    for (const w of items) heap.push(w);
    items[90]!.notBefore = 5; // retry now
    items[50]!.notBefore = 1010.5; // earlier, still future
    const due: Work[] = [];
    heap.rescue(10, due);
    expect(due).toEqual([items[90]]);
    const all: Work[] = [];
    heap.takeDue(Infinity, all);
    expect(all.map((w) => w.notBefore)).toEqual([...all.map((w) => w.notBefore)].sort((a, b) => a - b));
    expect(all[11]).toBe(items[50]);
  });
});
