/**
 * Emission: IR + plan → the source of an ES module that default-exports the artifact
 * (ABI version 1, see `runtime/abi.ts`), and bundling it with esbuild so it carries the
 * helpers it calls and nothing else. The same IR always gives the same bytes: no
 * timestamps, no absolute paths, data in stable order.
 */
import { build } from 'esbuild';
import path from 'node:path';
import { ABI_VERSION, type ArtifactMeta } from '../runtime/abi.ts';
import { normalizeDomain } from './artifact-lib.ts';
import type { IR, IRMatcher, IRRule, IRSettings } from './ir.ts';
import { CODE_CLASSES, type EmitPlan } from './optimize.ts';

const json = (value: unknown) => JSON.stringify(value);

/** The module source, before bundling. `libImport` is how it imports `artifact-lib`. */
export function emit(ir: IR, plan: EmitPlan, meta: ArtifactMeta, libImport = './artifact-lib.ts'): string {
  const out: string[] = [];
  out.push(`// Petrel policy artifact ${meta.name} ${meta.version} (${meta.hash}), ABI ${ABI_VERSION}. Generated: do not edit.`);
  out.push(`import { composeSettings, fallbackReaction, normalizeDomain, parseReply, planLimit, retryDelayFor, ruleReaction } from ${json(libImport)};`);
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
  const mapLiteral = (m: Map<string, string>) => `new Map(${json([...m].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))})`;
  out.push('// Routing: exact domains, then the longest matching parent domain; MX rollup likewise per MX host.');
  out.push(`const EXACT = ${mapLiteral(exact)};`);
  out.push(`const SUFFIX = ${mapLiteral(suffix)};`);
  out.push(`const MX_EXACT = ${mapLiteral(mxExact)};`);
  out.push(`const MX_SUFFIX = ${mapLiteral(mxSuffix)};`);
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

function route(domain, mxHosts) {
  const byDomain = lookup(EXACT, SUFFIX, normalizeDomain(domain));
  if (byDomain !== undefined) return byDomain;
  if (mxHosts && mxHosts.length > 0) {
    let chosen;
    for (const host of mxHosts) {
      const id = lookup(MX_EXACT, MX_SUFFIX, normalizeDomain(host));
      // MX rollup needs every MX host to belong to the same provider.
      if (id === undefined || (chosen !== undefined && id !== chosen)) return 'default';
      chosen = id;
    }
    return chosen;
  }
  return 'default';
}
`);

  // Settings and the tables composeSettings needs.
  out.push(`const ROUTE_INDEX = new Map(${json(ir.routes.map((r, i) => [r.id, i]))});`);
  out.push(`const ROUTE_IDS = ${json(ir.routes.map((r) => r.id))};`);
  out.push(`const BASE = ${json(ir.routes.map((r) => r.settings satisfies IRSettings))};`);
  out.push(`const TABLES = ${json({ global: ir.global, sources: ir.sources, tenants: ir.tenants, warmups: Object.fromEntries(Object.entries(ir.warmups).map(([k, w]) => [k, { overflowPool: w.overflowPool }])), retryCurves: Object.fromEntries(Object.entries(ir.retryCurves).map(([k, c]) => [k, { jitter: c.jitter }])) })};`);
  out.push(`const CURVES = ${json(ir.retryCurves)};`);
  out.push(`const WARMUPS = ${json(Object.fromEntries(Object.entries(ir.warmups).map(([k, w]) => [k, { plan: w.plan, routes: w.routes }])))};`);
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
  out.push('// Reply rules. RULES holds each rule as data for reactions the compiler could not fix in advance.');
  out.push(`const RULES = [${ir.rules.map((r) => (usedRules.includes(r.id) ? json(ruleData(r)) : 'null')).join(',\n  ')}];`);
  for (const id of usedRules) out.push(...emitRule(ir.rules[id]!));
  plan.chains.forEach((chain, index) => out.push(...emitChain(index, chain)));
  out.push(`const CHAINS = [${plan.chains.map((_, i) => `chain${i}`).join(', ')}];`);
  out.push(`const CHAIN_OF_ROUTE = ${json(plan.chainOfRoute)};`);
  out.push(`
function react(routeId, reply, phase) {
  return CHAINS[CHAIN_OF_ROUTE[ROUTE_INDEX.get(routeId) ?? 0]](parseReply(reply), phase);
}

function retryDelay(routeId, attempt, reply, curve) {
  const i = ROUTE_INDEX.get(routeId) ?? 0;
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
  return out.join('\n');
}

function ruleData(rule: IRRule): Pick<IRRule, 'id' | 'loc' | 'category' | 'disposition' | 'actions' | 'trigger'> {
  return { id: rule.id, loc: rule.loc, category: rule.category, disposition: rule.disposition, actions: rule.actions, trigger: rule.trigger };
}

/** `testN(p, phase)` and `reactN(p)` for one rule. */
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
    lines.push(`function react${rule.id}(p) { return ruleReaction(RULES[${rule.id}], p); }`);
  }
  return lines;
}

function conditions(m: IRMatcher, regexNames: string[]): string[] {
  const c: string[] = [];
  if (m.phases.length) c.push(`(phase === undefined || ${m.phases.map((p) => `phase === ${json(p)}`).join(' || ')})`);
  if (m.codes.length) c.push(`(${m.codes.map((code) => (code.length === 3 ? `p.codeText === ${json(code)}` : `p.codeText.startsWith(${json(code)})`)).join(' || ')})`);
  if (m.statuses.length) {
    const alts = m.statuses.map(([cls, subject, detail]) => {
      const parts = [`p.status[0] === ${cls}`];
      if (subject !== null) parts.push(`p.status[1] === ${subject}`);
      if (detail !== null) parts.push(`p.status[2] === ${detail}`);
      return parts.join(' && ');
    });
    c.push(`p.status !== null && (${alts.map((a) => `(${a})`).join(' || ')})`);
  }
  if (m.texts.length) {
    let r = 0;
    const alts = m.texts.map((t) => (t.kind === 'regex' ? `${regexNames[r++]}.test(p.text)` : `p.text.toLowerCase().includes(${json(t.text.toLowerCase())})`));
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
  lines.push('  }', '  return fallbackReaction(p);', '}');
  return lines;
}

/** Bundles the emitted source with its helpers into one self-contained ES module. */
export async function bundle(source: string, packageRoot: string): Promise<string> {
  const result = await build({
    stdin: { contents: source, resolveDir: path.join(packageRoot, 'compiler'), sourcefile: 'policy-artifact.js', loader: 'js' },
    absWorkingDir: packageRoot,
    bundle: true,
    format: 'esm',
    platform: 'neutral',
    target: 'node20',
    write: false,
    legalComments: 'none',
    logLevel: 'silent',
  });
  return result.outputFiles[0]!.text;
}
