/**
 * The delivery runtime: SMTP (submission-smtp.ts) and HTTP submission into the durable
 * spool; a scheduler that routes each message's recipients into queues and admits
 * deliveries through the limiters, sources, pools, warmup and the policy's reaction state;
 * delivery sessions to the MX hosts (held by worker threads, delivery-pool.ts), reused up
 * to messages-per-connection; every reply judged by the current artifact on the main
 * thread — retry, bounce, back off, suspend, reroute, skip an MX — with an accounting
 * record naming the policy version; the status, control and metrics API; and
 * `swapPolicy`, through which hot reload (policy-control.ts) makes a new version current.
 * What is not built yet is listed in docs/runtime.md, "Still to build".
 *
 * No module state: everything lives in the object `startRuntime` returns.
 */
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import path from 'node:path';
import { Counter, Gauge, Registry } from 'prom-client';
import type { ArtifactManifest, DeliveryTopology, PolicyArtifact, RateLimit, Reaction } from './abi.ts';
import { openAccounting, type AccountingWriter, type RecordType, startHttpApi, type HttpApiOptions, type HttpRoutes, isoTime, printable } from './observe/index.ts';
import { connectionRequest, MemoryLimiterStore, messageRequests, type Lease } from './schedule/index.ts';
import { createMxResolver, type MxResolver, createDeliveryPool, openSession, type SmtpSession } from './deliver/index.ts';
import { activeBackoff, activeSuspensions, applyReaction, createPolicyState, effectiveSettings, isDisabled, restorePolicyState, settingsUnderBackoff, snapshotPolicyState, untilRampChange, type PolicyState, type ReplyContext, fateOf, readRuntimeState, writeRuntimeState, type RuntimeStateFile } from './decide/index.ts';
import { openSpool, type Spool, type SpooledMessage } from './spool/index.ts';
import { receivedHeader, type ReceivedFrom, createSubmissionServer, type SubmissionOptions } from './intake/index.ts';

export interface RuntimeOptions {
  artifact: PolicyArtifact;
  manifest: ArtifactManifest;
  spoolDir: string;
  accountingDir: string;
  smtp: SubmissionOptions;
  /** The HTTP API (http-api.ts): where it listens and who may call it. */
  http: HttpApiOptions;
  /** Domain (or `*`) → `host:port`: where to deliver instead of the domain's MX. */
  mxOverride?: Record<string, string>;
  /** Our EHLO name. */
  ehlo?: string;
  /** Deliveries in flight at most, over everything. */
  maxInFlight?: number;
  /** Worker threads for the SMTP client sessions (default 1); 0 runs them on the main thread. */
  deliveryThreads?: number;
  clock?: () => number;
  random?: () => number;
  /**
   * More HTTP endpoints (the policy control API of hot reload): called for every request
   * the runtime's own routes do not answer; returns true when it answered.
   */
  httpRoutes?: HttpRoutes;
  /** Shorter connection timeouts for tests. */
  connectTimeoutMs?: number;
  greetingTimeoutMs?: number;
}

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

export interface Runtime {
  smtpPort: number;
  httpPort: number;
  status(): RuntimeStatus;
  /** The policy version every new decision is made under. */
  policy(): { artifact: PolicyArtifact; manifest: ArtifactManifest };
  /**
   * Makes another loaded artifact current, at once for every new decision: routing,
   * source choice, limits and reactions. Deliveries in flight finish under the version
   * they started with, and their accounting records name it. Queued work is routed anew
   * at its next look, so messages whose route changed move to their new queue; limiter
   * state, backoffs and suspensions are keyed by route and source names and carry over
   * wherever those still exist.
   */
  swapPolicy(artifact: PolicyArtifact, manifest: ArtifactManifest): void;
  /** The runtime's Prometheus registry, for metrics of the parts around it. */
  registry: Registry;
  /** Stops accepting, waits for deliveries in flight (up to `graceMs`), keeps the rest spooled. */
  stop(graceMs?: number): Promise<void>;
}

export type { HttpHelpers, HttpRoutes } from './observe/index.ts';

/** A loaded version with what the scheduler derives from its manifest. */
interface LivePolicy {
  artifact: PolicyArtifact;
  manifest: ArtifactManifest;
  topology: DeliveryTopology;
  /** The policy's sources, or the one unbound `default` source when it defines none. */
  allSources: Source[];
  sourceByName: Map<string, Source>;
}

function livePolicy(artifact: PolicyArtifact, manifest: ArtifactManifest): LivePolicy {
  const topology: DeliveryTopology = manifest.delivery ?? { sources: [], pools: {}, tenants: {} };
  const allSources = topology.sources.length > 0 ? topology.sources : [DEFAULT_SOURCE];
  return { artifact, manifest, topology, allSources, sourceByName: new Map(allSources.map((s) => [s.name, s])) };
}

