/**
 * A virtual clock for the scheduling core (time.ts): time stands still until `runUntil`
 * moves it to the next timer, lets every promise chain that timer started settle, and
 * goes on. A day of retries runs in milliseconds of wall time — for the tests and for
 * `petrel simulate`. Randomness is a seeded generator, so a run repeats exactly.
 */
import type { Time, TimerHandle } from './time.ts';

interface Pending {
  readonly id: number;
  readonly at: number;
  readonly fn: () => void;
}

/** Lets every pending promise chain run: a macrotask runs only once the microtask queue is empty. */
const settleMicrotasks = () => new Promise<void>((resolve) => setImmediate(resolve));

export class VirtualTime implements Time {
  private current: number;
  private seq = 0;
  private readonly timers: Pending[] = [];
  private seed: number;

  constructor(start: number, seed = 1) {
    this.current = start;
    this.seed = seed >>> 0;
  }

  now = (): number => this.current;

  setTimeout = (fn: () => void, ms: number): TimerHandle => {
    // Like Node's: a delay that is not a positive number fires at once (here: at the current time, after what runs now).
    const id = ++this.seq;
    this.timers.push({ id, at: this.current + (ms > 0 ? ms : 0), fn });
    return { id };
  };

  clearTimeout = (timer: TimerHandle | undefined): void => {
    if (!timer) return;
    const i = this.timers.findIndex((t) => t.id === timer.id);
    if (i !== -1) this.timers.splice(i, 1);
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
    return this.timers.length;
  }

  /**
   * Fires timers in time order (equal times in the order they were set) up to `until`,
   * settling after each, then sets the clock to `until`. Resolves with the number fired;
   * throws past `maxTimers`, which only a timer loop that never advances time would reach.
   */
  async runUntil(until: number, options: { maxTimers?: number; settle?: () => Promise<void> } = {}): Promise<number> {
    const maxTimers = options.maxTimers ?? 1_000_000;
    const settle = options.settle ?? settleMicrotasks;
    let fired = 0;
    for (;;) {
      await settle();
      const next = this.earliest();
      if (!next || next.at > until) break;
      if (++fired > maxTimers) throw new Error(`virtual time: more than ${maxTimers} timers before ${new Date(until).toISOString()}`);
      this.timers.splice(this.timers.indexOf(next), 1);
      this.current = Math.max(this.current, next.at);
      next.fn();
    }
    this.current = Math.max(this.current, until);
    return fired;
  }

  private earliest(): Pending | undefined {
    let best: Pending | undefined;
    for (const t of this.timers) if (!best || t.at < best.at || (t.at === best.at && t.id < best.id)) best = t;
    return best;
  }
}
