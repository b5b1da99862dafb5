/**
 * Where a worker thread's entry module is: the `.ts` file beside this one when running
 * from source (under tsx or vitest, so the worker loads tsx too), or the bundled
 * `dist/<name>.mjs` that scripts/build.mjs writes when running from the bundled CLI.
 */
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { packageRoot } from '../compiler/paths.ts';

export function workerEntry(name: string): { url: URL; execArgv: string[] } {
  if (fileURLToPath(import.meta.url).endsWith('.ts')) return { url: new URL(`./${name}.ts`, import.meta.url), execArgv: ['--import', 'tsx'] };
  return { url: pathToFileURL(path.join(packageRoot(), 'dist', `${name}.mjs`)), execArgv: [] };
}
