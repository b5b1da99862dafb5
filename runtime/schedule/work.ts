/**
 * Delivery work: the open recipients of one message at one recipient domain, and the
 * queue a route's traffic to a domain is in.
 */
import type { SpooledMessage } from '../spool/index.ts';

/** One unit of delivery work: the open recipients of one message at one recipient domain. */
export interface Work {
  id: string;
  domain: string;
  /** When they are every recipient of the message, its envelope's own array (frozen: not a copy per item). */
  rcpts: readonly string[];
  notBefore: number;
  /** A `reroute pool P` reaction sent these recipients to pool P (in memory: a restart forgets it). */
  pool?: string;
  /** MX hosts (`host:port`) a `skip-mx` reaction moved these recipients away from. */
  avoid?: string[];
  /** The queue the scheduler last put it in (routing happens when it is due). */
  queue?: string;
}

/** The lower-cased domain of an address (after its last `@`). */
export const domainOf = (rcpt: string): string => rcpt.slice(rcpt.lastIndexOf('@') + 1).toLowerCase();

/** A message's open recipients as work, one item per recipient domain, due at the latest of its recipients' `notBeforeOf`. */
export function workOf(m: SpooledMessage, notBeforeOf: (rcpt: string) => number): Work[] {
  // Linear in the recipients (no array copied per recipient, no spread into Math.max: a
  // message may have thousands).
  const byDomain = new Map<string, { w: Work; rcpts: string[] }>();
  for (const { rcpt } of m.recipients) {
    const domain = domainOf(rcpt);
    const at = notBeforeOf(rcpt);
    const known = byDomain.get(domain);
    if (known) {
      known.rcpts.push(rcpt);
      known.w.notBefore = Math.max(known.w.notBefore, at);
    } else {
      const rcpts = [rcpt];
      byDomain.set(domain, { w: { id: m.id, domain, rcpts, notBefore: at }, rcpts });
    }
  }
  // An item that holds every recipient (most messages have one) refers to the envelope's
  // array: a million waiting items then hold no array of their own (56 bytes each).
  const to = m.envelope.to;
  return [...byDomain.values()].map(({ w, rcpts }) => {
    if (rcpts.length === to.length) w.rcpts = to;
    return w;
  });
}

/**
 * The queue a route's traffic to `domain` is in: the route itself, except that every
 * domain no provider claims gets its own queue under `default` — otherwise one slow or
 * blocking domain in the long tail would hold back all the others (PowerMTA's `domain *`).
 */
export function queueOf(route: string, domain: string): string {
  return route === 'default' ? `default/${domain}` : route;
}
