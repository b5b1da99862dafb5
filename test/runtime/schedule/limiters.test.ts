/**
 * The limiter store with a fake clock: long-run rates, bursts, all-or-nothing admission,
 * retry hints, concurrency bounds under random operation sequences, and eviction.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { EffectiveSettings, LimitScope } from '../../../runtime/abi.ts';
import {
  defaultBurst,
  limiterKey,
  connectionRequest,
  messageRequests,
  MemoryLimiterStore,
  parseLimiterKey,
  type AcquireRequest,
  type Lease,
  type RateTake,
} from '../../../runtime/schedule/limiters.ts';

/** A clock near today's epoch milliseconds, so float rounding is as in production. */
function fakeClock(start = 1_760_000_000_000) {
  let now = start;
  return { clock: () => now, advance: (ms: number) => (now += ms), get now() { return now; }, start };
}

function storeWithClock(sweepIntervalMs?: number) {
  const time = fakeClock();
  const store = new MemoryLimiterStore(sweepIntervalMs === undefined ? { clock: time.clock } : { clock: time.clock, sweepIntervalMs });
  return { store, time };
}

const rate = (key: string, count: number, perSeconds: number, cost = 1): RateTake => ({ key, count, perSeconds, cost });

/** Acquires as fast as the store allows for `durationMs`, sleeping exactly the hinted time when refused. */
function greedy(store: MemoryLimiterStore, time: ReturnType<typeof fakeClock>, request: AcquireRequest, durationMs: number): number {
  const end = time.now + durationMs;
  let admitted = 0;
  while (time.now < end) {
    const result = store.tryAcquireSync(request);
    if (result.ok) {
      admitted++;
      store.releaseSync(result.lease);
    } else {
      expect(result.retryAfterMs).not.toBeNull();
      time.advance(result.retryAfterMs!);
    }
  }
  return admitted;
}

describe('limiterKey', () => {
  const path = { route: 'provider:yahoo', source: 'ip1', tenant: 'bigcorp' };

  it('makes one key per kind, scope and names', () => {
    expect(limiterKey('message-rate', 'global', path)).toBe('message-rate:global');
    expect(limiterKey('connections', 'source', path)).toBe('connections:source:ip1');
    expect(limiterKey('data-rate', 'tenant', path)).toBe('data-rate:tenant:bigcorp');
    expect(limiterKey('connect-rate', 'destination', path)).toBe('connect-rate:destination:provider%3Ayahoo');
    expect(limiterKey('message-rate', 'destination/source', path)).toBe('message-rate:destination/source:provider%3Ayahoo|ip1');
    expect(limiterKey('message-rate', 'destination/tenant', path)).toBe('message-rate:destination/tenant:provider%3Ayahoo|bigcorp');
  });

  it('escapes the characters of its grammar and Redis hash tags', () => {
    expect(limiterKey('connections', 'destination/tenant', { route: 'a|b', tenant: '{x}%:' })).toBe('connections:destination/tenant:a%7Cb|%7Bx%7D%25%3A');
  });

  it('needs the source or tenant its scope names', () => {
    expect(() => limiterKey('connections', 'destination/source', { route: 'default' })).toThrow(RangeError);
    expect(() => limiterKey('message-rate', 'tenant', { route: 'default', source: 'ip1' })).toThrow(RangeError);
  });

  it('parses back what it makes, and only that', () => {
    const scopes: LimitScope[] = ['global', 'source', 'tenant', 'destination', 'destination/source', 'destination/tenant'];
    const kinds = ['connections', 'connect-rate', 'message-rate', 'data-rate'] as const;
    const name = fc.string({ unit: fc.constantFrom('a', 'b', ':', '|', '%', '{', '}', '2', '5', 'A', '/', ' '), maxLength: 8 });
    fc.assert(
      fc.property(fc.constantFrom(...kinds), fc.constantFrom(...scopes), name, name, name, (kind, scope, route, source, tenant) => {
        const key = limiterKey(kind, scope, { route, source, tenant });
        const parsed = parseLimiterKey(key)!;
        expect(parsed).toBeDefined();
        expect(parsed.kind).toBe(kind);
        expect(parsed.scope).toBe(scope);
        if (scope.startsWith('destination')) expect(parsed.route).toBe(route);
        if (scope.endsWith('source')) expect(parsed.source).toBe(source);
        if (scope.endsWith('tenant')) expect(parsed.tenant).toBe(tenant);
        // Keys differ exactly when their parts do: the escaping is injective.
        expect(limiterKey(kind, scope, { route: route + 'x', source, tenant }) === key).toBe(!scope.startsWith('destination'));
      }),
    );
    for (const bad of ['rate:global', 'message-rate:planet:x', 'message-rate:global:x', 'connections:source:a|b', 'connections:source:50%', 'connections:destination/source:a']) {
      expect(parseLimiterKey(bad)).toBeUndefined();
    }
  });
});

