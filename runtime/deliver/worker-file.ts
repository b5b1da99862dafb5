/**
 * Where a worker thread's entry module is: the `.ts` file itself when running from source
 * (under tsx or vitest, so the worker loads tsx too), or the bundled `dist/<name>.mjs`
 * that scripts/build.mjs writes when running from the bundled CLI.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/**
 * `source` is the entry's `.ts` file, as its caller names it (`new URL('./x-worker.ts',
 * import.meta.url)`); bundled, its base name picks `dist/x-worker.mjs`.
 */
export function workerEntry(source: URL): { url: URL; execArgv: string[] } {
  if (fileURLToPath(import.meta.url).endsWith('.ts')) return { url: source, execArgv: ['--import', 'tsx'] };
  const name = path.basename(fileURLToPath(source), '.ts');
  return { url: pathToFileURL(path.join(packageRoot(), 'dist', `${name}.mjs`)), execArgv: [] };
}

/** The installed package's root: the nearest directory above this (bundled) module holding `package.json`. */
function packageRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    if (existsSync(path.join(dir, 'package.json'))) return dir;
    dir = path.dirname(dir);
  }
  throw new Error('cannot find the petrel package root from ' + fileURLToPath(import.meta.url));
}
