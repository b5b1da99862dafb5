/**
 * The effective change between two compiled policy sets (`petrel diff`): per destination
 * (route) its merged settings, retry curve, reply rules and the reactions its rules'
 * example replies get; which domains and MX rollups moved route; and the warmup ramps,
 * sources, pools, tenants, named retry curves and global limits.
 *
 * Pure: two compiled sides in, plain data out. Values are written in the policy
 * language's words (`3600/h per source`, `2d`, `suspend source 4h`) and compared by what
 * they mean, so a rewrite that changes nothing the runtime does (`3600/h` → `60/min`, a
 * comment, a rule moved to another line) is no change.
 */
import type { Phase, PolicyArtifact, Reaction } from '../vocabulary/index.ts';
import { durationWords, per, sizeWords } from '../vocabulary/index.ts';
import type { IR, IRAction, IRDomainPattern, IRMatcher, IRRetryCurve, IRRoute, IRRule, IRWarmupPlan, Loc } from './ir.ts';

/** One compiled side: its IR, and its loaded artifact, whose `route` and `react` are asked. */
export interface DiffSide {
  ir: IR;
  artifact: Pick<PolicyArtifact, 'route' | 'react'>;
}

export type ChangeStatus = 'added' | 'removed' | 'changed';

/** One value that differs; `null` on the side that has no such value. */
export interface FieldChange {
  field: string;
  before: string | null;
  after: string | null;
}

/** A reply rule of a route, paired across the sides by its matcher. */
export interface RuleChange {
  /** `moved`: same rule, another place among the rules both sides have (order decides which rule wins). */
  status: ChangeStatus | 'moved';
  /** The matcher as written: `on reply 5xx /over quota/i`. */
  rule: string;
  /** 1-based place in the route's list of rules, on each side. */
  position: { before: number | null; after: number | null };
  /** Where the rule stands (head's, or base's for a removed rule). */
  loc: Loc;
  /** Trigger, category, disposition and actions that differ (all of them for an added or removed rule). */
  fields: FieldChange[];
}

/** An example reply of the route's rules that the route now reacts to differently. */
export interface ReactionChange {
  reply: string;
  phase: Phase | null;
  before: string;
  after: string;
  /** The rule that decided on each side (`file:line`), or null for the built-in classification. */
  ruleBefore: string | null;
  ruleAfter: string | null;
}

/** A destination (route) whose effective behaviour differs. */
export interface RouteDiff {
  route: string;
  status: ChangeStatus;
  loc: Loc;
  settings: FieldChange[];
  rules: RuleChange[];
  reactions: ReactionChange[];
}

/** A `match domain` or `match mx` pattern that now selects another route. */
export interface RoutingChange {
  kind: 'domain' | 'mx';
  /** As written: `yahoo.com`, `*.yahoodns.net`, `[*.]example.com`. */
  pattern: string;
  /** The route that had it: its claimant, or where routing sent it when nothing claimed it. */
  before: string;
  after: string;
}

/** A definition other than a route: a named retry curve, warmup ramp, source, pool, tenant, or `global`. */
export interface DefinitionDiff {
  kind: 'retry' | 'warmup' | 'source' | 'pool' | 'tenant' | 'global';
  name: string;
  status: ChangeStatus;
  loc: Loc | null;
  fields: FieldChange[];
}

/** Which set a side is. */
export interface SideInfo {
  /** The set's name (`petrel diff` names each side by its directory, or `REF (COMMIT)`). */
  name: string;
  version: string;
  files: number;
}

/** The whole comparison; `changed` is false exactly when every list is empty. */
export interface PolicyDiff {
  base: SideInfo;
  head: SideInfo;
  changed: boolean;
  routes: RouteDiff[];
  routing: RoutingChange[];
  definitions: DefinitionDiff[];
}

/** Compares two compiled sets. */
export function diffPolicies(base: DiffSide, head: DiffSide): PolicyDiff {
  const routes = diffRoutes(base, head);
  const routing = [...diffClaims('domain', base, head), ...diffClaims('mx', base, head)];
  const definitions = diffDefinitions(base.ir, head.ir);
  const info = (ir: IR): SideInfo => ({ name: ir.name, version: ir.version, files: ir.files.length });
  return { base: info(base.ir), head: info(head.ir), changed: routes.length + routing.length + definitions.length > 0, routes, routing, definitions };
}

// --- Fields: values in the language's words, with what they mean ---------------------------

