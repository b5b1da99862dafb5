/**
 * `petrel simulate`'s engine: a compiled policy run through the runtime's real scheduling
 * core — createScheduler with its source choice, limiters, session cache, judge,
 * reaction fate and policy state — on a virtual clock (runtime/schedule/virtual-time.ts),
 * against modelled providers (provider.ts over provider-state.ts) and an in-memory spool
 * (memory-spool.ts). The campaign's messages are injected as the clock passes their time;
 * the run ends when every recipient is settled or at the horizon. Counts go to a Tally.
 */
import type { ArtifactManifest, PolicyArtifact } from '../runtime/abi.ts';
import { createPolicyState } from '../runtime/decide/index.ts';
import type { MxAnswer } from '../runtime/deliver/index.ts';
import { createScheduler, livePolicy, MemoryLimiterStore, VirtualTime, domainOf, type Source } from '../runtime/schedule/index.ts';
import type { ProviderBehaviour } from './behaviour.ts';
import { DEFAULT_START, type Campaign, type CampaignStream } from './campaign.ts';
import { memorySpool } from './memory-spool.ts';
import { createProviderState, type Period, type ProviderState } from './provider-state.ts';
import { modelledTransport } from './provider.ts';
import { Tally } from './tally.ts';

/** The model that takes every domain no model lists. */
export const LONG_TAIL_MODEL = 'long-tail';
/** Deliveries in flight at most (the runtime's default order of magnitude). */
export const MAX_IN_FLIGHT = 2000;
const DAY_MS = 86_400_000;
/** Injection happens in steps of at most this long (messages due within a step go in at its start). */
const INJECT_STEP_MS = 60_000;
/** How often the run checks whether everything is settled. */
const CHECK_STEP_MS = 10 * 60_000;
/** More timers than this in one check step can only be a loop that never advances time: the run stops with an error. */
const MAX_TIMERS_PER_STEP = 100_000_000;
/** At most this many scheduler warnings are kept. */
export const MAX_WARNINGS = 100;
/** The timeline has at most about this many buckets. */
const TIMELINE_BUCKETS = 720;

export interface SimulationInput {
  artifact: PolicyArtifact;
  manifest: ArtifactManifest;
  campaign: Campaign;
  /** The models, by name (`long-tail` takes domains no model lists). */
  behaviours: ReadonlyMap<string, ProviderBehaviour>;
  seed?: number;
}

/** What the provider side saw: deferral and block periods it started, per model. */
export interface ProviderSide {
  deferrals: number;
  blocks: number;
  blockedIps: string[];
}

export interface SimulationResult {
  tally: Tally;
  start: number;
  /** Simulated time from start to the last event handled. */
  end: number;
  horizon: number;
  /** Whether every recipient was delivered or bounced before the horizon. */
  finished: boolean;
  messages: number;
  recipients: number;
  /** Recipients still open at the end. */
  open: number;
  providerSide: Map<string, ProviderSide>;
  /** Per warming-up source and route, per day: the ramp's limit and what was sent. */
  warmup: { source: string; route: string; days: { day: number; limit: number; sent: number }[] }[];
  /** What the scheduler warned about (a delivery that failed in the core: a bug to report), at most {@link MAX_WARNINGS}. */
  warnings: string[];
  timers: number;
  wallMs: number;
}

/** A stream's recipient domain for message `n`: its provider's domains in turn, or its mix by weight (deterministic). */
function domainPicker(stream: CampaignStream, behaviours: ReadonlyMap<string, ProviderBehaviour>): (n: number) => string {
  if (stream.provider !== undefined) {
    const domains = behaviours.get(stream.provider)!.domains;
    return (n) => domains[n % domains.length]!;
  }
  const entries = Object.entries(stream.domains!);
  const total = entries.reduce((s, [, w]) => s + w, 0);
  const cumulative = entries.map(([d], i) => [d.toLowerCase(), entries.slice(0, i + 1).reduce((s, [, w]) => s + w, 0) / total] as const);
  // A low-discrepancy sequence (golden ratio): every prefix of the stream follows the weights.
  return (n) => {
    const u = (n * 0.6180339887498949) % 1;
    return cumulative.find(([, c]) => u < c)?.[0] ?? cumulative.at(-1)![0];
  };
}

