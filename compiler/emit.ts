/**
 * Emission: IR + plan → the source of an ES module that default-exports the artifact
 * (ABI version 1, see `runtime/abi.ts`), and bundling it with esbuild so it carries the
 * helpers it calls and nothing else. The same IR always gives the same bytes: no
 * timestamps, no absolute paths, data in stable order.
 */
import path from 'node:path';
import { ABI_VERSION, type ArtifactMeta } from '../runtime/abi.ts';
import { normalizeDomain } from './artifact-lib.ts';
import type { IR, IRMatcher, IRRule, IRSettings, Loc } from './ir.ts';
import { SourceMapBuilder } from './source-map.ts';
import { requiredLiterals } from './literals.ts';
import { CODE_CLASSES, type EmitPlan } from './optimize.ts';

const json = (value: unknown) => JSON.stringify(value);
/**
 * Data as a JavaScript expression. Large values are embedded as a JSON string for
 * `JSON.parse`, which V8 reads several times faster than the same object literal: that
 * is most of an artifact's load time when it routes thousands of domains.
 */
const data = (value: unknown) => {
  const text = JSON.stringify(value);
  return text.length > 4096 ? `JSON.parse(${JSON.stringify(text)})` : text;
};

/** The module source, before bundling. `libImport` is how it imports `artifact-lib`. */
export function emit(ir: IR, plan: EmitPlan, meta: ArtifactMeta, libImport = './artifact-lib.ts'): { code: string; map: SourceMapBuilder } {
  const out: string[] = [];
  /** Index in `out` → the `.policy` location that the text there was generated from. */
  const origins = new Map<number, Loc>();
  const pushFrom = (loc: Loc, lines: string[]) => {
    for (const line of lines) {
      origins.set(out.length, loc);
      out.push(line);
    }
  };
  out.push(`// Petrel policy artifact ${meta.name} ${meta.version} (${meta.hash}), ABI ${ABI_VERSION}. Generated: do not edit.`);
  out.push(`import { composeSettings, curveDelay, fallbackReaction, normalizeDomain, parseReplyInto, planLimit, retryDelayFor, ruleReaction } from ${json(libImport)};`);
  out.push('');
  out.push(`const META = Object.freeze(${json(meta)});`);
  out.push('');

  // Routing tables. Providers first, then domain blocks, so a domain block's entry
  // overwrites a provider's for the same key (domain blocks are more specific).
  const exact = new Map<string, string>();
  const suffix = new Map<string, string>();
  const mxExact = new Map<string, string>();
  const mxSuffix = new Map<string, string>();
  const ordered = [...ir.routes.filter((r) => r.id.startsWith('provider:')), ...ir.routes.filter((r) => r.id.startsWith('domain:'))];
  for (const r of ordered) {
    for (const p of r.domains) {
      if (p.kind !== 'subdomains') exact.set(normalizeDomain(p.domain), r.id);
      if (p.kind !== 'exact') suffix.set(normalizeDomain(p.domain), r.id);
    }
    for (const p of r.mx) {
      if (p.kind !== 'subdomains') mxExact.set(normalizeDomain(p.domain), r.id);
      if (p.kind !== 'exact') mxSuffix.set(normalizeDomain(p.domain), r.id);
    }
  }
  // Grouped by route (`[routeIndex, name, name, …]`): route ids are not repeated per name.
  const routeIndex = new Map(ir.routes.map((r, i) => [r.id, i]));
  const table = (m: Map<string, string>) => {
    const groups = new Map<number, string[]>();
    for (const [name, id] of [...m].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
      const i = routeIndex.get(id)!;
      groups.set(i, [...(groups.get(i) ?? []), name]);
    }
    return `routeTable(${data([...groups].sort(([a], [b]) => a - b).map(([i, names]) => [i, ...names]))})`;
  };
  out.push('// Routing: exact domains, then the longest matching parent domain; MX rollup likewise per MX host.');
  out.push(`const ROUTE_IDS = ${data(ir.routes.map((r) => r.id))};`);
  out.push(`const ROUTE_INDEX = new Map(ROUTE_IDS.map((id, i) => [id, i]));`);
  out.push(`function routeTable(groups) {
  const map = new Map();
  for (const [i, ...names] of groups) for (const name of names) map.set(name, ROUTE_IDS[i]);
  return map;
}`);
  out.push(`const EXACT = ${table(exact)};`);
  out.push(`const SUFFIX = ${table(suffix)};`);
  out.push(`const MX_EXACT = ${table(mxExact)};`);
  out.push(`const MX_SUFFIX = ${table(mxSuffix)};`);
  out.push(`
function lookup(exact, suffix, name) {
  const hit = exact.get(name);
  if (hit !== undefined) return hit;
  for (let i = name.indexOf('.'); i !== -1; i = name.indexOf('.', i + 1)) {
    const parent = suffix.get(name.slice(i + 1));
    if (parent !== undefined) return parent;
  }
  return undefined;
}

// Lookups are cached by the name as given (bounded: cleared when full). Recipient and MX
// domains repeat heavily in real traffic; the cache never changes an answer.
const CACHE_LIMIT = 65536;
const domainCache = new Map();
const hostCache = new Map();
const NONE = '';

function cached(cache, exact, suffix, name) {
  let hit = cache.get(name);
  if (hit === undefined) {
    hit = lookup(exact, suffix, normalizeDomain(name)) ?? NONE;
    if (cache.size >= CACHE_LIMIT) cache.clear();
    cache.set(name, hit);
  }
  return hit;
}

function route(domain, mxHosts) {
  const byDomain = cached(domainCache, EXACT, SUFFIX, domain);
  if (byDomain !== NONE) return byDomain;
  if (mxHosts && mxHosts.length > 0) {
    let chosen;
    for (let i = 0; i < mxHosts.length; i++) {
      const id = cached(hostCache, MX_EXACT, MX_SUFFIX, mxHosts[i]);
      // MX rollup needs every MX host to belong to the same provider.
      if (id === NONE || (chosen !== undefined && id !== chosen)) return 'default';
      chosen = id;
    }
    return chosen;
  }
  return 'default';
}
`);

  // Settings and the tables composeSettings needs.
  // Settings without source locations: `settings()` never returns them.
  out.push(`const BASE = ${data(ir.routes.map((r) => withoutLocs(r.settings)))};`);
  out.push(`const TABLES = ${data({ global: ir.global, sources: ir.sources, tenants: ir.tenants, warmups: Object.fromEntries(Object.entries(ir.warmups).map(([k, w]) => [k, { overflowPool: w.overflowPool }])), retryCurves: Object.fromEntries(Object.entries(ir.retryCurves).map(([k, c]) => [k, { jitter: c.jitter }])) })};`);
  out.push(`const CURVES = ${data(ir.retryCurves)};`);
  out.push(`const WARMUPS = ${data(Object.fromEntries(Object.entries(ir.warmups).map(([k, w]) => [k, { plan: w.plan, routes: w.routes }])))};`);
  out.push(`
const settingsCache = new Map();
function settings(routeId, source, tenant) {
  const i = ROUTE_INDEX.get(routeId) ?? 0;
  const key = i + '\\u0000' + (source ?? '') + '\\u0000' + (tenant ?? '');
  let hit = settingsCache.get(key);
  if (hit === undefined) {
    hit = deepFreeze(composeSettings(ROUTE_IDS[i], BASE[i], TABLES, source, tenant));
    // Bounded: callers may pass arbitrary source and tenant names.
    if (settingsCache.size < 10000) settingsCache.set(key, hit);
  }
  return hit;
}

function deepFreeze(value) {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
`);

  // Rules: one test function per rule, one chain per distinct rule list.
  const usedRules = [...new Set(plan.chains.flatMap((c) => c.rules))].sort((a, b) => a - b);
  const used = new Set(usedRules);
  out.push('// Reply rules. RULES holds each rule as data for reactions the compiler could not fix in advance.');
  // Only rules whose reaction depends on the reply need their data at run time.
  out.push(`const RULES = ${data(ir.rules.map((r) => (used.has(r.id) && (r.category === null || r.disposition === null) ? ruleData(r) : null)))};`);
  for (const id of usedRules) pushFrom(ir.rules[id]!.loc, emitRule(ir.rules[id]!));
  plan.chains.forEach((chain, index) => {
    // A chain maps to the first route that uses it.
    const route = ir.routes[plan.chainOfRoute.indexOf(index)]!;
    pushFrom(route.loc, emitChain(index, chain));
  });
  out.push(`const CHAINS = [${plan.chains.map((_, i) => `chain${i}`).join(', ')}];`);
  out.push(`const CHAIN_OF_ROUTE = ${data(plan.chainOfRoute)};`);
  out.push(`
// One parsed reply, reused: react() never runs concurrently with itself (JavaScript is
// single-threaded per isolate) and no reaction keeps a reference to it.
const P = { code: 0, status: null, text: '', lower: undefined };
const STATUS = [0, 0, 0];
function lower(p) {
  return p.lower === undefined ? (p.lower = p.text.toLowerCase()) : p.lower;
}

// Reactions that depend on the reply (a rule without a category or disposition, or no
// rule at all) are shared frozen objects too, one per rule and outcome.
const outcomes = new Map();
const OUTCOME_INDEX = { success: 1, 'bad-mailbox': 2, 'bad-domain': 3, 'bad-connection': 4, 'content-related': 5, 'inactive-mailbox': 6, 'invalid-sender': 7, 'message-expired': 8, 'no-answer-from-host': 9, 'policy-related': 10, 'protocol-errors': 11, 'quota-issues': 12, 'relaying-issues': 13, 'routing-errors': 14, 'spam-related': 15, 'virus-related': 16, other: 17, hard: 1, soft: 2, throttle: 3, block: 4 };
function shared(id, r) {
  // Numeric key: rule (or -1 for no rule) × category × disposition.
  const key = ((id + 1) * 32 + OUTCOME_INDEX[r.category]) * 8 + (r.disposition === null ? 0 : OUTCOME_INDEX[r.disposition]);
  let hit = outcomes.get(key);
  if (hit === undefined) {
    hit = deepFreeze(r);
    outcomes.set(key, hit);
  }
  return hit;
}
function fallback(p) {
  return shared(-1, fallbackReaction(p));
}
function ruleOutcome(id, p) {
  return shared(id, ruleReaction(RULES[id], p));
}

function react(routeId, reply, phase) {
  parseReplyInto(P, STATUS, reply);
  P.lower = undefined;
  return CHAINS[CHAIN_OF_ROUTE[ROUTE_INDEX.get(routeId) ?? 0]](P, phase);
}

// Retry delays without a reply for the first attempts, computed per route on first use
// (not at load: a set with thousands of routes would pay for all of them up front).
const RETRY_TABLE = new Array(BASE.length);
function retryTable(i) {
  const b = BASE[i];
  const curve = CURVES[b.retry];
  return (RETRY_TABLE[i] = curve === undefined ? [] : Array.from({ length: 64 }, (_, n) => (n === 0 ? null : curveDelay(curve, n, b.expireSeconds))));
}

function retryDelay(routeId, attempt, reply, curve) {
  const i = ROUTE_INDEX.get(routeId) ?? 0;
  if (reply === undefined && curve === undefined && attempt >= 1 && attempt < 64 && Number.isInteger(attempt)) return (RETRY_TABLE[i] ?? retryTable(i))[attempt] ?? null;
  const reaction = reply === undefined ? undefined : react(ROUTE_IDS[i], reply);
  return retryDelayFor(reaction, CURVES[curve ?? BASE[i].retry], attempt, BASE[i].expireSeconds);
}

function warmupLimit(ramp, routeId, ageDays) {
  const w = WARMUPS[ramp];
  if (w === undefined) return Infinity;
  const plan = w.routes[ROUTE_IDS[ROUTE_INDEX.get(routeId) ?? 0]] ?? w.plan;
  return plan === null ? Infinity : planLimit(plan, ageDays);
}

export default Object.freeze({ meta: META, route, settings, react, retryDelay, warmupLimit });
`);
  const map = new SourceMapBuilder();
  let line = 0;
  out.forEach((text, i) => {
    const origin = origins.get(i);
    const count = text.split('\n').length;
    if (origin) for (let k = 0; k < count; k++) map.map(line + k, origin.file, origin.line);
    line += count;
  });
  return { code: out.join('\n'), map };
}

