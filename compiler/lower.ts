/**
 * Lowering: a resolved, validated program becomes the IR. Here the inheritance of
 * settings (built-in defaults → `default` → provider → `domain` block) is merged once,
 * each route gets its full ordered rule list, rule sets are expanded, units are already
 * base units, and the one check that needs effective settings (VAL002) runs.
 */
import {
  type Action,
  type Destination,
  type Diagnostic,
  type DomainPattern,
  type ReplyMatcher,
  type ReplyRule,
  type RetryCurveBody,
  type RuleSetRef,
  type Setting,
  type Span,
  type TestStep,
  type WarmupPlan,
} from '../grammar/index.ts';
import type { BounceCategory, Disposition, LimitScope } from '../vocabulary/index.ts';
import { patternSpecificity } from './artifact-lib.ts';
import {
  IR_VERSION,
  type IR,
  type IRAction,
  type IRBackoffOverrides,
  type IRDomainPattern,
  type IRExpectation,
  type IRLimits,
  type IRMatcher,
  type IRRetryCurve,
  type IRRoute,
  type IRRule,
  type IRSettings,
  type IRTestStep,
  type IRWarmupPlan,
  type Loc,
} from './ir.ts';
import type { Def, Program } from './resolve.ts';

/** The curve used when no `retry` is set anywhere (documented in docs/language.md). */
export const BUILTIN_RETRY = 'petrel-builtin';

/** Settings every route starts from before `default` and more specific blocks apply. */
function builtinSettings(loc: Loc): IRSettings {
  return {
    connections: [{ max: 20, scope: 'destination/source', loc }],
    connectRate: [],
    messageRate: [],
    dataRate: [],
    messagesPerConnection: null,
    recipientsPerTransaction: 100,
    tls: 'opportunistic',
    retry: BUILTIN_RETRY,
    // Unset until `finalExpire`: no block said `expire`, so the retry curve's decides.
    expireSeconds: EXPIRE_UNSET,
  };
}

const EXPIRE_UNSET = -1;
/** Expiry when neither a destination block nor the retry curve sets one. */
export const BUILTIN_EXPIRE_SECONDS = 2 * 86400;

/** A route's expiry: its blocks' `expire`, else its retry curve's, else two days. */
function finalExpire(settings: IRSettings, curves: Record<string, IRRetryCurve>): IRSettings {
  if (settings.expireSeconds !== EXPIRE_UNSET) return settings;
  return { ...settings, expireSeconds: curves[settings.retry]?.expireSeconds ?? BUILTIN_EXPIRE_SECONDS };
}

function builtinCurve(loc: Loc): IRRetryCurve {
  return { name: BUILTIN_RETRY, loc, steps: [300, 900, 1800, 3600], repeat: 7200, exponential: null, jitter: 0.1, expireSeconds: null, attempts: null };
}

export function loc(span: Span): Loc {
  return { file: span.file, line: span.line, column: span.column };
}

/** The matcher as the IR (and `artifact-lib`'s `matcherMatches`) has it. */
export function toIRMatcher(m: ReplyMatcher): IRMatcher {
  return {
    codes: m.codes.map((c) => c.prefix),
    statuses: m.statuses.map((s) => [...s.parts]),
    texts: m.texts.map((t) => (t.kind === 'regex' ? { kind: 'regex', source: t.source, flags: t.flags } : { kind: 'substring', text: t.text })),
    phases: [...m.phases],
  };
}

/** Category a rule sets (`bounce` wins over `classify`), or null. */
export function ruleCategory(rule: ReplyRule): BounceCategory | null {
  const bounce = rule.actions.find((a) => a.kind === 'bounce');
  if (bounce && bounce.kind === 'bounce') return bounce.category.text as BounceCategory;
  const classify = rule.actions.findLast((a) => a.kind === 'classify');
  return classify && classify.kind === 'classify' ? (classify.category.text as BounceCategory) : null;
}

/**
 * Disposition a rule states or implies: `bounce` → hard; suspending or disabling a
 * source (or tenant) → block; backoff or suspending the destination → throttle;
 * `retry` → soft; otherwise null (the reply's code class decides).
 */
