/**
 * Emission: IR + plan → the source of an ES module that default-exports the artifact
 * (ABI version 1, see `runtime/abi.ts`), and bundling it with esbuild so it carries the
 * helpers it calls and nothing else. The same IR always gives the same bytes: no
 * timestamps, no absolute paths, data in stable order.
 */
import path from 'node:path';
import { ABI_VERSION, BOUNCE_CATEGORIES, DISPOSITIONS, PHASES, type ArtifactMeta } from '../vocabulary/index.ts';
import { normalizeDomain, TEXT_CATEGORIES } from './artifact-lib.ts';
import type { IR, IRRule, IRSettings, Loc } from './ir.ts';
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
  out.push(`import { composeSettings, curveDelay, fallbackReaction, literalScanner, normalizeDomain, parseReplyInto, planLimit, retryDelayFor, ruleReaction, TEXT_CATEGORIES } from ${json(libImport)};`);
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
  for (const group of groups) {
    const id = ROUTE_IDS[group[0]];
    for (let k = 1; k < group.length; k++) map.set(group[k], id);
  }
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

function remember(cache, name, value) {
  if (cache.size >= CACHE_LIMIT) cache.clear();
  cache.set(name, value);
}

function cached(cache, exact, suffix, name) {
  let hit = cache.get(name);
  if (hit === undefined) {
    hit = lookup(exact, suffix, normalizeDomain(name)) ?? NONE;
    remember(cache, name, hit);
  }
  return hit;
}

// MX rollup needs every MX host to belong to the same provider.
function rollup(mxHosts) {
  let chosen;
  for (let i = 0; i < mxHosts.length; i++) {
    const id = cached(hostCache, MX_EXACT, MX_SUFFIX, mxHosts[i]);
    if (id === NONE || (chosen !== undefined && id !== chosen)) return 'default';
    chosen = id;
  }
  return chosen;
}

