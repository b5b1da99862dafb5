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
import { connectionRequest, messageRequests, type LimiterStore } from './limiters.ts';
import { candidates, DEFAULT_SOURCE, pickSource, warmupKey, type LivePolicy } from './source-choice.ts';
import type { Time, TimerHandle } from './time.ts';
import { queueOf, workOf, type Work } from './work.ts';
import { WorkHeap } from './work-heap.ts';

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
  /** Looks for due work now (after a resume, a swap, an accept). */
  wake(): void;
  /** Makes the work that waits for a source in the queues `inQueue` accepts due now, and looks (an operator enabled a source there). */
  sourceBack(inQueue: (queue: string) => boolean): void;
  /** What the status API shows. */
  view(): { work: readonly Work[]; inFlight: number; counters: { delivered: number; deferred: number; bounced: number }; queueStats: ReadonlyMap<string, QueueStats> };
  /** Starts nothing more from now on. */
  halt(): void;
  /** After `halt`: waits for deliveries in flight (up to `graceMs`), then closes idle sessions. */
  drain(graceMs: number): Promise<void>;
}

export function createScheduler(deps: SchedulerDeps): Scheduler {
  const { time, spool, limiters, state } = deps;
  // Work that may be due (new, requeued, or not reached in the last pass), and work that
  // waits for a later time (moved there at the end of each pass): a pass never scans the waiting.
  const work: Work[] = [];
  const later = new WorkHeap();
  const counters = { delivered: 0, deferred: 0, bounced: 0 };
  const queueStats = new Map<string, QueueStats>();
  const turn = new Map<string, number>();
  const idle: (() => void)[] = [];
  let inFlight = 0;
  let stopping = false;
  let timer: TimerHandle | undefined;
  let pumping = false;
  let pumpAgain = false;

  const requeue = (w: Work) => {
    work.push(w);
    if (w.notBefore <= time.now()) schedule(0);
  };
  const judge = createJudge({ time, state, spool, counters, record: deps.record, settling: deps.settling, requeue, changed: deps.changed });
  const sessions = createSessionCache({ time, limiters, ...(deps.idleSessionMs !== undefined ? { idleMs: deps.idleSessionMs } : {}), released: () => schedule(0) });
  const send = createSender({ time, state, spool, transport: deps.transport, sessions, limiters, judge, requeue: (w) => work.push(w), stopping: () => stopping, ehlo: deps.ehlo, ...(deps.connectTimeoutMs ? { connectTimeoutMs: deps.connectTimeoutMs } : {}), ...(deps.greetingTimeoutMs ? { greetingTimeoutMs: deps.greetingTimeoutMs } : {}), ...(deps.tlsPolicy ? { tlsPolicy: deps.tlsPolicy } : {}) });

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
    const now = time.now();
    let next = Infinity;
    later.takeDue(now, work);
    const due = work.filter((w) => w.notBefore <= now);
    // Work leaves `work` in one sweep at the end of the pass (not one splice each: O(n²)).
    const taken = new Set<Work>();
    // A domain whose queue was refused in this pass: its other work waits without asking again.
    const refused = new Map<string, number>();
    try {
      for (const item of due) {
        if (inFlight >= deps.maxInFlight) break;
        const waitUntil = refused.get(item.domain);
        if (waitUntil !== undefined) {
          item.notBefore = waitUntil;
          continue;
        }
        const started = await admit(item, now, taken, refused);
        if (started !== undefined) next = Math.min(next, started);
      }
    } finally {
      // One sweep: started work leaves, work not due yet moves to `later`.
      const end = time.now();
      let kept = 0;
      for (const w of work) {
        if (taken.has(w)) continue;
        if (w.notBefore > end) later.push(w);
        else work[kept++] = w;
      }
      work.length = kept;
    }
    next = Math.min(next, later.earliest());
    for (const w of work) next = Math.min(next, w.notBefore);
    if (next !== Infinity) schedule(Math.max(0, next - time.now()));
  }

  /**
   * Routes one due item, picks its source and asks the limiters; starts its delivery when
   * all allow it (the item joins `taken`), else sets when it is due again and returns it.
   */
  async function admit(item: Work, now: number, taken: Set<Work>, refused: Map<string, number>): Promise<number | undefined> {
    const m = spool.get(item.id);
    if (!m) {
      taken.add(item);
      return undefined;
    }
    // The version this item is decided under, from routing to its last reply (a swap
    // while DNS or the limiter store is awaited applies to the next item).
    const p = deps.policy();
    const { artifact } = p;
    const answer = await deps.mx.resolve(item.domain);
    if (!answer.ok) {
      taken.add(item);
      const reply = LOCAL_REPLIES.mxFailed(answer.reason, answer.permanent);
      for (const rcpt of item.rcpts) await judge({ policy: p, message: m, rcpt, route: artifact.route(item.domain), source: candidates(p, m)[0] ?? DEFAULT_SOURCE, reply, phase: 'connect', accepted: false, mxHost: '' });
      return undefined;
    }
    const route = artifact.route(item.domain, answer.via === 'mx' ? answer.hosts.map((h) => h.host) : undefined);
    const queue = queueOf(route, item.domain);
    item.queue = queue;
    const picked = pickSource({ policyState: state, warmupSent: deps.warmupSent, turn }, p, m, item.pool, route, queue, now);
    if ('waitUntil' in picked) {
      item.notBefore = picked.waitUntil;
      item.waitsForSource = true;
      return picked.waitUntil;
    }
    const source = picked.source;
    if (deps.paused.has(`queue:${queue}`) || deps.paused.has(`source:${source.name}`) || (m.tenant !== undefined && deps.paused.has(`tenant:${m.tenant}`))) {
      // Paused by an operator: look again in a second (resume also wakes the scheduler).
      item.notBefore = now + 1000;
      return item.notBefore;
    }
    const context = { route: queue, source: source.name, tenant: m.tenant };
    const settings = effectiveSettings(state, context, artifact.settings(route, source.name, m.tenant), now);
    const path = { route: context.route, source: source.name, ...(m.tenant ? { tenant: m.tenant } : {}) };
    const msg = messageRequests(settings, path)(m.size);
    // Hosts a skip-mx moved this work away from come last, not never (they may be all there is).
    const avoided = (h: { host: string; port: number }) => item.avoid!.includes(`${h.host}:${h.port}`);
    const hosts = item.avoid ? [...answer.hosts.filter((h) => !avoided(h)), ...answer.hosts.filter(avoided)] : answer.hosts;
    // An idle session to the first MX host already holds a connection slot: the
    // message then needs only the message and data rates.
    const first = hosts[0];
    const key = first ? sessionKey(source, first, settings.tls) : '';
    const reuse = first ? sessions.take(key) : undefined;
    const conn = reuse ? { rates: [], concurrency: [] } : connectionRequest(settings, path);
    const got = await limiters.tryAcquire({ rates: [...conn.rates, ...msg.rates], concurrency: [...conn.concurrency, ...msg.concurrency] });
    if (!got.ok) {
      if (reuse) sessions.put(key, reuse);
      // Under a recovery ramp the limits grow at each step: look again then at the latest.
      item.notBefore = now + Math.min(got.retryAfterMs ?? 50, untilRampChange(state, context, now));
      refused.set(item.domain, item.notBefore);
      return item.notBefore;
    }
    taken.add(item);
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
        if (spool.get(item.id)) work.push({ ...item, notBefore: time.now() + 60_000 });
      })
      .finally(() => {
        inFlight--;
        qs.inFlight--;
        schedule(0);
        if (inFlight === 0) for (const f of idle.splice(0)) f();
      });
    return undefined;
  }

  function schedule(ms: number): void {
    if (stopping) return;
    time.clearTimeout(timer);
    timer = time.setTimeout(() => {
      timer = undefined;
      pump().catch((e) => deps.warn(`petrel scheduler: ${printable((e as Error).message, 1000)}`));
    }, Math.min(ms, MAX_SLEEP_MS));
  }

  return {
    enqueue(m, notBeforeOf) {
      work.push(...workOf(m, notBeforeOf));
    },
    wake() {
      // A caller may have moved waiting work earlier (queue-ops' retry now): take it out.
      later.rescue(time.now(), work);
      schedule(0);
    },
    sourceBack(inQueue) {
      const now = time.now();
      for (const w of [...work, ...later.all()]) if (w.waitsForSource && w.queue !== undefined && inQueue(w.queue)) w.notBefore = Math.min(w.notBefore, now);
      later.rescue(now, work);
      schedule(0);
    },
    view: () => ({ work: later.size > 0 ? [...work, ...later.all()] : work, inFlight, counters, queueStats }),
    halt() {
      stopping = true;
      time.clearTimeout(timer);
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
