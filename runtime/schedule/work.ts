/**
 * Delivery work: the open recipients of one message at one recipient domain, and the
 * queue a route's traffic to a domain is in.
 */
import type { SpooledMessage } from '../spool/index.ts';

/** One unit of delivery work: the open recipients of one message at one recipient domain. */
export interface Work {
  id: string;
  domain: string;
  rcpts: string[];
  notBefore: number;
  /** A `reroute pool P` reaction sent these recipients to pool P (in memory: a restart forgets it). */
  pool?: string;
  /** MX hosts (`host:port`) a `skip-mx` reaction moved these recipients away from. */
  avoid?: string[];
  /** The queue the scheduler last put it in (routing happens when it is due). */
  queue?: string;
  /** It waits because no source may send it (suspended, disabled, capped): an operator's enable makes it due at once. */
  waitsForSource?: boolean;
}

/** The lower-cased domain of an address (after its last `@`). */
export const domainOf = (rcpt: string): string => rcpt.slice(rcpt.lastIndexOf('@') + 1).toLowerCase();

/** A message's open recipients as work, one item per recipient domain, due at the latest of its recipients' `notBeforeOf`. */
export function workOf(m: SpooledMessage, notBeforeOf: (rcpt: string) => number): Work[] {
  const byDomain = new Map<string, string[]>();
  for (const r of m.recipients) {
    const domain = domainOf(r.rcpt);
    byDomain.set(domain, [...(byDomain.get(domain) ?? []), r.rcpt]);
  }
  return [...byDomain].map(([domain, rcpts]) => ({ id: m.id, domain, rcpts, notBefore: Math.max(...rcpts.map(notBeforeOf)) }));
}

/**
 * The queue a route's traffic to `domain` is in: the route itself, except that every
 * domain no provider claims gets its own queue under `default` — otherwise one slow or
 * blocking domain in the long tail would hold back all the others (PowerMTA's `domain *`).
 */
export function queueOf(route: string, domain: string): string {
  return route === 'default' ? `default/${domain}` : route;
}
