/**
 * Time as the scheduling core sees it: a clock, timers and randomness, passed in. Live
 * they are the process's (`liveTime`); `petrel simulate` and the tests pass a virtual
 * clock (virtual-time.ts), so the same scheduler, judge and session cache run a day of
 * retries in a fraction of a second.
 */

/** A pending timer, as `Time.setTimeout` returns it. */
export type TimerHandle = { readonly id: unknown };

export interface Time {
  /** Milliseconds since the epoch, now. */
  now(): number;
  /** Calls `fn` once, `ms` from now; never on the stack that set it. */
  setTimeout(fn: () => void, ms: number): TimerHandle;
  /** Cancels a timer; a handle already fired or cancelled, or undefined, is ignored. */
  clearTimeout(timer: TimerHandle | undefined): void;
  /** A number in [0, 1) (retry jitter). */
  random(): number;
}

/** The process's clock, timers and `Math.random` (`clock`/`random` override them, as `RuntimeOptions` allows). */
export function liveTime(clock: () => number = Date.now, random: () => number = Math.random): Time {
  return {
    now: clock,
    setTimeout: (fn, ms) => ({ id: setTimeout(fn, ms) }),
    clearTimeout: (timer) => {
      if (timer) clearTimeout(timer.id as NodeJS.Timeout);
    },
    random,
  };
}
