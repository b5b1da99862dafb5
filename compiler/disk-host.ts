/** The compiler's view of the disk, for the CLI and the runtime's compile worker. */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { SourceHost } from './load.ts';

/** Reads files relative to `cwd`. Reads are cached: `use` checks existence before reading. */
export function diskHost(cwd: string): SourceHost {
  const cache = new Map<string, string | undefined>();
  return {
    cwd,
    readFile(absolutePath) {
      if (!cache.has(absolutePath)) {
        let text: string | undefined;
        try {
          text = readFileSync(absolutePath, 'utf8');
        } catch {
          text = undefined;
        }
        cache.set(absolutePath, text);
      }
      return cache.get(absolutePath);
    },
  };
}

/** Every `.policy` file under the directory `root`, sorted, as absolute paths (hidden entries and node_modules skipped). */
export function listPolicyFiles(root: string): string[] {
  const found: string[] = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      if (entry.name.startsWith('.') || entry.name === 'node_modules') continue;
      const child = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(child);
      else if (entry.isFile() && entry.name.endsWith('.policy')) found.push(child);
    }
  };
  walk(path.resolve(root));
  return found;
}
