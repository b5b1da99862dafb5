/**
 * Coming back gently: the recovery ramp that follows every pause, so that the end of a
 * suspension or block is never the burst that caused it (docs/language.md, "Coming back
 * gently"). A ramp allows 10%, then 25%, 50% and 75% of the normal limits of what was
 * stopped, a quarter of its period each, then the normal limits.
 *
 * Pure: the ramps themselves live in the policy state (policy-state.ts), which starts them;
 * this file says what a ramp allows at a given time and what the limits are under it.
 */
import type { ConnectionLimit, EffectiveSettings, LimitScope, RateLimit, SuspendTarget } from '../abi.ts';

/** What a ramp slows: one source, one tenant, or everyone, for one destination (queue). */
export type RampTarget = SuspendTarget;

export interface Ramp {
  target: RampTarget;
  /** When sending resumes (the end of the pause), and when the ramp is over. */
  from: number;
  until: number;
  /** The rule behind the pause or slow-down, and the reply's first line. */
  rule: { file: string; line: number } | null;
  reason: string;
}

/** The share of the normal limits in each quarter of a ramp. */
export const RAMP_STEPS = [0.1, 0.25, 0.5, 0.75] as const;
/** A ramp's period after a suspension or an operator's enable, when the rule says no `recover`. */
export const DEFAULT_RECOVER_SECONDS = 30 * 60;
/** The built-in slow-down of a `throttle` reply whose rule neither backs off nor suspends. */
export const THROTTLE_RECOVER_SECONDS = 10 * 60;
/**
 * The built-in suspension of a source by a `block` whose rule stops nothing itself: the
 * first block at a destination within a day, the second, … (the last one repeats).
 */
export const BLOCK_SUSPENSION_SECONDS = [15 * 60, 60 * 60, 4 * 3600, 16 * 3600, 24 * 3600] as const;
/** What a ramp scales where the route sets no limit of that scope: 60 messages a minute, 10 connections. */
export const RAMP_BASE = { rate: { count: 60, perSeconds: 60 }, connections: 10 } as const;

/** The share a ramp allows at `now`: its step; 1 before it starts (its pause holds until then) and once it is over. */
export function rampShare(ramp: Ramp, now: number): number {
  if (now < ramp.from || now >= ramp.until) return 1;
  const quarter = Math.floor(((now - ramp.from) / (ramp.until - ramp.from)) * RAMP_STEPS.length);
  return RAMP_STEPS[Math.max(0, Math.min(RAMP_STEPS.length - 1, quarter))]!;
}

/**
 * A rate with no burst (a burst of 1, read by the limiters): a backoff's or a ramp's rate is
 * an average to keep from its first message on — the limiters' default burst of a second's
 * worth would let twice the rate through in the first second after a pause.
 */
export function paced(rate: RateLimit): RateLimit {
  return Object.assign({ ...rate }, { burst: 1 });
}

/** Milliseconds from `now` until the ramp's share next changes (Infinity once it is over). */
export function untilNextStep(ramp: Ramp, now: number): number {
  if (now >= ramp.until) return Infinity;
  if (now < ramp.from) return ramp.from - now;
  const step = (ramp.until - ramp.from) / RAMP_STEPS.length;
  return Math.max(1, ramp.from + (Math.floor((now - ramp.from) / step) + 1) * step - now);
}

/** The share in force for each target (absent: not ramping). */
export type RampShares = Partial<Record<RampTarget, number>>;

const SCOPE: Record<RampTarget, LimitScope> = { destination: 'destination', source: 'destination/source', tenant: 'destination/tenant' };

/**
 * `settings` while ramps are in force: each ramping target's scope (`destination`,
 * `destination/source`, `destination/tenant`) has its message rate and connections scaled
 * by the share (at least 1 each), or, where the route sets none, the share of
 * {@link RAMP_BASE}; its connect and data rates are scaled where they exist. Other scopes
 * are left alone: a limiter key shared beyond this queue keeps one rate.
 */
export function settingsUnderRamp(settings: EffectiveSettings, shares: RampShares): EffectiveSettings {
  const targets = (Object.keys(shares) as RampTarget[]).filter((t) => shares[t]! < 1);
  if (targets.length === 0) return settings;
  let { connections, connectRate, messageRate, dataRate } = settings;
  for (const target of targets) {
    const share = shares[target]!;
    const scope = SCOPE[target];
    const rate = (r: RateLimit): RateLimit => (r.scope === scope ? paced({ ...r, count: Math.max(1, Math.floor(r.count * share)) }) : r);
    const conn = (c: ConnectionLimit): ConnectionLimit => (c.scope === scope ? { ...c, max: Math.max(1, Math.floor(c.max * share)) } : c);
    messageRate = messageRate.some((r) => r.scope === scope) ? messageRate.map(rate) : [...messageRate, paced({ ...RAMP_BASE.rate, count: Math.max(1, Math.floor(RAMP_BASE.rate.count * share)), scope })];
    connections = connections.some((c) => c.scope === scope) ? connections.map(conn) : [...connections, { max: Math.max(1, Math.floor(RAMP_BASE.connections * share)), scope }];
    connectRate = connectRate.map(rate);
    dataRate = dataRate.map(rate);
  }
  return { ...settings, connections, connectRate, messageRate, dataRate };
}
