/**
 * Where the package's own files are: the stdlib policies and the helper library that
 * every artifact bundles. Found from this module's location, which is `compiler/` when
 * run from source and `dist/` when run from the bundled CLI.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The package root (the directory holding `package.json`, `compiler/` and `stdlib/`). */
export function packageRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    if (existsSync(path.join(dir, 'compiler', 'artifact-lib.ts')) && existsSync(path.join(dir, 'package.json'))) return dir;
    dir = path.dirname(dir);
  }
  throw new Error('cannot find the petrel package root from ' + fileURLToPath(import.meta.url));
}

/** The shipped stdlib directory, which `use stdlib/…` resolves against. */
export function stdlibDir(): string {
  return path.join(packageRoot(), 'stdlib');
}
