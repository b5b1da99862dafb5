/**
 * The dashboard's static files: the page, its script and stylesheet (static/ beside this
 * file in the source tree, dist/dashboard/ in the build: scripts/build.mjs copies them)
 * and uPlot's minified build and stylesheet from the installed `uplot` package. Read once,
 * at the first request, and kept: a few tens of kilobytes.
 *
 * INVARIANT: only the names listed in FILES are ever served — a request names an entry,
 * never a path on disk.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export interface Asset {
  type: string;
  body: Buffer;
}

const require = createRequire(import.meta.url);
/** Served name → where it comes from: a file of the dashboard's own, or one of a package. */
const FILES: Record<string, { own: string } | { module: string }> = {
  'index.html': { own: 'index.html' },
  'app.js': { own: 'app.js' },
  'style.css': { own: 'style.css' },
  'uPlot.js': { module: 'uplot/dist/uPlot.iife.min.js' },
  'uPlot.css': { module: 'uplot/dist/uPlot.min.css' },
};
const TYPES: Record<string, string> = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8' };

/** The folder of the dashboard's own files: static/ here (source), or dashboard/ in a parent (dist/chunks → dist/dashboard). */
function ownDir(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  if (existsSync(path.join(dir, 'static', 'index.html'))) return path.join(dir, 'static');
  for (let i = 0; i < 4; i++, dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'dashboard', 'index.html'))) return path.join(dir, 'dashboard');
  }
  throw new Error('the dashboard files are missing (dist/dashboard/: run `node scripts/build.mjs`)');
}

let cache: Map<string, Asset> | undefined;

/** The asset served as `name`, or undefined for any other name. Throws when the installed files are missing. */
export function dashboardAsset(name: string): Asset | undefined {
  if (!Object.hasOwn(FILES, name)) return undefined;
  if (!cache) {
    const dir = ownDir();
    cache = new Map(Object.entries(FILES).map(([n, from]) => [n, { type: TYPES[path.extname(n)]!, body: readFileSync('own' in from ? path.join(dir, from.own) : require.resolve(from.module)) }]));
  }
  return cache.get(name);
}