export function ruleDisposition(rule: ReplyRule): Disposition | null {
  if (rule.disposition) return rule.disposition.value;
  const kinds = (k: Action['kind']) => rule.actions.some((a) => a.kind === k);
  if (kinds('bounce')) return 'hard';
  if (kinds('disable-source') || rule.actions.some((a) => a.kind === 'suspend' && a.target !== 'destination')) return 'block';
  if (kinds('backoff') || kinds('suspend')) return 'throttle';
  if (kinds('retry')) return 'soft';
  return null;
}

/** Flattens a rule list, expanding `rules NAME` in place (each set once per list). */
export function expandRules(list: (ReplyRule | RuleSetRef)[], program: Program, seen = new Set<string>()): ReplyRule[] {
  const out: ReplyRule[] = [];
  for (const r of list) {
    if (r.kind === 'rule') out.push(r);
    else if (!seen.has(r.name.text)) {
      seen.add(r.name.text);
      const set = program.ruleSets.get(r.name.text);
      if (set) out.push(...expandRules(set.node.rules, program, seen));
    }
  }
  return out;
}

const DEST_SCOPE: Record<string, LimitScope> = { destination: 'destination', source: 'destination/source', tenant: 'destination/tenant', global: 'global' };

/** Lowers a resolved and validated program. `name` is the set's name. */
export function lower(program: Program, name: string): { ir: IR; diagnostics: Diagnostic[] } {
  const diagnostics: Diagnostic[] = [];
  const defaultLoc: Loc = program.default ? loc(program.default.node.span) : { file: '<builtin>', line: 1, column: 1 };
  const retryCurves: Record<string, IRRetryCurve> = { [BUILTIN_RETRY]: builtinCurve(defaultLoc) };
  for (const [curveName, def] of [...program.retryCurves].sort(([a], [b]) => a.localeCompare(b))) {
    retryCurves[curveName] = lowerCurve(curveName, def.node.body, loc(def.node.span));
  }

  const rules: IRRule[] = [];
  const ruleIndex = new Map<ReplyRule, number>();
  const ruleId = (rule: ReplyRule): number => {
    let id = ruleIndex.get(rule);
    if (id === undefined) {
      id = rules.length;
      ruleIndex.set(rule, id);
      rules.push(lowerRule(rule, id));
    }
    return id;
  };

  /** A route's rule ids in order; a rule met again later (a set included twice) could never fire there, so it is left out. */
  const ruleList = (list: ReplyRule[]): number[] => [...new Set(list.map(ruleId))];

  function curveKey(curve: Setting & { kind: 'retry' }): string {
    if ('text' in curve.curve) return curve.curve.text;
    const key = `inline@${curve.span.file}:${curve.span.line}:${curve.span.column}`;
    if (!retryCurves[key]) retryCurves[key] = lowerCurve(key, curve.curve, loc(curve.span));
    return key;
  }

  function lowerRule(rule: ReplyRule, id: number): IRRule {
    return {
      id,
      loc: loc(rule.headSpan),
      matcher: toIRMatcher(rule.matcher),
      trigger: rule.trigger ? { count: rule.trigger.count.value, withinSeconds: rule.trigger.within.seconds } : null,
      category: ruleCategory(rule),
      disposition: ruleDisposition(rule),
      actions: rule.actions.flatMap((a) => lowerAction(a)),
      examples: rule.examples.map((e) => ({ text: e.text, phase: e.phase ?? null, loc: loc(e.span) })),
    };
  }

  function lowerAction(a: Action): IRAction[] {
    switch (a.kind) {
      case 'backoff':
        return [{ type: 'backoff', durationSeconds: a.duration.seconds, overrides: lowerOverrides(a.overrides) }];
      case 'suspend':
        return [{ type: 'suspend', target: a.target, durationSeconds: a.duration.seconds }];
      case 'disable-source':
        return [{ type: 'disable-source' }];
      case 'bounce':
        return [{ type: 'bounce', category: a.category.text as BounceCategory }];
      case 'retry':
        return [{ type: 'retry', afterSeconds: a.after ? a.after.seconds : null, ...(a.attempts ? { attempts: a.attempts.value } : {}) }];
      case 'recover':
        return [{ type: 'recover', durationSeconds: a.duration.seconds }];
      case 'skip-mx':
        return [{ type: 'skip-mx' }];
      case 'reroute':
        return [{ type: 'reroute', pool: a.pool.text }];
      case 'classify':
        return [];
    }
  }

  function lowerOverrides(settings: Setting[]): IRBackoffOverrides {
    const o: IRBackoffOverrides = {};
    const limits = applyLimits(emptyLimits(), settings, (s) => DEST_SCOPE[s ?? 'destination']!);
    const plain = <T extends { loc: Loc }>(list: T[]) => list.map(({ loc: _loc, ...rest }) => rest);
    if (limits.connections.length) o.connections = plain(limits.connections);
    if (limits.connectRate.length) o.connectRate = plain(limits.connectRate);
    if (limits.messageRate.length) o.messageRate = plain(limits.messageRate);
    if (limits.dataRate.length) o.dataRate = plain(limits.dataRate);
    applyScalars(o, settings);
    return o;
  }

  /** The settings that are one value each (not limits), laid over `into`. */
  function applyScalars(into: Partial<Pick<IRSettings, 'messagesPerConnection' | 'recipientsPerTransaction' | 'tls' | 'retry' | 'expireSeconds'>>, settings: Setting[]): void {
    for (const s of settings) {
      if (s.kind === 'messages-per-connection') into.messagesPerConnection = s.value.value;
      if (s.kind === 'recipients-per-transaction') into.recipientsPerTransaction = s.value.value;
      if (s.kind === 'tls') into.tls = s.mode;
      if (s.kind === 'retry') into.retry = curveKey(s);
      if (s.kind === 'expire') into.expireSeconds = s.value.seconds;
    }
  }

  function applySettings(base: IRSettings, dest: Destination): IRSettings {
    const merged: IRSettings = { ...base, ...applyLimits(base, dest.settings, (s) => DEST_SCOPE[s ?? 'destination']!) };
    applyScalars(merged, dest.settings);
    return merged;
  }

  // Routes: default first, then providers and domain blocks in name order (stable output).
  const defaultDest = program.default?.node;
  const defaultSettings = defaultDest ? applySettings(builtinSettings(defaultLoc), defaultDest) : builtinSettings(defaultLoc);
  const defaultRules = defaultDest ? expandRules(defaultDest.rules, program) : [];
  const routes: IRRoute[] = [{ id: 'default', loc: defaultLoc, domains: [], mx: [], settings: finalExpire(defaultSettings, retryCurves), rules: ruleList(defaultRules) }];
  if (defaultDest) checkExpire(routes[0]!, defaultDest, defaultSettings, retryCurves, diagnostics);

  const providerRoutes = new Map<string, IRRoute>();
  /** Provider settings before `finalExpire`, for domain blocks to inherit from. */
  const providerBase = new Map<string, IRSettings>();
  for (const [providerName, def] of [...program.providers].sort(([a], [b]) => a.localeCompare(b))) {
    const dest = def.node;
    const own = expandRules(dest.rules, program);
    const route: IRRoute = {
      id: `provider:${providerName}`,
      loc: loc(dest.span),
      domains: dest.matches.filter((m) => m.on === 'domain').flatMap((m) => m.patterns.map(lowerPattern)),
      mx: dest.matches.filter((m) => m.on === 'mx').flatMap((m) => m.patterns.map(lowerPattern)),
      settings: applySettings(defaultSettings, dest),
      rules: ruleList([...own, ...defaultRules]),
    };
    providerRoutes.set(providerName, route);
    providerBase.set(route.id, route.settings);
    checkExpire(route, dest, route.settings, retryCurves, diagnostics);
    route.settings = finalExpire(route.settings, retryCurves);
    routes.push(route);
  }
  for (const [first, def] of [...program.domainBlocks].sort(([a], [b]) => a.localeCompare(b))) {
    const dest = def.node;
    // A domain block refines the provider that would otherwise route its (first) domain.
    const parent = providerFor(dest.domains[0]!.domain, [...providerRoutes.values()]);
    const base = parent ? providerBase.get(parent.id)! : defaultSettings;
    const parentRules = parent ? program.providers.get(parent.id.slice('provider:'.length))! : null;
    const inherited = [...(parentRules ? expandRules(parentRules.node.rules, program) : []), ...defaultRules];
    const merged = applySettings(base, dest);
    const route: IRRoute = {
      id: `domain:${first}`,
      loc: loc(dest.span),
      domains: dest.domains.map(lowerPattern),
      mx: [],
      settings: finalExpire(merged, retryCurves),
      rules: ruleList([...expandRules(dest.rules, program), ...inherited]),
    };
    checkExpire(route, dest, merged, retryCurves, diagnostics);
    routes.push(route);
  }


  const routeOf = (target: string, type: 'provider' | 'domain'): string => {
    if (type === 'provider') return `provider:${target}`;
    // The route `route()` would pick: the most specific pattern; a domain block wins a tie.
    let best = 'default';
    let bestScore = -1;
    for (const r of routes) {
      for (const p of r.domains) {
        const score = patternSpecificity(p, target);
        if (score > bestScore || (score === bestScore && score >= 0 && r.id.startsWith('domain:'))) {
          best = r.id;
          bestScore = score;
        }
      }
    }
    return best;
  };

  const warmups: IR['warmups'] = {};
  for (const [rampName, def] of [...program.warmups].sort(([a], [b]) => a.localeCompare(b))) {
    const ramp = def.node;
    const byRoute: Record<string, IRWarmupPlan> = {};
    for (const o of ramp.overrides) {
      const routeId = routeOf(o.target.text, o.targetType);
      if (routeId === 'default') {
        // Without this, the plan would silently apply to every domain no provider claims.
        diagnostics.push({ code: 'RES001', severity: 'error', message: `warmup \`for domain ${o.target.text}\`: no provider or domain block claims \`${o.target.text}\``, span: o.target.span, help: 'name a domain that a `provider` or `domain` block matches, or use `for provider NAME`' });
        continue;
      }
      if (o.plan) byRoute[routeId] = lowerPlan(o.plan);
    }
    warmups[rampName] = { name: rampName, loc: loc(ramp.span), plan: ramp.plan ? lowerPlan(ramp.plan) : null, routes: sortKeys(byRoute), overflowPool: ramp.overflow?.text ?? null };
  }

  const sources: IR['sources'] = {};
  for (const [sourceName, def] of [...program.sources].sort(([a], [b]) => a.localeCompare(b))) {
    const s = def.node;
    sources[sourceName] = {
      name: sourceName,
      loc: loc(s.span),
      address: s.address?.text ?? null,
      ehlo: s.ehlo?.text ?? null,
      warmup: s.warmup ? { ramp: s.warmup.ramp.text, since: s.warmup.since.text } : null,
      limits: applyLimits(emptyLimits(), s.settings, () => 'source'),
    };
  }
  const pools: IR['pools'] = {};
  for (const [poolName, def] of [...program.pools].sort(([a], [b]) => a.localeCompare(b))) {
    pools[poolName] = { name: poolName, loc: loc(def.node.span), sources: def.node.sources.map((s) => s.text) };
  }
  const tenants: IR['tenants'] = {};
  for (const [tenantName, def] of [...program.tenants].sort(([a], [b]) => a.localeCompare(b))) {
    tenants[tenantName] = { name: tenantName, loc: loc(def.node.span), pool: def.node.pool?.text ?? null, limits: applyLimits(emptyLimits(), def.node.settings, () => 'tenant') };
  }

  const ir: IR = {
    irVersion: IR_VERSION,
    name,
    version: setVersion(program),
    files: [],
    routes,
    rules,
    retryCurves: sortKeys(retryCurves),
    warmups,
    sources,
    pools,
    tenants,
    global: program.global ? applyLimits(emptyLimits(), program.global.node.settings, () => 'global') : emptyLimits(),
    tests: program.tests.map(lowerTest),
  };
  return { ir, diagnostics };
}

