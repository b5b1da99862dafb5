/** The reaction state machine on its own: triggers, backoffs, suspensions, disabled sources. */
import { describe, expect, it } from 'vitest';
import type { EffectiveSettings, Reaction } from '../../../runtime/abi.ts';
import { VALUE_LIMITS } from '../../../grammar/limits.ts';
import { activeBackoff, activeSuspensions, applyReaction, createPolicyState, effectiveSettings, enableSource, isDisabled, MAX_AHEAD_MS, restorePolicyState, settingsUnderBackoff, snapshotPolicyState, untilRampChange } from '../../../runtime/decide/policy-state.ts';

const queue = { route: 'provider:yahoo', source: 'ip1', tenant: 'shop' };
const backoff = (minutes: number, trigger?: { count: number; withinSeconds: number }): Reaction => ({
  category: 'policy-related',
  disposition: 'throttle',
  actions: [{ type: 'backoff', durationSeconds: minutes * 60, overrides: { messageRate: [{ count: 600, perSeconds: 3600, scope: 'destination/source' }] } }],
  rule: { file: 'y.policy', line: 3 },
  ...(trigger ? { trigger: { ...trigger, id: 7 } } : {}),
});

describe('policy state', () => {
  it('fires a `when 3 in 10m` rule on the third match inside the window, then counts again', () => {
    const s = createPolicyState();
    const r = backoff(30, { count: 3, withinSeconds: 600 });
    expect(applyReaction(s, queue, r, '421 a', 0).fired).toBe(false);
    expect(applyReaction(s, queue, r, '421 a', 11 * 60_000).fired).toBe(false); // the first hit has left the window
    expect(applyReaction(s, queue, r, '421 a', 12 * 60_000).fired).toBe(false);
    expect(applyReaction(s, queue, r, '421 a', 13 * 60_000).fired).toBe(true);
    expect(applyReaction(s, queue, r, '421 a', 14 * 60_000).fired).toBe(false);
    // Another source's hits are counted apart.
    expect(applyReaction(s, { ...queue, source: 'ip2' }, r, '421 a', 14 * 60_000).fired).toBe(false);
  });

  it('keeps a backoff until it ends; a later trigger extends it but never shortens it', () => {
    const s = createPolicyState();
    applyReaction(s, queue, backoff(30), '421 deferred', 0);
    expect(activeBackoff(s, queue, 29 * 60_000)).toMatchObject({ until: 30 * 60_000, rule: { file: 'y.policy', line: 3 }, reason: '421 deferred' });
    applyReaction(s, queue, backoff(10), '421 deferred', 5 * 60_000);
    expect(activeBackoff(s, queue, 29 * 60_000)?.until).toBe(30 * 60_000);
    applyReaction(s, queue, backoff(30), '421 deferred', 20 * 60_000);
    expect(activeBackoff(s, queue, 49 * 60_000)).toMatchObject({ since: 0, until: 50 * 60_000 });
    expect(activeBackoff(s, queue, 50 * 60_000)).toBeUndefined();
    expect(activeBackoff(s, { ...queue, source: 'ip2' }, 0)).toBeUndefined();
  });

  it('suspends only its target, until it ends', () => {
    const s = createPolicyState();
    const suspend = (target: 'destination' | 'source' | 'tenant'): Reaction => ({ category: 'spam-related', disposition: 'block', actions: [{ type: 'suspend', target, durationSeconds: 3600 }] });
    applyReaction(s, queue, suspend('source'), '421 [TSS04]', 0);
    expect(activeSuspensions(s, queue, 1000).map((x) => x.target)).toEqual(['source']);
    expect(activeSuspensions(s, { ...queue, source: 'ip2' }, 1000)).toEqual([]);
    applyReaction(s, queue, suspend('tenant'), '554 tenant', 0);
    expect(activeSuspensions(s, { ...queue, source: 'ip2' }, 1000).map((x) => x.target)).toEqual(['tenant']);
    expect(activeSuspensions(s, { route: queue.route, source: 'ip2' }, 1000)).toEqual([]);
    expect(activeSuspensions(s, queue, 3600_000)).toEqual([]);
  });

  it('disables a source for a route until an operator enables it', () => {
    const s = createPolicyState();
    applyReaction(s, queue, { category: 'spam-related', disposition: 'block', actions: [{ type: 'disable-source' }] }, '550 banned', 0);
    expect(isDisabled(s, queue)).toBe(true);
    expect(isDisabled(s, { ...queue, route: 'provider:google' })).toBe(false);
    expect(enableSource(s, queue, 0)).toBe(true);
    expect(isDisabled(s, queue)).toBe(false);
  });

  it('lays backoff overrides over settings, replacing same-scope limits only', () => {
    const settings = { route: 'provider:yahoo', connections: [], connectRate: [], messageRate: [{ count: 20, perSeconds: 1, scope: 'destination' }, { count: 3600, perSeconds: 3600, scope: 'destination/source' }], dataRate: [], messagesPerConnection: 20, recipientsPerTransaction: 50, tls: 'required', retry: 'bulk', retryJitter: 0.15, expireSeconds: 172800, source: null, tenant: null } as EffectiveSettings;
    const under = settingsUnderBackoff(settings, { messageRate: [{ count: 600, perSeconds: 3600, scope: 'destination/source' }], retry: 'every-30m' });
    // The backoff's own rate is paced (burst 1): it holds from the first message after it starts.
    expect(under.messageRate).toEqual([{ count: 20, perSeconds: 1, scope: 'destination' }, { count: 600, perSeconds: 3600, scope: 'destination/source', burst: 1 }]);
    expect(under.retry).toBe('every-30m');
    expect(under.tls).toBe('required');
    expect(settingsUnderBackoff(settings, undefined)).toBe(settings);
  });

  describe('pauses from an artifact built elsewhere', () => {
    const suspendFor = (durationSeconds: number): Reaction => ({ category: 'spam-related', disposition: 'block', actions: [{ type: 'suspend', target: 'source', durationSeconds }] });
    const backoffFor = (durationSeconds: number): Reaction => ({ category: 'policy-related', disposition: 'throttle', actions: [{ type: 'backoff', durationSeconds, overrides: {} }] });
    const now = Date.UTC(2026, 10, 29);

    it('hold a pause to a year, the language\'s longest duration', () => {
      expect(MAX_AHEAD_MS).toBe(VALUE_LIMITS.duration.max * 1000);
      const s = createPolicyState();
      applyReaction(s, queue, suspendFor(99999999999999999999 * 86_400), '421 [TSS04]', now);
      applyReaction(s, queue, backoffFor(1e300), '421 [TS01]', now);
      expect(activeSuspensions(s, queue, now).map((x) => x.until)).toEqual([now + MAX_AHEAD_MS]);
      expect(activeBackoff(s, queue, now)?.until).toBe(now + MAX_AHEAD_MS);
      // A year exactly is kept as it is.
      applyReaction(s, { ...queue, source: 'ip2' }, suspendFor(365 * 86_400), '421 [TSS04]', now);
      expect(activeSuspensions(s, { ...queue, source: 'ip2' }, now)[0]?.until).toBe(now + 365 * 86_400_000);
    });

    it.each([NaN, Infinity, -Infinity, -60, 0])('ignore a pause of %s seconds', (seconds) => {
      const s = createPolicyState();
      expect(applyReaction(s, queue, suspendFor(seconds), '421 [TSS04]', now).fired).toBe(true);
      applyReaction(s, queue, backoffFor(seconds), '421 [TS01]', now);
      expect(activeSuspensions(s, queue, now)).toEqual([]);
      expect(activeBackoff(s, queue, now)).toBeUndefined();
      expect(s.suspensions.size + s.backoffs.size).toBe(0);
    });

    it('restore every pause to end a year from now at most, and the rest as saved', () => {
      const s = createPolicyState();
      applyReaction(s, queue, suspendFor(3600), '421 [TSS04]', now);
      applyReaction(s, queue, backoffFor(1800), '421 [TS01]', now);
      const snapshot = snapshotPolicyState(s, now);
      snapshot.suspensions.push(['source|provider:yahoo|ip9', { target: 'source', since: now, until: now + 3650 * 86_400_000, rule: null, reason: 'ten years' }]);
      snapshot.backoffs.push(['provider:yahoo|ip9', { since: now, until: 8e15, durationSeconds: 1, overrides: {}, rule: null, reason: 'far' }]);
      const later = now + 86_400_000;
      const restored = restorePolicyState(snapshot, later);
      expect(restored.suspensions.get('source|provider:yahoo|ip1')?.until).toBe(now + 3_600_000);
      expect(restored.backoffs.get('provider:yahoo|ip1')?.until).toBe(now + 1_800_000);
      expect(restored.suspensions.get('source|provider:yahoo|ip9')?.until).toBe(later + MAX_AHEAD_MS);
      expect(restored.backoffs.get('provider:yahoo|ip9')?.until).toBe(later + MAX_AHEAD_MS);
    });
  });

  describe('blocks and the way back', () => {
    const MIN = 60_000;
    const base = { route: 'provider:yahoo', connections: [{ max: 10, scope: 'destination/source' }], connectRate: [], messageRate: [{ count: 3600, perSeconds: 3600, scope: 'destination/source' }], dataRate: [], messagesPerConnection: 20, recipientsPerTransaction: 50, tls: 'required', retry: 'bulk', retryJitter: 0, expireSeconds: 172800, source: null, tenant: null } as EffectiveSettings;
    const block: Reaction = { category: 'spam-related', disposition: 'block', actions: [], rule: { file: 'b.policy', line: 9 } };
    const perSource = (s: ReturnType<typeof createPolicyState>, at: number) => effectiveSettings(s, queue, base, at);

    it('suspends the source at a block whose rule stops nothing, longer on each repeat within a day', () => {
      const s = createPolicyState();
      const lengths: number[] = [];
      let now = 0;
      for (let i = 0; i < 6; i++) {
        applyReaction(s, queue, block, '554 5.7.1 blocked', now);
        const [x] = activeSuspensions(s, queue, now);
        lengths.push((x!.until - now) / MIN);
        // The other recipients of deliveries already under way meet the same block: no escalation.
        applyReaction(s, queue, block, '554 5.7.1 blocked', now + 1);
        expect(activeSuspensions(s, queue, now + 1)[0]!.until).toBe(x!.until);
        now = x!.until + MIN;
      }
      // Each block comes a minute after the last suspension ends: the fifth (at 21h19m) is
      // within a day of the first four (24h); by the sixth (45h20m) the day before it holds
      // no other block, so it is a first block again (15m).
      expect(lengths).toEqual([15, 60, 240, 960, 1440, 15]);
      // A day without blocks starts the count again.
      now += 86_400_000;
      applyReaction(s, queue, block, '554 5.7.1 blocked', now);
      expect((activeSuspensions(s, queue, now)[0]!.until - now) / MIN).toBe(15);
    });

    it('comes back on the ramp after a suspension: 10%, 25%, 50%, 75% of the source limits, then normal', () => {
      const s = createPolicyState();
      applyReaction(s, queue, block, '554 5.7.1 blocked', 0);
      const end = 15 * MIN;
      // During the suspension the limits are untouched (nothing is sent anyway).
      expect(perSource(s, end - 1).messageRate[0]!.count).toBe(3600);
      // The scheduler looks again when the next step begins.
      expect(untilRampChange(s, queue, end + MIN)).toBe(6.5 * MIN);
      const shares = [0, 8, 16, 23, 30].map((m) => perSource(s, end + m * MIN));
      expect(shares.map((x) => x.messageRate[0]!.count)).toEqual([360, 900, 1800, 2700, 3600]);
      expect(shares.map((x) => x.connections[0]!.max)).toEqual([1, 2, 5, 7, 10]);
      expect(shares[0]!.messageRate[0]).toMatchObject({ burst: 1 });
    });

    it('ramps a throttle without a backoff from now, a rule with recover over its period, and an enabled source', () => {
      const s = createPolicyState();
      applyReaction(s, queue, { category: 'policy-related', disposition: 'throttle', actions: [] }, '421 slow down', 0);
      expect(perSource(s, 0).messageRate[0]!.count).toBe(360);
      expect(perSource(s, 10 * MIN).messageRate[0]!.count).toBe(3600);
      const other = { ...queue, source: 'ip2' };
      applyReaction(s, other, { category: 'spam-related', disposition: 'block', actions: [{ type: 'suspend', target: 'source', durationSeconds: 60 }, { type: 'recover', durationSeconds: 4 * 60 }] }, '554 listed', 0);
      expect(effectiveSettings(s, other, base, 60_000).messageRate[0]!.count).toBe(360);
      expect(effectiveSettings(s, other, base, 60_000 + 4 * MIN).messageRate[0]!.count).toBe(3600);
      applyReaction(s, queue, { category: 'spam-related', disposition: 'block', actions: [{ type: 'disable-source' }] }, '550 banned', 20 * MIN);
      expect(enableSource(s, queue, 30 * MIN)).toBe(true);
      expect(perSource(s, 30 * MIN).messageRate[0]!.count).toBe(360);
    });

    it("lets a rule's backoff that outlasts its suspension be the way back, and adds a base limit where the route has none", () => {
      const s = createPolicyState();
      applyReaction(s, queue, { category: 'spam-related', disposition: 'block', actions: [{ type: 'suspend', target: 'source', durationSeconds: 3600 }, { type: 'backoff', durationSeconds: 4 * 3600, overrides: { messageRate: [{ count: 300, perSeconds: 3600, scope: 'destination/source' }] } }] }, '421 [TSS04]', 0);
      expect(perSource(s, 3600_000).messageRate[0]).toEqual({ count: 300, perSeconds: 3600, scope: 'destination/source', burst: 1 });
      const bare = { ...base, connections: [], messageRate: [] };
      const t = createPolicyState();
      applyReaction(t, queue, block, '554 blocked', 0);
      expect(effectiveSettings(t, queue, bare, 15 * MIN)).toMatchObject({ messageRate: [{ count: 6, perSeconds: 60, scope: 'destination/source', burst: 1 }], connections: [{ max: 1, scope: 'destination/source' }] });
    });

    it('keeps ramps and block counts across a snapshot', () => {
      const s = createPolicyState();
      applyReaction(s, queue, block, '554 blocked', 0);
      const restored = restorePolicyState(JSON.parse(JSON.stringify(snapshotPolicyState(s, 0))), 0);
      expect(effectiveSettings(restored, queue, base, 15 * MIN).messageRate[0]!.count).toBe(360);
      applyReaction(restored, queue, block, '554 blocked', 16 * MIN);
      expect((activeSuspensions(restored, queue, 16 * MIN)[0]!.until - 16 * MIN) / MIN).toBe(60);
    });
  });
});