describe('defaultBurst', () => {
  it('keeps the count of windows up to a second and allows a second of average rate beyond', () => {
    expect(defaultBurst(20, 1)).toBe(20);
    expect(defaultBurst(5, 0.5)).toBe(5);
    expect(defaultBurst(3600, 3600)).toBe(1);
    expect(defaultBurst(600, 60)).toBe(10);
    expect(defaultBurst(50, 86400)).toBe(1);
    expect(defaultBurst(10 * 1024 * 1024, 60)).toBeCloseTo((10 * 1024 * 1024) / 60);
  });
});

describe('rate limiting (GCRA)', () => {
  it('holds the long-run rate: 20/s for 10 minutes admits 12,000 within 1%', () => {
    const { store, time } = storeWithClock();
    const admitted = greedy(store, time, { rates: [rate('message-rate:destination:x', 20, 1)], concurrency: [] }, 600_000);
    // 20 at once, then one every 50 ms after the first 50: the burst plus 11,999.
    expect(admitted).toBe(20 + 11_999);
    expect(Math.abs(admitted - 12_000) / 12_000).toBeLessThan(0.01);
  });

  it('holds rates whose interval is not a whole number of milliseconds', () => {
    const { store, time } = storeWithClock();
    // 7 per 3 s: one every 428.57… ms after a burst of 2⅓ (two at once): at most 2⅓ + 8400 in an hour.
    const admitted = greedy(store, time, { rates: [rate('k', 7, 3)], concurrency: [] }, 3_600_000);
    expect(admitted).toBe(8402);
  });

  it('spreads 3600/h instead of sending 3600 at once', () => {
    const { store, time } = storeWithClock();
    const request = { rates: [rate('message-rate:destination/source:yahoo|ip1', 3600, 3600)], concurrency: [] };
    let first = 0;
    while (store.tryAcquireSync(request).ok) first++;
    expect(first).toBe(1);
    // Then one a second: 60 in the first minute, counting the one sent at once.
    expect(greedy(store, time, request, 60_000)).toBe(59);
    // Over two hours it averages out at the limit.
    expect(greedy(store, time, request, 7_200_000)).toBe(7200);
  });

  it('never admits more than the GCRA bound over any window (data rate with mixed sizes)', () => {
    const { store, time } = storeWithClock();
    const count = 1_000_000;
    const burst = defaultBurst(count, 60);
    let bytes = 0;
    const sizes = [2_000, 50_000, 15_000, 120_000, 700];
    for (let i = 0; time.now < time.start + 600_000; i++) {
      const size = sizes[i % sizes.length]!;
      const result = store.tryAcquireSync({ rates: [rate('data-rate:global', count, 60, size)], concurrency: [] });
      if (result.ok) bytes += size;
      else time.advance(result.retryAfterMs!);
    }
    // A message larger than the burst may pass when the limiter is idle, so the bound takes the larger.
    expect(bytes).toBeLessThanOrEqual(Math.max(burst, 120_000) + (count * 600) / 60);
    expect(bytes).toBeGreaterThan(0.99 * ((count * 600) / 60));
  });

  it('lets a cost above the burst through once the limiter is idle, then makes it pay', () => {
    const { store, time } = storeWithClock();
    const big = { rates: [rate('data-rate:global', 1000, 1, 5000)], concurrency: [] };
    const small = { rates: [rate('data-rate:global', 1000, 1, 100)], concurrency: [] };
    expect(store.tryAcquireSync(big).ok).toBe(true);
    const refused = store.tryAcquireSync(small);
    // 5000 bytes at 1000/s is 5 s of debt; 100 bytes fit into a 1000-byte burst 4.1 s from now.
    expect(refused).toEqual({ ok: false, blockedBy: 'data-rate:global', retryAfterMs: 4100 });
    time.advance(4100);
    expect(store.tryAcquireSync(small).ok).toBe(true);
    // A second big one waits until all the debt is paid.
    const again = store.tryAcquireSync(big);
    expect(again.ok).toBe(false);
    time.advance((again as { retryAfterMs: number }).retryAfterMs);
    expect(store.tryAcquireSync(big).ok).toBe(true);
  });

  it('continues from the same state when the limit on a key changes (a backoff)', () => {
    const { store, time } = storeWithClock();
    const key = 'message-rate:destination/source:yahoo|ip1';
    expect(store.tryAcquireSync({ rates: [rate(key, 3600, 3600)], concurrency: [] }).ok).toBe(true);
    // Backoff to 600/h: one every 6 s, counted from the message just sent.
    const slower = { rates: [rate(key, 600, 3600)], concurrency: [] };
    const refused = store.tryAcquireSync(slower);
    expect(refused).toEqual({ ok: false, blockedBy: key, retryAfterMs: 1000 });
    time.advance(1000);
    expect(store.tryAcquireSync(slower).ok).toBe(true);
    expect(store.tryAcquireSync(slower)).toEqual({ ok: false, blockedBy: key, retryAfterMs: 6000 });
  });
});

