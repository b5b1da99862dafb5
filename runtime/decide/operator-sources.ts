/**
 * An operator's `petrel source enable|disable NAME [--route QUEUE]` (POST
 * /api/v1/sources/enable|disable) applied to the policy state: a disable on one queue or on
 * every route ({@link EVERY_ROUTE}), an enable on one queue or wherever the source is
 * disabled — each enable starting the recovery ramp (policy-state.ts `enableSource`).
 * Pure on the state it is given; saving, logging and waking the scheduler are the caller's.
 */
import { disabledQueues, disableSource, enableSource, EVERY_ROUTE, type PolicyState } from './policy-state.ts';

/** What an operator asked. */
export interface SourceRequest {
  enable: boolean;
  source: string;
  /** A queue as the status names it (`provider:yahoo`, `default/example.org`); none: every route. */
  route?: string | undefined;
}

/** What changed (`queues`: those enabled or disabled now, `*` for every route) and where the source is disabled after; or why nothing could. */
export type SourceChange = { ok: true; queues: string[]; disabledOn: string[] } | { ok: false; status: 404 | 409; error: string };

/** The reason a disable by an operator records (the rule is null). */
export const OPERATOR_DISABLE_REASON = 'disabled by an operator';

/** The most source names an error lists. */
const MAX_LISTED = 10;

/**
 * Applies `request` at `now`. `sources`: the current policy's source names; only those may
 * be disabled, while any source disabled in the state (also one a newer version dropped)
 * may be enabled.
 */
export function changeSource(state: PolicyState, request: SourceRequest, sources: readonly string[], now: number): SourceChange {
  const { source, route } = request;
  const where = route === undefined ? 'anywhere' : `on \`${route}\``;
  const before = disabledQueues(state, source);
  if (!request.enable) {
    if (!sources.includes(source)) return { ok: false, status: 404, error: `no source \`${source}\` in the policy (its sources: ${sources.slice(0, MAX_LISTED).join(', ')}${sources.length > MAX_LISTED ? ', …' : ''})` };
    const queue = route ?? EVERY_ROUTE;
    const changed = before.includes(queue) ? [] : [queue];
    disableSource(state, { route: queue, source }, now, OPERATOR_DISABLE_REASON);
    return { ok: true, queues: changed, disabledOn: disabledQueues(state, source) };
  }
  const targets = route === undefined ? before : before.filter((q) => q === route);
  if (targets.length === 0) {
    if (before.includes(EVERY_ROUTE)) return { ok: false, status: 409, error: `source \`${source}\` is disabled on every route: enable it without a route` };
    return { ok: false, status: 404, error: `source \`${source}\` is not disabled ${where}${before.length > 0 ? ` (it is on ${before.slice(0, MAX_LISTED).join(', ')})` : ''}` };
  }
  for (const queue of targets) enableSource(state, { route: queue, source }, now);
  return { ok: true, queues: targets, disabledOn: disabledQueues(state, source) };
}