/** The provider route whose `match domain` patterns route `domain` most specifically, if any. */
function providerFor(domain: string, providers: IRRoute[]): IRRoute | undefined {
  let best: IRRoute | undefined;
  let bestScore = -1;
  for (const p of providers) {
    for (const pattern of p.domains) {
      const score = patternSpecificity(pattern, domain);
      if (score > bestScore) {
        best = p;
        bestScore = score;
      }
    }
  }
  return best;
}

function lowerPattern(p: DomainPattern): IRDomainPattern {
  return { kind: p.kind, domain: p.domain, loc: loc(p.span) };
}

function emptyLimits(): IRLimits {
  return { connections: [], connectRate: [], messageRate: [], dataRate: [] };
}

/** Limits of `settings` laid over `base`: a stated limit replaces the inherited one of the same scope. */
function applyLimits(base: IRLimits, settings: Setting[], scopeOf: (written: string | undefined) => LimitScope): IRLimits {
  const out: IRLimits = { connections: [...base.connections], connectRate: [...base.connectRate], messageRate: [...base.messageRate], dataRate: [...base.dataRate] };
  for (const s of settings) {
    if (s.kind === 'connections') {
      const scope = scopeOf(s.scope);
      out.connections = [...out.connections.filter((c) => c.scope !== scope), { max: s.value.value, scope, loc: loc(s.span) }];
    } else if (s.kind === 'connect-rate' || s.kind === 'rate' || s.kind === 'data-rate') {
      const key = s.kind === 'connect-rate' ? 'connectRate' : s.kind === 'rate' ? 'messageRate' : 'dataRate';
      const scope = scopeOf(s.scope);
      out[key] = [...out[key].filter((r) => r.scope !== scope), { count: s.value.count, perSeconds: s.value.perSeconds, scope, loc: loc(s.span) }];
    }
  }
  return out;
}