/** A value as written (`text`) and the key it compares by (equal keys: the same behaviour). */
interface Value {
  text: string;
  key: string;
}
type Fields = Map<string, Value>;

const same = (text: string): Value => ({ text, key: text });

/** The changes between two field maps, in base's order, then head's new fields. */
function diffFields(before: Fields, after: Fields): FieldChange[] {
  const out: FieldChange[] = [];
  for (const [field, b] of before) {
    const a = after.get(field);
    if (!a || a.key !== b.key) out.push({ field, before: b.text, after: a?.text ?? null });
  }
  for (const [field, a] of after) if (!before.has(field)) out.push({ field, before: null, after: a.text });
  return out;
}


/**
 * How a limit's scope is written in the block that holds it: a destination's own scope,
 * a source's, a tenant's and `global`'s need no words (`global` stands only in `global`).
 */
const SCOPE_WORDS: Record<string, string> = { destination: '', source: '', tenant: '', global: '', 'destination/source': ' per source', 'destination/tenant': ' per tenant' };

/** Limit lists as a block or a backoff states them (the IR's, or the ABI's without `loc`). */
interface LimitLists {
  connections?: readonly { max: number; scope: string }[];
  connectRate?: readonly { count: number; perSeconds: number; scope: string }[];
  messageRate?: readonly { count: number; perSeconds: number; scope: string }[];
  dataRate?: readonly { count: number; perSeconds: number; scope: string }[];
}

/**
 * A block's limits, one per kind and scope: statement `rate`, field `rate per source`,
 * value `3600/h per source`.
 * INVARIANT: rates compare by count per second (the runtime's interval and burst depend on nothing else).
 */
function limitStatements(limits: LimitLists): { statement: string; field: string; value: Value }[] {
  const out = (limits.connections ?? []).map((c) => ({ statement: 'connections', field: `connections${SCOPE_WORDS[c.scope]}`, value: same(`${c.max}${SCOPE_WORDS[c.scope]}`) }));
  const rates = (statement: string, list: LimitLists['messageRate'], count: (n: number) => string) => {
    for (const r of list ?? []) {
      const text = `${count(r.count)}/${per(r.perSeconds)}${SCOPE_WORDS[r.scope]}`;
      out.push({ statement, field: `${statement}${SCOPE_WORDS[r.scope]}`, value: { text, key: `${r.count / r.perSeconds} ${r.scope}` } });
    }
  };
  rates('rate', limits.messageRate, String);
  rates('connect-rate', limits.connectRate, String);
  rates('data-rate', limits.dataRate, sizeWords);
  return out;
}

/** A block's limits as fields (added to `fields`). */
function limitFields(limits: LimitLists, fields: Fields = new Map()): Fields {
  for (const l of limitStatements(limits)) fields.set(l.field, l.value);
  return fields;
}

/** A named curve by name; an inline one by what it says (`every 1h`, `{ after 5m; then every 1h }`). */
function curveWords(name: string, curves: IR['retryCurves']): string {
  const curve = curves[name];
  if (!curve || !isInline(name)) return name;
  const parts = [...curveFields(curve, '')].map(([field, v]) => `${field} ${v.text}`);
  return parts.length === 1 && curve.repeat !== null ? `every ${durationWords(curve.repeat)}` : `{ ${parts.join('; ')} }`;
}

const isInline = (name: string) => name.startsWith('inline@');

/** A retry curve's statements as fields (`after`, `then every`, `exponential`, `jitter`, `expire`, `attempts`). */
function curveFields(curve: IRRetryCurve, prefix: string, fields: Fields = new Map()): Fields {
  const put = (field: string, text: string | null) => text !== null && fields.set(`${prefix}${field}`, same(text));
  put('after', curve.steps.length ? curve.steps.map(durationWords).join(', ') : null);
  put('then every', curve.repeat === null ? null : durationWords(curve.repeat));
  const e = curve.exponential;
  put('exponential', e ? `${durationWords(e.initialSeconds)} x${e.factor}${e.capSeconds === null ? '' : ` cap ${durationWords(e.capSeconds)}`}` : null);
  put('jitter', curve.jitter ? `${Math.round(curve.jitter * 1e6) / 1e4}%` : null);
  put('expire', curve.expireSeconds === null ? null : durationWords(curve.expireSeconds));
  put('attempts', curve.attempts === null ? null : String(curve.attempts));
  return fields;
}

