/**
 * The reaction state machine: what the artifact's answers do over time. The artifact is
 * pure; this is where `when N in T` triggers count, backoffs and suspensions start and
 * end, and sources get disabled. `petrel test` drives it with a simulated clock, and the
 * delivery runtime drives it with the real one, so policy tests exercise the code that
 * delivers mail.
 *
 * No module state and no clock of its own: every function takes the state and `now`
 * (milliseconds) explicitly.
 */
import { SUSPEND_TARGETS, type Action, type BackoffOverrides, type EffectiveSettings, type Reaction, type SuspendTarget } from '../abi.ts';
import { BLOCK_SUSPENSION_SECONDS, DEFAULT_RECOVER_SECONDS, paced, rampShare, settingsUnderRamp, THROTTLE_RECOVER_SECONDS, untilNextStep, type Ramp, type RampShares, type RampTarget } from './recovery.ts';

/** Where a reply was seen: the queue (route, source) and the tenant of the message. */
export interface ReplyContext {
  route: string;
  source?: string | undefined;
  tenant?: string | undefined;
}

/** A backoff in force on one queue (route × source). */
export interface ActiveBackoff {
  since: number;
  until: number;
  durationSeconds: number;
  overrides: BackoffOverrides;
  /** Where the rule that started it is. */
  rule: { file: string; line: number } | null;
  reason: string;
}

export interface ActiveSuspension {
  target: SuspendTarget;
  since: number;
  until: number;
  rule: { file: string; line: number } | null;
  reason: string;
}

/** All reaction state; build one with `createPolicyState`. */
export interface PolicyState {
  /** Timestamps of recent matches of triggered rules, by `route|source|rule`. */
  triggerHits: Map<string, number[]>;
  /** By `route|source`. */
  backoffs: Map<string, ActiveBackoff>;
  /** By `route` (destination), `route|source` (source) or `route|tenant` (tenant), prefixed with the target. */
  suspensions: Map<string, ActiveSuspension>;
  /** Sources disabled for a route, by `route|source`, until re-enabled by an operator. */
  disabled: Map<string, { since: number; rule: { file: string; line: number } | null; reason: string }>;
  /** Recovery ramps (recovery.ts), keyed as suspensions are: the slow return after a pause or a throttle. */
  ramps: Map<string, Ramp>;
  /** When blocks without a suspension of their own were met in the last day, by `route|source`: the built-in suspension grows with them. */
  blocks: Map<string, number[]>;
}

export function createPolicyState(): PolicyState {
  return { triggerHits: new Map(), backoffs: new Map(), suspensions: new Map(), disabled: new Map(), ramps: new Map(), blocks: new Map() };
}

/**
 * The furthest ahead a backoff or suspension may end: a year, the language's longest
 * duration (VAL015, `grammar/limits.ts`; a test holds the two equal). The runtime holds
 * artifacts and state files to it too, since they may come from elsewhere.
 */
export const MAX_AHEAD_MS = 365 * 86_400_000;

/**
 * When a pause of `seconds` that starts at `now` ends: at most {@link MAX_AHEAD_MS} ahead,
 * or undefined when `seconds` is not a positive finite number (the action is ignored).
 */
function pauseEnd(now: number, seconds: number): number | undefined {
  if (!(Number.isFinite(seconds) && seconds > 0)) return undefined;
  return now + Math.min(seconds * 1000, MAX_AHEAD_MS);
}

const queueKey = (c: ReplyContext) => `${c.route}|${c.source ?? ''}`;
const suspensionKey = (target: ActiveSuspension['target'], c: ReplyContext) =>
  target === 'destination' ? `destination|${c.route}` : target === 'source' ? `source|${c.route}|${c.source ?? ''}` : `tenant|${c.route}|${c.tenant ?? ''}`;
const DAY_MS = 86_400_000;

/**
 * The route of an operator's disable that holds on every route (and of the ramp its
 * enable starts): `*`, which no route id or queue name can be.
 */
export const EVERY_ROUTE = '*';
/** The keys of one target's state that apply to `context`: its own, and for a source also its every-route one. */
const targetKeys = (target: SuspendTarget, c: ReplyContext): string[] =>
  target === 'source' ? [suspensionKey('source', c), suspensionKey('source', { ...c, route: EVERY_ROUTE })] : [suspensionKey(target, c)];

