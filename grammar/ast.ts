/**
 * The abstract syntax of a policy file. Every node carries the `span` it was read from.
 * Values are already in base units (seconds, bytes, counts per second window) so later
 * stages never parse text again. Names stay names: `resolve` connects them.
 */
import type { Disposition, Phase, SuspendTarget, TlsMode } from '../vocabulary/index.ts';
import type { Span } from './diagnostic.ts';

/** A name as written, with where it was written. */
export interface Name {
  text: string;
  span: Span;
}

/** A policy file: header, imports and top-level definitions, in source order. */
export interface PolicyFile {
  kind: 'file';
  file: string;
  span: Span;
  /** Absent only when the file has none (a PARSE006 diagnostic says so). */
  header?: Header;
  uses: Use[];
  items: TopItem[];
  /** Every `#` comment, for `fmt`. */
  comments: Comment[];
}

export interface Comment {
  text: string;
  span: Span;
}

/** `policy NAME version VERSION` */
export interface Header {
  kind: 'header';
  name: Name;
  version: Name;
  span: Span;
}

/** `use stdlib/retry` or `use "./common"` */
export interface Use {
  kind: 'use';
  /** As written, without quotes. `stdlib/…` names the shipped stdlib; `./` and `../` are relative to the file. */
  path: string;
  span: Span;
}

export type TopItem =
  | Destination
  | GlobalBlock
  | RuleSet
  | RetryCurve
  | WarmupRamp
  | SourceDef
  | PoolDef
  | TenantDef
  | TestBlock;

/**
 * Where a limit applies, as written: `global`, or `per` one of the three dimensions of
 * traffic a suspension can also stop (`per source`); absent when the statement names none
 * and the block decides.
 */
export type Scope = 'global' | SuspendTarget;

/** `20/s` as data: `count` events (messages, connections, or bytes for `data-rate`) per `perSeconds`. */
export interface RateValue {
  count: number;
  perSeconds: number;
  span: Span;
}

/** A plain number with where it was written. */
export interface NumberValue {
  value: number;
  span: Span;
}

/** A duration in seconds. */
export interface DurationValue {
  seconds: number;
  span: Span;
}

/** A setting inside a destination, source, tenant, global or backoff block. */
export type Setting =
  | { kind: 'connections'; value: NumberValue; scope?: Scope; scopeSpan?: Span; span: Span }
  | { kind: 'connect-rate' | 'rate' | 'data-rate'; value: RateValue; scope?: Scope; scopeSpan?: Span; span: Span }
  | { kind: 'messages-per-connection' | 'recipients-per-transaction'; value: NumberValue; span: Span }
  | { kind: 'tls'; mode: TlsMode; span: Span }
  | { kind: 'retry'; curve: Name | RetryCurveBody; span: Span }
  | { kind: 'expire'; value: DurationValue; span: Span };

export type SettingKind = Setting['kind'];

/** `default { … }`, `provider NAME { … }` or `domain D, D { … }`. */
export interface Destination {
  kind: 'destination';
  type: 'default' | 'provider' | 'domain';
  /** The provider's name; for `domain` blocks the first domain; `default` for the default. */
  name: Name;
  /** `domain` blocks: the domains they are for (exact names or patterns). */
  domains: DomainPattern[];
  /** `provider` blocks: `match domain …` and `match mx …`. */
  matches: Match[];
  settings: Setting[];
  /** Reply rules and rule-set inclusions, in order: the first matching rule decides. */
  rules: (ReplyRule | RuleSetRef)[];
  span: Span;
}

/** `global { … }`: limits over all traffic of this node or cluster. */
export interface GlobalBlock {
  kind: 'global';
  settings: Setting[];
  span: Span;
}

/**
 * A domain pattern: `yahoo.com` (exact), `*.yahoo.com` (subdomains only) or
 * `[*.]yahoo.com` (the domain and its subdomains). Stored lowercase without a final dot.
 */
export interface DomainPattern {
  kind: 'exact' | 'subdomains' | 'self-and-subdomains';
  /** The domain without wildcard markers. */
  domain: string;
  span: Span;
}

/** `match domain …` (recipient domains) or `match mx …` (MX host names: MX rollup). */
export interface Match {
  kind: 'match';
  on: 'domain' | 'mx';
  patterns: DomainPattern[];
  span: Span;
}

/** `rules NAME` inside a destination: include a named rule set here. */
export interface RuleSetRef {
  kind: 'rules-ref';
  name: Name;
  span: Span;
}

/** `rules NAME { on reply … }`: a reusable, ordered list of reply rules. */
export interface RuleSet {
  kind: 'rule-set';
  name: Name;
  rules: (ReplyRule | RuleSetRef)[];
  span: Span;
}

/** A reply code matcher: `421` (exact) or `4xx`/`45x` (prefix). */
export interface CodeMatcher {
  /** The digits that must lead the code: `421`, `4`, `45`. */
  prefix: string;
  span: Span;
}

/** An enhanced status code matcher: `5.7.1`, or `5.7.x` / `4.x.x` with `x` for any number. */
export interface StatusMatcher {
  /** Three parts; `null` where the pattern has `x`. */
  parts: [number, number | null, number | null];
  text: string;
  span: Span;
}

/** A text matcher: a regex literal, or a string that must occur (case-insensitive). */
export type TextMatcher =
  | { kind: 'regex'; source: string; flags: string; span: Span }
  | { kind: 'substring'; text: string; span: Span };