/** A route's effective settings as fields, its retry curve spelled out (`retry after`, `retry jitter`, …). */
function routeFields(route: IRRoute, ir: IR): Fields {
  const s = route.settings;
  const fields = limitFields(s);
  fields.set('messages-per-connection', same(s.messagesPerConnection === null ? 'no limit' : String(s.messagesPerConnection)));
  fields.set('recipients-per-transaction', same(s.recipientsPerTransaction === null ? 'no limit' : String(s.recipientsPerTransaction)));
  fields.set('tls', same(s.tls));
  fields.set('expire', same(durationWords(s.expireSeconds)));
  fields.set('retry', same(isInline(s.retry) ? 'inline' : s.retry));
  const curve = ir.retryCurves[s.retry];
  if (curve) curveFields(curve, 'retry ', fields);
  return fields;
}

// --- Reply rules and reactions ---------------------------------------------------------------

/** A matcher as written after `on reply`: codes, statuses, texts, phases. */
function matcherWords(m: IRMatcher): string {
  const codes = m.codes.map((c) => c.padEnd(3, 'x'));
  const statuses = m.statuses.map((s) => s.map((p) => (p === null ? 'x' : String(p))).join('.'));
  const texts = m.texts.map((t) => (t.kind === 'regex' ? `/${t.source}/${t.flags}` : JSON.stringify(t.text)));
  const phases = m.phases.length ? [`phase ${m.phases.join(', ')}`] : [];
  return ['on reply', ...codes, ...statuses, ...texts, ...phases].join(' ');
}

/** An action as written in a rule. */
function actionWords(a: IRAction, ir: IR): string {
  switch (a.type) {
    case 'backoff': {
      const o = a.overrides;
      const inner = limitStatements(o).map((l) => `${l.statement} ${l.value.text}`);
      if (o.messagesPerConnection !== undefined) inner.push(`messages-per-connection ${o.messagesPerConnection}`);
      if (o.recipientsPerTransaction !== undefined) inner.push(`recipients-per-transaction ${o.recipientsPerTransaction}`);
      if (o.tls !== undefined) inner.push(`tls ${o.tls}`);
      if (o.retry !== undefined) inner.push(`retry ${curveWords(o.retry, ir.retryCurves)}`);
      if (o.expireSeconds !== undefined) inner.push(`expire ${durationWords(o.expireSeconds)}`);
      return `backoff ${durationWords(a.durationSeconds)}${inner.length ? ` { ${inner.join('; ')} }` : ''}`;
    }
    case 'suspend':
      return `suspend ${a.target} ${durationWords(a.durationSeconds)}`;
    case 'disable-source':
      return 'disable source';
    case 'bounce':
      return `bounce ${a.category}`;
    case 'retry':
      return ['retry', a.afterSeconds === null ? '' : `after ${durationWords(a.afterSeconds)}`, a.attempts === undefined ? '' : `attempts ${a.attempts}`].filter(Boolean).join(' ');
    case 'recover':
      return `recover ${durationWords(a.durationSeconds)}`;
    case 'skip-mx':
      return 'skip-mx';
    case 'reroute':
      return `reroute pool ${a.pool}`;
  }
}

const triggerWords = (t: { count: number; withinSeconds: number } | null | undefined) => (t ? `when ${t.count} in ${durationWords(t.withinSeconds)}` : 'on every match');

function ruleFields(rule: IRRule, ir: IR): Fields {
  return new Map([
    ['trigger', same(triggerWords(rule.trigger))],
    ['category', same(rule.category ?? 'by the reply')],
    ['disposition', same(rule.disposition ?? 'by the code class')],
    ['actions', same(rule.actions.map((a) => actionWords(a, ir)).join('; ') || 'none')],
  ]);
}

/** A reaction in words: `spam-related, block: suspend source 4h (when 3 in 1h)`. */
function reactionWords(r: Reaction, ir: IR): string {
  if (r.category === 'success') return 'success';
  const actions = r.actions.map((a) => actionWords(a, ir)).join('; ');
  return `${r.category}, ${r.disposition ?? 'no disposition'}${actions ? `: ${actions}` : ''}${r.trigger ? ` (${triggerWords(r.trigger)})` : ''}`;
}

/** A route's rules keyed by matcher (the Nth rule with one matcher is `matcher#N`), in order. */
function rulesByMatcher(route: IRRoute, ir: IR): Map<string, { rule: IRRule; position: number; words: string }> {
  const seen = new Map<string, number>();
  const out = new Map<string, { rule: IRRule; position: number; words: string }>();
  route.rules.forEach((index, i) => {
    const rule = ir.rules[index]!;
    const words = matcherWords(rule.matcher);
    const n = (seen.get(words) ?? 0) + 1;
    seen.set(words, n);
    out.set(`${words}#${n}`, { rule, position: i + 1, words });
  });
  return out;
}

