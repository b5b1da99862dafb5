import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CompileResult } from '../../../compiler/index.ts';
import { ArtifactError, loadArtifact } from '../../../runtime/index.ts';
import { evaluateBundle } from '../../../runtime/policy/loader.ts';
import { compileRepoFiles, ROOT, shippedFiles, writeArtifact } from '../../helpers.ts';

let dir: string;
let built: CompileResult;
let artifactDir: string;
beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'petrel-loader-'));
  built = await compileRepoFiles(shippedFiles());
  artifactDir = await writeArtifact(dir, built);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const REPLIES = ['250 2.0.0 OK 1700000000 x1-20020a05 - gsmtp', '421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred', '550 5.1.1 <a@b.example>: Recipient address rejected: User unknown', '554 5.7.1 Service unavailable; Client host [192.0.2.9] blocked using zen.spamhaus.org'];

describe('loadArtifact', () => {
  it('evaluates a bundle to the same answers as importing it as a module', async () => {
    const module = built.artifact!.module;
    const file = path.join(artifactDir, built.artifact!.moduleFile);
    const evaluated = evaluateBundle(module, file);
    expect(evaluated).toBeDefined();
    const imported = (await import(pathToFileURL(file).href)).default;
    expect(Object.isFrozen(evaluated)).toBe(true);
    for (const route of ['default', 'provider:google', 'provider:yahoo']) {
      for (const reply of REPLIES) expect(evaluated!.react(route, reply)).toEqual(imported.react(route, reply));
      expect(evaluated!.settings(route)).toEqual(imported.settings(route));
    }
    expect(evaluated!.route('gmail.com')).toBe(imported.route('gmail.com'));
  });

  it('imports as a module what is not a bundle of that shape, and refuses a module that fails its self-test', async () => {
    const module = built.artifact!.module;
    const other = path.join(dir, 'other');
    // Another export form, and an import: neither is the bundle shape, both still load.
    for (const [name, text] of [
      ['default-export', module.replace(/\nexport\s*\{\s*(\w+) as default\s*\};/, '\nexport default $1;')],
      ['with-import', `import 'node:path';\n${module}`],
    ] as const) {
      expect(text).not.toBe(module);
      expect(evaluateBundle(text, path.join(other, 'x.mjs')), name).toBeUndefined();
      const target = path.join(other, name);
      await writeArtifact(target, built);
      writeFileSync(path.join(target, 'artifact', built.artifact!.moduleFile), text);
      const { artifact } = await loadArtifact(path.join(target, 'artifact'));
      expect(artifact.react('default', '550 5.1.1 no such user').disposition, name).toBe('hard');
    }
    // A bundle whose react() is broken is evaluated, then refused by the self-test.
    const broken = path.join(other, 'broken');
    await writeArtifact(broken, built);
    const file = path.join(broken, 'artifact', built.artifact!.moduleFile);
    writeFileSync(file, readFileSync(file, 'utf8').replace('function react(routeId, reply, phase) {', 'function react(routeId, reply, phase) {\n  return { category: "other", disposition: null, actions: [] };'));
    await expect(loadArtifact(path.join(broken, 'artifact'))).rejects.toThrow(ArtifactError);
  });

  it('frees a version once nothing uses it: heap stays flat over 40 reloads', () => {
    // In a fresh process with --expose-gc: the same artifact loaded 40 times over, each
    // version used (react builds its scanner) and then dropped. Imported as ES modules,
    // every version would stay in the module map (about 0.5 MB each for the shipped set).
    const script = `
      const { loadArtifact } = await import(${JSON.stringify(pathToFileURL(path.join(ROOT, 'runtime', 'policy', 'loader.ts')).href)});
      const replies = ${JSON.stringify(REPLIES)};
      let live;
      const load = async () => {
        live = (await loadArtifact(${JSON.stringify(artifactDir)})).artifact;
        for (const r of replies) for (const route of ['default', 'provider:google', 'provider:microsoft']) live.react(route, r);
      };
      for (let i = 0; i < 5; i++) await load();
      globalThis.gc(); globalThis.gc();
      const before = process.memoryUsage().heapUsed;
      for (let i = 0; i < 40; i++) await load();
      globalThis.gc(); globalThis.gc();
      process.stdout.write(JSON.stringify({ growthMB: (process.memoryUsage().heapUsed - before) / 1048576 }));`;
    const r = spawnSync(process.execPath, ['--expose-gc', '--import', 'tsx', '--input-type=module', '-e', script], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
    expect(r.status, r.stderr).toBe(0);
    const { growthMB } = JSON.parse(r.stdout) as { growthMB: number };
    expect(growthMB).toBeLessThan(4);
  }, 150_000);
});