function withoutLocs(settings: IRSettings): unknown {
  const strip = <T extends { loc: unknown }>(list: T[]) => list.map(({ loc: _loc, ...rest }) => rest);
  return { ...settings, connections: strip(settings.connections), connectRate: strip(settings.connectRate), messageRate: strip(settings.messageRate), dataRate: strip(settings.dataRate) };
}

function ruleData(rule: IRRule): Pick<IRRule, 'id' | 'loc' | 'category' | 'disposition' | 'actions' | 'trigger'> {
  return { id: rule.id, loc: rule.loc, category: rule.category, disposition: rule.disposition, actions: rule.actions, trigger: rule.trigger };
}

/** `testN(p, phase)` and `reactN(p)` for one rule: cheapest conditions first, literals before regexes. */
function emitRule(rule: IRRule): string[] {
  const lines: string[] = [];
  const regexNames: string[] = [];
  rule.matcher.texts.forEach((t, i) => {
    if (t.kind === 'regex') {
      const name = `RE${rule.id}_${i}`;
      regexNames.push(name);
      lines.push(`const ${name} = new RegExp(${json(t.source)}, ${json(t.flags)});`);
    }
  });
  lines.push(`// ${rule.loc.file}:${rule.loc.line}`);
  lines.push(`function test${rule.id}(p, phase) {`);
  lines.push(`  return ${conditions(rule.matcher, regexNames).join('\n    && ') || 'true'};`);
  lines.push('}');
  if (rule.category !== null && rule.disposition !== null) {
    // Fixed category and disposition: one shared frozen reaction, no allocation per reply.
    const fixed = { category: rule.category, disposition: rule.disposition, actions: rule.actions, rule: { file: rule.loc.file, line: rule.loc.line }, ...(rule.trigger ? { trigger: { ...rule.trigger, id: rule.id } } : {}) };
    lines.push(`const REACTION${rule.id} = deepFreeze(${json(fixed)});`);
    lines.push(`function react${rule.id}() { return REACTION${rule.id}; }`);
  } else {
    lines.push(`function react${rule.id}(p) { return ruleOutcome(${rule.id}, p); }`);
  }
  return lines;
}