function diffRules(before: IRRoute, after: IRRoute, base: IR, head: IR): RuleChange[] {
  const b = rulesByMatcher(before, base);
  const a = rulesByMatcher(after, head);
  const out: RuleChange[] = [];
  // Ranks among the rules both sides have: a rule moved when its rank differs.
  const rank = (m: typeof b, other: typeof b) => new Map([...m.keys()].filter((k) => other.has(k)).map((k, i) => [k, i]));
  const rankBefore = rank(b, a);
  const rankAfter = rank(a, b);
  for (const [key, x] of b) {
    const y = a.get(key);
    if (!y) {
      out.push({ status: 'removed', rule: x.words, position: { before: x.position, after: null }, loc: x.rule.loc, fields: diffFields(ruleFields(x.rule, base), new Map()) });
      continue;
    }
    const fields = diffFields(ruleFields(x.rule, base), ruleFields(y.rule, head));
    const status = fields.length ? 'changed' : rankBefore.get(key) !== rankAfter.get(key) ? 'moved' : undefined;
    if (status) out.push({ status, rule: x.words, position: { before: x.position, after: y.position }, loc: y.rule.loc, fields });
  }
  for (const [key, y] of a) {
    if (!b.has(key)) out.push({ status: 'added', rule: y.words, position: { before: null, after: y.position }, loc: y.rule.loc, fields: diffFields(new Map(), ruleFields(y.rule, head)) });
  }
  return out;
}

/** Every example of both sides' rules of the route, asked of both artifacts; those reacted to differently. */
function diffReactions(routeId: string, before: IRRoute, after: IRRoute, base: DiffSide, head: DiffSide): ReactionChange[] {
  const examples = new Map<string, { text: string; phase: Phase | null }>();
  for (const [route, ir] of [[before, base.ir], [after, head.ir]] as const) {
    for (const index of route.rules) for (const e of ir.rules[index]!.examples) examples.set(`${e.phase ?? ''}\0${e.text}`, { text: e.text, phase: e.phase });
  }
  const out: ReactionChange[] = [];
  for (const { text, phase } of examples.values()) {
    const rb = base.artifact.react(routeId, text, phase ?? undefined);
    const ra = head.artifact.react(routeId, text, phase ?? undefined);
    const wb = reactionWords(rb, base.ir);
    const wa = reactionWords(ra, head.ir);
    if (wb !== wa) out.push({ reply: text, phase, before: wb, after: wa, ruleBefore: ruleAt(rb), ruleAfter: ruleAt(ra) });
  }
  return out;
}

const ruleAt = (r: Reaction) => (r.rule ? `${r.rule.file}:${r.rule.line}` : null);

// --- Routes and routing ----------------------------------------------------------------------

function diffRoutes(base: DiffSide, head: DiffSide): RouteDiff[] {
  const before = new Map(base.ir.routes.map((r) => [r.id, r]));
  const after = new Map(head.ir.routes.map((r) => [r.id, r]));
  const out: RouteDiff[] = [];
  const whole = (route: IRRoute, ir: IR) => {
    const fields = routeFields(route, ir);
    fields.set('reply rules', same(String(route.rules.length)));
    return fields;
  };
  for (const route of head.ir.routes) {
    const old = before.get(route.id);
    if (!old) {
      out.push({ route: route.id, status: 'added', loc: route.loc, settings: diffFields(new Map(), whole(route, head.ir)), rules: [], reactions: [] });
      continue;
    }
    const settings = diffFields(routeFields(old, base.ir), routeFields(route, head.ir));
    const rules = diffRules(old, route, base.ir, head.ir);
    const reactions = diffReactions(route.id, old, route, base, head);
    if (settings.length || rules.length || reactions.length) out.push({ route: route.id, status: 'changed', loc: route.loc, settings, rules, reactions });
  }
  for (const route of base.ir.routes) {
    if (!after.has(route.id)) out.push({ route: route.id, status: 'removed', loc: route.loc, settings: diffFields(whole(route, base.ir), new Map()), rules: [], reactions: [] });
  }
  return out;
}

const patternWords = (p: IRDomainPattern) => (p.kind === 'exact' ? p.domain : p.kind === 'subdomains' ? `*.${p.domain}` : `[*.]${p.domain}`);

