/**
 * Loading a compiled artifact: read its manifest, check the ABI version and the module's
 * own `meta`, evaluate it, and run a self-test of every member before anything uses it.
 * The runtime never compiles: it only loads what `petrel build` wrote.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import vm from 'node:vm';
import { ABI_VERSION, type ArtifactManifest, type PolicyArtifact } from '../abi.ts';

export class ArtifactError extends Error {}

/** Loads so far in this process (makes each import URL unique). */
let loads = 0;

/** Loads `dir/manifest.json` and the module it names; throws ArtifactError with the reason on any mismatch. */
export async function loadArtifact(dir: string): Promise<{ artifact: PolicyArtifact; manifest: ArtifactManifest }> {
  let manifest: ArtifactManifest;
  try {
    manifest = JSON.parse(await readFile(path.join(dir, 'manifest.json'), 'utf8')) as ArtifactManifest;
  } catch (e) {
    throw new ArtifactError(`cannot read ${path.join(dir, 'manifest.json')}: ${(e as Error).message}`);
  }
  if (manifest.abi !== ABI_VERSION) throw new ArtifactError(`artifact ABI ${manifest.abi}, this runtime speaks ABI ${ABI_VERSION}`);
  if (typeof manifest.module !== 'string' || manifest.module.includes('/') || manifest.module.includes('\\')) throw new ArtifactError('manifest names no module file');
  const file = path.join(dir, manifest.module);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new ArtifactError(`cannot read ${file}: ${(e as Error).message}`);
  }
  let artifact = evaluateBundle(text, file);
  if (artifact === undefined) {
    const url = pathToFileURL(file);
    // A fresh query string per load, so a module written again at the same path is imported
    // anew — never a cached one that an earlier, refused upload left under the same hash.
    url.search = `?hash=${manifest.hash}&load=${++loads}`;
    artifact = (await import(url.href)).default as PolicyArtifact;
  }
  selfTest(artifact, manifest);
  return { artifact, manifest };
}

/** A compiled artifact as texts, as `compile()` returns it. */
export interface ArtifactTexts {
  module: string;
  moduleFile: string;
  sourceMap: string;
  manifest: ArtifactManifest;
}

/** The end of a module as esbuild bundles it: `export { name as default };`, then the source map comment. */
const BUNDLE_EXPORT = /^\nexport\s*\{\s*([A-Za-z_$][\w$]*)\s+as\s+default\s*\};?\s*((?:\/\/# sourceMappingURL=[^\n]*)?\s*)$/;

/**
 * Evaluates an artifact bundle so that it can be garbage-collected once nothing uses it,
 * or returns undefined when the text is not a self-contained bundle of that shape.
 *
 * A module loaded with `import()` stays in Node's module map for the life of the process:
 * every policy version a long-running `petrel run` ever loaded would stay in memory (0.5–0.9
 * MB of heap a reload for the shipped set, several MB for a set of thousands of domains). A bundle has no imports and one export at its end, so the same code, strict
 * as a module is, runs as the body of a function that returns the default export, and is
 * freed with its last reference. Anything else — a module with imports, another export
 * form, syntax only a module allows — does not compile as a function, and the caller
 * imports it as a module instead.
 */
export function evaluateBundle(text: string, file: string): PolicyArtifact | undefined {
  const at = text.lastIndexOf('\nexport');
  const tail = at < 0 ? null : BUNDLE_EXPORT.exec(text.slice(at));
  if (!tail) return undefined;
  // On the first line, so line numbers (and the source map) stay as they are.
  const body = `'use strict';${text.slice(0, at)}\nreturn ${tail[1]};\n${tail[2]}`;
  let evaluate: () => unknown;
  try {
    evaluate = vm.compileFunction(body, [], { filename: pathToFileURL(file).href }) as () => unknown;
  } catch (e) {
    if (e instanceof SyntaxError) return undefined;
    throw e;
  }
  return evaluate() as PolicyArtifact;
}

/** Writes an artifact into `dir` (created if missing) the way `loadArtifact` reads it: the manifest last, so a reader that finds a manifest finds its module. */
export async function writeArtifact(dir: string, texts: ArtifactTexts): Promise<void> {
  // The names come from the manifest, which may have come over the network (deploy).
  if (!/^[\w.-]+\.mjs$/.test(texts.moduleFile) || texts.moduleFile !== texts.manifest.module) throw new ArtifactError(`module file \`${String(texts.moduleFile).slice(0, 80)}\` is not a plain .mjs name matching the manifest`);
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, texts.moduleFile), texts.module);
  await writeFile(path.join(dir, `${texts.moduleFile}.map`), texts.sourceMap);
  await writeFile(path.join(dir, 'manifest.json'), JSON.stringify(texts.manifest, null, 2) + '\n');
}

/** Every member answers a plain question with the right kind of answer. */
function selfTest(a: PolicyArtifact, manifest: ArtifactManifest): void {
  const fail = (what: string) => {
    throw new ArtifactError(`artifact ${manifest.hash.slice(0, 12)} fails its self-test: ${what}`);
  };
  if (!a || typeof a !== 'object' || !Object.isFrozen(a)) fail('default export is not a frozen object');
  if (a.meta?.hash !== manifest.hash || a.meta.abi !== ABI_VERSION) fail('meta does not match the manifest');
  const route = a.route('example.com');
  if (typeof route !== 'string') fail('route() did not return a route id');
  const s = a.settings(route);
  if (!s || !Array.isArray(s.connections) || typeof s.expireSeconds !== 'number') fail('settings() did not return settings');
  const r = a.react(route, '250 2.0.0 OK');
  if (r.category !== 'success') fail('react() does not call a 250 reply a success');
  if (a.react(route, '550 5.1.1 no such user').disposition !== 'hard') fail('react() does not call 550 5.1.1 hard');
  const d = a.retryDelay(route, 1);
  if (d !== null && !(typeof d === 'number' && d > 0)) fail('retryDelay() returned neither a delay nor null');
  if (typeof a.warmupLimit('no-such-ramp', route, 0) !== 'number') fail('warmupLimit() did not return a number');
}

/**
 * Loads a module given as text (a compile result not yet written anywhere): evaluated as
 * a bundle, or else imported through a temporary file that is removed again. For
 * `petrel test` and tools; `petrel run` loads written artifacts with `loadArtifact`.
 */
export async function importArtifactText(artifact: { module: string; moduleFile: string; sourceMap?: string }): Promise<PolicyArtifact> {
  const evaluated = evaluateBundle(artifact.module, path.resolve(artifact.moduleFile));
  if (evaluated !== undefined) return evaluated;
  const dir = await mkdtemp(path.join(tmpdir(), 'petrel-artifact-'));
  const file = path.join(dir, artifact.moduleFile);
  try {
    await writeFile(file, artifact.module);
    // The map too: tools that follow the module's sourceMappingURL expect it beside it.
    if (artifact.sourceMap !== undefined) await writeFile(`${file}.map`, artifact.sourceMap);
    return (await import(pathToFileURL(file).href)).default as PolicyArtifact;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