/** What a key of `backoffs`, `disabled` or `blocks` names: the queue (or {@link EVERY_ROUTE}) and the source. */
export function queueOfKey(key: string): { queue: string; source: string } {
  const at = key.lastIndexOf('|');
  return { queue: key.slice(0, at), source: key.slice(at + 1) };
}

/** What a key of `suspensions` or `ramps` names: the queue, and who on it (the source or tenant; null for a destination). */
export function targetOfKey(key: string): { queue: string; who: string | null } {
  const rest = key.slice(key.indexOf('|') + 1);
  if (key.startsWith('destination|')) return { queue: rest, who: null };
  const { queue, source } = queueOfKey(rest);
  return { queue, who: source };
}

/** What applying a reaction did. */
export interface Applied {
  /** False when the rule has a trigger whose count was not reached yet. */
  fired: boolean;
  /** The actions that took effect (empty when not fired). */
  actions: readonly Action[];
}

/**
 * Records a reaction to a reply seen at `now`. Without a trigger its actions take effect
 * at once; with `when N in T` they take effect on the Nth match within T, counted per
 * queue and rule, and the count starts again after firing.
 */
export function applyReaction(state: PolicyState, context: ReplyContext, reaction: Reaction, replyText: string, now: number): Applied {
  if (reaction.trigger) {
    const key = `${queueKey(context)}|${reaction.trigger.id}`;
    const windowStart = now - reaction.trigger.withinSeconds * 1000;
    const hits = (state.triggerHits.get(key) ?? []).filter((t) => t > windowStart);
    hits.push(now);
    if (hits.length < reaction.trigger.count) {
      state.triggerHits.set(key, hits);
      return { fired: false, actions: [] };
    }
    state.triggerHits.delete(key);
  }
  const rule = reaction.rule ?? null;
  const reason = replyText.split('\n')[0]!.slice(0, 200);
  const recover = reaction.actions.find((a): a is Extract<Action, { type: 'recover' }> => a.type === 'recover')?.durationSeconds;
  // A backoff of the same rule that outlasts its suspension is the way back already (its
  // limits, chosen by the rule's author); otherwise the recovery ramp is.
  const backoff = reaction.actions.find((a): a is Extract<Action, { type: 'backoff' }> => a.type === 'backoff');
  const backoffUntil = backoff ? (pauseEnd(now, backoff.durationSeconds) ?? now) : now;
  /** Suspends `target` until `until` (never shortening a longer one) and ramps it back after. */
  const suspend = (target: RampTarget, until: number) => {
    const key = suspensionKey(target, context);
    const current = state.suspensions.get(key);
    if (current && current.until >= until) return;
    state.suspensions.set(key, { target, since: now, until, rule, reason });
    if (recover === undefined && backoffUntil > until) return;
    startRamp(state, key, { target, from: until, until: until + (recover ?? DEFAULT_RECOVER_SECONDS) * 1000, rule, reason });
  };
  let paused = false;
  for (const action of reaction.actions) {
    switch (action.type) {
      case 'backoff': {
        const until = pauseEnd(now, action.durationSeconds);
        if (until === undefined) break;
        const current = state.backoffs.get(queueKey(context));
        // A new trigger while backing off extends the backoff; it never shortens it.
        if (!current || current.until < until) {
          state.backoffs.set(queueKey(context), { since: current && current.until > now ? current.since : now, until, durationSeconds: action.durationSeconds, overrides: action.overrides, rule, reason });
        }
        break;
      }
      case 'suspend': {
        paused = true;
        const until = pauseEnd(now, action.durationSeconds);
        if (until !== undefined) suspend(action.target, until);
        break;
      }
      case 'disable-source':
        paused = true;
        if (!state.disabled.has(queueKey(context))) state.disabled.set(queueKey(context), { since: now, rule, reason });
        break;
      default:
        // bounce, retry, skip-mx, reroute act on the message; recover is read above.
        break;
    }
  }
  if (paused) return { fired: true, actions: reaction.actions };
  if (reaction.disposition === 'block') {
    // A block stops the source for this destination even when its rule says nothing more:
    // 15 minutes, growing with every further block there within a day (recovery.ts). The
    // replies of deliveries already under way when the first one came are the same block:
    // they neither count again nor lengthen it.
    if ((state.suspensions.get(suspensionKey('source', context))?.until ?? 0) > now) return { fired: true, actions: reaction.actions };
    const recent = (state.blocks.get(queueKey(context)) ?? []).filter((t) => t > now - DAY_MS);
    recent.push(now);
    state.blocks.set(queueKey(context), recent);
    const seconds = BLOCK_SUSPENSION_SECONDS[Math.min(recent.length, BLOCK_SUSPENSION_SECONDS.length) - 1]!;
    suspend('source', now + seconds * 1000);
  } else if (reaction.disposition === 'throttle' && !reaction.actions.some((a) => a.type === 'backoff')) {
    startRamp(state, suspensionKey('source', context), { target: 'source', from: now, until: now + (recover ?? THROTTLE_RECOVER_SECONDS) * 1000, rule, reason });
  } else if (recover !== undefined) {
    startRamp(state, suspensionKey('source', context), { target: 'source', from: now, until: now + recover * 1000, rule, reason });
  }
  return { fired: true, actions: reaction.actions };
}