function lowerCurve(name: string, body: RetryCurveBody, at: Loc): IRRetryCurve {
  return {
    name,
    loc: at,
    steps: body.steps.map((d) => d.seconds),
    repeat: body.repeat ? body.repeat.seconds : null,
    exponential: body.exponential ? { initialSeconds: body.exponential.initial.seconds, factor: body.exponential.factor.value, capSeconds: body.exponential.cap ? body.exponential.cap.seconds : null } : null,
    jitter: body.jitter ? body.jitter.value : 0,
    expireSeconds: body.expire ? body.expire.seconds : null,
    attempts: body.attempts ? body.attempts.value : null,
  };
}

function perDay(rate: { count: number; perSeconds: number }): number {
  return Math.floor((rate.count * 86400) / rate.perSeconds);
}

function lowerPlan(plan: WarmupPlan): IRWarmupPlan {
  if (plan.kind === 'schedule') return { kind: 'schedule', perDay: plan.steps.map(perDay) };
  return { kind: 'growth', startPerDay: perDay(plan.start), factor: plan.factor.value, capPerDay: plan.cap ? perDay(plan.cap) : null };
}

/** The highest version among the input files' headers (not files only pulled in by `use`), comparing numeric parts. */
function setVersion(program: Program): string {
  const versions = program.files.flatMap((f) => (f.input && f.ast.header ? [f.ast.header.version.text] : []));
  return versions.reduce((best, v) => (compareVersions(v, best) > 0 ? v : best), '0');
}

