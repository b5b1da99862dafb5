/**
 * The compiler: a table of named, timed stages run in order.
 *
 *   load → resolve → validate → lower → optimize → emit → bundle
 *
 * The checking stages (load to lower) always all run, so one `petrel check` reports
 * every problem in a file; code generation (optimize, emit, bundle) runs only when they
 * found no error. Only `load` reads files, through the injected `SourceHost`.
 */
import { createHash } from 'node:crypto';
import { hasErrors, type Diagnostic } from '../grammar/index.ts';
import { ABI_VERSION, type ArtifactManifest, type ArtifactMeta, type DeliveryTopology } from '../vocabulary/index.ts';
import { bundle, emit } from './emit.ts';
import type { IR } from './ir.ts';
import { load, type SourceHost, type SourceSet } from './load.ts';
import { lower } from './lower.ts';
import { optimize, type EmitPlan } from './optimize.ts';
import { packageRoot, stdlibDir } from './paths.ts';
import { resolve, type Program } from './resolve.ts';
import { validate } from './validate.ts';

export { CODES, codeInfo, type CodeInfo, type DiagnosticCode } from './codes.ts';
export { interpret } from './interpret.ts';
export { runTests, type TestFailure, type TestResult } from './run-tests.ts';
export type * from './ir.ts';
export { IR_VERSION } from './ir.ts';
export { diskHost, listPolicyFiles } from './disk-host.ts';
export { displayPath, load, stdlibUses, type SourceHost, type SourceSet, type StdlibUse } from './load.ts';
export { OUTPUT_FORMATS, renderDiagnostics, renderGithubAnnotation, type GithubAnnotation, type OutputFormat, type RenderOptions } from './render.ts';
export { packageRoot, stdlibDir } from './paths.ts';

/** The compiler's version, part of every artifact hash. */
export const COMPILER_VERSION = '0.1.0';

/** Most diagnostics reported from one run; past it, the rest are counted in `omitted`. */
export const ERROR_LIMIT = 500;

export interface CompileOptions {
  /** Policy files to compile (absolute, or relative to `host.cwd`). */
  inputs: readonly string[];
  host: SourceHost;
  /** The set's name in the manifest; default: derived by the caller. */
  name: string;
  /** Stop after the checking stages (`petrel check`). */
  checkOnly?: boolean;
  /** Where `use stdlib/…` resolves; default: the package's stdlib. */
  stdlibDir?: string;
}

/** How long a stage took and what it found. */
export interface StageTiming {
  stage: string;
  ms: number;
  diagnostics: number;
}

export interface CompileResult {
  diagnostics: Diagnostic[];
  /** Diagnostics left out past `ERROR_LIMIT`. */
  omitted: number;
  /** Texts of every file read, by display path (for rendering snippets). */
  sources: Map<string, string>;
  stages: StageTiming[];
  ir?: IR;
  /** Present when the build got through every stage. */
  artifact?: { module: string; moduleFile: string; sourceMap: string; manifest: ArtifactManifest };
}

/** Runs the pipeline. Never throws on bad policies: problems come back as diagnostics. */
export async function compile(options: CompileOptions): Promise<CompileResult> {
  const diagnostics: Diagnostic[] = [];
  const stages: StageTiming[] = [];
  const timed = async <T>(stage: string, run: () => T | Promise<T>, found: (value: T) => Diagnostic[]): Promise<T> => {
    const start = performance.now();
    const value = await run();
    const own = found(value);
    diagnostics.push(...own);
    stages.push({ stage, ms: performance.now() - start, diagnostics: own.length });
    return value;
  };

  const set: SourceSet = await timed('load', () => load(options.inputs, options.host, options.stdlibDir ?? stdlibDir()), (s) => s.diagnostics);
  const sources = new Map(set.files.map((f) => [f.path, f.text]));
  const { program } = await timed('resolve', () => resolve(set), (r) => r.diagnostics);
  await timed('validate', () => validate(program), (d) => d);
  const { ir } = await timed('lower', () => lower(program, options.name), (r) => r.diagnostics);
  ir.files = set.files.map((f) => ({ path: f.path, name: f.ast.header?.name.text ?? '', version: f.ast.header?.version.text ?? '', sha256: sha256(f.text) }));

  const sorted = sortDiagnostics(diagnostics);
  const result: CompileResult = { diagnostics: sorted.slice(0, ERROR_LIMIT), omitted: Math.max(0, sorted.length - ERROR_LIMIT), sources, stages, ir };
  if (hasErrors(diagnostics) || options.checkOnly) return result;

  const hash = setHash(ir);
  const meta: ArtifactMeta = { name: ir.name, version: ir.version, hash, abi: ABI_VERSION };
  const plan: EmitPlan = await timed('optimize', () => optimize(ir), () => []);
  const emitted = await timed('emit', () => emit(ir, plan, meta), () => []);
  const moduleFile = `policy-${hash.slice(0, 16)}.mjs`;
  const { module, sourceMap } = await timed('bundle', () => bundle(emitted, sources, packageRoot(), moduleFile), () => []);
  result.artifact = {
    module,
    moduleFile,
    sourceMap,
    manifest: { name: ir.name, version: ir.version, hash, abi: ABI_VERSION, module: moduleFile, sources: ir.files, compiler: { name: 'petrel', version: COMPILER_VERSION }, delivery: topology(ir) },
  };
  return result;
}

/** The manifest's `delivery`: sources, pools and tenants for the runtime to send from. */
function topology(ir: IR): DeliveryTopology {
  return {
    sources: Object.values(ir.sources).map((s) => ({ name: s.name, address: s.address, ehlo: s.ehlo, warmup: s.warmup ? { ...s.warmup, overflowPool: ir.warmups[s.warmup.ramp]?.overflowPool ?? null } : null })),
    pools: Object.fromEntries(Object.values(ir.pools).map((p) => [p.name, p.sources])),
    tenants: Object.fromEntries(Object.values(ir.tenants).map((t) => [t.name, t.pool])),
  };
}

/** Content hash of a set: the compiler version and every file's path and text hash, in path order. */
function setHash(ir: IR): string {
  const h = createHash('sha256');
  h.update(`petrel ${COMPILER_VERSION} abi ${ABI_VERSION}\n`);
  for (const f of [...ir.files].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))) h.update(`${f.path}\0${f.sha256}\n`);
  return h.digest('hex');
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

function sortDiagnostics(list: Diagnostic[]): Diagnostic[] {
  return [...list].sort((a, b) => (a.span.file < b.span.file ? -1 : a.span.file > b.span.file ? 1 : a.span.offset - b.span.offset || a.code.localeCompare(b.code)));
}


export type { Program };