/** Starts a ramp under `key`, unless one already in force there ends later. */
function startRamp(state: PolicyState, key: string, ramp: Ramp): void {
  const current = state.ramps.get(key);
  if (!current || current.until < ramp.until) state.ramps.set(key, ramp);
}

/** The ramps slowing this context at `now`, as shares of the normal limits (ended ones are dropped). */
export function rampShares(state: PolicyState, context: ReplyContext, now: number): RampShares {
  const shares: RampShares = {};
  for (const target of SUSPEND_TARGETS) {
    if (target === 'tenant' && context.tenant === undefined) continue;
    for (const key of targetKeys(target, context)) {
      const ramp = state.ramps.get(key);
      if (!ramp) continue;
      if (ramp.until <= now) state.ramps.delete(key);
      else shares[target] = Math.min(shares[target] ?? 1, rampShare(ramp, now));
    }
  }
  return shares;
}

/**
 * Milliseconds until a ramp on this context next changes its share (Infinity if none is in
 * force): a delivery refused under one step is looked at again when the next one begins.
 */
export function untilRampChange(state: PolicyState, context: ReplyContext, now: number): number {
  let ms = Infinity;
  for (const target of SUSPEND_TARGETS) {
    if (target === 'tenant' && context.tenant === undefined) continue;
    for (const key of targetKeys(target, context)) {
      const ramp = state.ramps.get(key);
      if (ramp) ms = Math.min(ms, untilNextStep(ramp, now));
    }
  }
  return ms;
}

/** The ramps in force at `now` (for status): key, and how far along. */
export function activeRamps(state: PolicyState, now: number): [string, Ramp][] {
  return [...state.ramps].filter(([, r]) => r.until > now);
}

/**
 * The limits a queue sends under at `now`: the route's settings, under its backoff's
 * overrides, under its recovery ramps. The scheduler, the status API and `petrel test`
 * all ask this one function.
 */
export function effectiveSettings(state: PolicyState, context: ReplyContext, base: EffectiveSettings, now: number): EffectiveSettings {
  return settingsUnderRamp(settingsUnderBackoff(base, activeBackoff(state, context, now)?.overrides), rampShares(state, context, now));
}

/** The backoff in force on a queue at `now`, if any (expired ones are dropped). */
export function activeBackoff(state: PolicyState, context: ReplyContext, now: number): ActiveBackoff | undefined {
  const b = state.backoffs.get(queueKey(context));
  if (b && b.until <= now) {
    state.backoffs.delete(queueKey(context));
    return undefined;
  }
  return b;
}