/** What an `on reply` rule matches. Within one kind, any item may match; across kinds, all must. */
export interface ReplyMatcher {
  codes: CodeMatcher[];
  statuses: StatusMatcher[];
  texts: TextMatcher[];
  /** Empty: any phase. */
  phases: Phase[];
}

/** `when N in T`: the actions fire on the Nth matching reply within T (per route and source). */
export interface Trigger {
  count: NumberValue;
  within: DurationValue;
  span: Span;
}

/** One reaction of a reply rule. */
export type Action =
  | { kind: 'backoff'; duration: DurationValue; overrides: Setting[]; span: Span }
  | { kind: 'suspend'; target: SuspendTarget; duration: DurationValue; span: Span }
  | { kind: 'disable-source'; span: Span }
  | { kind: 'bounce'; category: Name; span: Span }
  | { kind: 'retry'; after?: DurationValue; attempts?: NumberValue; span: Span }
  | { kind: 'recover'; duration: DurationValue; span: Span }
  | { kind: 'classify'; category: Name; span: Span }
  | { kind: 'skip-mx'; span: Span }
  | { kind: 'reroute'; pool: Name; span: Span };

/** `example "…"`: a reply the rule must match, optionally `phase P`. */
export interface Example {
  text: string;
  phase?: Phase;
  span: Span;
}

/** `on reply MATCHERS [when N in T] { actions; example "…" }` */
export interface ReplyRule {
  kind: 'rule';
  matcher: ReplyMatcher;
  trigger?: Trigger;
  actions: Action[];
  /** `disposition X` when stated; otherwise derived from the actions and the code. */
  disposition?: { value: Disposition; span: Span };
  examples: Example[];
  /** The `on reply …` head, for diagnostics about the rule as a whole. */
  headSpan: Span;
  span: Span;
}

/** `retry NAME { … }` or an inline `retry { … }` / `retry every 30m`. */
export interface RetryCurve {
  kind: 'retry-curve';
  name: Name;
  body: RetryCurveBody;
  span: Span;
}

export interface RetryCurveBody {
  kind: 'retry-body';
  /** `after 5m, 10m, …`: the delays before retries 1, 2, … */
  steps: DurationValue[];
  /** `then every 1h`: repeat this delay after the steps. */
  repeat?: DurationValue;
  /** `exponential 5m x2 cap 4h`: after the steps, start at `initial`, multiply by `factor`, never above `cap`. */
  exponential?: { initial: DurationValue; factor: NumberValue; cap?: DurationValue; span: Span };
  /** `jitter 10%`: the runtime spreads each delay by ± this fraction. */
  jitter?: NumberValue;
  /** `expire 3d`: give up this long after the message was queued. */
  expire?: DurationValue;
  /** `attempts 20`: give up after this many attempts. */
  attempts?: NumberValue;
  span: Span;
}

/** A warmup ramp: per-day limits by a source's age. */
export interface WarmupRamp {
  kind: 'warmup';
  name: Name;
  plan?: WarmupPlan;
  /** `for provider NAME { … }` / `for domain D { … }`: a different plan for one destination. */
  overrides: { target: Name; targetType: 'provider' | 'domain'; plan?: WarmupPlan; span: Span }[];
  /** `overflow pool P`: traffic over the day's limit goes out through pool P instead of waiting. */
  overflow?: Name;
  span: Span;
}

/** `schedule 50/day, 100/day, …` or `start 20/day grow x1.4 [daily] [cap 50000/day]`. */
export type WarmupPlan =
  | { kind: 'schedule'; steps: RateValue[]; span: Span }
  | { kind: 'growth'; start: RateValue; factor: NumberValue; cap?: RateValue; span: Span };

/** `source NAME { address …; ehlo …; warmup RAMP since DATE; limits }` */
export interface SourceDef {
  kind: 'source';
  name: Name;
  address?: Name;
  ehlo?: Name;
  warmup?: { ramp: Name; since: Name; span: Span };
  settings: Setting[];
  span: Span;
}

/** `pool NAME { source, source }` */
export interface PoolDef {
  kind: 'pool';
  name: Name;
  sources: Name[];
  span: Span;
}

/** `tenant NAME { pool P; limits }` */
export interface TenantDef {
  kind: 'tenant';
  name: Name;
  pool?: Name;
  settings: Setting[];
  span: Span;
}

/** `test "description" { deliver …; reply …; expect … }` */
export interface TestBlock {
  kind: 'test';
  name: Name;
  steps: TestStep[];
  span: Span;
}

export type TestStep =
  | { kind: 'deliver'; to: Name; mx: Name[]; source?: Name; tenant?: Name; span: Span }
  | { kind: 'reply'; text: string; times: number; phase?: Phase; span: Span }
  | { kind: 'wait'; duration: DurationValue; span: Span }
  | { kind: 'expect'; expectation: Expectation; span: Span };

/** What a test expects of the compiled policy after its steps so far. */
export type Expectation =
  | { what: 'route'; route: Name }
  | { what: 'category'; category: Name }
  | { what: 'disposition'; disposition: Disposition }
  | { what: 'bounce'; category: Name }
  | { what: 'backoff'; duration?: DurationValue; none: boolean }
  | { what: 'suspend'; target?: SuspendTarget; duration?: DurationValue; none: boolean }
  | { what: 'disable-source'; none: boolean }
  | { what: 'skip-mx'; none: boolean }
  | { what: 'reroute'; pool: Name }
  | { what: 'retry'; delay?: DurationValue; never: boolean }
  | { what: 'warmup'; ramp: Name; day: number; limit: number | 'unlimited' }
  | { what: 'setting'; setting: Setting };
