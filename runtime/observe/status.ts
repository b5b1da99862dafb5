/**
 * `GET /api/v1/status`: what the runtime holds and why mail waits — counts, pauses,
 * disabled sources, suspensions, backoffs, recovery ramps, warmup standing, and every
 * queue with mail waiting, in flight or sent in the last minute with the limits in force
 * on it — built from the scheduler, the policy state and the warmup counts at `now`.
 * Limits are in the language's words (`600/h per source`, vocabulary/limit-words.ts), and
 * the limits a queue or source sends under now are `effectiveSettings`' answer, the one
 * the scheduler admits by.
 *
 * INVARIANT: the top-level `queued` and `inFlight` are the sums of the queues' (recipients
 * not yet routed are listed under the queue {@link UNROUTED}).
 */
import type { ArtifactManifest, EffectiveSettings, PolicyArtifact } from '../abi.ts';
import { activeBackoff, activeRamps, activeSuspensions, effectiveSettings, EVERY_ROUTE, isDisabled, queueOfKey, rampShare, rampShares, targetOfKey, type PolicyState, type ReplyContext } from '../decide/index.ts';
import { connectionWords, dataRateWords, rateWords } from '../../vocabulary/limit-words.ts';
import { ruleAt } from './outcome-record.ts';
import type { RateWindow } from './rate-window.ts';
import { isoTime } from './text.ts';

/** The queue that lists waiting recipients whose route is not known yet (their first look has not come): no route or queue name has brackets. */
export const UNROUTED = '(unrouted)';

/** Limits in the language's words, by kind: `rate: ["600/h per source"]`. */
export interface LimitWords {
  rate: string[];
  connections: string[];
  connectRate: string[];
  dataRate: string[];
}

/** Who decided something and why: the rule as `file:line` (null: an operator or a built-in default) and the reply's first line. */
interface Why {
  reason: string;
  rule: string | null;
}

export interface RuntimeStatus {
  policy: { name: string; version: string; hash: string };
  accepted: number;
  delivered: number;
  deferred: number;
  bounced: number;
  /** Recipients waiting for a delivery, due or not (not those in flight): the sum of the queues' `queued`. */
  queued: number;
  /** Deliveries in progress: the sum of the queues' `inFlight`. */
  inFlight: number;
  /** Operator pauses: `queue:Q`, `source:S`, `tenant:T`. */
  paused: string[];
  /** Sources disabled on a queue (`*`: on every one) until an operator enables them. */
  disabled: ({ queue: string; source: string; since: string } & Why)[];
  /** Backoffs, each on one source of one queue, with the limits that source sends under now. */
  backoffs: ({ queue: string; source: string; since: string; until: string; limits: LimitWords } & Why)[];
  /** `key` is the state's own (`source|QUEUE|SOURCE`); `who` is the source or tenant (null for a whole destination). */
  suspensions: ({ key: string; queue: string; target: string; who: string | null; since: string; until: string } & Why)[];
  /** Recovery ramps: from `from` to `until`, `share` of the normal limits now (1 until `from`: the pause before it still holds). */
  ramps: ({ queue: string; target: string; who: string | null; share: number; from: string; until: string } & Why)[];
  /** Every warming-up source: the day of its ramp, and today's count against today's limit on each route it sent to today. */
  warmup: WarmupStatus[];
  /** Every queue with mail waiting or in flight, or sent in the last minute. */
  queues: QueueStatus[];
}

export interface WarmupStatus {
  source: string;
  ramp: string;
  since: string;
  /** Day of the ramp: 0 on the `since` day (UTC). */
  day: number;
  overflowPool: string | null;
  /** `capped`: today's limit is reached there, so the source sends no more to that route today (its overflow pool takes the rest). */
  routes: { route: string; sentToday: number; limitToday: number; capped: boolean }[];
}

/** One queue (a route; on `default`, a recipient domain) in `GET /api/v1/status`. */
export interface QueueStatus {
  queue: string;
  /** Null for {@link UNROUTED}. */
  route: string | null;
  /** Recipients waiting (due or not). */
  queued: number;
  inFlight: number;
  /** Deliveries started per second, over the last 10 s, and in the last minute. */
  ratePerSecond: number;
  sentLastMinute: number;
  /** The limits in force now for a source with no backoff or ramp of its own here (a destination's ramp counts). */
  limits: LimitWords;
  paused: boolean;
  /** In force on this queue now, for any of its sources or tenants. */
  backoffs: ({ source: string; since: string; until: string } & Why)[];
  suspensions: ({ target: string; who: string | null; since: string; until: string } & Why)[];
  disabled: ({ source: string; since: string; everyRoute: boolean } & Why)[];
  ramps: { target: string; who: string | null; share: number; until: string }[];
  /** Each source with something of its own in force here, and the limits it sends under now. */
  sources: { source: string; limits: LimitWords; backoff: boolean; ramp: number | null; stopped: 'suspended' | 'disabled' | null }[];
}