/** The one unbound source used when the policy defines none. */
const DEFAULT_SOURCE: Source = { name: 'default', address: null, ehlo: null, warmup: null };
type Source = DeliveryTopology['sources'][number];
const DAY_MS = 86_400_000;

/** One unit of delivery work: the open recipients of one message at one recipient domain. */
interface Work {
  id: string;
  domain: string;
  rcpts: string[];
  notBefore: number;
  /** A `reroute pool P` reaction sent these recipients to pool P (in memory: a restart forgets it). */
  pool?: string;
  /** MX hosts (`host:port`) a `skip-mx` reaction moved these recipients away from. */
  avoid?: string[];
  /** The queue the scheduler last put it in (routing happens when it is due). */
  queue?: string;
}

/** Deliveries started per second, in one-second buckets over the last minute. */
class RateWindow {
  private readonly buckets = new Float64Array(60);
  private second = 0;
  private advance(now: number): void {
    const sec = Math.floor(now / 1000);
    for (let s = Math.max(this.second + 1, sec - 59); s <= sec; s++) this.buckets[s % 60] = 0;
    this.second = Math.max(this.second, sec);
  }
  add(now: number): void {
    this.advance(now);
    this.buckets[Math.floor(now / 1000) % 60]!++;
  }
  /** Sum of the last `seconds` whole buckets before now's (the current one is still filling). */
  sum(now: number, seconds: number): number {
    this.advance(now);
    let n = 0;
    for (let s = this.second - seconds; s < this.second; s++) n += this.buckets[((s % 60) + 60) % 60]!;
    return n;
  }
}

/** Where a rule is, as the status API shows it: `file:line`. */
const ruleAt = (r: { file: string; line: number } | null) => (r ? `${r.file}:${r.line}` : null);

const formatRate = (r: RateLimit) => `${r.count}/${r.perSeconds === 1 ? 's' : r.perSeconds === 60 ? 'min' : r.perSeconds === 3600 ? 'h' : r.perSeconds === 86400 ? 'd' : `${r.perSeconds}s`} per ${r.scope}`;