/** A code prefix (`421`, `45`, `4`) as a numeric range test. */
function codeCondition(prefix: string): string {
  if (prefix.length === 3) return `p.code === ${Number(prefix)}`;
  const span = prefix.length === 2 ? 10 : 100;
  const low = Number(prefix.padEnd(3, '0'));
  return `(p.code >= ${low} && p.code < ${low + span})`;
}

function conditions(m: IRMatcher, regexNames: string[]): string[] {
  const c: string[] = [];
  if (m.codes.length) c.push(`(${m.codes.map(codeCondition).join(' || ')})`);
  if (m.statuses.length) {
    const alts = m.statuses.map(([cls, subject, detail]) => {
      const parts = [`p.status[0] === ${cls}`];
      if (subject !== null) parts.push(`p.status[1] === ${subject}`);
      if (detail !== null) parts.push(`p.status[2] === ${detail}`);
      return parts.join(' && ');
    });
    c.push(`p.status !== null && (${alts.map((a) => `(${a})`).join(' || ')})`);
  }
  if (m.phases.length) c.push(`(phase === undefined || ${m.phases.map((p) => `phase === ${json(p)}`).join(' || ')})`);
  if (m.texts.length) {
    let r = 0;
    const alts = m.texts.map((t) => {
      if (t.kind === 'substring') return `lower(p).includes(${json(t.text.toLowerCase())})`;
      const name = regexNames[r++]!;
      const required = requiredLiterals(t.source, t.flags);
      // A prefilter pays only when it is a few long literals; short or many, the regex is cheaper.
      if (!required || required.literals.length > 3 || required.literals.some((l) => l.length < 5)) return `${name}.test(p.text)`;
      const hay = required.lowercase ? 'lower(p)' : 'p.text';
      // Every match contains one of these literals: test them before the regex runs.
      return `((${required.literals.map((l) => `${hay}.includes(${json(l)})`).join(' || ')}) && ${name}.test(p.text))`;
    });
    c.push(`(${alts.join(' || ')})`);
  }
  return c;
}

