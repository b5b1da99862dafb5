/**
 * A binary min-heap of items by a time key, equal times in the order they were pushed —
 * the one ordered structure of the scheduling core: the virtual clock's timers
 * (virtual-time.ts), each lane's work (work-heap.ts) and the lanes by when they are next
 * ready (work-lanes.ts).
 *
 * INVARIANT: heap order holds over (key, seq) pairs; `items`, `keys` and `seqs` move in
 * lockstep (parallel arrays: a push allocates no entry object).
 */
export class TimeHeap<T> {
  private items: T[] = [];
  private keys: number[] = [];
  private seqs: number[] = [];
  private nextSeq = 0;
  /** The push order of the item the last `pop` returned (give it to `push` to put the item back in its place among equals). */
  lastSeq = 0;

  get size(): number {
    return this.items.length;
  }

  /** The smallest key, or Infinity when empty. */
  earliest(): number {
    return this.items.length > 0 ? this.keys[0]! : Infinity;
  }

  /** The item with the smallest key (undefined when empty). */
  peek(): T | undefined {
    return this.items[0];
  }

  /** Every item, in no particular order (the heap's own array: do not change it). */
  values(): readonly T[] {
    return this.items;
  }

  /** Adds `item` at time `key`; `seq` (from `lastSeq`) puts a popped item back ahead of later pushes with its key. */
  push(item: T, key: number, seq = this.nextSeq++): void {
    let i = this.items.length;
    this.items.push(item);
    this.keys.push(key);
    this.seqs.push(seq);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.before(key, seq, parent)) break;
      this.move(parent, i);
      i = parent;
    }
    this.place(i, item, key, seq);
  }

  /** Removes and returns the item with the smallest key (its push order in `lastSeq`). */
  pop(): T | undefined {
    const n = this.items.length;
    if (n === 0) return undefined;
    const top = this.items[0]!;
    this.lastSeq = this.seqs[0]!;
    const item = this.items.pop()!;
    const key = this.keys.pop()!;
    const seq = this.seqs.pop()!;
    if (n > 1) this.siftDown(0, item, key, seq);
    return top;
  }

  /** Gives every item its key anew (`keyOf`) and keeps those `keep` accepts, in order again. O(n). */
  rebuild(keyOf: (item: T) => number, keep: (item: T) => boolean = () => true): void {
    const items = this.items;
    const seqs = this.seqs;
    this.items = [];
    this.keys = [];
    this.seqs = [];
    for (let i = 0; i < items.length; i++) {
      if (!keep(items[i]!)) continue;
      this.items.push(items[i]!);
      this.keys.push(keyOf(items[i]!));
      this.seqs.push(seqs[i]!);
    }
    for (let i = (this.items.length >> 1) - 1; i >= 0; i--) this.siftDown(i, this.items[i]!, this.keys[i]!, this.seqs[i]!);
  }

  /** Whether (key, seq) goes before the entry at `i`. */
  private before(key: number, seq: number, i: number): boolean {
    const k = this.keys[i]!;
    return key < k || (key === k && seq < this.seqs[i]!);
  }

  private move(from: number, to: number): void {
    this.items[to] = this.items[from]!;
    this.keys[to] = this.keys[from]!;
    this.seqs[to] = this.seqs[from]!;
  }

  private place(i: number, item: T, key: number, seq: number): void {
    this.items[i] = item;
    this.keys[i] = key;
    this.seqs[i] = seq;
  }

  /** Puts (item, key, seq) at `i` or below, moving smaller children up. */
  private siftDown(i: number, item: T, key: number, seq: number): void {
    const n = this.items.length;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const m = r < n && this.before(this.keys[r]!, this.seqs[r]!, l) ? r : l;
      const mk = this.keys[m]!;
      if (!(mk < key || (mk === key && this.seqs[m]! < seq))) break;
      this.move(m, i);
      i = m;
    }
    this.place(i, item, key, seq);
  }
}