describe('all or nothing', () => {
  it('takes nothing when one rate limiter refuses, and names it', () => {
    const { store } = storeWithClock();
    // Use up the per-source limiter only.
    expect(store.tryAcquireSync({ rates: [rate('src', 1, 1)], concurrency: [] }).ok).toBe(true);
    const request = { rates: [rate('global', 2, 1), rate('src', 1, 1), rate('route', 2, 1)], concurrency: [{ key: 'conn', max: 1 }] };
    const before = store.snapshotSync();
    const result = store.tryAcquireSync(request);
    expect(result).toEqual({ ok: false, blockedBy: 'src', retryAfterMs: 1000 });
    expect(store.snapshotSync()).toEqual(before);
    // The others still have their whole burst.
    expect(store.tryAcquireSync({ rates: [rate('global', 2, 1), rate('route', 2, 1)], concurrency: [] }).ok).toBe(true);
    expect(store.tryAcquireSync({ rates: [rate('global', 2, 1), rate('route', 2, 1)], concurrency: [] }).ok).toBe(true);
  });

  it('takes no rate when a concurrency limiter is full', () => {
    const { store } = storeWithClock();
    const held = store.tryAcquireSync({ rates: [], concurrency: [{ key: 'conn', max: 1 }] });
    expect(held.ok).toBe(true);
    const result = store.tryAcquireSync({ rates: [rate('r', 1, 1)], concurrency: [{ key: 'other', max: 5 }, { key: 'conn', max: 1 }] });
    expect(result).toEqual({ ok: false, blockedBy: 'conn', retryAfterMs: null });
    expect(store.snapshotSync().rates).toEqual([]);
    expect(store.snapshotSync().concurrency).toEqual([{ key: 'conn', inFlight: 1, max: 1 }]);
    expect(store.releaseSync((held as { lease: Lease }).lease)).toBe(true);
    expect(store.tryAcquireSync({ rates: [rate('r', 1, 1)], concurrency: [{ key: 'other', max: 5 }, { key: 'conn', max: 1 }] }).ok).toBe(true);
  });

  it('names the rate limiter that frees up last, and retrying then succeeds', () => {
    const { store, time } = storeWithClock();
    const request = { rates: [rate('a', 1, 1), rate('b', 1, 5), rate('c', 1, 2)], concurrency: [] };
    expect(store.tryAcquireSync(request).ok).toBe(true);
    const refused = store.tryAcquireSync(request);
    expect(refused).toEqual({ ok: false, blockedBy: 'b', retryAfterMs: 5000 });
    time.advance(4999);
    expect(store.tryAcquireSync(request)).toEqual({ ok: false, blockedBy: 'b', retryAfterMs: 1 });
    time.advance(1);
    expect(store.tryAcquireSync(request).ok).toBe(true);
  });

  it('refuses a request that names a key twice, and rejects through the async interface', async () => {
    const { store } = storeWithClock();
    expect(() => store.tryAcquireSync({ rates: [rate('a', 1, 1), rate('a', 2, 1)], concurrency: [] })).toThrow(RangeError);
    expect(() => store.tryAcquireSync({ rates: [], concurrency: [{ key: 'c', max: 1 }, { key: 'c', max: 1 }] })).toThrow(RangeError);
    await expect(store.tryAcquire({ rates: [rate('a', 0, 1)], concurrency: [] })).rejects.toThrow(RangeError);
    await expect(store.tryAcquire({ rates: [rate('a', Number.NaN, 1)], concurrency: [] })).rejects.toThrow(RangeError);
  });
});