/** A warming-up source's standing, as schedule/source-choice.ts `warmupStanding` gives it. */
export interface WarmupInput {
  source: { name: string; warmup: { ramp: string; since: string; overflowPool: string | null } | null };
  day: number;
  routes: { route: string; sent: number; limit: number }[];
}

/** What the status is made of. */
export interface StatusInput {
  policy: { artifact: PolicyArtifact; manifest: ArtifactManifest };
  counters: { accepted: number; delivered: number; deferred: number; bounced: number };
  inFlight: number;
  paused: ReadonlySet<string>;
  state: PolicyState;
  /** Waiting work, by the queue it was last put in (none yet: not routed). */
  work: readonly { queue?: string; rcpts: readonly string[] }[];
  queueStats: ReadonlyMap<string, { route: string; inFlight: number; started: RateWindow }>;
  warmup: readonly WarmupInput[];
  now: number;
}

/** Limits as the language writes them. */
export function limitWords(s: EffectiveSettings): LimitWords {
  return { rate: s.messageRate.map(rateWords), connections: s.connections.map(connectionWords), connectRate: s.connectRate.map(rateWords), dataRate: s.dataRate.map(dataRateWords) };
}

/** The route a queue belongs to: the one it was last sent on, else its name (a `default/DOMAIN` queue is on `default`). */
const routeOf = (s: StatusInput, queue: string) => s.queueStats.get(queue)?.route ?? (queue.startsWith('default/') ? 'default' : queue);

/** The limits a source (or, without one, any source with nothing of its own) sends under on a queue now. */
function limitsNow(s: StatusInput, queue: string, source?: string): LimitWords {
  const context: ReplyContext = { route: queue, source };
  return limitWords(effectiveSettings(s.state, context, s.policy.artifact.settings(routeOf(s, queue), source), s.now));
}

/** Recipients waiting, by queue ({@link UNROUTED} for work not routed yet). */
export function waitingByQueue(work: StatusInput['work']): Map<string, number> {
  const waiting = new Map<string, number>();
  for (const w of work) waiting.set(w.queue ?? UNROUTED, (waiting.get(w.queue ?? UNROUTED) ?? 0) + w.rcpts.length);
  return waiting;
}

export function runtimeStatus(s: StatusInput): RuntimeStatus {
  const { manifest } = s.policy;
  const { state, now } = s;
  const queues = queueStatus(s);
  return {
    policy: { name: manifest.name, version: manifest.version, hash: manifest.hash },
    ...s.counters,
    queued: queues.reduce((n, q) => n + q.queued, 0),
    inFlight: s.inFlight,
    paused: [...s.paused].sort(),
    disabled: [...state.disabled].map(([key, d]) => ({ ...queueOfKey(key), since: isoTime(d.since), reason: d.reason, rule: ruleAt(d.rule) })),
    backoffs: [...state.backoffs]
      .filter(([, b]) => b.until > now)
      .map(([key, b]) => {
        const { queue, source } = queueOfKey(key);
        return { queue, source, since: isoTime(b.since), until: isoTime(b.until), reason: b.reason, rule: ruleAt(b.rule), limits: limitsNow(s, queue, source) };
      }),
    suspensions: [...state.suspensions].filter(([, x]) => x.until > now).map(([key, x]) => ({ key, ...targetOfKey(key), target: x.target, since: isoTime(x.since), until: isoTime(x.until), reason: x.reason, rule: ruleAt(x.rule) })),
    ramps: activeRamps(state, now).map(([key, r]) => ({ ...targetOfKey(key), target: r.target, share: rampShare(r, now), from: isoTime(r.from), until: isoTime(r.until), reason: r.reason, rule: ruleAt(r.rule) })),
    warmup: s.warmup.flatMap(({ source, day, routes }) =>
      source.warmup ? [{ source: source.name, ramp: source.warmup.ramp, since: source.warmup.since, day, overflowPool: source.warmup.overflowPool, routes: routes.map((r) => ({ route: r.route, sentToday: r.sent, limitToday: r.limit, capped: r.sent >= r.limit })) }] : [],
    ),
    queues,
  };
}