/** The suspensions that stop this context's traffic at `now` (destination, source, tenant). */
export function activeSuspensions(state: PolicyState, context: ReplyContext, now: number): ActiveSuspension[] {
  const out: ActiveSuspension[] = [];
  for (const target of SUSPEND_TARGETS) {
    if (target === 'tenant' && context.tenant === undefined) continue;
    const key = suspensionKey(target, context);
    const s = state.suspensions.get(key);
    if (!s) continue;
    if (s.until <= now) state.suspensions.delete(key);
    else out.push(s);
  }
  return out;
}

/** Whether the source is disabled for this route (there, or on every route). */
export function isDisabled(state: PolicyState, context: ReplyContext): boolean {
  return state.disabled.has(queueKey(context)) || state.disabled.has(queueKey({ ...context, route: EVERY_ROUTE }));
}

/** The queues a source is disabled on ({@link EVERY_ROUTE} for all of them), sorted. */
export function disabledQueues(state: PolicyState, source: string): string[] {
  return [...state.disabled.keys()].map(queueOfKey).filter((k) => k.source === source).map((k) => k.queue).sort();
}

/** An operator's re-enable of a source for a route ({@link EVERY_ROUTE}: where it was disabled on every route): it comes back on a recovery ramp. */
export function enableSource(state: PolicyState, context: ReplyContext, now: number): boolean {
  const was = state.disabled.get(queueKey(context));
  if (!was) return false;
  state.disabled.delete(queueKey(context));
  startRamp(state, suspensionKey('source', context), { target: 'source', from: now, until: now + DEFAULT_RECOVER_SECONDS * 1000, rule: was.rule, reason: 'enabled by an operator' });
  return true;
}

/** An operator's disable of a source for a route, or for every route with {@link EVERY_ROUTE} (until enabled again). */
export function disableSource(state: PolicyState, context: ReplyContext, now: number, reason: string): void {
  if (!state.disabled.has(queueKey(context))) state.disabled.set(queueKey(context), { since: now, rule: null, reason });
}

/** Settings while a backoff lasts: each overridden limit list replaces the same-scope entries; scalars replace. */
export function settingsUnderBackoff(settings: EffectiveSettings, overrides: BackoffOverrides | undefined): EffectiveSettings {
  if (!overrides) return settings;
  const merge = <T extends { scope: string }>(base: readonly T[], over: readonly T[] | undefined): readonly T[] =>
    over ? [...base.filter((b) => !over.some((o) => o.scope === b.scope)), ...over] : base;
  return {
    ...settings,
    connections: merge(settings.connections, overrides.connections),
    connectRate: merge(settings.connectRate, overrides.connectRate?.map(paced)),
    messageRate: merge(settings.messageRate, overrides.messageRate?.map(paced)),
    dataRate: merge(settings.dataRate, overrides.dataRate),
    messagesPerConnection: overrides.messagesPerConnection ?? settings.messagesPerConnection,
    recipientsPerTransaction: overrides.recipientsPerTransaction ?? settings.recipientsPerTransaction,
    tls: overrides.tls ?? settings.tls,
    retry: overrides.retry ?? settings.retry,
    expireSeconds: overrides.expireSeconds ?? settings.expireSeconds,
  };
}

/** The state as JSON-ready data, without what has run out by `now` (for a state file). */
export interface PolicyStateSnapshot {
  triggerHits: [string, number[]][];
  backoffs: [string, ActiveBackoff][];
  suspensions: [string, ActiveSuspension][];
  disabled: [string, { since: number; rule: { file: string; line: number } | null; reason: string }][];
  /** Absent in state files written before ramps existed. */
  ramps?: [string, Ramp][];
  blocks?: [string, number[]][];
}

export function snapshotPolicyState(state: PolicyState, now: number): PolicyStateSnapshot {
  return {
    triggerHits: [...state.triggerHits].filter(([, hits]) => hits.length > 0),
    backoffs: [...state.backoffs].filter(([, b]) => b.until > now),
    suspensions: [...state.suspensions].filter(([, s]) => s.until > now),
    disabled: [...state.disabled],
    ramps: [...state.ramps].filter(([, r]) => r.until > now),
    blocks: [...state.blocks].map(([k, times]) => [k, times.filter((t) => t > now - DAY_MS)] as [string, number[]]).filter(([, times]) => times.length > 0),
  };
}

