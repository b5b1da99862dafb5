/** The reaction state machine on its own: triggers, backoffs, suspensions, disabled sources. */
import { describe, expect, it } from 'vitest';
import type { EffectiveSettings, Reaction } from '../../../runtime/abi.ts';
import { VALUE_LIMITS } from '../../../grammar/limits.ts';
import { activeBackoff, activeSuspensions, applyReaction, createPolicyState, enableSource, isDisabled, MAX_AHEAD_MS, restorePolicyState, settingsUnderBackoff, snapshotPolicyState } from '../../../runtime/decide/policy-state.ts';

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
    expect(under.messageRate).toEqual([{ count: 20, perSeconds: 1, scope: 'destination' }, { count: 600, perSeconds: 3600, scope: 'destination/source' }]);
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
});
