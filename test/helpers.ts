/** Shared test helpers: compile from memory, load a built artifact, run the real CLI binary. */
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { compile, packageRoot, type CompileResult, type SourceHost } from '../compiler/index.ts';
import { importArtifactText, type PolicyArtifact } from '../runtime/index.ts';
import { writeArtifact as writeArtifactTexts } from '../runtime/policy/loader.ts';

export const ROOT = packageRoot();

/** A host over in-memory files (paths relative to a virtual cwd), falling back to the real stdlib. */
export function memoryHost(files: Record<string, string>, cwd = '/virtual'): SourceHost {
  const abs = new Map(Object.entries(files).map(([p, t]) => [path.resolve(cwd, p), t]));
  return {
    cwd,
    readFile(p) {
      if (abs.has(p)) return abs.get(p);
      if (p.startsWith(path.join(ROOT, 'stdlib') + path.sep)) return readOrUndefined(p);
      return undefined;
    },
  };
}

function readOrUndefined(p: string): string | undefined {
  try {
    return readFileSync(p, 'utf8');
  } catch {
    return undefined;
  }
}

/** Compiles in-memory files (all of them are inputs). */
export function compileFiles(files: Record<string, string>, options: { checkOnly?: boolean; name?: string } = {}): Promise<CompileResult> {
  return compile({ inputs: Object.keys(files), host: memoryHost(files), name: options.name ?? 'test', checkOnly: options.checkOnly ?? false });
}

/** Compiles files from the repository (paths relative to its root), e.g. `['policies', 'stdlib']` expanded by the caller. */
export function compileRepoFiles(inputs: string[], options: { checkOnly?: boolean } = {}): Promise<CompileResult> {
  const host: SourceHost = { cwd: ROOT, readFile: readOrUndefined };
  return compile({ inputs, host, name: 'policies', checkOnly: options.checkOnly ?? false });
}

/** Writes a compile result as `petrel build` does (module, map, manifest) into `dir/artifact`; returns that directory. */
export async function writeArtifact(dir: string, result: CompileResult): Promise<string> {
  if (!result.artifact) throw new Error('no artifact: ' + JSON.stringify(result.diagnostics.filter((d) => d.severity === 'error').slice(0, 5)));
  const out = path.join(dir, 'artifact');
  await writeArtifactTexts(out, result.artifact);
  return out;
}

/** Imports a compiled module (through a temporary file). */
export async function loadArtifact(result: CompileResult): Promise<PolicyArtifact> {
  if (!result.artifact) throw new Error('no artifact: ' + JSON.stringify(result.diagnostics.filter((d) => d.severity === 'error').slice(0, 5)));
  return importArtifactText(result.artifact);
}

/** Runs the real `petrel` binary (bin/petrel.js, which loads dist/). */
export function runPetrel(args: string[], options: { cwd?: string } = {}): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [path.join(ROOT, 'bin', 'petrel.js'), ...args], { cwd: options.cwd ?? ROOT, encoding: 'utf8', timeout: 60_000 });
  if (r.error) throw r.error;
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** The shipped policy and stdlib files, as paths relative to the repository root. */
export function shippedFiles(): string[] {
  const out: string[] = [];
  for (const dir of ['policies', 'stdlib']) {
    const walk = (d: string) => {
      for (const e of readdirSync(path.join(ROOT, d), { withFileTypes: true })) {
        if (e.isDirectory()) walk(path.join(d, e.name));
        else if (e.name.endsWith('.policy')) out.push(path.join(d, e.name));
      }
    };
    walk(dir);
  }
  return out.sort();
}
