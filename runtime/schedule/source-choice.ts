/**
 * Which source a delivery goes out from: the policy version's sources and pools, the
 * pool a message or a reaction names, round-robin per queue, skipping sources stopped
 * there and warming-up sources whose ramp allows no more today (their overflow pool takes
 * the excess, PowerMTA's cold-VMTA overflow).
 */
import type { ArtifactManifest, DeliveryTopology, PolicyArtifact } from '../abi.ts';
import { activeSuspensions, isDisabled, type PolicyState } from '../decide/index.ts';
import type { SpooledMessage } from '../spool/index.ts';

export type Source = DeliveryTopology['sources'][number];

/** A loaded version with what the scheduler derives from its manifest. */
export interface LivePolicy {
  artifact: PolicyArtifact;
  manifest: ArtifactManifest;
  topology: DeliveryTopology;
  /** The policy's sources, or the one unbound `default` source when it defines none. */
  allSources: Source[];
  sourceByName: Map<string, Source>;
  /** Each pool's sources, in the pool's order. */
  poolSources: ReadonlyMap<string, readonly Source[]>;
}

/** The one unbound source used when the policy defines none. */
export const DEFAULT_SOURCE: Source = { name: 'default', address: null, ehlo: null, warmup: null };
export const DAY_MS = 86_400_000;

export function livePolicy(artifact: PolicyArtifact, manifest: ArtifactManifest): LivePolicy {
  const topology: DeliveryTopology = manifest.delivery ?? { sources: [], pools: {}, tenants: {} };
  const allSources = topology.sources.length > 0 ? topology.sources : [DEFAULT_SOURCE];
  const sourceByName = new Map(allSources.map((s) => [s.name, s]));
  const pools = new Map(Object.entries(topology.pools).map(([pool, names]) => [pool, names.flatMap((n) => sourceByName.get(n) ?? [])]));
  return { artifact, manifest, topology, allSources, sourceByName, poolSources: pools };
}

/** The sources of `pool` in this version (made once per version: source choice asks at every delivery). */
export const poolSources = (p: LivePolicy, pool: string): readonly Source[] => p.poolSources.get(pool) ?? [];

/** The sources a message may go out from: the pool a reaction rerouted it to, else its `X-Petrel-Pool`, else its tenant's pool, else all. */
export function candidates(p: LivePolicy, m: SpooledMessage, rerouted?: string): readonly Source[] {
  const pool = rerouted ?? m.pool ?? (m.tenant !== undefined ? p.topology.tenants[m.tenant] : undefined);
  const list = pool ? poolSources(p, pool) : [];
  return list.length > 0 ? list : p.allSources;
}

/** What source choice keeps between calls. */
export interface SourceChoiceState {
  policyState: PolicyState;
  /** Messages sent by warming-up sources, per `warmupKey` (source, route, UTC day). */
  warmupSent: Map<string, number>;
  /** Round-robin position per queue. */
  turn: Map<string, number>;
}

export const warmupKey = (source: Source, route: string, now: number) => `${source.name}|${route}|${Math.floor(now / DAY_MS)}`;

/** A warming-up source's day on a route at `now`: the day of its ramp (0 = its `since` day, UTC), sent today, and today's limit. */
export interface WarmupToday {
  day: number;
  sent: number;
  limit: number;
}

/** The day of a ramp that started on `since` (a UTC date), at `now`. */
const rampDay = (since: string, now: number) => Math.floor((now - Date.parse(`${since}T00:00:00Z`)) / DAY_MS);

/** Where a source stands on `route` today (undefined when it is not warming up); the scheduler caps it once `sent >= limit`. */
export function warmupToday(warmupSent: ReadonlyMap<string, number>, p: LivePolicy, source: Source, route: string, now: number): WarmupToday | undefined {
  if (!source.warmup) return undefined;
  const day = rampDay(source.warmup.since, now);
  return { day, sent: warmupSent.get(warmupKey(source, route, now)) ?? 0, limit: p.artifact.warmupLimit(source.warmup.ramp, route, day) };
}

/** Every warming-up source, its ramp's day, and today's standing on each route it sent to today (for status and metrics). */
export function warmupStanding(warmupSent: ReadonlyMap<string, number>, p: LivePolicy, now: number): { source: Source; day: number; routes: ({ route: string } & WarmupToday)[] }[] {
  const today = `|${Math.floor(now / DAY_MS)}`;
  return p.allSources.flatMap((source) => {
    if (!source.warmup) return [];
    const prefix = `${source.name}|`;
    const routes = [...warmupSent.keys()].filter((k) => k.startsWith(prefix) && k.endsWith(today)).map((k) => k.slice(prefix.length, -today.length));
    return [{ source, day: rampDay(source.warmup.since, now), routes: routes.sort().map((route) => ({ route, ...warmupToday(warmupSent, p, source, route, now)! })) }];
  });
}

/**
 * The next source for a queue, round-robin, skipping sources suspended or disabled
 * there and warming-up sources whose ramp allows no more today; their ramp's overflow
 * pool takes the excess instead of waiting. With none left, the work waits for the
 * earliest suspension end or the next UTC day.
 */
export function pickSource(s: SourceChoiceState, p: LivePolicy, m: SpooledMessage, rerouted: string | undefined, route: string, queue: string, now: number): { source: Source } | { waitUntil: number } {
  let list: readonly Source[] = candidates(p, m, rerouted);
  const tried = new Set<string>();
  let waitUntil = Math.floor(now / DAY_MS + 1) * DAY_MS;
  for (let hop = 0; hop < 4 && list.length > 0; hop++) {
    let overflow: string | null = null;
    const start = s.turn.get(queue) ?? 0;
    for (let k = 0; k < list.length; k++) {
      const source = list[(start + k) % list.length]!;
      if (tried.has(source.name)) continue;
      tried.add(source.name);
      const context = { route: queue, source: source.name, tenant: m.tenant };
      const stopped = activeSuspensions(s.policyState, context, now);
      if (stopped.length > 0) {
        waitUntil = Math.min(waitUntil, ...stopped.map((x) => x.until));
        continue;
      }
      if (isDisabled(s.policyState, context)) continue;
      const warmup = warmupToday(s.warmupSent, p, source, route, now);
      if (warmup && warmup.sent >= warmup.limit) {
        overflow ??= source.warmup!.overflowPool;
        continue;
      }
      s.turn.set(queue, (start + k + 1) % list.length);
      return { source };
    }
    if (!overflow) break;
    list = poolSources(p, overflow);
  }
  return { waitUntil };
}