/**
 * A name the pattern matches, to ask `route` where an unclaimed pattern goes. For MX
 * patterns the recipient domain is one under `.invalid` (RFC 2606), which no route can
 * claim, so `route` answers by the MX host alone.
 */
function sampleName(p: IRDomainPattern): string {
  return p.kind === 'subdomains' ? `x.${p.domain}` : p.domain;
}
const NO_ROUTE_DOMAIN = 'recipient.invalid';

/** Patterns whose route differs: moved between routes, claimed anew, or no longer claimed. */
function diffClaims(kind: 'domain' | 'mx', base: DiffSide, head: DiffSide): RoutingChange[] {
  const claims = (ir: IR) => {
    const out = new Map<string, { route: string; pattern: IRDomainPattern }>();
    for (const r of ir.routes) for (const p of kind === 'domain' ? r.domains : r.mx) out.set(patternWords(p), { route: r.id, pattern: p });
    return out;
  };
  const before = claims(base.ir);
  const after = claims(head.ir);
  const routeOf = (side: DiffSide, p: IRDomainPattern) => (kind === 'domain' ? side.artifact.route(sampleName(p)) : side.artifact.route(NO_ROUTE_DOMAIN, [sampleName(p)]));
  const out: RoutingChange[] = [];
  for (const [words, { pattern }] of new Map([...before, ...after])) {
    const b = before.get(words)?.route ?? routeOf(base, pattern);
    const a = after.get(words)?.route ?? routeOf(head, pattern);
    if (a !== b) out.push({ kind, pattern: words, before: b, after: a });
  }
  return out;
}

// --- Other definitions -----------------------------------------------------------------------

function planWords(plan: IRWarmupPlan): string {
  if (plan.kind === 'schedule') return plan.perDay.map((n) => `${n}/day`).join(', ');
  return `start ${plan.startPerDay}/day grow x${plan.factor} daily${plan.capPerDay === null ? '' : ` cap ${plan.capPerDay}/day`}`;
}

type Definitions = Map<string, { loc: Loc | null; fields: Fields }>;

/** Every definition of a set but its routes, by kind and name, as fields. */
function definitions(ir: IR): Record<DefinitionDiff['kind'], Definitions> {
  const table = <T extends { loc: Loc }>(items: Record<string, T>, fields: (item: T) => Fields): Definitions =>
    new Map(Object.entries(items).map(([name, item]) => [name, { loc: item.loc, fields: fields(item) }]));
  const named = Object.fromEntries(Object.entries(ir.retryCurves).filter(([name]) => !isInline(name)));
  return {
    retry: table(named, (c) => curveFields(c, '')),
    warmup: table(ir.warmups, (w) => {
      const f: Fields = new Map();
      if (w.plan) f.set(w.plan.kind, same(planWords(w.plan)));
      for (const [route, plan] of Object.entries(w.routes)) f.set(`for ${route}`, same(planWords(plan)));
      if (w.overflowPool) f.set('overflow', same(`pool ${w.overflowPool}`));
      return f;
    }),
    source: table(ir.sources, (s) => {
      const f: Fields = new Map();
      if (s.address) f.set('address', same(s.address));
      if (s.ehlo) f.set('ehlo', same(s.ehlo));
      if (s.warmup) f.set('warmup', same(`${s.warmup.ramp} since ${s.warmup.since}`));
      return limitFields(s.limits, f);
    }),
    pool: table(ir.pools, (p) => new Map([['sources', same(p.sources.join(', '))]])),
    tenant: table(ir.tenants, (t) => limitFields(t.limits, t.pool ? new Map([['pool', same(t.pool)]]) : new Map())),
    global: new Map([['global', { loc: null, fields: limitFields(ir.global) }]]),
  };
}

function diffDefinitions(base: IR, head: IR): DefinitionDiff[] {
  const before = definitions(base);
  const after = definitions(head);
  const out: DefinitionDiff[] = [];
  for (const kind of Object.keys(before) as DefinitionDiff['kind'][]) {
    for (const name of new Set([...before[kind].keys(), ...after[kind].keys()])) {
      const b = before[kind].get(name);
      const a = after[kind].get(name);
      const fields = diffFields(b?.fields ?? new Map(), a?.fields ?? new Map());
      if (fields.length || !a || !b) out.push({ kind, name, status: !b ? 'added' : !a ? 'removed' : 'changed', loc: (a ?? b)!.loc, fields });
    }
  }
  return out;
}
