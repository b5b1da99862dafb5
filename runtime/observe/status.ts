/**
 * `GET /api/v1/status`: counts, pauses, backoffs, suspensions and every queue with mail
 * waiting, in flight or sent in the last minute — built from what the scheduler and the
 * policy state hold, at `now`.
 */
import type { ArtifactManifest, PolicyArtifact, RateLimit } from '../abi.ts';
import { settingsUnderBackoff, type PolicyState } from '../decide/index.ts';
import { ruleAt } from './outcome-record.ts';
import type { RateWindow } from './rate-window.ts';
import { isoTime } from './text.ts';

export interface RuntimeStatus {
  policy: { name: string; version: string; hash: string };
  accepted: number;
  delivered: number;
  deferred: number;
  bounced: number;
  queued: number;
  inFlight: number;
  /** Operator pauses: `queue:Q`, `source:S`, `tenant:T`. */
  paused: string[];
  backoffs: { queue: string; until: string; reason: string; rule: string | null }[];
  suspensions: { key: string; until: string; reason: string; rule: string | null }[];
  /** Every queue with mail waiting or in flight, or sent in the last minute. */
  queues: QueueStatus[];
}

/** One queue (a route; on `default`, a recipient domain) in `GET /api/v1/status`. */
export interface QueueStatus {
  queue: string;
  route: string;
  /** Recipients waiting (due or not). */
  queued: number;
  inFlight: number;
  /** Deliveries started per second, over the last 10 s, and in the last minute. */
  ratePerSecond: number;
  sentLastMinute: number;
  /** The route's limits now (under a backoff, the backoff's), as the policy states them: `5/s per source`. */
  limits: { rate: string[]; connections: string[] };
  paused: boolean;
  /** In force on this queue now, for any of its sources or tenants. */
  backoffs: { source: string; until: string; reason: string; rule: string | null }[];
  suspensions: { target: string; who: string | null; until: string; reason: string; rule: string | null }[];
}

/** What the status is made of. */
export interface StatusInput {
  policy: { artifact: PolicyArtifact; manifest: ArtifactManifest };
  counters: { accepted: number; delivered: number; deferred: number; bounced: number };
  /** Recipients in the spool not yet delivered or bounced. */
  queued: number;
  inFlight: number;
  paused: ReadonlySet<string>;
  state: PolicyState;
  /** Waiting work, by the queue it was last put in. */
  work: readonly { queue?: string; rcpts: readonly string[] }[];
  queueStats: ReadonlyMap<string, { route: string; inFlight: number; started: RateWindow }>;
  now: number;
}

const formatRate = (r: RateLimit) => `${r.count}/${r.perSeconds === 1 ? 's' : r.perSeconds === 60 ? 'min' : r.perSeconds === 3600 ? 'h' : r.perSeconds === 86400 ? 'd' : `${r.perSeconds}s`} per ${r.scope}`;

export function runtimeStatus(s: StatusInput): RuntimeStatus {
  const { manifest } = s.policy;
  return {
    policy: { name: manifest.name, version: manifest.version, hash: manifest.hash },
    ...s.counters,
    queued: s.queued,
    inFlight: s.inFlight,
    paused: [...s.paused].sort(),
    backoffs: [...s.state.backoffs].filter(([, b]) => b.until > s.now).map(([queue, b]) => ({ queue, until: isoTime(b.until), reason: b.reason, rule: ruleAt(b.rule) })),
    suspensions: [...s.state.suspensions].filter(([, x]) => x.until > s.now).map(([key, x]) => ({ key, until: isoTime(x.until), reason: x.reason, rule: ruleAt(x.rule) })),
    queues: queueStatus(s),
  };
}

function queueStatus(s: StatusInput): QueueStatus[] {
  const { now, state } = s;
  const waiting = new Map<string, number>();
  for (const w of s.work) if (w.queue) waiting.set(w.queue, (waiting.get(w.queue) ?? 0) + w.rcpts.length);
  const names = new Set([...waiting.keys(), ...[...s.queueStats].filter(([, q]) => q.inFlight > 0 || q.started.sum(now, 60) > 0).map(([name]) => name)]);
  return [...names].sort().map((queue) => {
    const qs = s.queueStats.get(queue);
    const route = qs?.route ?? (queue.startsWith('default/') ? 'default' : queue);
    const backoffs = [...state.backoffs].filter(([k, b]) => k.startsWith(`${queue}|`) && b.until > now);
    const settings = settingsUnderBackoff(s.policy.artifact.settings(route), backoffs[0]?.[1].overrides);
    return {
      queue,
      route,
      queued: waiting.get(queue) ?? 0,
      inFlight: qs?.inFlight ?? 0,
      ratePerSecond: qs ? qs.started.sum(now, 10) / 10 : 0,
      sentLastMinute: qs ? qs.started.sum(now, 60) : 0,
      limits: { rate: settings.messageRate.map(formatRate), connections: settings.connections.map((c) => `${c.max} per ${c.scope}`) },
      paused: s.paused.has(`queue:${queue}`),
      backoffs: backoffs.map(([k, b]) => ({ source: k.slice(queue.length + 1), until: isoTime(b.until), reason: b.reason, rule: ruleAt(b.rule) })),
      suspensions: [...state.suspensions]
        .filter(([k, x]) => x.until > now && (k === `destination|${queue}` || k.startsWith(`source|${queue}|`) || k.startsWith(`tenant|${queue}|`)))
        .map(([k, x]) => ({ target: x.target, who: x.target === 'destination' ? null : k.slice(`${x.target}|${queue}|`.length), until: isoTime(x.until), reason: x.reason, rule: ruleAt(x.rule) })),
    };
  });
}
