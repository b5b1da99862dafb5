/**
 * What a reaction does to the recipient it answered: delivered, bounced, or kept and tried
 * again (when, and where). One pure function, used by the delivery runtime for every reply
 * and by `petrel test` for its expectations, so a policy test cannot pass for behaviour the
 * runtime does not have. What the reaction does to the queue and the source (backoffs,
 * suspensions, disabled sources, recovery ramps) is the policy state's part
 * (`applyReaction` in policy-state.ts); this function is told its result (`fired`,
 * `sourceStopped`).
 *
 * The table (docs/language.md, "What a reaction does"):
 *
 * | disposition | recipient |
 * |---|---|
 * | none (2xx/3xx, accepted) | delivered |
 * | `hard` | bounced now, in the reaction's category |
 * | `soft`, `throttle` | kept: retried after the rule's `retry after` or the curve's delay (with jitter); bounced in the reaction's category when those give up (`attempts`), as `message-expired` when the retry would fall after the expiry |
 * | `block` | kept, never bounced for the block: tried again at once when the source is now stopped there (another source of the pool takes it, or it waits for the suspension to end), else after the curve's delay; bounced only as `message-expired` |
 *
 * A fired `reroute pool P` (when this source is not in P) or `skip-mx` (while MX hosts
 * remain untried) moves a kept recipient on at once, elsewhere, instead of waiting.
 * Only actions that *fired* count: a `when N in T` rule below its threshold decides the
 * category and disposition, not the actions.
 */
import type { Action, BounceCategory, Reaction } from '../abi.ts';

/** A block whose rule did not stop the source (its trigger has not fired) and whose curve gives up: try again after this long. */
export const BLOCK_RETRY_FALLBACK_MS = 15 * 60_000;

export interface FateInput {
  reaction: Reaction;
  /** The actions that took effect (`applyReaction(...).actions`): empty below a trigger's threshold. */
  fired: readonly Action[];
  /** The receiver accepted this recipient. */
  accepted: boolean;
  now: number;
  /** `retryDelay(route, attempt, reply, backoffCurve)`: milliseconds, or null to give up. */
  retryDelayMs: number | null;
  /** When the message expires: accepted at + the route's expiry. */
  expiresAt: number;
  /** Multiplies a waiting delay: 1 ± the curve's jitter (1 for none). */
  jitter: number;
  /** After applying the reaction, this source may not send to this destination now (suspended or disabled). */
  sourceStopped: boolean;
  /** A fired `reroute pool P` can take the recipient: this source is not in P already. */
  canReroute: boolean;
  /** A fired `skip-mx` can take the recipient: some MX host has not been tried yet. */
  canSkipMx: boolean;
}

export type Fate =
  | { kind: 'delivered' }
  | { kind: 'bounced'; category: BounceCategory; why: 'policy' | 'gave-up' | 'expired' }
  | {
      kind: 'kept';
      category: BounceCategory;
      /** When to try again (milliseconds since the epoch). */
      at: number;
      /** Where: through a pool, on the next MX host, or anywhere the scheduler allows (null). */
      via: { pool: string } | { skipMx: true } | null;
    };

export function fateOf(input: FateInput): Fate {
  const { reaction, now } = input;
  if (input.accepted) return { kind: 'delivered' };
  const category: BounceCategory = reaction.category === 'success' ? 'other' : reaction.category;
  if (reaction.disposition === 'hard') return { kind: 'bounced', category, why: 'policy' };
  const elsewhere = moveOn(input);
  if (elsewhere) return now >= input.expiresAt ? expired() : { kind: 'kept', category, at: now, via: elsewhere };
  if (reaction.disposition === 'block') {
    const wait = input.sourceStopped ? 0 : Math.round((input.retryDelayMs ?? BLOCK_RETRY_FALLBACK_MS) * input.jitter);
    return now + wait > input.expiresAt ? expired() : { kind: 'kept', category, at: now + wait, via: null };
  }
  if (input.retryDelayMs === null) return { kind: 'bounced', category, why: 'gave-up' };
  const at = now + Math.round(input.retryDelayMs * input.jitter);
  return at > input.expiresAt ? expired() : { kind: 'kept', category, at, via: null };
}

function moveOn(input: FateInput): { pool: string } | { skipMx: true } | null {
  const reroute = input.fired.find((a): a is Extract<Action, { type: 'reroute' }> => a.type === 'reroute');
  if (reroute && input.canReroute) return { pool: reroute.pool };
  if (input.canSkipMx && input.fired.some((a) => a.type === 'skip-mx')) return { skipMx: true };
  return null;
}

const expired = (): Fate => ({ kind: 'bounced', category: 'message-expired', why: 'expired' });
