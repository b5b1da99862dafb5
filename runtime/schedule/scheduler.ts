/**
 * The scheduling and decision core: the work queue, the pump that admits each due item
 * through source choice and the limiters, the delivery it starts (deliver/send-work.ts)
 * and the judge every reply goes to (decide/judge.ts), with the idle-session cache.
 * It reads no clock, sets no timer and opens no socket of its own: `time` and `transport`
 * are inputs — live, the process's clock and SMTP sessions (runtime.ts); in `petrel
 * simulate` and the tests, a virtual clock and a modelled provider, on the same code.
 */
import { createJudge, effectiveSettings, untilRampChange, type PolicyState } from '../decide/index.ts';
import { createSender, createSessionCache, LOCAL_REPLIES, sessionKey, type MxResolver, type SenderDeps, type Transport } from '../deliver/index.ts';
import { printable, RateWindow, type AccountedOutcome } from '../observe/index.ts';
import type { Spool, SpooledMessage } from '../spool/index.ts';
import { AdmissionRequests } from './admission-requests.ts';
import type { LimiterStore } from './limiters.ts';
import { candidates, DEFAULT_SOURCE, pickSource, warmupKey, type LivePolicy } from './source-choice.ts';
import type { Time, TimerHandle } from './time.ts';
import { queueOf, workOf, type Work } from './work.ts';
import { laneKey, WorkLanes, type Lane } from './work-lanes.ts';

/** The longest the scheduler sleeps without looking again. */
const MAX_SLEEP_MS = 60_000;

export interface SchedulerDeps {
  time: Time;
  transport: Transport;
  spool: Pick<Spool, 'get' | 'read' | 'recordOutcome' | 'recordDeferral'>;
  mx: Pick<MxResolver, 'resolve'>;
  limiters: LimiterStore;
  /** The version every new decision is made under (read at each item: a swap applies to the next). */
  policy: () => LivePolicy;
  state: PolicyState;
  /** Operator pauses: `queue:Q`, `source:S`, `tenant:T`. */
  paused: ReadonlySet<string>;
  /** Messages sent by warming-up sources today (source-choice.ts `warmupKey`). */
  warmupSent: Map<string, number>;
  /** An outcome to account for (accounting record, metrics) on `route`. */
  record(message: SpooledMessage, outcome: AccountedOutcome, route: string): void;
  /** Awaited before an outcome is written to the spool (decide/judge.ts `settling`). */
  settling?: ((message: SpooledMessage, outcome: AccountedOutcome) => Promise<void>) | undefined;
  /** Policy state or warmup counts changed: the state file is due. */
  changed(): void;
  /** A failure that lost nothing but should be seen (process warning when live). */
  warn(line: string): void;
  /** Deliveries in flight at most. */
  maxInFlight: number;
  ehlo: string;
  connectTimeoutMs?: number;
  greetingTimeoutMs?: number;
  /** How long an idle session is kept (default 5 s). */
  idleSessionMs?: number;
  /** Outbound TLS policy (MTA-STS, DANE), handed to the sender. */
  tlsPolicy?: SenderDeps['tlsPolicy'];
}

/** Per queue: deliveries in flight and started, for the status API. */
export interface QueueStats {
  route: string;
  inFlight: number;
  started: RateWindow;
}

export interface Scheduler {
  /** A message's open recipients become work, each due at `notBeforeOf(rcpt)` (`wake` to look at once). */
  enqueue(m: SpooledMessage, notBeforeOf: (rcpt: string) => number): void;
  /** Looks for due work now (after a resume, a swap, an accept). O(1): a big queue does not slow an accept. */
  wake(): void;
  /** Work's `notBefore` was moved from outside, through `view().work` (queue-ops' retry now): puts all work back in order (O(n)) and looks. */
  retimed(): void;
  /** Wakes the work that waits for a source in the queues `inQueue` accepts, and looks (an operator enabled a source there). */
  sourceBack(inQueue: (queue: string) => boolean): void;
  /** What the status API shows. */
  view(): { work: readonly Work[]; inFlight: number; counters: { delivered: number; deferred: number; bounced: number }; queueStats: ReadonlyMap<string, QueueStats> };
  /** Starts nothing more from now on. */
  halt(): void;
  /** After `halt`: waits for deliveries in flight (up to `graceMs`), then closes idle sessions. */
  drain(graceMs: number): Promise<void>;
}

/** MX hosts with those a skip-mx moved the work away from (`host:port`) last. */
function avoidedLast<H extends { host: string; port: number }>(hosts: readonly H[], avoid: readonly string[]): H[] {
  const avoided = (h: H) => avoid.includes(`${h.host}:${h.port}`);
  return [...hosts.filter((h) => !avoided(h)), ...hosts.filter(avoided)];
}

/** What one admission made of a lane's item: the lane goes on with its next item, or sleeps (refused as a whole). */
type Admitted = 'next' | 'sleep';

