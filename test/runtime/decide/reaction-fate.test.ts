/** The one meaning of a reaction for its recipient (runtime/decide/reaction-fate.ts), row by row of its table. */
import { describe, expect, it } from 'vitest';
import type { Action, Reaction } from '../../../runtime/abi.ts';
import { BLOCK_RETRY_FALLBACK_MS, fateOf, type FateInput } from '../../../runtime/decide/reaction-fate.ts';

const NOW = Date.UTC(2026, 11, 7);
const MIN = 60_000;

function input(reaction: Partial<Reaction>, more: Partial<FateInput> = {}): FateInput {
  const full: Reaction = { category: 'other', disposition: 'soft', actions: [], ...reaction };
  return { reaction: full, fired: full.actions, accepted: false, now: NOW, retryDelayMs: 10 * MIN, expiresAt: NOW + 86_400_000, jitter: 1, sourceStopped: false, canReroute: true, canSkipMx: true, ...more };
}

describe('fateOf', () => {
  it('delivers what the receiver accepted', () => {
    expect(fateOf(input({ category: 'success', disposition: null }, { accepted: true }))).toEqual({ kind: 'delivered' });
  });

  it('bounces a hard failure at once, in its category', () => {
    expect(fateOf(input({ category: 'bad-mailbox', disposition: 'hard' }))).toEqual({ kind: 'bounced', category: 'bad-mailbox', why: 'policy' });
  });

  it('keeps a soft or throttle failure until the delay, with jitter, and bounces it when the retries give up', () => {
    expect(fateOf(input({ category: 'quota-issues', disposition: 'soft' }))).toEqual({ kind: 'kept', category: 'quota-issues', at: NOW + 10 * MIN, via: null });
    expect(fateOf(input({ category: 'policy-related', disposition: 'throttle' }, { jitter: 1.1 }))).toEqual({ kind: 'kept', category: 'policy-related', at: NOW + 11 * MIN, via: null });
    expect(fateOf(input({ category: 'quota-issues', disposition: 'soft' }, { retryDelayMs: null }))).toEqual({ kind: 'bounced', category: 'quota-issues', why: 'gave-up' });
  });

  it('expires a recipient whose next try would fall after the expiry', () => {
    expect(fateOf(input({ disposition: 'soft' }, { expiresAt: NOW + 5 * MIN }))).toEqual({ kind: 'bounced', category: 'message-expired', why: 'expired' });
  });

  it('never bounces a block: at once when the source is now stopped there, else after the delay or the fallback', () => {
    const block = { category: 'spam-related' as const, disposition: 'block' as const };
    expect(fateOf(input(block, { sourceStopped: true }))).toEqual({ kind: 'kept', category: 'spam-related', at: NOW, via: null });
    expect(fateOf(input(block))).toEqual({ kind: 'kept', category: 'spam-related', at: NOW + 10 * MIN, via: null });
    expect(fateOf(input(block, { retryDelayMs: null }))).toEqual({ kind: 'kept', category: 'spam-related', at: NOW + BLOCK_RETRY_FALLBACK_MS, via: null });
    expect(fateOf(input(block, { sourceStopped: true, expiresAt: NOW - 1 }))).toEqual({ kind: 'bounced', category: 'message-expired', why: 'expired' });
  });

  it('moves on at once through a fired reroute or skip-mx, and only a fired one', () => {
    const reroute: Action[] = [{ type: 'reroute', pool: 'warm' }];
    expect(fateOf(input({ actions: reroute }))).toEqual({ kind: 'kept', category: 'other', at: NOW, via: { pool: 'warm' } });
    // A `when N in T` rule below its threshold: the reaction carries the action, nothing fired.
    expect(fateOf(input({ actions: reroute }, { fired: [] }))).toEqual({ kind: 'kept', category: 'other', at: NOW + 10 * MIN, via: null });
    expect(fateOf(input({ actions: reroute }, { canReroute: false }))).toEqual({ kind: 'kept', category: 'other', at: NOW + 10 * MIN, via: null });
    expect(fateOf(input({ actions: [{ type: 'skip-mx' }] }))).toEqual({ kind: 'kept', category: 'other', at: NOW, via: { skipMx: true } });
    expect(fateOf(input({ actions: [{ type: 'skip-mx' }] }, { canSkipMx: false }))).toEqual({ kind: 'kept', category: 'other', at: NOW + 10 * MIN, via: null });
  });
});
