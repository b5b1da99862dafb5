/**
 * The state of a spooled message's recipients in memory, kept small: a million queued
 * recipients must fit in well under a gigabyte. A recipient is its index in the envelope
 * (`to[i]`), never a copy of its address; what is known about it lives in two arrays made
 * only when needed:
 *
 * - `done`: one byte per recipient, the outcome code (0: still open); absent while none is
 *   done (most messages, until their last recipient finishes).
 * - `retry`: two numbers per recipient, attempts and the next attempt time (0 attempts:
 *   never deferred); absent until the first deferral. A message of one recipient (most
 *   of a big queue) keeps its two in `attempts1` and `next1` instead: no array.
 *
 * A plain `number[]` of two doubles costs about 64 bytes, two fields of the entry 32, a
 * `Map` with one entry about 200, a `Set` of one recipient about 150 — per message, a
 * million times.
 */

/** What finished a recipient. */
export type Outcome = 'delivered' | 'bounced' | 'expired';
/** Outcome codes are index + 1 (0 means open). */
const OUTCOME_LIST: readonly Outcome[] = ['delivered', 'bounced', 'expired'];
export const OUTCOMES: ReadonlySet<string> = new Set<Outcome>(OUTCOME_LIST);

/** A recipient's retry state. */
export interface RetryState {
  attempts: number;
  nextAttemptAt: number;
}

/** Per-recipient state of one message; `to` is its envelope's recipient list. */
export interface RecipientStates {
  readonly to: readonly string[];
  /** Recipients not done: `to.length` minus those with an outcome. */
  open: number;
  done: Uint8Array | undefined;
  /** Envelopes of two or more recipients: pairs (attempts, next attempt time). */
  retry: number[] | undefined;
  /** A one-recipient envelope's attempts (0: never deferred) and next attempt time. */
  attempts1: number;
  next1: number;
}

/** Index lookups on a long envelope use a map, built once per long message (see `indexer`). */
const SCAN_LIMIT = 32;

/**
 * A lookup of recipients' envelope indexes: a scan for short envelopes, a map (kept in a
 * WeakMap owned by the caller's closure, so it goes with the message) for long ones.
 */
export function indexer(): (to: readonly string[], rcpt: string) => number {
  const maps = new WeakMap<readonly string[], Map<string, number>>();
  return (to, rcpt) => {
    if (to.length <= SCAN_LIMIT) return to.indexOf(rcpt);
    let map = maps.get(to);
    if (!map) maps.set(to, (map = new Map(to.map((r, i) => [r, i]))));
    return map.get(rcpt) ?? -1;
  };
}

export const outcomeAt = (s: RecipientStates, i: number): Outcome | undefined => (s.done && s.done[i]! > 0 ? OUTCOME_LIST[s.done[i]! - 1] : undefined);
export const isDone = (s: RecipientStates, i: number): boolean => s.done !== undefined && s.done[i]! > 0;

/** Marks recipient `i` done (it must be open). */
export function setDone(s: RecipientStates, i: number, outcome: Outcome): void {
  s.done ??= new Uint8Array(s.to.length);
  s.done[i] = OUTCOME_LIST.indexOf(outcome) + 1;
  s.open--;
}

/** Takes recipient `i`'s outcome back (a write that failed). */
export function clearDone(s: RecipientStates, i: number): void {
  if (!isDone(s, i)) return;
  s.done![i] = 0;
  s.open++;
}

/** Recipient `i`'s retry state; undefined when it was never deferred. */
export function retryAt(s: RecipientStates, i: number): RetryState | undefined {
  if (s.to.length === 1) return s.attempts1 > 0 ? { attempts: s.attempts1, nextAttemptAt: s.next1 } : undefined;
  const attempts = s.retry?.[2 * i] ?? 0;
  return attempts > 0 ? { attempts, nextAttemptAt: s.retry![2 * i + 1]! } : undefined;
}

/** Sets (or, undefined, clears) recipient `i`'s retry state. */
export function setRetry(s: RecipientStates, i: number, state: RetryState | undefined): void {
  if (s.to.length === 1) {
    s.attempts1 = state?.attempts ?? 0;
    if (state) s.next1 = state.nextAttemptAt;
    return;
  }
  if (!state) {
    if (s.retry) s.retry[2 * i] = 0;
    return;
  }
  s.retry ??= new Array<number>(2 * s.to.length).fill(0);
  s.retry[2 * i] = state.attempts;
  s.retry[2 * i + 1] = state.nextAttemptAt;
}

/** Keeps the retry state with more attempts (then the later time): merging is order-free. */
export function mergeRetry(s: RecipientStates, i: number, state: RetryState): void {
  const old = retryAt(s, i);
  if (!old || state.attempts > old.attempts || (state.attempts === old.attempts && state.nextAttemptAt > old.nextAttemptAt)) setRetry(s, i, state);
}

/** Outcomes and retry states by address, as a copy's header stores them (retry only for open recipients). */
export function statesByAddress(s: RecipientStates): { done?: Record<string, Outcome>; retry?: Record<string, [number, number]> } {
  const out: { done?: Record<string, Outcome>; retry?: Record<string, [number, number]> } = {};
  s.to.forEach((rcpt, i) => {
    const outcome = outcomeAt(s, i);
    if (outcome) (out.done ??= {})[rcpt] = outcome;
    const retry = outcome ? undefined : retryAt(s, i);
    if (retry) (out.retry ??= {})[rcpt] = [retry.attempts, retry.nextAttemptAt];
  });
  return out;
}