/**
 * The inverse of {@link snapshotPolicyState}, for a snapshot that passed
 * {@link policyStateSnapshotSchema}: every backoff and suspension ends at most
 * {@link MAX_AHEAD_MS} after `now`, whatever the snapshot says.
 */
export function restorePolicyState(snapshot: PolicyStateSnapshot, now: number): PolicyState {
  const latest = now + MAX_AHEAD_MS;
  return {
    triggerHits: new Map(snapshot.triggerHits),
    backoffs: new Map(snapshot.backoffs.map(([key, b]) => [key, { ...b, until: Math.min(b.until, latest) }])),
    suspensions: new Map(snapshot.suspensions.map(([key, x]) => [key, { ...x, until: Math.min(x.until, latest) }])),
    disabled: new Map(snapshot.disabled),
    // A ramp starts when its pause ends, so it may lie as far ahead as the pause.
    ramps: new Map((snapshot.ramps ?? []).map(([key, r]) => [key, { ...r, from: Math.min(r.from, latest), until: Math.min(r.until, latest + MAX_AHEAD_MS) }])),
    blocks: new Map(snapshot.blocks ?? []),
  };
}

/** The most entries of one kind a snapshot may hold, and of timestamps under one trigger. */
const MAX_SNAPSHOT_ENTRIES = 1_000_000;
/** A time in ms that a `Date` can hold (JSON's `1e400` parses as Infinity, and fails this). */
const time = { type: 'number', minimum: -8.64e15, maximum: 8.64e15 } as const;
const text = (maxLength: number) => ({ type: 'string', maxLength }) as const;
const list = (items: object) => ({ type: 'array', maxItems: MAX_SNAPSHOT_ENTRIES, items }) as const;
/** `[key, value]`, as a `Map` is written. */
const entries = (value: object) => list({ type: 'array', minItems: 2, items: [text(2048), value], additionalItems: false });
const ruleAt = { anyOf: [{ type: 'null' }, { type: 'object', required: ['file', 'line'], properties: { file: text(4096), line: { type: 'integer', minimum: 0 } } }] } as const;
const amount = { type: 'number', minimum: 0, maximum: Number.MAX_SAFE_INTEGER } as const;
const rates = list({ type: 'object', required: ['count', 'perSeconds', 'scope'], properties: { count: amount, perSeconds: { ...amount, exclusiveMinimum: 0 }, scope: text(64) } });
const overrides = {
  type: 'object',
  properties: {
    connections: list({ type: 'object', required: ['max', 'scope'], properties: { max: amount, scope: text(64) } }),
    connectRate: rates,
    messageRate: rates,
    dataRate: rates,
    messagesPerConnection: amount,
    recipientsPerTransaction: amount,
    tls: text(64),
    retry: text(256),
    expireSeconds: amount,
  },
} as const;

/**
 * JSON Schema of a {@link PolicyStateSnapshot} as read back from a file: every time is one
 * a `Date` holds, every count and string bounded. A value past it (a torn or edited file,
 * one from another version) must not reach the status API or the scheduler.
 */
export const policyStateSnapshotSchema = {
  type: 'object',
  required: ['triggerHits', 'backoffs', 'suspensions', 'disabled'],
  properties: {
    triggerHits: entries(list(time)),
    backoffs: entries({ type: 'object', required: ['since', 'until', 'durationSeconds', 'overrides', 'rule', 'reason'], properties: { since: time, until: time, durationSeconds: amount, overrides, rule: ruleAt, reason: text(1000) } }),
    suspensions: entries({ type: 'object', required: ['target', 'since', 'until', 'rule', 'reason'], properties: { target: { enum: [...SUSPEND_TARGETS] }, since: time, until: time, rule: ruleAt, reason: text(1000) } }),
    disabled: entries({ type: 'object', required: ['since', 'rule', 'reason'], properties: { since: time, rule: ruleAt, reason: text(1000) } }),
    ramps: entries({ type: 'object', required: ['target', 'from', 'until', 'rule', 'reason'], properties: { target: { enum: [...SUSPEND_TARGETS] }, from: time, until: time, rule: ruleAt, reason: text(1000) } }),
    blocks: entries(list(time)),
  },
} as const;