export async function startRuntime(options: RuntimeOptions): Promise<Runtime> {
  const clock = options.clock ?? Date.now;
  const random = options.random ?? Math.random;
  let policy = livePolicy(options.artifact, options.manifest);
  const spool: Spool = await openSpool(options.spoolDir);
  const acct: AccountingWriter = openAccounting(options.accountingDir);
  const mx: MxResolver = createMxResolver({ ...(options.mxOverride ? { override: options.mxOverride } : {}), clock });
  const limiters = new MemoryLimiterStore({ clock });
  // What the policy and the operators decided survives a restart: backoffs, suspensions,
  // disabled sources, trigger counts, pauses and the day's warmup counts.
  const stateFile = path.join(options.spoolDir, 'runtime-state.json');
  const saved = await readRuntimeState(stateFile, clock());
  const state: PolicyState = saved ? restorePolicyState(saved.policy, clock()) : createPolicyState();
  let stateDirty = false;
  const ehlo = options.ehlo ?? hostname();
  const maxInFlight = options.maxInFlight ?? 100;
  const deliveryThreads = options.deliveryThreads ?? 1;
  const deliveryPool = deliveryThreads > 0 ? createDeliveryPool({ threads: deliveryThreads }) : undefined;
  const openSmtpSession = deliveryPool ? deliveryPool.openSession : openSession;
  await deliveryPool?.ready();
  const counters = { accepted: 0, delivered: 0, deferred: 0, bounced: 0 };
  // One registry per runtime (not prom-client's global one): no module state.
  const registry = new Registry();
  const metrics = {
    accepted: new Counter({ name: 'petrel_accepted_total', help: 'Messages accepted into the spool', registers: [registry] }),
    outcomes: new Counter({ name: 'petrel_recipients_total', help: 'Recipient outcomes by type (d delivered, b bounced, t deferred), route and bounce category', labelNames: ['type', 'route', 'category'], registers: [registry] }),
  };
  if (deliveryPool) {
    new Gauge({ name: 'petrel_delivery_threads', help: 'Delivery worker threads running', registers: [registry], collect() { this.set(deliveryPool.stats().threads); } });
    new Gauge({ name: 'petrel_delivery_sessions', help: 'SMTP sessions held by the delivery threads (open or opening)', registers: [registry], collect() { this.set(deliveryPool.stats().sessions); } });
    new Counter({ name: 'petrel_delivery_sessions_lost_total', help: 'SMTP sessions ended because their delivery thread died', registers: [registry], collect() { this.reset(); this.inc(deliveryPool.stats().lostToCrashes); } });
  }
  new Gauge({ name: 'petrel_queued_recipients', help: 'Recipients in the spool not yet delivered or bounced', registers: [registry], collect() { this.set(spool.pending().reduce((n, m) => n + m.recipients.length, 0)); } });
  new Gauge({ name: 'petrel_in_flight', help: 'Deliveries in progress', registers: [registry], collect() { this.set(inFlight); } });
  new Gauge({ name: 'petrel_backoffs_active', help: 'Queues in a backoff now', registers: [registry], collect() { this.set([...state.backoffs.values()].filter((b) => b.until > clock()).length); } });
  new Gauge({ name: 'petrel_suspensions_active', help: 'Suspensions in force now', registers: [registry], collect() { this.set([...state.suspensions.values()].filter((x) => x.until > clock()).length); } });
  const policyInfo = new Gauge({ name: 'petrel_policy_info', help: 'The policy version in use (value 1)', labelNames: ['name', 'version', 'hash'], registers: [registry] });
  policyInfo.set({ name: policy.manifest.name, version: policy.manifest.version, hash: policy.manifest.hash }, 1);
  const work: Work[] = [];
  /** Operator pauses: `queue:Q`, `source:S`, `tenant:T`. */
  const paused = new Set<string>(saved?.paused ?? []);
  let inFlight = 0;
  let stopping = false;
  let timer: NodeJS.Timeout | undefined;
  const idle: (() => void)[] = [];

  const enqueue = (m: SpooledMessage, notBeforeOf: (rcpt: string) => number) => {
    const byDomain = new Map<string, string[]>();
    for (const r of m.recipients) {
      const domain = r.rcpt.slice(r.rcpt.lastIndexOf('@') + 1).toLowerCase();
      byDomain.set(domain, [...(byDomain.get(domain) ?? []), r.rcpt]);
    }
    for (const [domain, rcpts] of byDomain) work.push({ id: m.id, domain, rcpts, notBefore: Math.max(...rcpts.map(notBeforeOf)) });
  };
  // Recovery: everything the spool still holds goes back to work, at its recorded retry time.
  for (const m of spool.pending()) enqueue(m, (rcpt) => m.recipients.find((r) => r.rcpt === rcpt)?.nextAttemptAt ?? 0);

  const record = (p: LivePolicy, type: RecordType, m: SpooledMessage, rcpt: string, route: string, source: Source, reply: string, reaction: Reaction | undefined, mxHost: string) => {
    metrics.outcomes.inc({ type, route, category: reaction && reaction.category !== 'success' ? reaction.category : '' });
    const status = /^\d{3}[ -](\d\.\d{1,3}\.\d{1,3})/.exec(reply)?.[1] ?? (type === 'd' ? '2.0.0' : type === 'b' ? '5.0.0' : '4.0.0');
    acct.write({
      type,
      timeLogged: clock(),
      timeQueued: m.receivedAt,
      orig: m.envelope.from,
      rcpt,
      dsnAction: type === 'd' ? 'relayed' : type === 'b' ? 'failed' : 'delayed',
      dsnStatus: status,
      dsnDiag: `smtp;${reply}`,
      dsnMta: mxHost ? `dns;${mxHost}` : '',
      bounceCat: reaction && reaction.category !== 'success' ? reaction.category : '',
      vmta: source.name,
      queue: `${queueOf(route, rcpt.slice(rcpt.lastIndexOf('@') + 1).toLowerCase())}/${source.name}`,
      jobId: m.campaign ?? '',
      tenant: m.tenant ?? '',
      policyVersion: p.manifest.hash,
      policyRule: ruleAt(reaction?.rule ?? null) ?? '',
    });
  };

  /**
   * Decides one recipient's fate from its reply: the reaction is applied to the policy
   * state (queue and source), and `fateOf` (reaction-fate.ts, shared with `petrel test`)
   * says what happens to the recipient; this function only carries it out.
   */
  async function judge(p: LivePolicy, m: SpooledMessage, rcpt: string, route: string, source: Source, reply: string, phase: Parameters<PolicyArtifact['react']>[2], accepted: boolean, mxHost: string, via: { item?: Work; hostCount?: number; at?: string } = {}): Promise<void> {
    const { artifact } = p;
    const now = clock();
    const domain = rcpt.slice(rcpt.lastIndexOf('@') + 1).toLowerCase();
    const reaction = artifact.react(route, reply, phase);
    const context = { route: queueOf(route, domain), source: source.name, tenant: m.tenant };
    const applied = applyReaction(state, context, reaction, reply, now);
    stateDirty = true;
    const settings = artifact.settings(route, source.name, m.tenant);
    const attempt = (m.recipients.find((r) => r.rcpt === rcpt)?.attempts ?? 0) + 1;
    const reroute = applied.actions.find((a) => a.type === 'reroute');
    const avoid = via.at && phase !== 'connect' ? [...(via.item?.avoid ?? []), via.at] : [];
    const fate = fateOf({
      reaction,
      fired: applied.actions,
      accepted,
      now,
      retryDelayMs: accepted ? null : artifact.retryDelay(route, attempt, reply, activeBackoff(state, context, now)?.overrides.retry),
      expiresAt: m.receivedAt + settings.expireSeconds * 1000,
      jitter: 1 + (random() * 2 - 1) * settings.retryJitter,
      sourceStopped: sourceStopped(context),
      canReroute: reroute !== undefined && !poolSources(p, reroute.pool).some((s) => s.name === source.name),
      canSkipMx: avoid.length > 0 && avoid.length < (via.hostCount ?? 0),
    });
    if (fate.kind === 'delivered') {
      await spool.recordOutcome(m.id, rcpt, 'delivered');
      counters.delivered++;
      record(p, 'd', m, rcpt, route, source, reply, reaction, mxHost);
      return;
    }
    if (fate.kind === 'bounced') {
      await spool.recordOutcome(m.id, rcpt, fate.why === 'expired' ? 'expired' : 'bounced');
      counters.bounced++;
      record(p, 'b', m, rcpt, route, source, reply, { ...reaction, category: fate.category }, mxHost);
      return;
    }
    await spool.recordDeferral(m.id, rcpt, fate.at);
    counters.deferred++;
    // No reply from the host for this recipient (connection, greeting, EHLO, TLS): the
    // failure is the queue's, not the recipient's — PowerMTA's queue-level `tq` record.
    record(p, phase === 'connect' || phase === 'ehlo' ? 'tq' : 't', m, rcpt, route, source, reply, reaction, mxHost);
    if (!spool.get(m.id)) return;
    const pool = fate.via && 'pool' in fate.via ? fate.via.pool : via.item?.pool;
    work.push({ id: m.id, domain, rcpts: [rcpt], notBefore: fate.at, ...(pool !== undefined ? { pool } : {}), ...(fate.via && 'skipMx' in fate.via ? { avoid } : {}) });
    if (fate.at <= now) schedule(0);
  }

  /** Whether this source may not send on this queue now (suspended there, or disabled). */
  function sourceStopped(context: ReplyContext): boolean {
    return activeSuspensions(state, context, clock()).length > 0 || isDisabled(state, context);
  }

  /**
   * The queue a route's traffic to `domain` is in: the route itself, except that every
   * domain no provider claims gets its own queue under `default` — otherwise one slow or
   * blocking domain in the long tail would hold back all the others (PowerMTA's `domain *`).
   */
  function queueOf(route: string, domain: string): string {
    return route === 'default' ? `default/${domain}` : route;
  }

  /** An open session waiting for its next message; it keeps its connection slot. */
  interface Pooled {
    session: SmtpSession;
    slot: Lease;
    sent: number;
    timer?: NodeJS.Timeout;
  }
  /** Idle sessions by source, MX host and TLS mode, reused up to messages-per-connection. */
  const idleSessions = new Map<string, Pooled[]>();
  const IDLE_MS = 5_000;
  const sessionKey = (source: Source, target: { host: string; port: number }, tls: string) => `${source.name}|${target.host}:${target.port}|${tls}`;

  function takeIdle(key: string): Pooled | undefined {
    const list = idleSessions.get(key);
    while (list && list.length > 0) {
      const p = list.pop()!;
      clearTimeout(p.timer);
      if (!p.session.closed) return p;
      void p.session.close();
      void limiters.release(p.slot);
    }
    return undefined;
  }

  function putIdle(key: string, p: Pooled): void {
    const list = idleSessions.get(key) ?? [];
    idleSessions.set(key, list);
    // An idle session closes after a while, giving its connection slot back once the
    // connection is gone: until QUIT is answered the receiver still counts it.
    p.timer = setTimeout(() => {
      const i = list.indexOf(p);
      if (i !== -1) list.splice(i, 1);
      void p.session.close().finally(() => {
        void limiters.release(p.slot);
        schedule(0);
      });
    }, IDLE_MS);
    list.push(p);
  }

  /**
   * Sends one work item: on `reuse` (an idle session to the first MX host) or on a new
   * session, host after host in MX order. `slot` is the connection slot a new session
   * occupies; a session that can take more messages goes back to the idle pool with it.
   */
  async function deliver(p: LivePolicy, item: Work, route: string, source: Source, hosts: { host: string; port: number }[], slot: Lease, reuse: Pooled | undefined): Promise<void> {
    const { artifact } = p;
    let slotHandedOff = false;
    let pooled = reuse;
    try {
      const m = spool.get(item.id);
      if (!m) return;
      const rcpts = item.rcpts.filter((r) => m.recipients.some((x) => x.rcpt === r));
      if (rcpts.length === 0) return;
      const context = { route: queueOf(route, item.domain), source: source.name, tenant: m.tenant };
      const settings = effectiveSettings(state, context, artifact.settings(route, source.name, m.tenant), clock());
      const raw = await spool.read(m.id);
      let lastFailure: { reply: string; phase: 'connect' | 'ehlo'; host: string } | undefined;
      for (const target of hosts) {
        let session: SmtpSession;
        let sent = 0;
        if (pooled && target === hosts[0]) {
          session = pooled.session;
          sent = pooled.sent;
          pooled = undefined;
        } else {
          const opened = await openSmtpSession({ host: target.host, port: target.port, ehlo: source.ehlo ?? ehlo, ...(source.address ? { localAddress: source.address } : {}), tls: settings.tls, ...(options.connectTimeoutMs ? { connectTimeoutMs: options.connectTimeoutMs } : {}), ...(options.greetingTimeoutMs ? { greetingTimeoutMs: options.greetingTimeoutMs } : {}) });
          if (!opened.ok) {
            lastFailure = { reply: opened.reply, phase: opened.phase, host: target.host };
            const reaction = artifact.react(route, opened.reply, opened.phase);
            // A refusal that names this host only (or a connection failure) moves on to the next MX.
            if (reaction.disposition === 'hard' && !reaction.actions.some((a) => a.type === 'skip-mx')) break;
            continue;
          }
          session = opened.session;
        }
        let keep = false;
        try {
          const perTransaction = settings.recipientsPerTransaction ?? rcpts.length;
          for (let i = 0; i < rcpts.length; i += perTransaction) {
            if (i > 0 && sourceStopped(context)) {
              // A reply of this session stopped the source here (a block): the rest waits,
              // untried, for another source or the end of the suspension.
              work.push({ id: m.id, domain: item.domain, rcpts: rcpts.slice(i), notBefore: clock(), ...(item.pool !== undefined ? { pool: item.pool } : {}) });
              break;
            }
            const batch = rcpts.slice(i, i + perTransaction);
            const result = await session.send({ from: m.envelope.from, to: batch, raw });
            sent++;
            for (const r of result.perRecipient) await judge(p, m, r.rcpt, route, source, r.reply, r.phase, r.accepted, target.host, { item, hostCount: hosts.length, at: `${target.host}:${target.port}` });
          }
          keep = !session.closed && !stopping && sent < (settings.messagesPerConnection ?? Infinity) && !sourceStopped(context);
        } finally {
          if (keep) {
            putIdle(sessionKey(source, target, settings.tls), { session, slot, sent });
            slotHandedOff = true;
          } else await session.close();
        }
        return;
      }
      for (const rcpt of rcpts) await judge(p, m, rcpt, route, source, lastFailure?.reply ?? '421 4.4.1 no answer from host', lastFailure?.phase ?? 'connect', false, lastFailure?.host ?? '');
    } finally {
      if (pooled) await pooled.session.close();
      if (!slotHandedOff) void limiters.release(slot);
      inFlight--;
      const qs = item.queue ? queueStats.get(item.queue) : undefined;
      if (qs) qs.inFlight--;
      schedule(0);
      if (inFlight === 0) for (const f of idle.splice(0)) f();
    }
  }

  /** Per queue: deliveries in flight and started, for the status API. */
  const queueStats = new Map<string, { route: string; inFlight: number; started: RateWindow }>();

  const poolSources = (p: LivePolicy, pool: string): Source[] => (p.topology.pools[pool] ?? []).flatMap((n) => p.sourceByName.get(n) ?? []);
  /** Messages sent by warming-up sources, per source, route and UTC day (in memory: a restart starts the day's count again). */
  const warmupSent = new Map<string, number>(saved?.warmup ?? []);
  const warmupKey = (source: Source, route: string, now: number) => `${source.name}|${route}|${Math.floor(now / DAY_MS)}`;
  /** Round-robin position per queue. */
  const turn = new Map<string, number>();

  /** The sources a message may go out from: the pool a reaction rerouted it to, else its `X-Petrel-Pool`, else its tenant's pool, else all. */
  function candidates(p: LivePolicy, m: SpooledMessage, rerouted?: string): Source[] {
    const pool = rerouted ?? m.pool ?? (m.tenant !== undefined ? p.topology.tenants[m.tenant] : undefined);
    const list = pool ? poolSources(p, pool) : [];
    return list.length > 0 ? list : p.allSources;
  }

  /**
   * The next source for a queue, round-robin, skipping sources suspended or disabled
   * there and warming-up sources whose ramp allows no more today; their ramp's overflow
   * pool takes the excess instead of waiting (PowerMTA's cold-VMTA overflow). With none
   * left, the work waits for the earliest suspension end or the next UTC day.
   */
  function pickSource(p: LivePolicy, m: SpooledMessage, rerouted: string | undefined, route: string, queue: string, now: number): { source: Source } | { waitUntil: number } {
    let list = candidates(p, m, rerouted);
    const tried = new Set<string>();
    let waitUntil = Math.floor(now / DAY_MS + 1) * DAY_MS;
    for (let hop = 0; hop < 4 && list.length > 0; hop++) {
      let overflow: string | null = null;
      const start = turn.get(queue) ?? 0;
      for (let k = 0; k < list.length; k++) {
        const source = list[(start + k) % list.length]!;
        if (tried.has(source.name)) continue;
        tried.add(source.name);
        const context = { route: queue, source: source.name, tenant: m.tenant };
        const stopped = activeSuspensions(state, context, now);
        if (stopped.length > 0) {
          waitUntil = Math.min(waitUntil, ...stopped.map((s) => s.until));
          continue;
        }
        if (isDisabled(state, context)) continue;
        if (source.warmup) {
          const age = Math.floor((now - Date.parse(`${source.warmup.since}T00:00:00Z`)) / DAY_MS);
          const limit = p.artifact.warmupLimit(source.warmup.ramp, route, age);
          if ((warmupSent.get(warmupKey(source, route, now)) ?? 0) >= limit) {
            overflow ??= source.warmup.overflowPool;
            continue;
          }
        }
        turn.set(queue, (start + k + 1) % list.length);
        return { source };
      }
      if (!overflow) break;
      list = poolSources(p, overflow);
    }
    return { waitUntil };
  }

  let pumping = false;
  let pumpAgain = false;

  /**
   * Starts every delivery that is due and allowed; schedules the next look. One pass at a
   * time: a pass awaits DNS and the limiter store, and a second pass running meanwhile
   * could start the same work twice.
   */
  async function pump(): Promise<void> {
    if (pumping) {
      pumpAgain = true;
      return;
    }
    pumping = true;
    try {
      do {
        pumpAgain = false;
        await pass();
      } while (pumpAgain && !stopping);
    } finally {
      pumping = false;
    }
  }

  async function pass(): Promise<void> {
    if (stopping) return;
    const now = clock();
    let next = Infinity;
    const due = work.filter((w) => w.notBefore <= now);
    // Work leaves `work` in one sweep at the end of the pass (not one splice each: O(n²)).
    const taken = new Set<Work>();
    // A domain whose queue was refused in this pass: its other work waits without asking again.
    const refused = new Map<string, number>();
    try {
      for (const item of due) {
        if (inFlight >= maxInFlight) break;
        const waitUntil = refused.get(item.domain);
        if (waitUntil !== undefined) {
          item.notBefore = waitUntil;
          continue;
        }
        const m = spool.get(item.id);
        if (!m) {
          taken.add(item);
          continue;
        }
        // The version this item is decided under, from routing to its last reply (a swap
        // while DNS or the limiter store is awaited applies to the next item).
        const p = policy;
        const { artifact } = p;
        const answer = await mx.resolve(item.domain);
        if (!answer.ok) {
          taken.add(item);
          const reply = answer.permanent ? `550 5.1.2 ${answer.reason}` : `451 4.4.3 ${answer.reason}`;
          for (const rcpt of item.rcpts) await judge(p, m, rcpt, artifact.route(item.domain), candidates(p, m)[0] ?? DEFAULT_SOURCE, reply, 'connect', false, '');
          continue;
        }
        const route = artifact.route(item.domain, answer.via === 'mx' ? answer.hosts.map((h) => h.host) : undefined);
        const queue = queueOf(route, item.domain);
        item.queue = queue;
        const picked = pickSource(p, m, item.pool, route, queue, now);
        if ('waitUntil' in picked) {
          item.notBefore = picked.waitUntil;
          next = Math.min(next, picked.waitUntil);
          continue;
        }
        const source = picked.source;
        if (paused.has(`queue:${queue}`) || paused.has(`source:${source.name}`) || (m.tenant !== undefined && paused.has(`tenant:${m.tenant}`))) {
          // Paused by an operator: look again in a second (resume also wakes the scheduler).
          item.notBefore = now + 1000;
          next = Math.min(next, item.notBefore);
          continue;
        }
        const context = { route: queue, source: source.name, tenant: m.tenant };
        const settings = effectiveSettings(state, context, artifact.settings(route, source.name, m.tenant), now);
        const path = { route: context.route, source: source.name, ...(m.tenant ? { tenant: m.tenant } : {}) };
        const msg = messageRequests(settings, path)(m.size);
        // An idle session to the first MX host already holds a connection slot: the
        // message then needs only the message and data rates.
        // Hosts a skip-mx moved this work away from come last, not never (they may be all there is).
        const avoided = (h: { host: string; port: number }) => item.avoid!.includes(`${h.host}:${h.port}`);
        const hosts = item.avoid ? [...answer.hosts.filter((h) => !avoided(h)), ...answer.hosts.filter(avoided)] : answer.hosts;
        const first = hosts[0];
        const key = first ? sessionKey(source, first, settings.tls) : '';
        const reuse = first ? takeIdle(key) : undefined;
        const conn = reuse ? { rates: [], concurrency: [] } : connectionRequest(settings, path);
        const got = await limiters.tryAcquire({ rates: [...conn.rates, ...msg.rates], concurrency: [...conn.concurrency, ...msg.concurrency] });
        if (!got.ok) {
          if (reuse) putIdle(key, reuse);
          // Under a recovery ramp the limits grow at each step: look again then at the latest.
          item.notBefore = now + Math.min(got.retryAfterMs ?? 50, untilRampChange(state, context, now));
          refused.set(item.domain, item.notBefore);
          next = Math.min(next, item.notBefore);
          continue;
        }
        taken.add(item);
        inFlight++;
        const qs = queueStats.get(queue) ?? { route, inFlight: 0, started: new RateWindow() };
        queueStats.set(queue, qs);
        qs.inFlight++;
        qs.started.add(now);
        if (source.warmup) {
          const key = warmupKey(source, route, now);
          warmupSent.set(key, (warmupSent.get(key) ?? 0) + 1);
          stateDirty = true;
        }
        // A reused session keeps its own slot; the new lease (rates only) holds nothing to give back.
        const slot = reuse ? reuse.slot : got.lease;
        if (reuse) void limiters.release(got.lease);
        deliver(p, item, route, source, hosts, slot, reuse).catch((e: Error) => {
          // Never lose the work: whatever failed (the spool, the message stream), the message
          // is still spooled; try its open recipients again in a minute.
          process.emitWarning(`petrel: delivery of ${item.id} failed: ${printable(e.message, 1000)}`);
          if (spool.get(item.id)) work.push({ ...item, notBefore: clock() + 60_000 });
        });
      }
    } finally {
      if (taken.size > 0) {
        let kept = 0;
        for (const w of work) if (!taken.has(w)) work[kept++] = w;
        work.length = kept;
      }
    }
    for (const w of work) next = Math.min(next, w.notBefore);
    if (next !== Infinity) schedule(Math.max(0, next - clock()));
  }

  function schedule(ms: number): void {
    if (stopping) return;
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => {
      timer = undefined;
      pump().catch((e) => process.emitWarning(`petrel scheduler: ${printable((e as Error).message, 1000)}`));
    }, Math.min(ms, 60_000));
  }

  /**
   * Spools a message with a `Received:` header on top (from `from`: SMTP passes its client;
   * HTTP submission, which does not yet, is traced as `with HTTP`); resolves with its id
   * once durable (only then may it be acknowledged).
   */
  async function acceptMessage(envelope: { from: string; to: string[] }, message: Buffer | readonly Buffer[], values: { tenant?: string; pool?: string; campaign?: string }, from: ReceivedFrom = { protocol: 'HTTP' }): Promise<string> {
    const id = spool.newId();
    const to = [...new Set(envelope.to)];
    const receivedAt = clock();
    // The trace header and the message go to the spool as chunks: the message is not copied.
    const raw = [Buffer.from(receivedHeader(from, ehlo, id, to, receivedAt), 'latin1'), ...(Buffer.isBuffer(message) ? [message] : message)];
    const spooled = { id, envelope: { from: envelope.from, to }, size: raw.reduce((n, c) => n + c.length, 0), receivedAt, ...(values.tenant ? { tenant: values.tenant } : {}), ...(values.pool ? { pool: values.pool } : {}), ...(values.campaign ? { campaign: values.campaign } : {}) };
    await spool.accept(spooled, raw);
    counters.accepted++;
    metrics.accepted.inc();
    // PowerMTA's `r` records: one per recipient, when the message is accepted.
    for (const rcpt of spooled.envelope.to) {
      acct.write({ type: 'r', timeLogged: spooled.receivedAt, timeQueued: spooled.receivedAt, orig: envelope.from, rcpt, dsnAction: '', dsnStatus: '', dsnDiag: '', dsnMta: '', bounceCat: '', vmta: '', queue: '', jobId: spooled.campaign ?? '', tenant: spooled.tenant ?? '', policyVersion: policy.manifest.hash, policyRule: '' });
    }
    enqueue(spool.get(id)!, () => 0);
    schedule(0);
    return id;
  }

  const smtp = createSubmissionServer({ ...options.smtp, name: ehlo }, { acceptMessage, isStopping: () => stopping, registry });
  const smtpPort = await smtp.listen();

  const status = (): RuntimeStatus => ({
    policy: { name: policy.manifest.name, version: policy.manifest.version, hash: policy.manifest.hash },
    ...counters,
    queued: spool.pending().reduce((n, m) => n + m.recipients.length, 0),
    inFlight,
    paused: [...paused].sort(),
    backoffs: [...state.backoffs].filter(([, b]) => b.until > clock()).map(([queue, b]) => ({ queue, until: isoTime(b.until), reason: b.reason, rule: ruleAt(b.rule) })),
    suspensions: [...state.suspensions].filter(([, s]) => s.until > clock()).map(([key, s]) => ({ key, until: isoTime(s.until), reason: s.reason, rule: ruleAt(s.rule) })),
    queues: queueStatus(),
  });

  function queueStatus(): QueueStatus[] {
    const now = clock();
    const waiting = new Map<string, number>();
    for (const w of work) if (w.queue) waiting.set(w.queue, (waiting.get(w.queue) ?? 0) + w.rcpts.length);
    const names = new Set([...waiting.keys(), ...[...queueStats].filter(([, q]) => q.inFlight > 0 || q.started.sum(now, 60) > 0).map(([name]) => name)]);
    return [...names].sort().map((queue) => {
      const qs = queueStats.get(queue);
      const route = qs?.route ?? (queue.startsWith('default/') ? 'default' : queue);
      const backoffs = [...state.backoffs].filter(([k, b]) => k.startsWith(`${queue}|`) && b.until > now);
      const settings = settingsUnderBackoff(policy.artifact.settings(route), backoffs[0]?.[1].overrides);
      return {
        queue,
        route,
        queued: waiting.get(queue) ?? 0,
        inFlight: qs?.inFlight ?? 0,
        ratePerSecond: qs ? qs.started.sum(now, 10) / 10 : 0,
        sentLastMinute: qs ? qs.started.sum(now, 60) : 0,
        limits: { rate: settings.messageRate.map(formatRate), connections: settings.connections.map((c) => `${c.max} per ${c.scope}`) },
        paused: paused.has(`queue:${queue}`),
        backoffs: backoffs.map(([k, b]) => ({ source: k.slice(queue.length + 1), until: isoTime(b.until), reason: b.reason, rule: ruleAt(b.rule) })),
        suspensions: [...state.suspensions]
          .filter(([k, x]) => x.until > now && (k === `destination|${queue}` || k.startsWith(`source|${queue}|`) || k.startsWith(`tenant|${queue}|`)))
          .map(([k, x]) => ({ target: x.target, who: x.target === 'destination' ? null : k.slice(`${x.target}|${queue}|`.length), until: isoTime(x.until), reason: x.reason, rule: ruleAt(x.rule) })),
      };
    });
  }
  const http = await startHttpApi(options.http, {
    status,
    registry,
    setPaused(key, on) {
      if (on) paused.add(key);
      else paused.delete(key);
      stateDirty = true;
      void saveState();
      schedule(0);
      return [...paused].sort();
    },
    acceptMessage,
    stopping: () => stopping,
    maxBodyBytes: options.smtp.maxMessageBytes ?? 50 * 1024 * 1024,
    routes: options.httpRoutes,
  });

  /** Writes the state file when something changed: every 2 s at most, and on stop and pause. */
  let saving: Promise<void> = Promise.resolve();
  function saveState(): Promise<void> {
    if (!stateDirty) return saving;
    stateDirty = false;
    const today = Math.floor(clock() / DAY_MS);
    const data: RuntimeStateFile = {
      version: 1,
      policy: snapshotPolicyState(state, clock()),
      paused: [...paused],
      warmup: [...warmupSent].filter(([k]) => k.endsWith(`|${today}`)),
    };
    saving = saving.then(() => writeRuntimeState(stateFile, data)).catch((e: Error) => {
      stateDirty = true;
      process.emitWarning(`petrel: cannot save ${stateFile}: ${printable(e.message, 1000)}`);
    });
    return saving;
  }
  const stateTimer = setInterval(() => void saveState(), 2000);
  stateTimer.unref();

  schedule(0);
  return {
    smtpPort,
    httpPort: (http.address() as AddressInfo).port,
    status,
    registry,
    policy: () => ({ artifact: policy.artifact, manifest: policy.manifest }),
    swapPolicy(artifact, manifest) {
      policy = livePolicy(artifact, manifest);
      policyInfo.reset();
      policyInfo.set({ name: manifest.name, version: manifest.version, hash: manifest.hash }, 1);
      schedule(0);
    },
    async stop(graceMs = 30_000) {
      stopping = true;
      if (timer) clearTimeout(timer);
      // One grace period for both: submission sessions finishing a message, then deliveries.
      const graceEnd = Date.now() + graceMs;
      await smtp.close(graceMs);
      if (inFlight > 0) await Promise.race([new Promise<void>((resolve) => idle.push(resolve)), new Promise((r) => setTimeout(r, Math.max(0, graceEnd - Date.now())))]);
      for (const list of idleSessions.values()) {
        for (const p of list.splice(0)) {
          clearTimeout(p.timer);
          await p.session.close();
        }
      }
      await deliveryPool?.close();
      await new Promise<void>((resolve) => http.close(() => resolve()));
      clearInterval(stateTimer);
      await saveState();
      acct.close();
      await spool.close();
    },
  };
}