describe('retryAfterMs', () => {
  it('is exact: one millisecond sooner is refused, that long later passes', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 500 }),
        fc.constantFrom(0.5, 1, 7, 60, 3600, 86400),
        fc.integer({ min: 1, max: 40 }),
        fc.array(fc.integer({ min: 0, max: 3000 }), { maxLength: 30 }),
        (count, perSeconds, attempts, gaps) => {
          const { store, time } = storeWithClock();
          const request = { rates: [rate('k', count, perSeconds)], concurrency: [] };
          for (let i = 0; i < attempts; i++) {
            time.advance(gaps[i % Math.max(1, gaps.length)] ?? 0);
            const result = store.tryAcquireSync(request);
            if (result.ok) continue;
            const wait = result.retryAfterMs!;
            expect(wait).toBeGreaterThanOrEqual(1);
            time.advance(wait - 1);
            expect(store.tryAcquireSync(request)).toEqual({ ok: false, blockedBy: 'k', retryAfterMs: 1 });
            time.advance(1);
            expect(store.tryAcquireSync(request).ok).toBe(true);
          }
        },
      ),
    );
  });
  it('is exact when the true wait lands on float noise above a whole millisecond', () => {
    // 7/s: seven intervals of 142.857… ms sum to 1000 ms give or take a rounding error.
    for (let count = 1; count <= 50; count++) {
      for (const perSeconds of [0.3, 1, 3, 7]) {
        const { store, time } = storeWithClock();
        const request = { rates: [rate('k', count, perSeconds)], concurrency: [] };
        for (let i = 0; i < 100; i++) {
          const result = store.tryAcquireSync(request);
          if (result.ok) continue;
          time.advance(result.retryAfterMs! - 1);
          expect(store.tryAcquireSync(request).ok).toBe(false);
          time.advance(1);
        }
      }
    }
  });
});

