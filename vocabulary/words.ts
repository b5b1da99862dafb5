/**
 * The words grammar, compiler and runtime share, each list defined once, here. Every
 * type is derived from its list, so a word added to a list is a word every stage knows:
 * the parser accepts it, the compiler's IR schema must list it (a test compares them),
 * and the runtime's checks read the same array.
 *
 * INVARIANT: the order of each list is part of the language. It is the order the
 * compiler's diagnostics name the choices in ("one of `hard`, `soft`, …") and, for
 * `LIMIT_SCOPES`, the order effective settings list limits in (widest first).
 */

/** The SMTP phase a reply came in, in the order a session reaches them. */
export const PHASES = ['connect', 'ehlo', 'mail', 'rcpt', 'data'] as const;
export type Phase = (typeof PHASES)[number];

/**
 * What a reply means for the recipient and the sending: `hard` bounce it; `soft` retry it;
 * `throttle` retry it and slow the destination down; `block` keep it queued and stop this
 * source for this destination.
 */
export const DISPOSITIONS = ['hard', 'soft', 'throttle', 'block'] as const;
export type Disposition = (typeof DISPOSITIONS)[number];

/** How a delivery uses TLS (docs/language.md, "tls"). */
export const TLS_MODES = ['opportunistic', 'required', 'verify', 'disabled'] as const;
export type TlsMode = (typeof TLS_MODES)[number];

/** PowerMTA's bounce categories, so users' existing reports keep working. */
export const BOUNCE_CATEGORIES = [
  'bad-mailbox',
  'bad-domain',
  'bad-connection',
  'content-related',
  'inactive-mailbox',
  'invalid-sender',
  'message-expired',
  'no-answer-from-host',
  'policy-related',
  'protocol-errors',
  'quota-issues',
  'relaying-issues',
  'routing-errors',
  'spam-related',
  'virus-related',
  'other',
] as const;
export type BounceCategory = (typeof BOUNCE_CATEGORIES)[number];

/**
 * Who shares one limiter, widest first: all traffic, one source, one tenant, one route,
 * or a route with one source or one tenant (docs/language.md, "Scopes").
 */
export const LIMIT_SCOPES = ['global', 'source', 'tenant', 'destination', 'destination/source', 'destination/tenant'] as const;
export type LimitScope = (typeof LIMIT_SCOPES)[number];

/** What `suspend` stops (and a recovery ramp brings back): the route, the source on it, or the tenant on it. */
export const SUSPEND_TARGETS = ['destination', 'source', 'tenant'] as const;
export type SuspendTarget = (typeof SUSPEND_TARGETS)[number];

/** The `type` of each action a reaction carries (`Action` in `artifact.ts` gives each its fields). */
export const ACTION_TYPES = ['backoff', 'suspend', 'disable-source', 'bounce', 'retry', 'recover', 'skip-mx', 'reroute'] as const;
export type ActionType = (typeof ACTION_TYPES)[number];
