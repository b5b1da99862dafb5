/**
 * Dependencies point one way (docs/language.md, "Dependencies"):
 *
 *   grammar/ → vocabulary/ ← runtime/
 *   compiler/ → grammar/, vocabulary/, and runtime/decide's reaction core (→ vocabulary/)
 *
 * - vocabulary/ (the shared lists and the artifact ABI) imports nothing: no other folder,
 *   no package, no Node built-in.
 * - grammar/ reaches (through any chain of imports) only grammar/ and vocabulary/.
 * - compiler/ imports from runtime/ only the reaction core that `petrel test` shares with
 *   the runtime (runtime/decide/policy-state.ts, reaction-fate.ts, recovery.ts), and
 *   reaches no other runtime/ file through it; the core imports no package and no Node
 *   built-in (it takes its clock as an argument).
 * - runtime/ reaches no compiler/ or grammar/ file.
 *
 * Imports are read with TypeScript's own pre-processor, so `import type`, `export … from`
 * and `import('…')` with a literal path all count: a type is a dependency too.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const ROOT = path.resolve(import.meta.dirname, '..');
const FOLDERS = ['vocabulary', 'grammar', 'compiler', 'runtime'] as const;

/** The reaction state machine `petrel test` and the runtime share; the one part of runtime/ the compiler may use. */
const REACTION_CORE = ['runtime/decide/policy-state.ts', 'runtime/decide/reaction-fate.ts', 'runtime/decide/recovery.ts'];
/** Re-exports vocabulary/ for the runtime's imports: reached through the core, never imported by the compiler itself. */
const RUNTIME_ABI = 'runtime/abi.ts';

/** Repository-relative file → what it imports: repository-relative files, or `package:NAME` for a package or Node built-in. */
type Graph = Map<string, string[]>;