describe('concurrency', () => {
  type Op = { type: 'acquire'; keys: number[]; rates: number[]; cost: number; retry: boolean } | { type: 'release'; index: number } | { type: 'advance'; ms: number };

  const op: fc.Arbitrary<Op> = fc.oneof(
    { weight: 5, arbitrary: fc.record({ type: fc.constant('acquire' as const), keys: fc.subarray([0, 1, 2]), rates: fc.subarray([0, 1, 2]), cost: fc.integer({ min: 1, max: 5 }), retry: fc.boolean() }) },
    { weight: 3, arbitrary: fc.record({ type: fc.constant('release' as const), index: fc.nat() }) },
    { weight: 2, arbitrary: fc.record({ type: fc.constant('advance' as const), ms: fc.integer({ min: 0, max: 3000 }) }) },
  );
  const limit = fc.record({ count: fc.integer({ min: 1, max: 30 }), perSeconds: fc.constantFrom(0.25, 1, 3, 60, 3600) });

  it('never exceeds max in flight, and never admits past the GCRA bound (random operation sequences)', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 4 }), { minLength: 3, maxLength: 3 }), fc.array(limit, { minLength: 3, maxLength: 3 }), fc.array(op, { maxLength: 150 }), (maxes, limits, ops) => {
        const { store, time } = storeWithClock(5_000);
        const slotKeys = maxes.map((_, i) => `connections:destination:r${i}`);
        const rateKeys = limits.map((_, i) => `message-rate:destination:r${i}`);
        const held: { lease: Lease; keys: number[] }[] = [];
        const inFlight = [0, 0, 0];
        const admissions: { at: number; cost: number }[][] = [[], [], []];
        const requestFor = (o: Extract<Op, { type: 'acquire' }>): AcquireRequest => ({
          rates: o.rates.map((r) => rate(rateKeys[r]!, limits[r]!.count, limits[r]!.perSeconds, o.cost)),
          concurrency: o.keys.map((k) => ({ key: slotKeys[k]!, max: maxes[k]! })),
        });
        const attempt = (o: Extract<Op, { type: 'acquire' }>) => {
          const result = store.tryAcquireSync(requestFor(o));
          if (result.ok) {
            for (const k of o.keys) inFlight[k]!++;
            for (const r of o.rates) admissions[r]!.push({ at: time.now, cost: o.cost });
            if (o.keys.length) held.push({ lease: result.lease, keys: o.keys });
            for (const k of o.keys) expect(inFlight[k]).toBeLessThanOrEqual(maxes[k]!);
          } else if (result.retryAfterMs === null) {
            // Refused for concurrency only when that limiter really is full.
            expect(inFlight[slotKeys.indexOf(result.blockedBy)]).toBe(maxes[slotKeys.indexOf(result.blockedBy)]);
          } else {
            expect(rateKeys).toContain(result.blockedBy);
            expect(result.retryAfterMs).toBeGreaterThanOrEqual(1);
          }
          return result;
        };
        for (const o of ops) {
          if (o.type === 'advance') time.advance(o.ms);
          else if (o.type === 'release') {
            if (held.length === 0) continue;
            const [h] = held.splice(o.index % held.length, 1);
            expect(store.releaseSync(h!.lease)).toBe(true);
            expect(store.releaseSync(h!.lease)).toBe(false);
            for (const k of h!.keys) inFlight[k]!--;
          } else {
            const result = attempt(o);
            // Sleeping the hinted time and retrying passes the rate limiters.
            if (!result.ok && result.retryAfterMs !== null && o.retry) {
              time.advance(result.retryAfterMs);
              const again = attempt(o);
              expect(again.ok || again.retryAfterMs === null).toBe(true);
            }
          }
          const snapshot = store.snapshotSync();
          for (let k = 0; k < 3; k++) expect(snapshot.concurrency.find((c) => c.key === slotKeys[k])?.inFlight ?? 0).toBe(inFlight[k]);
        }
        // Over any run of admissions on one limiter: cost ≤ elapsed / interval + max(burst, largest cost).
        for (let r = 0; r < 3; r++) {
          const { count, perSeconds } = limits[r]!;
          const interval = (perSeconds * 1000) / count;
          const burst = defaultBurst(count, perSeconds);
          const list = admissions[r]!;
          for (let i = 0; i < list.length; i++) {
            let cost = 0;
            let largest = 0;
            for (let j = i; j < list.length; j++) {
              cost += list[j]!.cost;
              largest = Math.max(largest, list[j]!.cost);
              // (+ the store's 0.01 ms float allowance, in units)
              expect(cost).toBeLessThanOrEqual((list[j]!.at - list[i]!.at + 0.01) / interval + Math.max(burst, largest) + 1e-9);
            }
          }
        }
      }),
      { numRuns: 300 },
    );
  });

  it('stays within max when callers interleave through the async interface', async () => {
    const { store, time } = storeWithClock();
    const request = { rates: [], concurrency: [{ key: 'connections:global', max: 7 }, { key: 'connections:source:ip1', max: 5 }] };
    let peak = 0;
    let inFlight = 0;
    let admitted = 0;
    let refused = 0;
    const turn = () => new Promise((resolve) => setImmediate(resolve));
    const worker = async (id: number) => {
      for (let i = 0; i < 200; i++) {
        const result = await store.tryAcquire(request);
        if (!result.ok) {
          refused++;
          await turn();
          continue;
        }
        admitted++;
        inFlight++;
        peak = Math.max(peak, inFlight);
        // Hold the slot across a few turns of the event loop, as a delivery would.
        for (let j = 0; j < (id + i) % 4; j++) await (j % 2 ? Promise.resolve() : turn());
        time.advance(1);
        inFlight--;
        expect(await store.release(result.lease)).toBe(true);
      }
    };
    await Promise.all(Array.from({ length: 12 }, (_, id) => worker(id)));
    expect(peak).toBeLessThanOrEqual(5);
    expect(peak).toBe(5);
    expect(admitted).toBeGreaterThan(0);
    expect(refused).toBeGreaterThan(0);
    expect((await store.snapshot()).concurrency).toEqual([]);
  });

  it('gives nothing back for a lease released twice or one that holds no slots', () => {
    const { store } = storeWithClock();
    const a = store.tryAcquireSync({ rates: [], concurrency: [{ key: 'c', max: 1 }] });
    const rateOnly = store.tryAcquireSync({ rates: [rate('r', 10, 1)], concurrency: [] });
    expect(a.ok && rateOnly.ok).toBe(true);
    if (!a.ok || !rateOnly.ok) return;
    expect(rateOnly.lease.keys).toEqual([]);
    expect(store.releaseSync(rateOnly.lease)).toBe(false);
    expect(store.releaseSync(a.lease)).toBe(true);
    const b = store.tryAcquireSync({ rates: [], concurrency: [{ key: 'c', max: 1 }] });
    expect(b.ok).toBe(true);
    // The stale lease must not free b's slot.
    expect(store.releaseSync(a.lease)).toBe(false);
    expect(store.tryAcquireSync({ rates: [], concurrency: [{ key: 'c', max: 1 }] }).ok).toBe(false);
  });
});

