import { describe, expect, it } from 'vitest';
import { SlabPool } from '../../../runtime/intake/shared-slabs.ts';

describe('SlabPool', () => {
  it('lends a slab of at least the size asked, in 64 KB steps, and lends a returned one again', () => {
    const pool = new SlabPool(1 << 20);
    const a = pool.take(100_000);
    expect(a.byteLength).toBe(128 * 1024);
    expect(pool.take(1).byteLength).toBe(64 * 1024);
    pool.give(a);
    expect(pool.keptBytes()).toBe(128 * 1024);
    expect(pool.take(70_000)).toBe(a);
    expect(pool.keptBytes()).toBe(0);
    // While lent, it is not lent twice: the next of its size is new.
    expect(pool.take(70_000)).not.toBe(a);
  });

  it('keeps at most its bound, and never a slab over 1 MB', () => {
    const pool = new SlabPool(256 * 1024);
    const slabs = [1, 2, 3, 4, 5].map(() => pool.take(64 * 1024));
    slabs.forEach((s) => pool.give(s));
    expect(pool.keptBytes()).toBe(256 * 1024);
    const big = new SlabPool(64 << 20);
    big.give(big.take(2 << 20));
    expect(big.keptBytes()).toBe(0);
  });
});
