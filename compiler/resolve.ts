/**
 * Resolution: one symbol table for the whole set, duplicate definitions, `use` cycles,
 * and every name reference checked against what the referring file can see (itself and
 * what it uses, transitively).
 */
import {
  didYouMean,
  type Destination,
  type Diagnostic,
  type GlobalBlock,
  type Name,
  type PoolDef,
  type ReplyRule,
  type RetryCurve,
  type RuleSet,
  type RuleSetRef,
  type Setting,
  type SourceDef,
  type Span,
  type TenantDef,
  type TestBlock,
  type WarmupRamp,
} from '../grammar/index.ts';
import path from 'node:path';
import { BOUNCE_CATEGORIES } from '../vocabulary/index.ts';
import type { LoadedFile, SourceSet } from './load.ts';

/** A definition and the file it is in. */
export interface Def<T> {
  node: T;
  file: string;
}

/** The resolved set: every definition by kind and name. */
export interface Program {
  files: LoadedFile[];
  default: Def<Destination> | null;
  global: Def<GlobalBlock> | null;
  providers: Map<string, Def<Destination>>;
  /** `domain` blocks by their first domain (the route id is `domain:` + that). */
  domainBlocks: Map<string, Def<Destination>>;
  ruleSets: Map<string, Def<RuleSet>>;
  retryCurves: Map<string, Def<RetryCurve>>;
  warmups: Map<string, Def<WarmupRamp>>;
  sources: Map<string, Def<SourceDef>>;
  pools: Map<string, Def<PoolDef>>;
  tenants: Map<string, Def<TenantDef>>;
  tests: Def<TestBlock>[];
}

type Kind = 'provider' | 'rule set' | 'retry curve' | 'warmup ramp' | 'source' | 'pool' | 'tenant';

