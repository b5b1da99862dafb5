/**
 * A virtual clock for the scheduling core (time.ts): time stands still until `runUntil`
 * moves it to the next timer, lets every promise chain that timer started settle, and
 * goes on. A day of retries runs in milliseconds of wall time — for the tests and for
 * `petrel simulate`. Randomness is a seeded generator, so a run repeats exactly.
 */
import { TimeHeap } from './time-heap.ts';
import type { Time, TimerHandle } from './time.ts';

interface Pending {
  readonly id: number;
  readonly at: number;
  readonly fn: () => void;
}

/** Timers fired in one turn of the event loop (runUntil). */
const BATCH = 256;

export class VirtualTime implements Time {
  private current: number;
  private seq = 0;
  /**
   * By time, equal times in the order they were set. INVARIANT: a cancelled timer stays in
   * it (its id in `cancelled`) until it reaches the top, so setting, cancelling and firing
   * are O(log n) (a simulation keeps thousands of timers pending).
   */
  private readonly heap = new TimeHeap<Pending>();
  private readonly cancelled = new Set<number>();
  /** Ids of the timers set and neither fired nor cancelled. */
  private readonly live = new Set<number>();
  private seed: number;

  constructor(start: number, seed = 1) {
    this.current = start;
    this.seed = seed >>> 0;
  }

  now = (): number => this.current;

  setTimeout = (fn: () => void, ms: number): TimerHandle => {
    // Like Node's: a delay that is not a positive number fires at once (here: at the current time, after what runs now).
    const id = ++this.seq;
    this.live.add(id);
    const at = this.current + (ms > 0 ? ms : 0);
    this.heap.push({ id, at, fn }, at);
    return { id };
  };

  clearTimeout = (timer: TimerHandle | undefined): void => {
    // Only a live timer is marked; one fired or cancelled already is ignored.
    if (timer && this.live.delete(timer.id as number)) this.cancelled.add(timer.id as number);
  };

  /** mulberry32: small, fast and good enough for jitter. */
  random = (): number => {
    this.seed = (this.seed + 0x6d2b79f5) >>> 0;
    let t = this.seed;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };

  /** Timers waiting to fire. */
  get pending(): number {
    return this.live.size;
  }

  /**
   * Fires timers in time order (equal times in the order they were set) up to `until`,
   * each once every promise chain the ones before it started has settled, then sets the
   * clock to `until`. Resolves with the number fired; throws past `maxTimers`, which only a
   * timer loop that never advances time would reach, and rethrows what a timer threw.
   *
   * Each timer fires from its own `setImmediate` callback, {@link BATCH} queued at once:
   * Node drains the microtask queue between two immediates, so the settling is the same
   * as a macrotask per timer, without an event-loop turn (a poll of the OS) per timer — on
   * a loaded machine every turn is a chance to lose the CPU, and a simulation fires millions.
   */
  async runUntil(until: number, options: { maxTimers?: number } = {}): Promise<number> {
    const maxTimers = options.maxTimers ?? 1_000_000;
    let fired = 0;
    let done = false;
    let failure: unknown;
    const fireNext = () => {
      if (done) return;
      const next = this.earliest();
      if (!next || next.at > until) {
        done = true;
        return;
      }
      if (++fired > maxTimers) {
        done = true;
        failure = new Error(`virtual time: more than ${maxTimers} timers before ${new Date(until).toISOString()}`);
        return;
      }
      this.live.delete(this.heap.pop()!.id);
      this.current = Math.max(this.current, next.at);
      try {
        next.fn();
      } catch (e) {
        done = true;
        failure = e;
      }
    };
    while (!done) {
      await new Promise<void>((resolve) => {
        for (let i = 0; i < BATCH; i++) setImmediate(fireNext);
        setImmediate(resolve);
      });
    }
    if (failure !== undefined) throw failure;
    this.current = Math.max(this.current, until);
    return fired;
  }

  /** The next timer to fire (cancelled ones at the top are dropped first). */
  private earliest(): Pending | undefined {
    while (this.heap.size > 0 && this.cancelled.has(this.heap.peek()!.id)) this.cancelled.delete(this.heap.pop()!.id);
    return this.heap.peek();
  }
}