function emitChain(index: number, chain: EmitPlan['chains'][number]): string[] {
  const lines = [`function chain${index}(p, phase) {`, '  switch (p.code === 0 ? 0 : (p.code / 100) | 0) {'];
  for (const cls of CODE_CLASSES) {
    const rules = chain.byClass[cls] ?? [];
    if (rules.length === 0) continue;
    lines.push(`    case ${cls}:`);
    for (const r of rules) lines.push(`      if (test${r}(p, phase)) return react${r}(p);`);
    lines.push('      break;');
  }
  lines.push('  }', '  return fallback(p);', '}');
  return lines;
}

/**
 * Bundles the emitted source with its helpers into one self-contained ES module named
 * `moduleFile`, and a source map beside it (`moduleFile.map`) that leads rule code back
 * to its `.policy` lines and helper code back to `compiler/artifact-lib.ts`.
 */
export async function bundle(emitted: { code: string; map: SourceMapBuilder }, sources: ReadonlyMap<string, string>, packageRoot: string, moduleFile: string): Promise<{ module: string; sourceMap: string }> {
  const inputMap = Buffer.from(JSON.stringify(emitted.map.toJSON(sources))).toString('base64');
  // Loaded here, not at start: `petrel check` and `fmt` never bundle.
  const { build } = await import('esbuild');
  const result = await build({
    stdin: { contents: `${emitted.code}\n//# sourceMappingURL=data:application/json;base64,${inputMap}\n`, resolveDir: path.join(packageRoot, 'compiler'), sourcefile: 'policy-artifact.js', loader: 'js' },
    absWorkingDir: packageRoot,
    outfile: path.join(packageRoot, moduleFile),
    bundle: true,
    format: 'esm',
    platform: 'neutral',
    target: 'node20',
    write: false,
    sourcemap: 'linked',
    legalComments: 'none',
    logLevel: 'silent',
  });
  const module = result.outputFiles.find((f) => f.path.endsWith('.mjs'))!.text;
  const sourceMap = result.outputFiles.find((f) => f.path.endsWith('.map'))!.text;
  return { module, sourceMap };
}
