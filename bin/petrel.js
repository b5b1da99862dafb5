#!/usr/bin/env node
// The `petrel` command. The CLI is bundled to dist/ by `npm run build` (run by `npm ci`).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const bundled = new URL('../dist/petrel.mjs', import.meta.url);
if (!existsSync(fileURLToPath(bundled))) {
  process.stderr.write('petrel: dist/petrel.mjs is missing; run `npm run build` first\n');
  process.exit(1);
}
const { main } = await import(bundled.href);
process.exitCode = await main(process.argv.slice(2));