function sameHosts(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

// A domain's cache entry is its route id, NONE when its name routes nowhere, or, once it
// was rolled up by MX, { hosts, id }: the MX set (a copy) and the route it gave.
function route(domain, mxHosts) {
  let hit = domainCache.get(domain);
  if (hit === undefined) {
    hit = lookup(EXACT, SUFFIX, normalizeDomain(domain)) ?? NONE;
    remember(domainCache, domain, hit);
  }
  if (typeof hit === 'string' && hit !== NONE) return hit;
  if (!mxHosts || mxHosts.length === 0) return 'default';
  if (typeof hit !== 'string' && sameHosts(hit.hosts, mxHosts)) return hit.id;
  const id = rollup(mxHosts);
  remember(domainCache, domain, { hosts: Array.from(mxHosts), id });
  return id;
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

  // Rules as data, one line each (mapped to its `.policy` line), and one small matcher
  // loop shared by every chain: V8 parses and optimises one function, not one per rule.
  const usedRules = [...new Set(plan.chains.flatMap((c) => c.rules))].sort((a, b) => a - b);
  const literals = new LiteralGroups();
  const fallbackGroups = TEXT_CATEGORIES.map(([re]) => literals.ofRegex(re.source, re.flags));
  const rows = new Map(usedRules.map((id) => [id, ruleRow(ir.rules[id]!, literals)]));
  out.push('// Literals every match of a rule text (or fallback pattern) contains, by group: one scan of a reply finds them all.');
  out.push(`const LITERALS = ${data(literals.list)};`);
  out.push(`const FALLBACK_GROUPS = ${json(fallbackGroups)};`);
  out.push(SCAN_CODE.replace('GROUP_COUNT', String(literals.count)));
  out.push('// Reply rules by id: [id, code ranges [low, high, …], enhanced statuses [class, subject, detail, …] (-1: any),');
  out.push('// phase mask, texts ([group, regex source, flags, regex slot] or [group, lowercase substring]; group -1: no');
  out.push('// literal), fixed reaction or null, and for null the rule\'s data]. One rule a line, mapped to its .policy line,');
  out.push('// as JSON text parsed on the rule\'s first use (a set of thousands of rules loads without reading them);');
  out.push('// null: a rule no route uses.');
  out.push('const RULE_TEXT = [');
  ir.rules.forEach((rule, id) => {
    const row = rows.get(id);
    if (row) pushFrom(rule.loc, [`  ${json(row.text)},`]);
    else out.push('  null,');
  });
  out.push('];');
  out.push('const RULE_ROWS = new Array(RULE_TEXT.length);');
  out.push('function ruleRow(id) {\n  const row = JSON.parse(RULE_TEXT[id]);\n  if (row[5] !== null) deepFreeze(row[5]);\n  return (RULE_ROWS[id] = row);\n}');
  out.push(MATCH_CODE);
  out.push('// For each distinct rule list: the rules to try for each reply code class (index 0: no code), with their gates.');
  out.push(`const CHAINS = ${data(plan.chains.map((c) => [0, 1, 2, 3, 4, 5].map((cls) => (c.byClass[cls] ?? []).flatMap((id) => [id, rows.get(id)!.gate]))))};`);
  out.push(`const CHAIN_OF_ROUTE = ${data(plan.chainOfRoute)};`);
  out.push(`
// One parsed reply, reused: react() never runs concurrently with itself (JavaScript is
// single-threaded per isolate) and no reaction keeps a reference to it.
const P = { code: 0, status: null, text: '', scanned: false, lower: undefined };
const STATUS = [0, 0, 0];
function lower(p) {
  return p.lower === undefined ? (p.lower = p.text.toLowerCase()) : p.lower;
}

// Reactions that depend on the reply (a rule without a category or disposition, or no
// rule at all) are shared frozen objects too, one per rule and outcome.
const outcomes = new Map();
const OUTCOME_INDEX = ${objectLiteral(OUTCOME_INDEX)};
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
  return shared(-1, fallbackReaction(p, categoryByScan));
}
function ruleOutcome(id, p) {
  return shared(id, ruleReaction(RULE_ROWS[id][6], p, categoryByScan));
}

function react(routeId, reply, phase) {
  parseReplyInto(P, STATUS, reply);
  P.scanned = false;
  P.lower = undefined;
  const chain = CHAIN_OF_ROUTE[ROUTE_INDEX.get(routeId) ?? 0];
  const cls = P.code === 0 ? 0 : (P.code / 100) | 0;
  const rule = firstMatch(CHAINS[chain][cls], P, phase === undefined ? -1 : (PHASE_BITS.get(phase) ?? 0));
  if (rule === null) return fallback(P);
  return rule[5] !== null ? rule[5] : ruleOutcome(rule[0], P);
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

/**
 * Literal groups: each text matcher with required literals gets a group number; the
 * emitted scanner marks the groups a reply contains.
 */
class LiteralGroups {
  readonly list: [string, number][] = [];
  count = 0;
  /** Regexes numbered so far (each has a slot in the module's REGEX cache). */
  regexSlots = 0;
  /** The group of a regex's required literals, or -1 when it has none. */
  ofRegex(source: string, flags: string): number {
    const required = requiredLiterals(source, flags);
    return required ? this.add(required.literals.map((l) => l.toLowerCase())) : -1;
  }
  add(texts: string[]): number {
    const group = this.count++;
    for (const text of new Set(texts)) this.list.push([text, group]);
    return group;
  }
}

/** Each phase's bit in a rule row's phase mask, in `PHASES` order: connect 1, ehlo 2, mail 4, … */
const PHASE_BIT: Record<string, number> = Object.fromEntries(PHASES.map((phase, i) => [phase, 1 << i]));

/**
 * `success` and the bounce categories numbered from 1, and the dispositions from 1: the
 * module's key for a shared reaction is `((rule + 1) * 32 + category) * 8 + disposition`.
 */
const OUTCOME_INDEX: Record<string, number> = Object.fromEntries([...['success', ...BOUNCE_CATEGORIES].map((c, i) => [c, i + 1]), ...DISPOSITIONS.map((d, i) => [d, i + 1])]);
// INVARIANT: the key's fields do not overlap: categories below 32, dispositions below 8.
if (BOUNCE_CATEGORIES.length + 1 >= 32 || DISPOSITIONS.length >= 8) throw new Error('OUTCOME_INDEX: too many bounce categories or dispositions for the shared-reaction key');

/** A JavaScript object literal of numbers: `{ success: 1, 'bad-mailbox': 2 }`. */
function objectLiteral(record: Record<string, number>): string {
  return `{ ${Object.entries(record).map(([key, value]) => `${/^[A-Za-z_$][\w$]*$/.test(key) ? key : `'${key}'`}: ${value}`).join(', ')} }`;
}

/** A JavaScript array of `[key, number]` pairs, for `new Map(…)`. */
function entriesLiteral(record: Record<string, number>): string {
  return `[${Object.entries(record).map(([key, value]) => `['${key}', ${value}]`).join(', ')}]`;
}

/** The scanner, built on first use (not at load: a set that rarely reacts never pays for it). */
const SCAN_CODE = `
let SCANNER;
let SEEN;
// Scans the reply once; afterwards SEEN[g] === the returned stamp when it may contain group g.
function scan(p) {
  if (SCANNER === undefined) {
    SCANNER = literalScanner(LITERALS, GROUP_COUNT);
    SEEN = SCANNER.seen;
  }
  if (!p.scanned) {
    SCANNER.scan(p.text);
    p.scanned = true;
  }
  return SCANNER.stamp;
}

// The fallback's text classification, running only the patterns whose literals the reply may contain.
function categoryByScan(p) {
  const stamp = scan(p);
  for (let i = 0; i < TEXT_CATEGORIES.length; i++) {
    const g = FALLBACK_GROUPS[i];
    if ((g < 0 || SEEN[g] === stamp) && TEXT_CATEGORIES[i][0].test(p.text)) return TEXT_CATEGORIES[i][1];
  }
  return 'other';
}`;

/** The matcher loop over rule rows. Cheapest conditions first; regexes are compiled on first use. */
const MATCH_CODE = `
// Rows are read as they are: no objects are built at load. Regexes are compiled, and
// reactions frozen, on first use.
const REGEX = [];
const PHASE_BITS = new Map(${entriesLiteral(PHASE_BIT)});

// The first rule of the list that matches the reply in a phase (bits: -1 for any phase), or
// null. The list is [rule, gate, rule, gate, …]: a gate is the literal group the rule cannot
// match without (-1: none), so after one scan most rules are passed over with one comparison.
function firstMatch(list, p, phaseBits) {
  let stamp = -1;
  for (let i = 0; i < list.length; i += 2) {
    const gate = list[i + 1];
    if (gate >= 0) {
      if (stamp < 0) stamp = scan(p);
      if (SEEN[gate] !== stamp) continue;
    }
    const row = RULE_ROWS[list[i]] ?? ruleRow(list[i]);
    if (row[1] !== null && !inRanges(row[1], p.code)) continue;
    if (row[2] !== null && !statusMatches(row[2], p.status)) continue;
    if (row[3] !== 0 && (row[3] & phaseBits) === 0) continue;
    if (row[4] !== null && !textMatches(row[4], p)) continue;
    return row;
  }
  return null;
}
function inRanges(ranges, code) {
  for (let i = 0; i < ranges.length; i += 2) if (code >= ranges[i] && code < ranges[i + 1]) return true;
  return false;
}
function statusMatches(statuses, status) {
  if (status === null) return false;
  for (let i = 0; i < statuses.length; i += 3) {
    if (statuses[i] === status[0] && (statuses[i + 1] < 0 || statuses[i + 1] === status[1]) && (statuses[i + 2] < 0 || statuses[i + 2] === status[2])) return true;
  }
  return false;
}
// A text is tried only when the scan says the reply may contain one of its literals.
function textMatches(texts, p) {
  const stamp = scan(p);
  for (let i = 0; i < texts.length; i++) {
    const t = texts[i];
    if (t[0] >= 0 && SEEN[t[0]] !== stamp) continue;
    if (t.length === 2 ? lower(p).includes(t[1]) : (REGEX[t[3]] ??= new RegExp(t[1], t[2])).test(p.text)) return true;
  }
  return false;
}
`;

/**
 * One rule as a row of `RULE_ROWS` (see the comment above it in the module), and its
 * gate: the literal group it cannot match without, when it has one text with literals.
 */
function ruleRow(rule: IRRule, literals: LiteralGroups): { text: string; gate: number } {
  const m = rule.matcher;
  const codes = m.codes.length === 0 ? null : m.codes.flatMap(codeRange);
  const statuses = m.statuses.length === 0 ? null : m.statuses.flatMap(([cls, subject, detail]) => [cls, subject ?? -1, detail ?? -1]);
  const phases = m.phases.reduce((mask, phase) => mask | PHASE_BIT[phase]!, 0);
  const texts =
    m.texts.length === 0
      ? null
      : m.texts.map((t) => (t.kind === 'substring' ? [t.text === '' ? -1 : literals.add([t.text.toLowerCase()]), t.text.toLowerCase()] : [literals.ofRegex(t.source, t.flags), t.source, t.flags, literals.regexSlots++]));
  // Fixed category and disposition: one shared frozen reaction, no allocation per reply.
  const fixed =
    rule.category !== null && rule.disposition !== null
      ? { category: rule.category, disposition: rule.disposition, actions: rule.actions, rule: { file: rule.loc.file, line: rule.loc.line }, ...(rule.trigger ? { trigger: { ...rule.trigger, id: rule.id } } : {}) }
      : null;
  const gate = texts?.length === 1 ? (texts[0]![0] as number) : -1;
  // A reaction that depends on the reply needs the rule's data at run time.
  const row = fixed === null ? [rule.id, codes, statuses, phases, texts, null, ruleData(rule)] : [rule.id, codes, statuses, phases, texts, fixed];
  return { text: json(row), gate };
}

/** A code prefix (`421`, `45`, `4`) as a range of codes `[low, high)`. */
function codeRange(prefix: string): [number, number] {
  const low = Number(prefix.padEnd(3, '0'));
  return [low, low + (prefix.length === 3 ? 1 : prefix.length === 2 ? 10 : 100)];
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
