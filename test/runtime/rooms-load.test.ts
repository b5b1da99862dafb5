/**
 * Every room's public surface loads on its own, first, in a fresh process. An import cycle
 * between rooms (intake → deliver/index → observe → intake, say) leaves some binding
 * undefined while modules are still evaluating, and which file fails depends on which was
 * imported first: the runtime's own start-up order can hide it while a test or a CLI
 * command that enters through another room crashes at load. So each entry is imported
 * alone, as the first module of a new Node process.
 */
import { execFile } from 'node:child_process';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const ROOT = path.resolve(import.meta.dirname, '../..');
const rooms = readdirSync(path.join(ROOT, 'runtime'), { withFileTypes: true })
  .filter((e) => e.isDirectory())
  .map((e) => `runtime/${e.name}/index.ts`);
const ENTRIES = [...rooms, 'runtime/runtime.ts', 'cli/main.ts', 'simulate/index.ts', 'compiler/index.ts'];

describe('each public surface loads first, alone', () => {
  it.each(ENTRIES)('%s', async (entry) => {
    const run = promisify(execFile);
    const script = `await import(${JSON.stringify(path.join(ROOT, entry))});`;
    const { stderr } = await run(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: ROOT, timeout: 60_000 });
    expect(stderr).not.toMatch(/Error/);
  }, 70_000);
});