/** Builds the symbol table and checks every reference. */
export function resolve(set: SourceSet): { program: Program; diagnostics: Diagnostic[] } {
  const diagnostics: Diagnostic[] = [];
  const program: Program = {
    files: set.files,
    default: null,
    global: null,
    providers: new Map(),
    domainBlocks: new Map(),
    ruleSets: new Map(),
    retryCurves: new Map(),
    warmups: new Map(),
    sources: new Map(),
    pools: new Map(),
    tenants: new Map(),
    tests: [],
  };

  /** Every definition of each name, by `what` (`retry curve \`bulk\``), in set order: duplicates are reported once all are known. */
  const definitions = new Map<string, Def<Span>[]>();
  const defined = (what: string, span: Span, file: string) => {
    const list = definitions.get(what) ?? [];
    list.push({ node: span, file });
    definitions.set(what, list);
  };
  const keyOf = (kind: Kind, name: string) => `${kind} \`${name}\``;

  function define<T extends { name: Name; span: Span }>(table: Map<string, Def<T>>, kind: Kind, node: T, file: string): void {
    defined(keyOf(kind, node.name.text), node.name.span, file);
    if (!table.has(node.name.text)) table.set(node.name.text, { node, file });
  }

  /** Which `domain` block claims each domain (`=d`) and each domain's subdomains (`*.d`). */
  const domainClaims = new Map<string, { block: Destination; span: Span }>();
  for (const file of set.files) {
    for (const item of file.ast.items) {
      switch (item.kind) {
        case 'destination':
          if (item.type === 'default') {
            defined('`default`', item.name.span, file.path);
            program.default ??= { node: item, file: file.path };
          } else if (item.type === 'provider') define(program.providers, 'provider', item, file.path);
          else {
            for (const d of item.domains) {
              const keys = [...(d.kind !== 'subdomains' ? [`=${d.domain}`] : []), ...(d.kind !== 'exact' ? [`*.${d.domain}`] : [])];
              for (const key of keys) {
                const owner = domainClaims.get(key);
                if (owner && owner.block !== item) {
                  const what = key.startsWith('=') ? `\`${d.domain}\`` : `subdomains of \`${d.domain}\``;
                  diagnostics.push({ code: 'VAL008', severity: 'error', message: `${what} is claimed by two \`domain\` blocks`, span: d.span, labels: [{ span: owner.span, message: 'also claimed here' }], help: 'merge the blocks, or make their domains disjoint' });
                } else if (!owner) domainClaims.set(key, { block: item, span: d.span });
              }
            }
            defined(`a \`domain\` block for \`${item.name.text}\``, item.name.span, file.path);
            if (!program.domainBlocks.has(item.name.text)) program.domainBlocks.set(item.name.text, { node: item, file: file.path });
          }
          break;
        case 'global':
          defined('`global`', item.span, file.path);
          program.global ??= { node: item, file: file.path };
          break;
        case 'rule-set':
          define(program.ruleSets, 'rule set', item, file.path);
          break;
        case 'retry-curve':
          define(program.retryCurves, 'retry curve', item, file.path);
          break;
        case 'warmup':
          define(program.warmups, 'warmup ramp', item, file.path);
          break;
        case 'source':
          define(program.sources, 'source', item, file.path);
          break;
        case 'pool':
          define(program.pools, 'pool', item, file.path);
          break;
        case 'tenant':
          define(program.tenants, 'tenant', item, file.path);
          break;
        case 'test':
          program.tests.push({ node: item, file: file.path });
          break;
      }
    }
  }

  for (const [what, defs] of definitions) if (defs.length > 1) diagnostics.push(duplicateDiagnostic(what, defs, set.files));
  checkUseCycles(set.files, diagnostics);
  const visible = visibleFiles(set.files);

  /**
   * Checks one reference; reports RES001 (unknown) or RES005 (defined only in files not
   * used). A name defined twice (RES002) resolves to the definition the file can see.
   */
  function ref<T>(table: Map<string, Def<T>>, kind: Kind, name: Name, fromFile: string, code = 'RES001'): Def<Span> | undefined {
    const defs = definitions.get(keyOf(kind, name.text));
    if (!defs) {
      const help = didYouMean(name.text, table.keys());
      diagnostics.push({ code, severity: 'error', message: `unknown ${kind} \`${name.text}\``, span: name.span, ...(help ? { help } : table.size === 0 ? {} : { help: `defined ${kind}s: ${[...table.keys()].slice(0, 8).map((k) => `\`${k}\``).join(', ')}` }) });
      return undefined;
    }
    const seen = defs.find((d) => visible.get(fromFile)?.has(d.file));
    if (!seen) {
      const def = defs[0]!;
      diagnostics.push({ code: 'RES005', severity: 'error', message: `${kind} \`${name.text}\` is defined in \`${def.file}\`, which this file does not use`, span: name.span, help: `add \`use ${useHint(def.file, fromFile)}\` at the top of the file` });
    }
    return seen;
  }

  const category = (name: Name, inTest = false) => {
    const known: readonly string[] = inTest ? [...BOUNCE_CATEGORIES, 'success'] : BOUNCE_CATEGORIES;
    if (!known.includes(name.text)) {
      const help = didYouMean(name.text, known) ?? 'see the bounce categories in docs/language.md';
      diagnostics.push({ code: inTest ? 'TEST001' : 'RES001', severity: 'error', message: `${inTest ? 'test names ' : ''}unknown bounce category \`${name.text}\``, span: name.span, help });
    }
  };

  const settings = (list: Setting[], file: string) => {
    for (const s of list) if (s.kind === 'retry' && 'text' in s.curve) ref(program.retryCurves, 'retry curve', s.curve, file);
  };

  const rules = (list: (ReplyRule | RuleSetRef)[], file: string) => {
    for (const r of list) {
      if (r.kind === 'rules-ref') {
        ref(program.ruleSets, 'rule set', r.name, file);
        continue;
      }
      for (const a of r.actions) {
        if (a.kind === 'bounce' || a.kind === 'classify') category(a.category);
        if (a.kind === 'reroute') ref(program.pools, 'pool', a.pool, file);
        if (a.kind === 'backoff') settings(a.overrides, file);
      }
    }
  };

  for (const file of set.files) {
    for (const item of file.ast.items) {
      switch (item.kind) {
        case 'destination':
          settings(item.settings, file.path);
          rules(item.rules, file.path);
          break;
        case 'rule-set':
          rules(item.rules, file.path);
          break;
        case 'warmup':
          for (const o of item.overrides) if (o.targetType === 'provider') ref(program.providers, 'provider', o.target, file.path);
          if (item.overflow) ref(program.pools, 'pool', item.overflow, file.path);
          break;
        case 'source':
          if (item.warmup) ref(program.warmups, 'warmup ramp', item.warmup.ramp, file.path);
          break;
        case 'pool':
          for (const s of item.sources) ref(program.sources, 'source', s, file.path);
          break;
        case 'tenant':
          if (item.pool) ref(program.pools, 'pool', item.pool, file.path);
          break;
        case 'test':
          checkTest(item, file.path);
          break;
      }
    }
  }
  checkRuleSetCycles(program, diagnostics);

  function checkTest(test: TestBlock, file: string): void {
    // Tests may name anything in the set: they test the set as built, not one file.
    const known = <T>(table: Map<string, Def<T>>, kind: Kind, name: Name) => {
      if (!table.has(name.text)) {
        const help = didYouMean(name.text, table.keys());
        diagnostics.push({ code: 'TEST001', severity: 'error', message: `test names unknown ${kind} \`${name.text}\``, span: name.span, ...(help ? { help } : {}) });
      }
    };
    void file;
    for (const step of test.steps) {
      if (step.kind === 'deliver') {
        if (step.source) known(program.sources, 'source', step.source);
        if (step.tenant) known(program.tenants, 'tenant', step.tenant);
      } else if (step.kind === 'expect') {
        const e = step.expectation;
        if (e.what === 'category') category(e.category, true);
        if (e.what === 'bounce') {
          // A bounce is never a success: `expect bounce success` could not pass.
          if (e.category.text === 'success') diagnostics.push({ code: 'TEST001', severity: 'error', message: 'a bounce is never `success`', span: e.category.span, help: 'write `expect category success`, or name the bounce category' });
          else category(e.category, true);
        }
        if (e.what === 'reroute') known(program.pools, 'pool', e.pool);
        if (e.what === 'warmup') known(program.warmups, 'warmup ramp', e.ramp);
        if (e.what === 'route') {
          const routes = ['default', ...[...program.providers.keys()].map((p) => `provider:${p}`), ...[...program.domainBlocks.keys()].map((d) => `domain:${d}`)];
          if (!routes.includes(e.route.text)) {
            const help = didYouMean(e.route.text, routes) ?? 'routes are `default`, `provider:NAME` and `domain:DOMAIN`';
            diagnostics.push({ code: 'TEST001', severity: 'error', message: `test expects unknown route \`${e.route.text}\``, span: e.route.span, help });
          }
        }
      }
    }
    const firstDeliver = test.steps.findIndex((s) => s.kind === 'deliver');
    const early = test.steps.slice(0, firstDeliver === -1 ? 0 : firstDeliver).find((s) => s.kind !== 'wait');
    if (early) {
      diagnostics.push({ code: 'TEST002', severity: 'error', message: `\`${early.kind}\` before \`deliver\` in test \`${test.name.text}\``, span: early.span, help: 'start the test with `deliver to someone@example.com`' });
    }
    if (firstDeliver === -1) {
      diagnostics.push({ code: 'TEST002', severity: 'error', message: `test \`${test.name.text}\` has no \`deliver\` step`, span: test.name.span, help: 'start the test with `deliver to someone@example.com`' });
    } else if (!test.steps.some((s) => s.kind === 'expect')) {
      diagnostics.push({ code: 'TEST002', severity: 'error', message: `test \`${test.name.text}\` expects nothing`, span: test.name.span, help: 'add an `expect` line, for example `expect category bad-mailbox`' });
    }
  }

  return { program, diagnostics };
}

