/**
 * The artifact ABI, version 1: what a compiled policy module default-exports and what
 * the runtime may rely on. The compiler emits modules that satisfy `PolicyArtifact`;
 * the runtime loads them and checks `meta.abi` before use.
 *
 * All functions are pure: the same arguments give the same answer. Route ids, bounce
 * categories and actions are plain data. See docs/language.md, "The compiled artifact".
 */
import type { ActionType, BounceCategory, Disposition, LimitScope, Phase, SuspendTarget, TlsMode } from './words.ts';

export const ABI_VERSION = 1;

export interface RateLimit {
  /** Messages, connections, or bytes (data rate) … */
  count: number;
  /** … per this many seconds. */
  perSeconds: number;
  scope: LimitScope;
}

export interface ConnectionLimit {
  max: number;
  scope: LimitScope;
}

/** Effective settings for a route (and optionally a source and tenant), merged at compile time. */
export interface EffectiveSettings {
  route: string;
  connections: readonly ConnectionLimit[];
  connectRate: readonly RateLimit[];
  messageRate: readonly RateLimit[];
  dataRate: readonly RateLimit[];
  /** null: no limit. */
  messagesPerConnection: number | null;
  recipientsPerTransaction: number | null;
  tls: TlsMode;
  /** Name of the retry curve; `retryDelay` evaluates it. */
  retry: string;
  /** ± fraction the runtime spreads each retry delay by. */
  retryJitter: number;
  expireSeconds: number;
  /** The source asked for, when it exists. */
  source: { name: string; address: string | null; ehlo: string | null; warmup: { ramp: string; since: string; overflowPool: string | null } | null } | null;
  /** The tenant asked for, when it exists. */
  tenant: { name: string; pool: string | null } | null;
}

/** Settings a backoff overrides while it lasts (only those its rule states). */
export interface BackoffOverrides {
  connections?: readonly ConnectionLimit[];
  connectRate?: readonly RateLimit[];
  messageRate?: readonly RateLimit[];
  dataRate?: readonly RateLimit[];
  messagesPerConnection?: number;
  recipientsPerTransaction?: number;
  tls?: TlsMode;
  retry?: string;
  expireSeconds?: number;
}

export type Action =
  | { type: 'backoff'; durationSeconds: number; overrides: BackoffOverrides }
  | { type: 'suspend'; target: SuspendTarget; durationSeconds: number }
  | { type: 'disable-source' }
  | { type: 'bounce'; category: BounceCategory }
  /** `attempts`: at most this many delivery attempts in all (as a curve's `attempts`), then give up. */
  | { type: 'retry'; afterSeconds: number | null; attempts?: number }
  /** After the pause this rule starts (or, if it starts none, from now) sending ramps back to normal over this period. */
  | { type: 'recover'; durationSeconds: number }
  | { type: 'skip-mx' }
  | { type: 'reroute'; pool: string };

/** What a reply means. */
export interface Reaction {
  /** `success` for 2xx (and 3xx) replies. */
  category: BounceCategory | 'success';
  /** null for success. */
  disposition: Disposition | null;
  actions: readonly Action[];
  /** The rule that decided, or absent when the built-in fallback did. */
  rule?: { file: string; line: number };
  /** Present when the actions fire only on the Nth match within a window (`when N in T`): the runtime counts. */
  trigger?: { count: number; withinSeconds: number; id: number };
}

export interface ArtifactMeta {
  name: string;
  version: string;
  hash: string;
  abi: number;
}

/** The default export of a compiled policy module. */
export interface PolicyArtifact {
  readonly meta: ArtifactMeta;
  route(domain: string, mxHosts?: readonly string[]): string;
  settings(routeId: string, source?: string, tenant?: string): EffectiveSettings;
  react(routeId: string, reply: string, phase?: Phase): Reaction;
  /**
   * Milliseconds before retry number `attempt` (1-based), or null to give up. With
   * `reply`, a hard failure gives null and a rule's `retry after T` wins. `curve` names
   * another retry curve to use instead of the route's (a backoff's `retry` override).
   */
  retryDelay(routeId: string, attempt: number, reply?: string, curve?: string): number | null;
  warmupLimit(ramp: string, routeId: string, ageDays: number): number;
}

/** `manifest.json` beside the module. */
export interface ArtifactManifest {
  name: string;
  version: string;
  hash: string;
  abi: number;
  /** File name of the ES module, next to the manifest. */
  module: string;
  sources: { path: string; name: string; version: string; sha256: string }[];
  compiler: { name: string; version: string };
  /**
   * What the runtime sends from: the policy's `source`, `pool` and `tenant` definitions
   * (an addition to the manifest; ABI version 1 is unchanged). Empty when the policy
   * defines none: the runtime then sends from one unbound source named `default`.
   */
  delivery?: DeliveryTopology;
}

/** Sources, pools and tenants as the policy defines them. */
export interface DeliveryTopology {
  sources: { name: string; address: string | null; ehlo: string | null; warmup: { ramp: string; since: string; overflowPool: string | null } | null }[];
  /** Pool name → source names. */
  pools: Record<string, string[]>;
  /** Tenant name → its pool, if it names one. */
  tenants: Record<string, string | null>;
}

/** True when `A` and `B` are the same union. */
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
// INVARIANT: `ACTION_TYPES` names exactly the `type`s of `Action`; compiling fails otherwise.
true satisfies Same<Action['type'], ActionType>;
