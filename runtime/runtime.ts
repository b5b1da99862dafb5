/**
 * The delivery runtime, wired: the spool opened and recovered, the scheduling core
 * (schedule/scheduler.ts) built on the process's clock, timers and SMTP sessions (held by
 * worker threads, deliver/delivery-pool.ts), and around it SMTP and HTTP intake, the
 * accounting writer and metrics, the status and control API, the state file, and
 * `swapPolicy`, through which hot reload (policy/policy-control.ts) makes a new version
 * current. The rooms and a message's path through them are mapped in README.md; what is
 * not built yet is listed in docs/runtime.md, "Still to build".
 *
 * No module state: everything lives in the object `startRuntime` returns.
 */
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import path from 'node:path';
import { Counter, Gauge, Registry } from 'prom-client';
import type { ArtifactManifest, PolicyArtifact } from './abi.ts';
import { createPolicyState, createQueueOps, openBounceLoop, type BounceLoopConfig, readRuntimeState, restorePolicyState, snapshotPolicyState, writeRuntimeState, type PolicyState, type RuntimeStateFile } from './decide/index.ts';
import { createDeliveryPool, createMxResolver, openSession, type MxResolver, type TlsPolicy } from './deliver/index.ts';
import { createSubmissionServer, feedbackHeader, isFeedbackAddress, receivedHeader, screenSubmission, type ReceivedFrom, type SubmissionOptions, type DkimSigning, type DkimStatus } from './intake/index.ts';
import { accountingTrail, openAccounting, outcomeRecord, queueApiRoutes, printable, receiptRecords, runtimeStatus, startHttpApi, type AccountingWriter, type HttpApiOptions, type HttpRoutes, type RuntimeStatus } from './observe/index.ts';
import { createScheduler, DAY_MS, liveTime, livePolicy, MemoryLimiterStore, RedisLimiterStore, warmupStanding, type LivePolicy, type RedisLink } from './schedule/index.ts';
import { startSharedState } from './decide/shared-state.ts';
import { registerStatusMetrics } from './observe/status-metrics.ts';
import { changeSource } from './decide/operator-sources.ts';
import { EVERY_ROUTE, globMatch } from './decide/index.ts';
import { openSpoolRecovering, type Spool } from './spool/index.ts';
import { openMessageIndex } from './observe/message-index.ts';

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
  /**
   * DKIM signing (intake/dkim-signing.ts): every accepted message is signed once, in the
   * signing threads, before it is spooled; its keys show in the status. `startRuntime`
   * waits for its threads; `stop` stops them.
   */
  dkim?: DkimSigning;
  /** Where operator actions (a source enabled or disabled) are logged, one line each; default: stderr. */
  log?: (line: string) => void;
  /**
   * The bounce loop (docs/runtime.md, "Bounces, suppression, feedback and webhooks"): per-tenant
   * DSNs, suppression and webhooks, and feedback reports. Always on: without it every tenant
   * has the defaults (a DSN for each bounced or expired recipient, hard bounces suppressed,
   * suppressed recipients refused); a tenant turns parts off (`dsn: false`, `suppressed: "off"`).
   */
  bounceLoop?: BounceLoopConfig;
  /**
   * The dashboard (docs/runtime.md, "Dashboard"): which SMTP users (`smtp.users`) may log in
   * with their password (none by default), a session's life, and the version store's
   * directory (policy/policy-versions.ts) that the diff of two versions reads.
   */
  dashboard?: { users?: string[]; sessionMinutes?: number; policyDir?: string };
  /** Shorter connection timeouts for tests. */
  connectTimeoutMs?: number;
  greetingTimeoutMs?: number;
  /** Outbound TLS policy (MTA-STS, DANE: deliver/tls-policy.ts); without it every session follows the policy's `tls` mode. */
  tlsPolicy?: TlsPolicy;
  /**
   * Several nodes (docs/runtime.md, "Several nodes: Redis"): limits in Redis
   * (schedule/limiters-redis.ts), reactions, pauses and warmup counts merged through it
   * (decide/shared-state.ts), and the cluster's members and versions in the status
   * (policy/cluster.ts, which `petrel run` starts beside the runtime).
   */
  shared?: { link: RedisLink; nodeId: string; liveNodes: () => number; status: () => unknown };
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

export type { HttpHelpers, HttpRoutes, QueueStatus, RuntimeStatus } from './observe/index.ts';

