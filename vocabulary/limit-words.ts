/**
 * Limits in the language's words: the ABI's `{ count: 600, perSeconds: 3600, scope:
 * 'destination/source' }` as a destination block writes it, `600/h per source`. The
 * status API shows a queue's limits this way, so an operator reads what the policy says,
 * not limiter keys.
 */
import type { ConnectionLimit, RateLimit } from './artifact.ts';
import type { LimitScope } from './words.ts';

/**
 * How each limiter key is written after a destination's limit (docs/language.md,
 * "Scopes"): a destination's own scope needs no word; a source's or tenant's own block
 * (a limit on all its routes) is named in brackets.
 */
export const LIMIT_SCOPE_WORDS: Record<LimitScope, string> = { destination: '', 'destination/source': ' per source', 'destination/tenant': ' per tenant', global: ' global', source: ' (source)', tenant: ' (tenant)' };

/** The rate units the language writes, by their length in seconds. */
const RATE_UNITS: Readonly<Record<number, string>> = { 1: 's', 60: 'min', 3600: 'h', 86400: 'day' };
const SIZES: readonly [string, number][] = [['GB', 1024 ** 3], ['MB', 1024 ** 2], ['KB', 1024]];

/** A rate's time unit as the language writes it: `s`, `min`, `h`, `day` (else `Ns`). */
export const per = (perSeconds: number): string => RATE_UNITS[perSeconds] ?? `${perSeconds}s`;

/** A byte count in the largest unit that divides it: `10MB`, `1500B`. */
export function sizeWords(bytes: number): string {
  const unit = SIZES.find(([, size]) => bytes % size === 0);
  return unit ? `${bytes / unit[1]}${unit[0]}` : `${bytes}B`;
}

const UNIT_SECONDS: readonly [string, number][] = [['d', 86400], ['h', 3600], ['m', 60], ['s', 1]];

/** Seconds as a policy duration: `2d`, `1h30m`, `0s`. */
export function durationWords(seconds: number): string {
  let rest = Math.round(seconds);
  let out = '';
  for (const [unit, size] of UNIT_SECONDS) {
    if (rest >= size) {
      out += `${Math.floor(rest / size)}${unit}`;
      rest %= size;
    }
  }
  return out || '0s';
}

/** A message or connection rate: `600/h per source`, `20/s`. */
export const rateWords = (r: RateLimit): string => `${r.count}/${per(r.perSeconds)}${LIMIT_SCOPE_WORDS[r.scope]}`;

/** A connection limit: `10 per source`. */
export const connectionWords = (c: ConnectionLimit): string => `${c.max}${LIMIT_SCOPE_WORDS[c.scope]}`;

/** A data rate (bytes): `10MB/s per source`, in the largest unit that divides it. */
export function dataRateWords(r: RateLimit): string {
  return `${sizeWords(r.count)}/${per(r.perSeconds)}${LIMIT_SCOPE_WORDS[r.scope]}`;
}
