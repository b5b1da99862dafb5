/**
 * The largest value each kind of number in a policy may have, in one place. Past these a
 * value is refused with VAL015 where it is written (`build-ast.ts` checks every number it
 * reads against them), never clamped: a policy says what it means or does not compile.
 *
 * INVARIANT: every accepted value is finite and at most its bound, and every bound (in
 * its base unit, and in milliseconds for durations) is far below 2^53, so whole numbers
 * stay exact and sums, products by 86400 or 1000, and dates computed from them never
 * overflow on the way to the runtime. The runtime holds pauses to the same year
 * (`MAX_AHEAD_MS` in `runtime/decide/policy-state.ts`; a test holds the two equal), since an
 * artifact may have been built elsewhere.
 */

/** What a number in a policy stands for, which decides its bound. */
export type ValueKind = 'duration' | 'count' | 'rate' | 'data-rate' | 'factor' | 'percent';

/** The bounds (a deliverability engineer's "more than this is a typo"), in base units, and how each reads in a diagnostic. */
export const VALUE_LIMITS: Record<ValueKind, { max: number; text: string }> = {
  /** Any duration in seconds (backoff, suspend, retry, expire, trigger window, test `wait`): a year. */
  duration: { max: 365 * 86_400, text: '365d' },
  /** A plain count (connections, messages per connection, attempts, `when N`, test counts): 2^31 − 1. */
  count: { max: 2 ** 31 - 1, text: '2147483647' },
  /** Messages or connections of a rate, per its time unit. */
  rate: { max: 1e9, text: '1000000000 per time unit' },
  /** Bytes of a data rate, per its time unit: 1 TB. */
  'data-rate': { max: 1024 ** 4, text: '1024GB per time unit' },
  /** A growth factor. */
  factor: { max: 100, text: '`x100`' },
  /** A percentage, as written. */
  percent: { max: 100, text: '100%' },
};

/** Whether `value`, in the base unit of its kind, is finite and within that kind's bound. */
export function withinLimit(kind: ValueKind, value: number): boolean {
  return Number.isFinite(value) && value <= VALUE_LIMITS[kind].max;
}