describe('memory', () => {
  it('drops idle keys at the next sweep', () => {
    const { store, time } = storeWithClock(60_000);
    const leases: Lease[] = [];
    for (let i = 0; i < 1000; i++) {
      const result = store.tryAcquireSync({ rates: [rate(`message-rate:destination/tenant:r|t${i}`, 10, 60)], concurrency: [{ key: `connections:destination:r${i}`, max: 2 }] });
      if (result.ok) leases.push(result.lease);
    }
    expect(leases).toHaveLength(1000);
    expect(store.size).toBe(2000);
    for (const lease of leases.slice(0, 990)) store.releaseSync(lease);
    // Rate limiters are busy for one interval (6 s); nothing is dropped before the sweep interval.
    time.advance(10_000);
    expect(store.size).toBe(2000);
    time.advance(50_000);
    // The sweep runs at the start of the next acquisition: only the 10 held slots and that acquisition's keys stay.
    expect(store.tryAcquireSync({ rates: [rate('message-rate:global', 1, 1)], concurrency: [] }).ok).toBe(true);
    expect(store.size).toBe(11);
    expect(store.snapshotSync().concurrency).toHaveLength(10);
    time.advance(1000);
    for (const lease of leases.slice(990)) store.releaseSync(lease);
    expect(store.sweep()).toBe(11);
    expect(store.size).toBe(0);
  });

  it('reports usage in the snapshot', () => {
    const { store, time } = storeWithClock();
    store.tryAcquireSync({ rates: [rate('message-rate:global', 20, 1), rate('data-rate:global', 1000, 1, 400)], concurrency: [{ key: 'connections:global', max: 3 }] });
    time.advance(10);
    const snapshot = store.snapshotSync();
    expect(snapshot.at).toBe(time.now);
    expect(snapshot.concurrency).toEqual([{ key: 'connections:global', inFlight: 1, max: 3 }]);
    expect(snapshot.rates).toEqual([
      // 400 bytes are 400 ms of a 1000 B/s limit; the burst (1000) leaves room for a byte now.
      { key: 'data-rate:global', count: 1000, perSeconds: 1, burst: 1000, backlogMs: 390, nextFreeAt: time.now },
      { key: 'message-rate:global', count: 20, perSeconds: 1, burst: 20, backlogMs: 40, nextFreeAt: time.now },
    ]);
  });
});