export function compareVersions(a: string, b: string): number {
  const pa = a.split(/[.-]/);
  const pb = b.split(/[.-]/);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const x = pa[i] ?? '';
    const y = pb[i] ?? '';
    const nx = Number(x);
    const ny = Number(y);
    const c = Number.isFinite(nx) && Number.isFinite(ny) && x !== '' && y !== '' ? nx - ny : x.localeCompare(y);
    if (c !== 0) return c;
  }
  return 0;
}

function sortKeys<T>(record: Record<string, T>): Record<string, T> {
  return Object.fromEntries(Object.entries(record).sort(([a], [b]) => a.localeCompare(b)));
}

function lowerTest(def: Def<import('../grammar/index.ts').TestBlock>): import('./ir.ts').IRTest {
  return { name: def.node.name.text, loc: loc(def.node.span), steps: def.node.steps.map(lowerStep) };
}

function lowerStep(step: TestStep): IRTestStep {
  const at = loc(step.span);
  switch (step.kind) {
    case 'deliver':
      return { kind: 'deliver', to: step.to.text, mx: step.mx.map((m) => m.text), source: step.source?.text ?? null, tenant: step.tenant?.text ?? null, loc: at };
    case 'reply':
      return { kind: 'reply', text: step.text, times: step.times, phase: step.phase ?? null, loc: at };
    case 'wait':
      return { kind: 'wait', seconds: step.duration.seconds, loc: at };
    case 'expect': {
      const e = step.expectation;
      let x: IRExpectation;
      switch (e.what) {
        case 'route':
          x = { what: 'route', route: e.route.text };
          break;
        case 'category':
        case 'bounce':
          x = { what: e.what, category: e.category.text };
          break;
        case 'disposition':
          x = { what: 'disposition', disposition: e.disposition };
          break;
        case 'backoff':
          x = { what: 'backoff', seconds: e.duration ? e.duration.seconds : null, none: e.none };
          break;
        case 'suspend':
          x = { what: 'suspend', target: e.target ?? null, seconds: e.duration ? e.duration.seconds : null, none: e.none };
          break;
        case 'disable-source':
        case 'skip-mx':
          x = { what: e.what, none: e.none };
          break;
        case 'reroute':
          x = { what: 'reroute', pool: e.pool.text };
          break;
        case 'retry':
          x = { what: 'retry', seconds: e.delay ? e.delay.seconds : null, never: e.never };
          break;
        case 'warmup':
          x = { what: 'warmup', ramp: e.ramp.text, day: e.day, limit: e.limit };
          break;
        case 'setting':
          x = { what: 'setting', key: e.setting.kind, value: settingValue(e.setting) };
          break;
      }
      return { kind: 'expect', expectation: x, loc: at };
    }
  }
}