function queueStatus(s: StatusInput): QueueStatus[] {
  const { now } = s;
  const waiting = waitingByQueue(s.work);
  const names = new Set([...waiting.keys(), ...[...s.queueStats].filter(([, q]) => q.inFlight > 0 || q.started.sum(now, 60) > 0).map(([name]) => name)]);
  return [...names].sort().map((queue) => (queue === UNROUTED ? unroutedStatus(waiting.get(UNROUTED)!) : oneQueue(s, queue, waiting.get(queue) ?? 0)));
}

/** What waits before its first look: it has no route, limits or state yet. */
const unroutedStatus = (queued: number): QueueStatus => ({
  queue: UNROUTED,
  route: null,
  queued,
  inFlight: 0,
  ratePerSecond: 0,
  sentLastMinute: 0,
  limits: { rate: [], connections: [], connectRate: [], dataRate: [] },
  paused: false,
  backoffs: [],
  suspensions: [],
  disabled: [],
  ramps: [],
  sources: [],
});

function oneQueue(s: StatusInput, queue: string, queued: number): QueueStatus {
  const { now, state } = s;
  const qs = s.queueStats.get(queue);
  const backoffs = [...state.backoffs].filter(([k, b]) => queueOfKey(k).queue === queue && b.until > now);
  const suspensions = [...state.suspensions].filter(([k, x]) => targetOfKey(k).queue === queue && x.until > now);
  const disabled = [...state.disabled].filter(([k]) => [queue, EVERY_ROUTE].includes(queueOfKey(k).queue));
  const ramps = activeRamps(state, now).filter(([k]) => targetOfKey(k).queue === queue);
  return {
    queue,
    route: routeOf(s, queue),
    queued,
    inFlight: qs?.inFlight ?? 0,
    ratePerSecond: qs ? qs.started.sum(now, 10) / 10 : 0,
    sentLastMinute: qs ? qs.started.sum(now, 60) : 0,
    limits: limitsNow(s, queue),
    paused: s.paused.has(`queue:${queue}`),
    backoffs: backoffs.map(([k, b]) => ({ source: queueOfKey(k).source, since: isoTime(b.since), until: isoTime(b.until), reason: b.reason, rule: ruleAt(b.rule) })),
    suspensions: suspensions.map(([k, x]) => ({ target: x.target, who: targetOfKey(k).who, since: isoTime(x.since), until: isoTime(x.until), reason: x.reason, rule: ruleAt(x.rule) })),
    disabled: disabled.map(([k, d]) => ({ source: queueOfKey(k).source, since: isoTime(d.since), everyRoute: queueOfKey(k).queue === EVERY_ROUTE, reason: d.reason, rule: ruleAt(d.rule) })),
    ramps: ramps.map(([k, r]) => ({ target: r.target, who: targetOfKey(k).who, share: rampShare(r, now), until: isoTime(r.until) })),
    sources: [...sourcesNamed(state, queue)].sort().flatMap((source) => sourceOnQueue(s, queue, source)),
  };
}

/** The sources the state names on a queue (or on every route): their backoffs, disables, suspensions and ramps. */
function sourcesNamed(state: PolicyState, queue: string): Set<string> {
  const names = new Set<string>();
  const here = (q: string) => q === queue || q === EVERY_ROUTE;
  for (const k of [...state.backoffs.keys(), ...state.disabled.keys()]) if (here(queueOfKey(k).queue)) names.add(queueOfKey(k).source);
  for (const [k, x] of [...state.suspensions, ...state.ramps]) if (x.target === 'source' && here(targetOfKey(k).queue)) names.add(targetOfKey(k).who ?? '');
  return names;
}

/** One source's standing on a queue, when something of its own is in force there: the limits it sends under now, and what. */
function sourceOnQueue(s: StatusInput, queue: string, source: string): QueueStatus['sources'] {
  const { state, now } = s;
  const context: ReplyContext = { route: queue, source };
  const backoff = activeBackoff(state, context, now) !== undefined;
  const share = rampShares(state, context, now).source ?? 1;
  const stopped = activeSuspensions(state, context, now).some((x) => x.target === 'source') ? 'suspended' : isDisabled(state, context) ? 'disabled' : null;
  if (!backoff && share === 1 && stopped === null) return [];
  return [{ source, limits: limitsNow(s, queue, source), backoff, ramp: share < 1 ? share : null, stopped }];
}
