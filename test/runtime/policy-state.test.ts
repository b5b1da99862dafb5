/** The reaction state machine on its own: triggers, backoffs, suspensions, disabled sources. */
import { describe, expect, it } from 'vitest';
import type { EffectiveSettings, Reaction } from '../../runtime/abi.ts';
import { activeBackoff, activeSuspensions, applyReaction, createPolicyState, enableSource, isDisabled, settingsUnderBackoff } from '../../runtime/policy-state.ts';

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
    expect(enableSource(s, queue)).toBe(true);
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
});
