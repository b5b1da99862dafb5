/**
 * The intermediate representation: what `lower` produces from a resolved, validated
 * policy set, and what `emit` and the reference interpreter consume.
 *
 * INVARIANT: the IR is plain JSON data (no Maps, no functions, no undefined values, no
 * Infinity), carries `irVersion`, and every node that came from source text has a `loc`.
 * `compiler/ir.schema.json` describes it; tests validate emitted IR against that schema.
 */
import type { Action, BackoffOverrides, BounceCategory, Disposition, LimitScope, Phase, SuspendTarget, TlsMode } from '../vocabulary/index.ts';

export const IR_VERSION = 1;

/** Where a node came from. Lines and columns are 1-based. */
export interface Loc {
  file: string;
  line: number;
  column: number;
}

/** A whole compiled policy set. */
export interface IR {
  irVersion: typeof IR_VERSION;
  /** The set's name (from `--name`, or the first path built). */
  name: string;
  /** The set's version: the highest `version` among its files' headers. */
  version: string;
  files: IRFile[];
  /** Every route; `default` is always present and first. */
  routes: IRRoute[];
  /** Every reply rule; routes refer to them by index, in the order they are tried. */
  rules: IRRule[];
  retryCurves: Record<string, IRRetryCurve>;
  warmups: Record<string, IRWarmup>;
  sources: Record<string, IRSource>;
  pools: Record<string, IRPool>;
  tenants: Record<string, IRTenant>;
  /** Limits from the `global` block. */
  global: IRLimits;
  tests: IRTest[];
}

/** One source file of the set. */
export interface IRFile {
  path: string;
  name: string;
  version: string;
  /** SHA-256 of the file's text, hex. */
  sha256: string;
}

export interface IRRate {
  count: number;
  perSeconds: number;
  scope: LimitScope;
  loc: Loc;
}

export interface IRConnections {
  max: number;
  scope: LimitScope;
  loc: Loc;
}

/** Limits that may stand in global, source, tenant, destination and backoff blocks. */
export interface IRLimits {
  connections: IRConnections[];
  connectRate: IRRate[];
  messageRate: IRRate[];
  /** Bytes per window. */
  dataRate: IRRate[];
}

/** Effective settings of a route, merged default → provider → domain at compile time. */
export interface IRSettings extends IRLimits {
  messagesPerConnection: number | null;
  recipientsPerTransaction: number | null;
  tls: TlsMode;
  /** Key into `IR.retryCurves`. */
  retry: string;
  /** Messages older than this bounce as `message-expired`. */
  expireSeconds: number;
}

/** A route: where a recipient domain's mail goes and under which settings and rules. */
export interface IRRoute {
  /** `default`, `provider:NAME` or `domain:DOMAIN`. */
  id: string;
  loc: Loc;
  /** Recipient-domain patterns that select this route. */
  domains: IRDomainPattern[];
  /** MX-host patterns that select this route (MX rollup); providers only. */
  mx: IRDomainPattern[];
  settings: IRSettings;
  /** Indices into `IR.rules`, in the order they are tried. */
  rules: number[];
}

export interface IRDomainPattern {
  kind: 'exact' | 'subdomains' | 'self-and-subdomains';
  domain: string;
  loc: Loc;
}

export interface IRMatcher {
  /** Code prefixes: `421`, `4`, `45`. Empty: any code. */
  codes: string[];
  /** Enhanced status patterns; `null` parts match anything. Empty: any status. */
  statuses: [number, number | null, number | null][];
  texts: IRTextMatcher[];
  /** Empty: any phase. */
  phases: Phase[];
}

export type IRTextMatcher = { kind: 'regex'; source: string; flags: string } | { kind: 'substring'; text: string };

/** A reaction, as the compiled module returns it: the ABI's type, plain data without `loc`. */
export type IRAction = Action;

/** Temporary settings while a backoff lasts; only what the rule states (the ABI's type). */
export type IRBackoffOverrides = BackoffOverrides;

export interface IRRule {
  /** Index in `IR.rules`. */
  id: number;
  loc: Loc;
  matcher: IRMatcher;
  trigger: { count: number; withinSeconds: number } | null;
  /** From `bounce` or `classify`; `null`: classify the reply by its status code and text. */
  category: BounceCategory | null;
  /** Stated or implied by the actions; `null`: by the reply's code class. */
  disposition: Disposition | null;
  actions: IRAction[];
  examples: { text: string; phase: Phase | null; loc: Loc }[];
}

export interface IRRetryCurve {
  name: string;
  loc: Loc;
  /** Delays before retries 1, 2, …, in seconds. */
  steps: number[];
  /** After the steps: repeat this delay (seconds). */
  repeat: number | null;
  /** After the steps: exponential delays. */
  exponential: { initialSeconds: number; factor: number; capSeconds: number | null } | null;
  /** ± fraction the runtime spreads each delay by. */
  jitter: number;
  expireSeconds: number | null;
  attempts: number | null;
}

export type IRWarmupPlan =
  | { kind: 'schedule'; perDay: number[] }
  | { kind: 'growth'; startPerDay: number; factor: number; capPerDay: number | null };

export interface IRWarmup {
  name: string;
  loc: Loc;
  plan: IRWarmupPlan | null;
  /** Plans for single routes, by route id. */
  routes: Record<string, IRWarmupPlan>;
  overflowPool: string | null;
}

export interface IRSource {
  name: string;
  loc: Loc;
  address: string | null;
  ehlo: string | null;
  warmup: { ramp: string; since: string } | null;
  limits: IRLimits;
}

export interface IRPool {
  name: string;
  loc: Loc;
  sources: string[];
}

export interface IRTenant {
  name: string;
  loc: Loc;
  pool: string | null;
  limits: IRLimits;
}

/** A `test` block, kept for `petrel test`. */
export interface IRTest {
  name: string;
  loc: Loc;
  steps: IRTestStep[];
}

export type IRTestStep =
  | { kind: 'deliver'; to: string; mx: string[]; source: string | null; tenant: string | null; loc: Loc }
  | { kind: 'reply'; text: string; times: number; phase: Phase | null; loc: Loc }
  | { kind: 'wait'; seconds: number; loc: Loc }
  | { kind: 'expect'; expectation: IRExpectation; loc: Loc };

export type IRExpectation =
  | { what: 'route'; route: string }
  | { what: 'category'; category: string }
  | { what: 'disposition'; disposition: Disposition }
  | { what: 'bounce'; category: string }
  | { what: 'backoff'; seconds: number | null; none: boolean }
  | { what: 'suspend'; target: SuspendTarget | null; seconds: number | null; none: boolean }
  | { what: 'disable-source'; none: boolean }
  | { what: 'skip-mx'; none: boolean }
  | { what: 'reroute'; pool: string }
  | { what: 'retry'; seconds: number | null; never: boolean }
  | { what: 'warmup'; ramp: string; day: number; limit: number | 'unlimited' }
  | { what: 'setting'; key: string; value: unknown };
