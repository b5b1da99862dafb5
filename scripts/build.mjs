// Bundles the CLI into dist/ so `npx petrel` starts fast without a TypeScript loader.
// Runs from `npm ci` (prepare) and before the tests.
import { cpSync } from 'node:fs';
import { build } from 'esbuild';

await build({
  // Worker threads are entries of their own (runtime/deliver/worker-file.ts finds them in dist/).
  entryPoints: { petrel: 'cli/main.ts', 'compile-worker': 'cli/compile-worker.ts', 'delivery-worker': 'runtime/deliver/delivery-worker.ts', 'dkim-worker': 'runtime/intake/dkim-worker.ts' },
  outdir: 'dist',
  outExtension: { '.js': '.mjs' },
  // Each command is its own chunk, loaded when it runs.
  splitting: true,
  chunkNames: 'chunks/[name]-[hash]',
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  packages: 'external',
  sourcemap: true,
  logLevel: 'warning',
});

// The dashboard's page, script and stylesheet (runtime/observe/dashboard/assets.ts finds them in dist/dashboard/).
cpSync('runtime/observe/dashboard/static', 'dist/dashboard', { recursive: true });