describe('requests from settings', () => {
  const settings: EffectiveSettings = {
    route: 'provider:yahoo',
    connections: [
      { max: 500, scope: 'global' },
      { max: 10, scope: 'destination/source' },
    ],
    connectRate: [{ count: 60, perSeconds: 60, scope: 'destination/source' }],
    messageRate: [
      { count: 1000, perSeconds: 1, scope: 'global' },
      { count: 500_000, perSeconds: 86400, scope: 'tenant' },
      { count: 20, perSeconds: 1, scope: 'destination' },
      { count: 3600, perSeconds: 3600, scope: 'destination/source' },
      { count: 500, perSeconds: 60, scope: 'destination/tenant' },
    ],
    dataRate: [{ count: 10 * 1024 * 1024, perSeconds: 60, scope: 'destination' }],
    messagesPerConnection: 20,
    recipientsPerTransaction: null,
    tls: 'required',
    retry: 'bulk',
    retryJitter: 0.1,
    expireSeconds: 172800,
    source: null,
    tenant: null,
  };

  it('keys every limit on the path', () => {
    const path = { route: 'provider:yahoo', source: 'ip1', tenant: 'bigcorp' };
    expect(connectionRequest(settings, path)).toEqual({
      rates: [{ key: 'connect-rate:destination/source:provider%3Ayahoo|ip1', count: 60, perSeconds: 60, cost: 1 }],
      concurrency: [
        { key: 'connections:global', max: 500 },
        { key: 'connections:destination/source:provider%3Ayahoo|ip1', max: 10 },
      ],
    });
    expect(messageRequests(settings, path)(12_345).rates.map((r) => [r.key, r.cost])).toEqual([
      ['message-rate:global', 1],
      ['message-rate:tenant:bigcorp', 1],
      ['message-rate:destination:provider%3Ayahoo', 1],
      ['message-rate:destination/source:provider%3Ayahoo|ip1', 1],
      ['message-rate:destination/tenant:provider%3Ayahoo|bigcorp', 1],
      ['data-rate:destination:provider%3Ayahoo', 12_345],
    ]);
  });

  it('makes the keys once and only the data-rate cost per message', () => {
    const path = { route: 'provider:yahoo', source: 'ip1', tenant: 'bigcorp' };
    const message = messageRequests(settings, path);
    const [a, b] = [message(100), message(2000)];
    expect(a.rates[0]).toBe(b.rates[0]);
    expect([a.rates.at(-1)!.cost, b.rates.at(-1)!.cost]).toEqual([100, 2000]);
    const withoutData = messageRequests({ ...settings, dataRate: [] }, path);
    expect(withoutData(1)).toBe(withoutData(2));
  });

  it('leaves out tenant limits without a tenant and refuses a path without a source', () => {
    expect(messageRequests(settings, { route: 'provider:yahoo', source: 'ip1' })(1).rates.map((r) => r.key)).not.toContainEqual(expect.stringContaining('tenant'));
    expect(() => connectionRequest(settings, { route: 'provider:yahoo' })).toThrow(RangeError);
  });

  it('admits through the store', () => {
    const { store, time } = storeWithClock();
    const path = { route: 'provider:yahoo', source: 'ip1', tenant: 'bigcorp' };
    const connection = store.tryAcquireSync(connectionRequest(settings, path));
    expect(connection.ok).toBe(true);
    const message = messageRequests(settings, path);
    // 3600/h per source: one message now, the next a second later.
    expect(store.tryAcquireSync(message(1000)).ok).toBe(true);
    const next = store.tryAcquireSync(message(1000));
    expect(next).toEqual({ ok: false, blockedBy: 'message-rate:destination/source:provider%3Ayahoo|ip1', retryAfterMs: 1000 });
    time.advance(1000);
    expect(store.tryAcquireSync(message(1000)).ok).toBe(true);
  });
});