/**
 * RES002 for one name defined more than once, naming every definition (`file:line`). It
 * is reported where the user can fix it: at the last definition in an input file (their
 * own), not in a file they only `use` (the packaged stdlib); the others are labels.
 */
function duplicateDiagnostic(what: string, defs: Def<Span>[], files: LoadedFile[]): Diagnostic {
  const input = new Set(files.filter((f) => f.input).map((f) => f.path));
  const here = defs.findLast((d) => input.has(d.file)) ?? defs.at(-1)!;
  const where = defs.map((d) => `\`${d.file}:${d.node.line}\``);
  const times = defs.length === 2 ? 'twice' : `${defs.length} times`;
  const message = `${what} is defined ${times}: ${where.slice(0, -1).join(', ')} and ${where.at(-1)}`;
  const labels = defs.filter((d) => d !== here).map((d) => ({ span: d.node, message: 'also defined here' }));
  const packaged = packagedStdlib(files);
  const shipped = defs.map((d) => packaged.get(d.file)).find((name) => name !== undefined);
  const help = shipped
    ? `rename yours; to change the one in \`${shipped}\`, copy that file into your policy set as \`${shipped}.policy\`, edit it there, and drop your definition`
    : 'keep one: rename or delete the others';
  return { code: 'RES002', severity: 'error', message, span: here.node, labels, help };
}

