/**
 * The delivery runtime loads artifacts; it never imports grammar/ or compiler/ code
 * (DESIGN.md, issue 14 part 3): building and testing a version is the injected
 * PolicyCompiler's job (cli/policy-compiler.ts). Every file under runtime/ is read and
 * each module it names (static import or export-from, dynamic import, a worker's `new URL`)
 * is resolved against the file's folder.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const FORBIDDEN = ['compiler', 'grammar'];

/** The relative module specifiers a source text names. */
function specifiersOf(text: string): string[] {
  const found: string[] = [];
  const patterns = [/\b(?:import|export)\b[^'";]*?\bfrom\s*['"]([^'"]+)['"]/g, /\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/g, /\bimport\s+['"]([^'"]+)['"]/g, /\bnew\s+URL\(\s*['"]([^'"]+)['"]\s*,\s*import\.meta\.url/g];
  for (const re of patterns) for (const m of text.matchAll(re)) found.push(m[1]!);
  return found;
}

/** The files a runtime file imports that lie under a forbidden top-level folder, as `file → target`. */
function forbiddenImports(file: string, text: string): string[] {
  return specifiersOf(text)
    .filter((s) => s.startsWith('.'))
    .map((s) => path.relative(ROOT, path.resolve(path.dirname(file), s)))
    .filter((target) => FORBIDDEN.includes(target.split(path.sep)[0]!))
    .map((target) => `${path.relative(ROOT, file)} → ${target}`);
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? sourceFiles(path.join(dir, e.name)) : /\.(ts|mjs|js)$/.test(e.name) ? [path.join(dir, e.name)] : []));
}

describe('runtime/ imports', () => {
  it('finds an import of compiler/ or grammar/ in every form it checks', () => {
    const file = path.join(ROOT, 'runtime', 'policy', 'x.ts');
    // Listed by form (import/export-from, dynamic import, bare import, worker URL), each in text order.
    const text = [
      "import { compile } from '../../compiler/index.ts';",
      "import type { Ast } from '../../grammar/ast.ts';",
      "export { x } from '../../compiler/emit.ts';",
      "const m = await import('../../compiler/run-tests.ts');",
      "import '../../grammar/tokens.ts';",
      "new URL('../../compiler/w.ts', import.meta.url);",
      "import { ok } from '../abi.ts';",
    ].join('\n');
    expect(forbiddenImports(file, text)).toEqual([
      'runtime/policy/x.ts → compiler/index.ts',
      'runtime/policy/x.ts → grammar/ast.ts',
      'runtime/policy/x.ts → compiler/emit.ts',
      'runtime/policy/x.ts → compiler/run-tests.ts',
      'runtime/policy/x.ts → grammar/tokens.ts',
      'runtime/policy/x.ts → compiler/w.ts',
    ]);
  });

  it('names no module under compiler/ or grammar/', () => {
    const files = sourceFiles(path.join(ROOT, 'runtime'));
    expect(files.length).toBeGreaterThan(30);
    expect(files.flatMap((f) => forbiddenImports(f, readFileSync(f, 'utf8')))).toEqual([]);
  });
});
