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

const per = (perSeconds: number) => RATE_UNITS[perSeconds] ?? `${perSeconds}s`;

/** A message or connection rate: `600/h per source`, `20/s`. */
export const rateWords = (r: RateLimit): string => `${r.count}/${per(r.perSeconds)}${LIMIT_SCOPE_WORDS[r.scope]}`;

/** A connection limit: `10 per source`. */
export const connectionWords = (c: ConnectionLimit): string => `${c.max}${LIMIT_SCOPE_WORDS[c.scope]}`;

/** A data rate (bytes): `10MB/s per source`, in the largest unit that divides it. */
export function dataRateWords(r: RateLimit): string {
  const unit = SIZES.find(([, size]) => r.count % size === 0);
  return `${unit ? `${r.count / unit[1]}${unit[0]}` : `${r.count}B`}/${per(r.perSeconds)}${LIMIT_SCOPE_WORDS[r.scope]}`;
}