function settingValue(s: Setting): unknown {
  switch (s.kind) {
    case 'connections':
      return { max: s.value.value, scope: DEST_SCOPE[s.scope ?? 'destination'] };
    case 'connect-rate':
    case 'rate':
    case 'data-rate':
      return { count: s.value.count, perSeconds: s.value.perSeconds, scope: DEST_SCOPE[s.scope ?? 'destination'] };
    case 'messages-per-connection':
    case 'recipients-per-transaction':
      return s.value.value;
    case 'tls':
      return s.mode;
    case 'retry':
      return 'text' in s.curve ? s.curve.text : null;
    case 'expire':
      return s.value.seconds;
  }
}

/**
 * VAL002: messages that expire before their first retry. Reported once, on the block
 * whose own `expire` or `retry` causes it (routes that merely inherit both are skipped),
 * and only for an expiry a block states: a curve's own `expire` is checked with the curve.
 */
function checkExpire(route: IRRoute, dest: Destination, merged: IRSettings, curves: Record<string, IRRetryCurve>, diagnostics: Diagnostic[]): void {
  if (merged.expireSeconds === EXPIRE_UNSET) return;
  const own = dest.settings.find((x) => x.kind === 'expire') ?? dest.settings.find((x) => x.kind === 'retry');
  if (!own) return;
  const curve = curves[merged.retry];
  const first = curve ? (curve.steps[0] ?? curve.repeat ?? curve.exponential?.initialSeconds ?? null) : null;
  if (first === null || merged.expireSeconds > first) return;
  diagnostics.push({
    code: 'VAL002',
    severity: 'error',
    message: `\`${route.id}\` expires messages after ${merged.expireSeconds}s, before the first retry of \`${merged.retry}\` at ${first}s`,
    span: own.span,
    help: 'raise `expire` or shorten the first retry delay',
  });
}