function sourceFiles(dir: string): string[] {
  return readdirSync(path.join(ROOT, dir), { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts'))
    .map((e) => path.relative(ROOT, path.join(e.parentPath, e.name)).split(path.sep).join('/'));
}

function importsOf(file: string): string[] {
  const { importedFiles } = ts.preProcessFile(readFileSync(path.join(ROOT, file), 'utf8'), true, true);
  return importedFiles.map(({ fileName }) => (fileName.startsWith('.') ? path.posix.join(path.posix.dirname(file), fileName) : `package:${fileName}`));
}

function readGraph(): Graph {
  return new Map(FOLDERS.flatMap(sourceFiles).map((file) => [file, importsOf(file)]));
}

const folderOf = (file: string) => file.split('/')[0]!;
const isPackage = (target: string) => target.startsWith('package:');

/** Every file `from` reaches through the graph, with the chain of imports that reaches it. */
function reach(graph: Graph, from: string): Map<string, string[]> {
  const chains = new Map<string, string[]>([[from, [from]]]);
  const todo = [from];
  while (todo.length > 0) {
    const file = todo.pop()!;
    for (const target of graph.get(file) ?? []) {
      if (chains.has(target) || isPackage(target)) continue;
      chains.set(target, [...chains.get(file)!, target]);
      todo.push(target);
    }
  }
  return chains;
}

/** What each folder may reach, through any chain of imports. */
const MAY_REACH: Record<string, (target: string) => boolean> = {
  grammar: (t) => folderOf(t) === 'grammar' || folderOf(t) === 'vocabulary',
  compiler: (t) => folderOf(t) !== 'runtime' || REACTION_CORE.includes(t) || t === RUNTIME_ABI,
  runtime: (t) => folderOf(t) !== 'compiler' && folderOf(t) !== 'grammar',
};

/** May `file` import `target` directly (beyond what its folder may reach)? */
function mayImport(file: string, target: string): boolean {
  if (folderOf(file) === 'vocabulary') return !isPackage(target) && folderOf(target) === 'vocabulary';
  if (REACTION_CORE.includes(file)) return !isPackage(target);
  if (folderOf(file) === 'compiler') return folderOf(target) !== 'runtime' || REACTION_CORE.includes(target);
  return true;
}

/** What breaks the rules in the file comment, one line each: `file → target`, with the chain when it is reached indirectly. */
function violations(graph: Graph): string[] {
  const out = new Set<string>();
  for (const [file, targets] of graph) {
    for (const target of targets) if (!mayImport(file, target)) out.add(`${file} → ${target}`);
    const may = MAY_REACH[folderOf(file)];
    if (!may) continue;
    for (const [target, chain] of reach(graph, file)) if (!may(target)) out.add(chain.length > 2 ? `${file} → ${target} (via ${chain.join(' → ')})` : `${file} → ${target}`);
  }
  return [...out].sort();
}

describe('dependencies point one way', () => {
  const graph = readGraph();

  it('reads the imports of every file of the four folders', () => {
    expect(graph.size).toBeGreaterThan(60);
    expect(graph.get('compiler/run-tests.ts')).toContain('runtime/decide/policy-state.ts');
    expect(graph.get('grammar/ast.ts')).toContain('vocabulary/index.ts');
  });

  it('vocabulary ← grammar ← compiler → the reaction core; vocabulary ← runtime; nothing else', () => {
    expect(violations(graph)).toEqual([]);
  });

  it('grammar, compiler and runtime all import the vocabulary', () => {
    for (const folder of ['grammar', 'compiler', 'runtime']) {
      const users = [...graph].filter(([file, targets]) => folderOf(file) === folder && targets.some((t) => folderOf(t) === 'vocabulary'));
      expect(users.length, folder).toBeGreaterThan(0);
    }
  });

  it('finds a broken rule: each kind of violation in a made-up tree', () => {
    const made: Graph = new Map([
      ['vocabulary/index.ts', ['package:node:fs']],
      ['grammar/parser.ts', ['grammar/ast.ts']],
      ['grammar/ast.ts', ['compiler/ir.ts']],
      ['compiler/ir.ts', ['vocabulary/index.ts']],
      ['compiler/run-tests.ts', ['runtime/decide/policy-state.ts', 'runtime/spool/spool.ts']],
      ['runtime/decide/policy-state.ts', ['runtime/abi.ts', 'package:node:timers']],
      ['runtime/abi.ts', ['vocabulary/index.ts']],
      ['runtime/spool/spool.ts', ['runtime/abi.ts']],
      ['runtime/runtime.ts', ['runtime/spool/spool.ts', 'runtime/policy/loader.ts']],
      ['runtime/policy/loader.ts', ['grammar/parser.ts']],
    ]);
    expect(violations(made)).toEqual([
      'compiler/run-tests.ts → runtime/spool/spool.ts',
      'grammar/ast.ts → compiler/ir.ts',
      'grammar/parser.ts → compiler/ir.ts (via grammar/parser.ts → grammar/ast.ts → compiler/ir.ts)',
      'runtime/decide/policy-state.ts → package:node:timers',
      'runtime/policy/loader.ts → compiler/ir.ts (via runtime/policy/loader.ts → grammar/parser.ts → grammar/ast.ts → compiler/ir.ts)',
      'runtime/policy/loader.ts → grammar/ast.ts (via runtime/policy/loader.ts → grammar/parser.ts → grammar/ast.ts)',
      'runtime/policy/loader.ts → grammar/parser.ts',
      'runtime/runtime.ts → compiler/ir.ts (via runtime/runtime.ts → runtime/policy/loader.ts → grammar/parser.ts → grammar/ast.ts → compiler/ir.ts)',
      'runtime/runtime.ts → grammar/ast.ts (via runtime/runtime.ts → runtime/policy/loader.ts → grammar/parser.ts → grammar/ast.ts)',
      'runtime/runtime.ts → grammar/parser.ts (via runtime/runtime.ts → runtime/policy/loader.ts → grammar/parser.ts)',
      'vocabulary/index.ts → package:node:fs',
    ]);
  });
});