export async function startRuntime(options: RuntimeOptions): Promise<Runtime> {
  const time = liveTime(options.clock, options.random);
  const clock = time.now;
  let policy: LivePolicy = livePolicy(options.artifact, options.manifest);
  // The spool opens at once and reads its segments in the background: a restart with a big
  // queue listens and accepts mail meanwhile; the recovered queue joins the work below once
  // every segment is read (spool.ts: none is handed out before its state is whole).
  const { spool, recovered } = await openSpoolRecovering(options.spoolDir);
  const acct: AccountingWriter = openAccounting(options.accountingDir);
  // Queue id and Message-ID of every accepted message, for the dashboard's search (accounting records name neither).
  const messageIndex = openMessageIndex(path.join(options.spoolDir, 'message-index'), { globMatch });
  const mx: MxResolver = createMxResolver({ ...(options.mxOverride ? { override: options.mxOverride } : {}), clock });
  // What the policy and the operators decided survives a restart: backoffs, suspensions,
  // disabled sources, trigger counts, pauses and the day's warmup counts.
  const stateFile = path.join(options.spoolDir, 'runtime-state.json');
  const saved = await readRuntimeState(stateFile, clock());
  const state: PolicyState = saved ? restorePolicyState(saved.policy, clock()) : createPolicyState();
  let stateDirty = false;
  const ehlo = options.ehlo ?? hostname();
  const deliveryThreads = options.deliveryThreads ?? 1;
  const deliveryPool = deliveryThreads > 0 ? createDeliveryPool({ threads: deliveryThreads }) : undefined;
  await deliveryPool?.ready();
  await options.dkim?.ready();
  let accepted = 0;
  // One registry per runtime (not prom-client's global one): no module state.
  const registry = new Registry();
  const metrics = {
    accepted: new Counter({ name: 'petrel_accepted_total', help: 'Messages accepted into the spool', registers: [registry] }),
    outcomes: new Counter({ name: 'petrel_recipients_total', help: 'Recipient outcomes by type (d delivered, b bounced, t deferred), route and bounce category', labelNames: ['type', 'route', 'category'], registers: [registry] }),
  };
  /** Operator pauses: `queue:Q`, `source:S`, `tenant:T`. */
  const paused = new Set<string>(saved?.paused ?? []);
  /** Messages sent by warming-up sources, per source, route and UTC day (the day's counts survive a restart). */
  const warmupSent = new Map<string, number>(saved?.warmup ?? []);
  let stopping = false;

  const shared = options.shared;
  const warn = (line: string) => process.emitWarning(line);
  // DSNs, suppression, complaints and webhook events; the suppression list and outbox live beside the spool.
  const bounce = openBounceLoop(options.spoolDir, options.bounceLoop ?? {}, { acceptMessage: (envelope, raw, values) => acceptMessage(envelope, raw, values, { protocol: 'local' }), read: (id) => spool.read(id), account: (r) => acct.write(r), reportingMta: ehlo, clock, warn });
  const limiters = shared ? new RedisLimiterStore({ link: shared.link, nodeId: shared.nodeId, liveNodes: shared.liveNodes, clock, warn }) : new MemoryLimiterStore({ clock });
  const core = createScheduler({
    time,
    transport: deliveryPool ? deliveryPool.openSession : openSession,
    spool,
    mx,
    limiters,
    policy: () => policy,
    state,
    paused,
    warmupSent,
    record(m, outcome, route) {
      const rec = outcomeRecord(m, outcome);
      metrics.outcomes.inc({ type: rec.type, route, category: rec.bounceCat });
      acct.write(rec);
    },
    // The bounce loop's events, DSN and suppression are durable before the outcome is.
    settling: (m, outcome) => bounce.loop.outcome(m, outcome).catch((e: Error) => warn(`petrel bounce loop: ${printable(e.message, 1000)}`)),
    changed: () => {
      stateDirty = true;
      sharedState?.localChange();
    },
    warn,
    maxInFlight: options.maxInFlight ?? 100,
    ehlo,
    ...(options.connectTimeoutMs ? { connectTimeoutMs: options.connectTimeoutMs } : {}),
    ...(options.greetingTimeoutMs ? { greetingTimeoutMs: options.greetingTimeoutMs } : {}),
    ...(options.tlsPolicy ? { tlsPolicy: options.tlsPolicy } : {}),
  });
  const sharedState = shared
    ? startSharedState({ link: shared.link, nodeId: shared.nodeId, state, paused, warmupSent, clock, warn, changed: () => ((stateDirty = true), core.wake()) })
    : undefined;
  // Recovery: everything the spool still holds goes back to work, at its recorded retry time,
  // once the spool has read it all. One message at a time (no array of every message), its
  // recipients' times by address, not by a search each. A spool that cannot be read closes
  // itself: every submission is then refused (4xx) and the warning says why.
  const requeued = recovered.then(
    ({ messages }) => {
      for (const m of messages) {
        const at = new Map(m.recipients.map((r) => [r.rcpt, r.nextAttemptAt ?? 0]));
        core.enqueue(m, (rcpt) => at.get(rcpt) ?? 0);
      }
      core.wake();
    },
    (e: Error) => warn(`petrel: the spool in ${printable(options.spoolDir)} could not be recovered, so no mail is accepted: ${printable(e.message)}`),
  );

  if (deliveryPool) {
    new Gauge({ name: 'petrel_delivery_threads', help: 'Delivery worker threads running', registers: [registry], collect() { this.set(deliveryPool.stats().threads); } });
    new Gauge({ name: 'petrel_delivery_sessions', help: 'SMTP sessions held by the delivery threads (open or opening)', registers: [registry], collect() { this.set(deliveryPool.stats().sessions); } });
    new Counter({ name: 'petrel_delivery_sessions_lost_total', help: 'SMTP sessions ended because their delivery thread died', registers: [registry], collect() { this.reset(); this.inc(deliveryPool.stats().lostToCrashes); } });
  }
  new Gauge({ name: 'petrel_in_flight', help: 'Deliveries in progress', registers: [registry], collect() { this.set(core.view().inFlight); } });
  new Gauge({ name: 'petrel_backoffs_active', help: 'Queues in a backoff now', registers: [registry], collect() { this.set([...state.backoffs.values()].filter((b) => b.until > clock()).length); } });
  new Gauge({ name: 'petrel_suspensions_active', help: 'Suspensions in force now', registers: [registry], collect() { this.set([...state.suspensions.values()].filter((x) => x.until > clock()).length); } });
  const policyInfo = new Gauge({ name: 'petrel_policy_info', help: 'The policy version in use (value 1)', labelNames: ['name', 'version', 'hash'], registers: [registry] });
  policyInfo.set({ name: policy.manifest.name, version: policy.manifest.version, hash: policy.manifest.hash }, 1);

  /**
   * Spools a message with a `Received:` header on top (from `from`: SMTP passes its client;
   * HTTP submission, which does not yet, is traced as `with HTTP`) and its DKIM signatures
   * above that; resolves with its id once durable (only then may it be acknowledged).
   */
  async function acceptMessage(envelope: { from: string; to: string[] }, message: Buffer | readonly Buffer[], values: { tenant?: string; pool?: string; campaign?: string }, from: ReceivedFrom = { protocol: 'HTTP' }): Promise<string> {
    const id = spool.newId();
    const chunks = Buffer.isBuffer(message) ? [message] : message;
    // Feedback reports are taken, suppressed recipients refused or dropped (intake/screen.ts).
    const to = await screenSubmission(bounce.screen, [...new Set(envelope.to)], () => Buffer.concat(chunks), values.tenant ?? '');
    if (to.length === 0) return id;
    const receivedAt = clock();
    // Signed once, here: every recipient and retry sends these bytes, as the spool holds them.
    const signature = await options.dkim?.sign(chunks, values.tenant, receivedAt);
    // The headers and the message go to the spool as chunks: the message is not copied.
    const feedback = options.bounceLoop?.feedback ? [Buffer.from(feedbackHeader(options.bounceLoop.feedback.secret, { id, tenant: values.tenant ?? '', campaign: values.campaign ?? '' }), 'latin1')] : [];
    const raw = [...(signature ? [signature] : []), Buffer.from(receivedHeader(from, ehlo, id, to, receivedAt), 'latin1'), ...feedback, ...chunks];
    const spooled = { id, envelope: { from: envelope.from, to }, size: raw.reduce((n, c) => n + c.length, 0), receivedAt, ...(values.tenant ? { tenant: values.tenant } : {}), ...(values.pool ? { pool: values.pool } : {}), ...(values.campaign ? { campaign: values.campaign } : {}) };
    await spool.accept(spooled, raw);
    accepted++;
    metrics.accepted.inc();
    for (const record of receiptRecords(spooled, policy.manifest.hash)) acct.write(record);
    messageIndex.write({ id, from: envelope.from, to, receivedAt, ...(values.tenant ? { tenant: values.tenant } : {}) }, chunks);
    core.enqueue(spool.get(id)!, () => 0);
    core.wake();
    return id;
  }

  const smtp = createSubmissionServer({ ...options.smtp, name: ehlo }, { acceptMessage, isStopping: () => stopping, isLocalRecipient: (a) => isFeedbackAddress(bounce.screen.feedback, a), registry });
  const smtpPort = await smtp.listen();
  const queueOps = createQueueOps({ spool, policy: () => policy, work: () => core.view().work, wake: () => core.retimed(), account: (r) => acct.write(r), loop: bounce.loop, clock });
  const trail = (id: string) => {
    const m = spool.get(id);
    acct.flush();
    return m ? accountingTrail(options.accountingDir, m, clock()) : Promise.resolve([]);
  };
  const queueRoutes = queueApiRoutes({ ops: queueOps, suppression: bounce.suppression, trail, suppressed: (...a) => bounce.loop.suppressed(...a), clock });

  const status = (): RuntimeStatus & { dkim?: DkimStatus } => {
    const view = core.view();
    const dkim = options.dkim ? { dkim: options.dkim.status() } : {};
    const now = clock();
    return { ...runtimeStatus({ policy, counters: { accepted, ...view.counters }, inFlight: view.inFlight, paused, state, work: view.work, queueStats: view.queueStats, warmup: warmupStanding(warmupSent, policy, now), now }), ...dkim, ...(shared ? { cluster: shared.status() } : {}) };
  };
  registerStatusMetrics(registry, status);
  bounce.registerMetrics(registry);
  const log = options.log ?? ((line: string) => void process.stderr.write(`${line}\n`));
  const http = await startHttpApi(options.http, {
    status,
    registry,
    setPaused(key, on) {
      if (on) paused.add(key);
      else paused.delete(key);
      stateDirty = true;
      void saveState();
      core.wake();
      return [...paused].sort();
    },
    setSource(request) {
      const change = changeSource(state, request, policy.allSources.map((s) => s.name), clock());
      if (!change.ok) return { status: change.status, body: { error: change.error } };
      const where = (queues: string[]) => queues.map((q) => (q === EVERY_ROUTE ? 'every route' : printable(q, 256))).join(', ') || 'nowhere';
      if (change.queues.length > 0) {
        log(`petrel: source ${printable(request.source, 256)} ${request.enable ? 'enabled' : 'disabled'} by an operator on ${where(change.queues)}${request.enable ? ' (recovery ramp)' : ''}; disabled now on ${where(change.disabledOn)}`);
        stateDirty = true;
        void saveState();
        if (request.enable) core.sourceBack((queue) => change.queues.includes(queue) || change.queues.includes(EVERY_ROUTE));
      }
      return { status: 200, body: { source: request.source, [request.enable ? 'enabled' : 'disabled']: change.queues, disabledOn: change.disabledOn } };
    },
    acceptMessage,
    stopping: () => stopping,
    maxBodyBytes: options.smtp.maxMessageBytes ?? 50 * 1024 * 1024,
    routes: (req, res, helpers) => queueRoutes(req, res, helpers) || (options.httpRoutes?.(req, res, helpers) ?? false),
    dashboard: {
      // The history's queue depth: recipients the spool holds open (waiting or being delivered).
      totals: () => ({ accepted, ...core.view().counters, queued: spool.counts().recipients }),
      policyDir: options.dashboard?.policyDir,
      search: { index: messageIndex, queued: (id) => spool.get(id) !== undefined, trail: (m) => (acct.flush(), accountingTrail(options.accountingDir, { envelope: m, receivedAt: m.receivedAt }, clock())), clock },
      login: { users: options.smtp.users ?? [], allowed: options.dashboard?.users ?? [], throttle: options.smtp.auth, sessionMinutes: options.dashboard?.sessionMinutes, clock },
    },
  });

  /** Writes the state file when something changed: every 2 s at most, and on stop and pause. */
  let saving: Promise<void> = Promise.resolve();
  function saveState(): Promise<void> {
    if (!stateDirty) return saving;
    stateDirty = false;
    sharedState?.localChange(); // an operator's pause or source change reaches the other nodes at once
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

  core.wake();
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
      core.wake();
    },
    async stop(graceMs = 30_000) {
      stopping = true;
      core.halt();
      // One grace period for both: submission sessions finishing a message, then deliveries.
      const graceEnd = Date.now() + graceMs;
      await smtp.close(graceMs);
      await core.drain(graceEnd - Date.now());
      await deliveryPool?.close();
      await new Promise<void>((resolve) => http.close(() => resolve()));
      clearInterval(stateTimer);
      await sharedState?.close();
      if (limiters instanceof RedisLimiterStore) await limiters.close(); // its sessions are closed: slots back to Redis at once
      await saveState();
      acct.close();
      messageIndex.close();
      bounce.close();
      await options.dkim?.close();
      await requeued;
      await spool.close();
    },
  };
}