/** The policy's topology with each campaign warmup age turned into a `since` date before `start`. */
function withWarmupAges(manifest: ArtifactManifest, campaign: Campaign, start: number): ArtifactManifest {
  const ages = campaign.warmup ?? {};
  if (!manifest.delivery || Object.keys(ages).length === 0) return manifest;
  const sources = manifest.delivery.sources.map((s): Source => {
    const age = ages[s.name]?.ageDays;
    if (age === undefined || !s.warmup) return s;
    const since = new Date(Math.floor(start / DAY_MS) * DAY_MS - age * DAY_MS).toISOString().slice(0, 10);
    return { ...s, warmup: { ...s.warmup, since } };
  });
  return { ...manifest, delivery: { ...manifest.delivery, sources } };
}

/** The client address of a source without one: 198.18.x.y (RFC 2544 benchmarking space), one per EHLO name. */
function madeUpAddresses(): (ehlo: string) => string {
  const given = new Map<string, string>();
  return (ehlo) => {
    let ip = given.get(ehlo);
    if (!ip) given.set(ehlo, (ip = `198.18.${Math.floor(given.size / 250)}.${(given.size % 250) + 1}`));
    return ip;
  };
}

/** Runs the campaign; resolves when every recipient is settled or the horizon is reached. */
export async function runSimulation(input: SimulationInput): Promise<SimulationResult> {
  const wallStart = performance.now();
  const { campaign, behaviours, artifact } = input;
  const start = Date.parse(campaign.start ?? DEFAULT_START);
  const lastInjection = Math.max(...campaign.streams.map((s) => (s.startSeconds ?? 0) + (s.overSeconds ?? 0))) * 1000;
  const horizon = start + (campaign.horizonSeconds !== undefined ? campaign.horizonSeconds * 1000 : lastInjection + 3 * DAY_MS);
  const bucketMs = Math.max(60_000, Math.ceil((horizon - start) / TIMELINE_BUCKETS / 60_000) * 60_000);
  const time = new VirtualTime(start, input.seed ?? 1);
  const tally = new Tally(start, bucketMs);
  const spool = memorySpool({ keepOutcomes: false });
  const policy = livePolicy(artifact, withWarmupAges(input.manifest, campaign, start));

  // One MX host per model; its domains resolve to it, every other domain to the long tail.
  const providers = new Map<string, ProviderState>();
  const providerSide = new Map<string, ProviderSide>();
  const modelOfDomain = new Map<string, string>();
  for (const [name, b] of behaviours) {
    const side: ProviderSide = { deferrals: 0, blocks: 0, blockedIps: [] };
    providerSide.set(name, side);
    providers.set(`mx.${name}.simulated`, createProviderState(b, time.now, { onDeferral: () => side.deferrals++, onBlock: (p: Period) => (side.blocks++, side.blockedIps.includes(p.ip) || side.blockedIps.push(p.ip)) }));
    for (const d of b.domains) modelOfDomain.set(d.toLowerCase(), name);
  }
  const modelOf = (domain: string) => modelOfDomain.get(domain) ?? LONG_TAIL_MODEL;
  const answers = new Map<string, Promise<MxAnswer>>();
  const mx = {
    resolve(domain: string): Promise<MxAnswer> {
      let a = answers.get(domain);
      if (!a) answers.set(domain, (a = Promise.resolve({ ok: true, via: 'override', hosts: [{ host: `mx.${modelOf(domain)}.simulated`, port: 25, preference: 10 }] })));
      return a;
    },
  };
  const addressOf = madeUpAddresses();
  const transport = modelledTransport(providers, time, (o) => o.localAddress ?? addressOf(o.ehlo));
  const state = createPolicyState();
  const warmupSent = new Map<string, number>();
  const warnings: string[] = [];
  const core = createScheduler({
    time,
    transport,
    spool,
    mx,
    limiters: new MemoryLimiterStore({ clock: time.now }),
    policy: () => policy,
    state,
    paused: new Set(),
    warmupSent,
    record: (_m, outcome) => {
      tally.outcome(modelOf(domainOf(outcome.rcpt)), outcome);
      const r = outcome.reaction;
      if (r && (r.disposition === 'block' || r.actions.some((a) => a.type === 'backoff' || a.type === 'suspend'))) tally.policyEvents(state);
    },
    changed: () => {},
    warn: (line) => {
      if (warnings.length < MAX_WARNINGS) warnings.push(line);
    },
    maxInFlight: MAX_IN_FLIGHT,
    ehlo: 'petrel.simulated',
  });

  const injection = injector(campaign, behaviours, start, spool, core, tally, modelOf, time);
  let timers = 0;
  let finished = false;
  for (let t = start; t < horizon; ) {
    t = Math.min(horizon, t + CHECK_STEP_MS);
    timers += await time.runUntil(t, { maxTimers: MAX_TIMERS_PER_STEP });
    if (injection.injectUntil() === Infinity && spool.size === 0) {
      finished = true;
      break;
    }
  }
  const end = Math.max(...[...tally.lastSettled.values(), start]);
  core.halt();
  const drained = core.drain(0);
  await time.runUntil(time.now() + 1);
  await drained;
  const open = [...spool.pending()].reduce((n, m) => n + m.recipients.length, 0);
  return { tally, start, end, horizon, finished, messages: injection.messages, recipients: injection.recipients, open, providerSide, warmup: warmupReport(policy, warmupSent, start), warnings, timers, wallMs: performance.now() - wallStart };
}