/** Files loaded from the packaged stdlib, by display path, with the `use` name that loaded them (`stdlib/retry`). */
function packagedStdlib(files: LoadedFile[]): Map<string, string> {
  const shown = new Map(files.map((f) => [f.absolutePath, f.path]));
  const out = new Map<string, string>();
  for (const f of files) {
    for (const u of f.uses) {
      if (u.stdlib === 'packaged' && u.path && shown.has(u.path)) out.set(shown.get(u.path)!, u.use.path.replace(/\.policy$/, ''));
    }
  }
  return out;
}

/** The `use` path that names `file` from `fromFile` (both display paths). */
function useHint(file: string, fromFile: string): string {
  const i = file.lastIndexOf('stdlib/');
  if (i >= 0 && (file.startsWith('petrel:') || !path.isAbsolute(file))) {
    if (file.startsWith('petrel:') || file.startsWith('stdlib/')) return file.slice(i).replace(/\.policy$/, '');
  }
  const rel = path.posix.relative(path.posix.dirname(fromFile), file).replace(/\.policy$/, '');
  return rel.startsWith('.') ? rel : `./${rel}`;
}

/** For each file (display path), the files whose definitions it may name: itself and what it uses, transitively. */
function visibleFiles(files: LoadedFile[]): Map<string, Set<string>> {
  const shown = new Map(files.map((f) => [f.absolutePath, f.path]));
  const usesOf = new Map(files.map((f) => [f.path, f.uses.flatMap((u) => (u.path && shown.has(u.path) ? [shown.get(u.path)!] : []))]));
  const out = new Map<string, Set<string>>();
  for (const f of files) {
    const seen = new Set<string>([f.path]);
    const stack = [...(usesOf.get(f.path) ?? [])];
    while (stack.length) {
      const next = stack.pop()!;
      if (seen.has(next)) continue;
      seen.add(next);
      stack.push(...(usesOf.get(next) ?? []));
    }
    out.set(f.path, seen);
  }
  return out;
}

function checkUseCycles(files: LoadedFile[], diagnostics: Diagnostic[]): void {
  const byPath = new Map(files.map((f) => [f.absolutePath, f]));
  const state = new Map<string, 'visiting' | 'done'>();
  const stack: string[] = [];
  const reported = new Set<string>();
  const visit = (file: LoadedFile) => {
    state.set(file.absolutePath, 'visiting');
    stack.push(file.absolutePath);
    for (const u of file.uses) {
      if (!u.path) continue;
      const s = state.get(u.path);
      if (s === 'visiting') {
        const cycle = [...stack.slice(stack.indexOf(u.path)), u.path].map((p) => byPath.get(p)!.path);
        const key = [...cycle].sort().join('|');
        if (!reported.has(key)) {
          reported.add(key);
          diagnostics.push({ code: 'RES003', severity: 'error', message: `\`use\` cycle: ${cycle.map((p) => `\`${p}\``).join(' → ')}`, span: u.use.span, help: 'move what both files need into a third file that both use' });
        }
      } else if (s === undefined) {
        const target = byPath.get(u.path);
        if (target) visit(target);
      }
    }
    stack.pop();
    state.set(file.absolutePath, 'done');
  };
  for (const f of files) if (!state.has(f.absolutePath)) visit(f);
}

function checkRuleSetCycles(program: Program, diagnostics: Diagnostic[]): void {
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (name: string, path: string[]) => {
    const def = program.ruleSets.get(name);
    if (!def) return;
    state.set(name, 'visiting');
    const here = [...path, name];
    for (const r of def.node.rules) {
      if (r.kind !== 'rules-ref') continue;
      const s = state.get(r.name.text);
      if (s === 'visiting') {
        const cycle = [...here.slice(here.indexOf(r.name.text)), r.name.text];
        diagnostics.push({ code: 'RES003', severity: 'error', message: `rule sets include each other: ${cycle.map((p) => `\`${p}\``).join(' → ')}`, span: r.span });
      } else if (s === undefined) visit(r.name.text, here);
    }
    state.set(name, 'done');
  };
  for (const name of program.ruleSets.keys()) if (!state.has(name)) visit(name, []);
}
