/**
 * The scheduler's work, in lanes: one lane per recipient domain and what decides how its
 * work is sent (the pool a reaction rerouted it to, the message's pool and tenant), so
 * every item of a lane routes to the same queue, has the same candidate sources and
 * asks the same limiters. A pass asks a lane's first due item; when the answer holds for
 * the whole lane (a limiter refused, no source may send, the queue or tenant is paused),
 * the lane sleeps until then and its other items are not looked at — a pass costs
 * O(lanes ready), not O(items waiting), however long a refused queue is.
 *
 * Within a lane, work comes out by `notBefore`, equal times in the order added; lanes
 * come out by when they are next ready (the later of their sleep and their first item),
 * equal times in the order they became ready.
 */
import type { SpooledMessage } from '../spool/index.ts';
import { TimeHeap } from './time-heap.ts';
import { WorkHeap } from './work-heap.ts';
import type { Work } from './work.ts';

/** One lane: the work of one domain × pool × tenant. */
export interface Lane {
  readonly key: string;
  /** The recipient domain of its items, one copy: `add` gives every item this string (a million items share 500 domains). */
  readonly domain: string;
  readonly work: WorkHeap;
  /** Refused as a whole: not looked at before this time (0: awake). */
  sleepUntil: number;
  /** It sleeps because no source may send it (suspended, disabled, capped): an operator's enable wakes it. */
  waitsForSource: boolean;
  /** The queue its last admission routed to (undefined before the first). */
  queue: string | undefined;
  /** Taken by a pass, which gives it back with `settle`; until then it has no entry in `ready`. */
  taken: boolean;
  /** The entry in `ready` that stands for it: entries with an older token are stale. */
  token: number;
}

interface ReadyEntry {
  readonly lane: Lane;
  readonly token: number;
}

/** The lane a message's work item goes in: its domain, the pool a reaction named, the message's pool and tenant. */
export const laneKey = (w: Work, m: Pick<SpooledMessage, 'pool' | 'tenant'> | undefined): string => `${w.domain}\n${w.pool ?? ''}\n${m?.pool ?? ''}\n${m?.tenant ?? ''}`;

/** When a lane may be looked at next: the later of its sleep and its first item (Infinity when empty). */
const readyAt = (lane: Lane): number => Math.max(lane.sleepUntil, lane.work.earliest());

export class WorkLanes {
  private readonly lanes = new Map<string, Lane>();
  /** Lanes asleep because a concurrency limit was full, by the key that refused: a release of a slot there wakes them. */
  private readonly slotWaiters = new Map<string, Set<Lane>>();
  /** INVARIANT: every lane with work that is not taken has exactly one valid entry, keyed by its `readyAt`. */
  private ready = new TimeHeap<ReadyEntry>();

  /** Adds `w` to the lane `key`. */
  add(w: Work, key: string): void {
    let lane = this.lanes.get(key);
    if (!lane) {
      lane = { key, domain: w.domain, work: new WorkHeap(), sleepUntil: 0, waitsForSource: false, queue: undefined, taken: false, token: 0 };
      this.lanes.set(key, lane);
    } else w.domain = lane.domain;
    const was = readyAt(lane);
    lane.work.push(w);
    if (!lane.taken && readyAt(lane) < was) this.enter(lane);
  }

  /** Takes out every lane ready at `now` (in order), for a pass; give each back with `settle`. */
  takeReady(now: number): Lane[] {
    const out: Lane[] = [];
    while (this.ready.size > 0 && this.ready.earliest() <= now) {
      const { lane, token } = this.ready.pop()!;
      if (token !== lane.token || lane.taken) continue;
      lane.taken = true;
      out.push(lane);
    }
    return out;
  }

  /** The first due item of a taken lane, removed (undefined when it sleeps or nothing is due). Give it back with `putBack` if it was not sent. */
  takeDue(lane: Lane, now: number): Work | undefined {
    if (lane.sleepUntil > now || lane.work.earliest() > now) return undefined;
    return lane.work.pop();
  }

  /** Puts an item `takeDue` gave back into its lane; `seq` (the lane's `work.lastSeq` at the take) keeps its place among equal times. */
  putBack(lane: Lane, w: Work, seq?: number): void {
    lane.work.push(w, seq);
  }

  /** Gives a lane taken by a pass back: it is looked at again when ready, or dropped when it holds no work. */
  settle(lane: Lane): void {
    lane.taken = false;
    if (lane.work.size === 0) {
      lane.token++;
      if (this.lanes.get(lane.key) === lane) this.lanes.delete(lane.key);
      return;
    }
    this.enter(lane);
  }

  /** When the next lane is ready (Infinity when none). */
  nextReady(): number {
    return this.ready.earliest();
  }

  /** Wakes the lanes that wait for a source in a queue `inQueue` accepts (an operator enabled one there). */
  sourceBack(inQueue: (queue: string) => boolean, now: number): void {
    for (const lane of this.lanes.values()) {
      if (!lane.waitsForSource || lane.queue === undefined || !inQueue(lane.queue)) continue;
      lane.waitsForSource = false;
      lane.sleepUntil = Math.min(lane.sleepUntil, now);
      if (!lane.taken) this.enter(lane);
    }
  }

  /** `lane` sleeps because the concurrency limit `key` is full: a release there ({@link released}) wakes it before its sleep ends. */
  waitForSlot(lane: Lane, key: string): void {
    let waiters = this.slotWaiters.get(key);
    if (!waiters) this.slotWaiters.set(key, (waiters = new Set()));
    waiters.add(lane);
  }

  /**
   * A slot of each of `keys` was given back, or a session holding them went idle (a lane of
   * its queue may reuse it): the lanes waiting for a slot there are ready at `now`.
   */
  released(keys: readonly string[], now: number): void {
    for (const key of keys) {
      const waiters = this.slotWaiters.get(key);
      if (!waiters) continue;
      this.slotWaiters.delete(key);
      for (const lane of waiters) {
        if (lane.sleepUntil <= now) continue;
        lane.sleepUntil = now;
        if (!lane.taken) this.enter(lane);
      }
    }
  }

  /** Every item (a new array, in no particular order); an item not routed yet shows its lane's queue. */
  all(): Work[] {
    const out: Work[] = [];
    for (const lane of this.lanes.values()) {
      for (const w of lane.work.values()) {
        if (w.queue === undefined && lane.queue !== undefined) w.queue = lane.queue;
        out.push(w);
      }
    }
    return out;
  }

  /** After items' `notBefore` were moved from outside (queue-ops' retry now): every lane and the lanes' order anew. O(n). */
  reorder(): void {
    this.ready = new TimeHeap<ReadyEntry>();
    for (const lane of this.lanes.values()) {
      lane.work.reorder();
      if (!lane.taken) this.enter(lane);
    }
  }

  /** Gives an untaken lane its one valid entry in `ready` (older ones go stale), compacting when stale entries pile up. */
  private enter(lane: Lane): void {
    const at = readyAt(lane);
    lane.token++;
    if (at === Infinity) return;
    this.ready.push({ lane, token: lane.token }, at);
    if (this.ready.size > 2 * this.lanes.size + 1024) this.ready.rebuild((e) => readyAt(e.lane), (e) => e.token === e.lane.token && !e.lane.taken);
  }
}