/**
 * Sets the injection going: a timer per step puts the messages due by then into the spool
 * and the scheduler. Returns the totals and when the next message is due (Infinity once
 * all are in).
 */
function injector(campaign: Campaign, behaviours: ReadonlyMap<string, ProviderBehaviour>, start: number, spool: ReturnType<typeof memorySpool>, core: ReturnType<typeof createScheduler>, tally: Tally, modelOf: (d: string) => string, time: VirtualTime) {
  const from = campaign.from ?? 'news@campaign.example';
  const size = campaign.size ?? 20_000;
  const body = Buffer.from(`From: ${from}\r\nSubject: simulated\r\n\r\n${'x'.repeat(64)}\r\n`);
  const streams = campaign.streams.map((s, i) => ({ s, i, next: 0, pick: domainPicker(s, behaviours), at: (n: number) => start + ((s.startSeconds ?? 0) + (s.count > 1 ? ((s.overSeconds ?? 0) * n) / s.count : 0)) * 1000 }));
  let messages = 0;
  let recipients = 0;
  let nextDue = start;
  const step = () => {
    const now = time.now();
    const until = now + INJECT_STEP_MS;
    nextDue = Infinity;
    for (const st of streams) {
      const perMessage = st.s.recipients ?? 1;
      while (st.next < st.s.count && st.at(st.next) < until) {
        const n = st.next++;
        const domain = st.pick(n);
        const to = Array.from({ length: perMessage }, (_, k) => `s${st.i}m${n}r${k}@${domain}`);
        const id = `s${st.i}-${n}`;
        spool.accept({ id, envelope: { from, to }, size, receivedAt: now, ...(st.s.tenant !== undefined ? { tenant: st.s.tenant } : {}), ...(st.s.pool !== undefined ? { pool: st.s.pool } : {}) }, body);
        core.enqueue(spool.get(id)!, () => now);
        tally.inject(modelOf(domain), perMessage, now);
        messages++;
        recipients += perMessage;
      }
      if (st.next < st.s.count) nextDue = Math.min(nextDue, st.at(st.next));
    }
    core.wake();
    if (nextDue !== Infinity) time.setTimeout(step, Math.max(0, nextDue - now));
  };
  time.setTimeout(step, 0);
  return {
    get messages() {
      return messages;
    },
    get recipients() {
      return recipients;
    },
    injectUntil: () => nextDue,
  };
}

/** What each warming-up source sent per route and day, against its ramp's limit that day. */
function warmupReport(policy: ReturnType<typeof livePolicy>, sent: Map<string, number>, start: number): SimulationResult['warmup'] {
  const rows = new Map<string, SimulationResult['warmup'][number]>();
  for (const [key, count] of sent) {
    const [sourceName, route, dayText] = key.split('|');
    const source = policy.sourceByName.get(sourceName!);
    if (!source?.warmup) continue;
    const day = Number(dayText);
    const age = Math.floor((day * DAY_MS - Date.parse(`${source.warmup.since}T00:00:00Z`)) / DAY_MS);
    const row = rows.get(`${sourceName}|${route}`) ?? { source: sourceName!, route: route!, days: [] };
    rows.set(`${sourceName}|${route}`, row);
    row.days.push({ day: Math.floor((day * DAY_MS - Math.floor(start / DAY_MS) * DAY_MS) / DAY_MS), limit: policy.artifact.warmupLimit(source.warmup.ramp, route!, age), sent: count });
  }
  for (const r of rows.values()) r.days.sort((a, b) => a.day - b.day);
  return [...rows.values()];
}
