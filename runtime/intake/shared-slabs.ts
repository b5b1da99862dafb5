/**
 * Reused shared buffers that carry a message to a signing thread. A fresh buffer per
 * message, moved to the thread and freed there, cost the main thread a page fault for every
 * 4 KB of it (blocks over 128 KB are mapped fresh by malloc each time): about 0.9 ms per
 * 256 KB message on this project's VM, as much as signing a plain message on the main thread.
 * A slab that comes back is warm, and copying into it costs the copy alone.
 *
 * INVARIANTS:
 * - A slab is in one place at a time: on a free list, or lent to one task. `give` is called
 *   only once that task has answered; a task that failed (its thread may still be reading)
 *   never gives its slab back, so no slab is rewritten while a thread reads it.
 * - The free lists hold at most `maxBytes`; a slab over MAX_KEPT_SLAB is never kept (a copy's
 *   page faults are small beside signing a message that large).
 */
/** Slabs come in multiples of this: a message uses at most 64 KB more than it needs. */
const STEP = 64 * 1024;
const MAX_KEPT_SLAB = 1024 * 1024;

export class SlabPool {
  private readonly free = new Map<number, SharedArrayBuffer[]>();
  private kept = 0;

  constructor(private readonly maxBytes: number) {}

  /** A slab of at least `size` bytes: a kept one of its size class, or a new one. */
  take(size: number): SharedArrayBuffer {
    const cls = sizeClass(size);
    const list = this.free.get(cls);
    const slab = list?.pop();
    if (slab) {
      this.kept -= slab.byteLength;
      return slab;
    }
    return new SharedArrayBuffer(cls);
  }

  /** Takes a slab back once the task it was lent to has answered. */
  give(slab: SharedArrayBuffer): void {
    if (slab.byteLength > MAX_KEPT_SLAB || this.kept + slab.byteLength > this.maxBytes) return;
    let list = this.free.get(slab.byteLength);
    if (!list) this.free.set(slab.byteLength, (list = []));
    list.push(slab);
    this.kept += slab.byteLength;
  }

  /** Bytes on the free lists. */
  keptBytes(): number {
    return this.kept;
  }
}

/** `size` rounded up to a multiple of STEP (at least one STEP). */
function sizeClass(size: number): number {
  return Math.max(1, Math.ceil(size / STEP)) * STEP;
}