export function createScheduler(deps: SchedulerDeps): Scheduler {
  const { time, spool, limiters, state } = deps;
  // All work, in lanes (work-lanes.ts): a pass looks at the lanes that are ready, never at
  // work that waits for a later time or in a lane that was refused.
  const lanes = new WorkLanes();
  const counters = { delivered: 0, deferred: 0, bounced: 0 };
  const queueStats = new Map<string, QueueStats>();
  const turn = new Map<string, number>();
  const requests = new AdmissionRequests();
  const idle: (() => void)[] = [];
  let inFlight = 0;
  let stopping = false;
  let timer: TimerHandle | undefined;
  /** When `timer` fires (Infinity when none is set). */
  let timerAt = Infinity;
  let pumping = false;
  let pumpAgain = false;

  const add = (w: Work) => lanes.add(w, laneKey(w, spool.get(w.id)));
  const requeue = (w: Work) => {
    add(w);
    if (w.notBefore <= time.now()) schedule(0);
  };
  const judge = createJudge({ time, state, spool, counters, record: deps.record, settling: deps.settling, requeue, changed: deps.changed });
  const sessions = createSessionCache({ time, limiters, ...(deps.idleSessionMs !== undefined ? { idleMs: deps.idleSessionMs } : {}), released: () => schedule(0) });
  const send = createSender({ time, state, spool, transport: deps.transport, sessions, limiters, judge, requeue: add, stopping: () => stopping, ehlo: deps.ehlo, ...(deps.connectTimeoutMs ? { connectTimeoutMs: deps.connectTimeoutMs } : {}), ...(deps.greetingTimeoutMs ? { greetingTimeoutMs: deps.greetingTimeoutMs } : {}), ...(deps.tlsPolicy ? { tlsPolicy: deps.tlsPolicy } : {}) });

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

  /**
   * One pass over the lanes ready now, in rounds: each round admits one due item from each
   * lane still going (fair across queues: a long queue does not hold back a short one), until
   * every lane sleeps or is empty or the deliveries in flight are at their maximum.
   */
  async function pass(): Promise<void> {
    if (stopping) return;
    const now = time.now();
    const taken = lanes.takeReady(now);
    try {
      let round = taken;
      while (round.length > 0 && inFlight < deps.maxInFlight) {
        const going: Lane[] = [];
        for (const lane of round) {
          if (inFlight >= deps.maxInFlight) break;
          const item = lanes.takeDue(lane, now);
          if (item === undefined) continue;
          const seq = lane.work.lastSeq;
          let admitted: Admitted;
          try {
            admitted = await admit(item, now, lane);
          } catch (e) {
            // Nothing is lost: the item goes back, its lane waits a second (a limiter store
            // that is down would otherwise fail every pass at once), the error is warned.
            lanes.putBack(lane, item, seq);
            sleep(lane, now + 1000);
            throw e;
          }
          if (admitted === 'next') going.push(lane);
          else lanes.putBack(lane, item, seq);
        }
        round = going;
      }
    } finally {
      for (const lane of taken) lanes.settle(lane);
      // At the maximum, the next delivery to finish looks again (a timer now would only spin).
      const next = lanes.nextReady();
      if (inFlight < deps.maxInFlight && next !== Infinity) schedule(next - time.now());
    }
  }

  /**
   * Routes one due item, picks its source and asks the limiters. Starts its delivery when
   * all allow it, or finishes it (gone from the spool, no MX): 'next'. An answer that holds
   * for the whole lane (no source, queue or tenant paused, a limiter refused) puts the lane
   * to sleep until it may change: 'sleep' (the caller puts the item back). A paused source
   * holds back only this item (the next may go out from another source): 'next'.
   */
  async function admit(item: Work, now: number, lane: Lane): Promise<Admitted> {
    const m = spool.get(item.id);
    if (!m) return 'next';
    // The version this item is decided under, from routing to its last reply (a swap
    // while DNS or the limiter store is awaited applies to the next item).
    const p = deps.policy();
    const { artifact } = p;
    const answer = await deps.mx.resolve(item.domain);
    if (!answer.ok) {
      const reply = LOCAL_REPLIES.mxFailed(answer.reason, answer.permanent);
      for (const rcpt of item.rcpts) await judge({ policy: p, message: m, rcpt, route: artifact.route(item.domain), source: candidates(p, m)[0] ?? DEFAULT_SOURCE, reply, phase: 'connect', accepted: false, mxHost: '' });
      return 'next';
    }
    const route = artifact.route(item.domain, answer.via === 'mx' ? answer.hosts.map((h) => h.host) : undefined);
    const queue = queueOf(route, item.domain);
    item.queue = queue;
    lane.queue = queue;
    const picked = pickSource({ policyState: state, warmupSent: deps.warmupSent, turn }, p, m, item.pool, route, queue, now);
    if ('waitUntil' in picked) {
      lane.waitsForSource = true;
      return sleep(lane, picked.waitUntil);
    }
    const source = picked.source;
    // Paused by an operator: look again in a second (resume also wakes the scheduler).
    const paused = deps.paused.size > 0;
    if (paused && (deps.paused.has(`queue:${queue}`) || (m.tenant !== undefined && deps.paused.has(`tenant:${m.tenant}`)))) return sleep(lane, now + 1000);
    if (paused && deps.paused.has(`source:${source.name}`)) {
      item.notBefore = now + 1000;
      lanes.putBack(lane, item);
      return 'next';
    }
    const context = { route: queue, source: source.name, tenant: m.tenant };
    const settings = effectiveSettings(state, context, artifact.settings(route, source.name, m.tenant), now);
    const request = requests.for(settings, queue, source.name, m.tenant);
    // Hosts a skip-mx moved this work away from come last, not never (they may be all there is).
    const hosts = item.avoid ? avoidedLast(answer.hosts, item.avoid) : answer.hosts;
    // An idle session to the first MX host already holds a connection slot: the
    // message then needs only the message and data rates.
    const first = hosts[0];
    const key = first ? sessionKey(source, first, settings.tls) : '';
    const reuse = first ? sessions.take(key) : undefined;
    const got = await limiters.tryAcquire(reuse ? request.reusing(m.size) : request.withConnection(m.size));
    if (!got.ok) {
      if (reuse) sessions.put(key, reuse);
      // A full concurrency limit frees on a release: the delivery that gives its slot back
      // (or leaves its session idle for reuse) wakes the lane; 50 ms is the fallback (a slot
      // freed by an idle session's expiry, or by another node).
      if (got.retryAfterMs === null) lanes.waitForSlot(lane, got.blockedBy);
      // Under a recovery ramp the limits grow at each step: look again then at the latest.
      return sleep(lane, now + Math.min(got.retryAfterMs ?? 50, untilRampChange(state, context, now)));
    }
    inFlight++;
    const qs = queueStats.get(queue) ?? { route, inFlight: 0, started: new RateWindow() };
    queueStats.set(queue, qs);
    qs.inFlight++;
    qs.started.add(now);
    if (source.warmup) {
      const key = warmupKey(source, route, now);
      deps.warmupSent.set(key, (deps.warmupSent.get(key) ?? 0) + 1);
      deps.changed();
    }
    // A reused session keeps its own slot; the new lease (rates only) holds nothing to give back.
    const slot = reuse ? reuse.slot : got.lease;
    if (reuse) void limiters.release(got.lease);
    send({ policy: p, item, route, source, hosts, slot, reuse })
      .catch((e: Error) => {
        // Never lose the work: whatever failed (the spool, the message stream), the message
        // is still spooled; try its open recipients again in a minute.
        deps.warn(`petrel: delivery of ${item.id} failed: ${printable(e.message, 1000)}`);
        if (spool.get(item.id)) add({ ...item, notBefore: time.now() + 60_000 });
      })
      .finally(() => {
        inFlight--;
        qs.inFlight--;
        lanes.released(slot.keys, time.now());
        schedule(0);
        if (inFlight === 0) for (const f of idle.splice(0)) f();
      });
    return 'next';
  }

  /** Puts a lane to sleep until `until` (its items keep their own times). */
  function sleep(lane: Lane, until: number): Admitted {
    lane.sleepUntil = until;
    return 'sleep';
  }

  /**
   * Makes a pass run `ms` from now (at most {@link MAX_SLEEP_MS}); a timer already set to
   * fire as soon stays (its pass sets the next) — unless it is overdue: the clock moved past
   * it (an injected clock jumped, the machine slept) while its real timeout still waits.
   */
  function schedule(ms: number): void {
    if (stopping) return;
    const now = time.now();
    const at = now + Math.min(Math.max(0, ms), MAX_SLEEP_MS);
    if (timer !== undefined && timerAt <= at && timerAt >= now) return;
    time.clearTimeout(timer);
    timerAt = at;
    timer = time.setTimeout(() => {
      timer = undefined;
      timerAt = Infinity;
      pump().catch((e) => deps.warn(`petrel scheduler: ${printable((e as Error).message, 1000)}`));
    }, at - time.now());
  }

  return {
    enqueue(m, notBeforeOf) {
      for (const w of workOf(m, notBeforeOf)) lanes.add(w, laneKey(w, m));
    },
    wake() {
      schedule(0);
    },
    retimed() {
      lanes.reorder();
      schedule(0);
    },
    sourceBack(inQueue) {
      lanes.sourceBack(inQueue, time.now());
      schedule(0);
    },
    view: () => ({
      // Made on demand: the in-flight gauge and the counters need no copy of a million items.
      get work() {
        return lanes.all();
      },
      inFlight,
      counters,
      queueStats,
    }),
    halt() {
      stopping = true;
      time.clearTimeout(timer);
      timer = undefined;
    },
    async drain(graceMs) {
      let graceTimer: TimerHandle | undefined;
      if (inFlight > 0) {
        await new Promise<void>((resolve) => {
          idle.push(resolve);
          graceTimer = time.setTimeout(resolve, Math.max(0, graceMs));
        });
      }
      time.clearTimeout(graceTimer);
      await sessions.closeAll();
    },
  };
}
