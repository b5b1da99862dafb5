/**
 * A stdlib the user owns: a policy set that holds its own `stdlib/X.policy` (a vendored or
 * edited copy) gets that file for `use stdlib/X`, and the packaged one is not loaded. A name
 * defined in two different files is one RES002 naming both; RES005 is never reported for a
 * file that has the `use`.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { compile, load, runTests, stdlibDir, stdlibUses, type CompileResult } from '../../compiler/index.ts';
import { loadArtifact, memoryHost, ROOT, shippedFiles } from '../helpers.ts';

/** The shipped `policies/` and `stdlib/` as a user's copy of them, by path relative to the virtual cwd. */
function copiedLayout(): Record<string, string> {
  return Object.fromEntries(shippedFiles().map((p) => [p, readFileSync(path.join(ROOT, p), 'utf8')]));
}

function compileSet(files: Record<string, string>, checkOnly = false): Promise<CompileResult> {
  return compile({ inputs: Object.keys(files), host: memoryHost(files), name: 'acme', checkOnly });
}

const where = (r: CompileResult) => r.diagnostics.map((d) => `${d.code} ${d.span.file}:${d.span.line}:${d.span.column}`);

/** A provider on the `standard` curve, and a test that passes only when its first retry is `first`. */
const onStandard = (first: string) => `policy acme version 1
use stdlib/retry

provider acme {
  match domain acme.example
  retry standard
}

test "the first retry follows the set's standard curve" {
  deliver to someone@acme.example
  reply "421 4.7.0 try again later"
  expect retry ${first}
}
`;

describe('use stdlib/X with the set holding stdlib/X.policy', () => {
  it('the copied layout (policies + stdlib) checks clean, builds from its own stdlib only, and its tests pass', async () => {
    const result = await compileSet(copiedLayout());
    expect(where(result)).toEqual([]);
    const loaded = result.ir!.files.map((f) => f.path);
    expect(loaded.filter((p) => p.startsWith('petrel:'))).toEqual([]);
    expect(loaded).toContain('stdlib/retry.policy');
    const results = runTests(result.ir!.tests, await loadArtifact(result));
    expect(results.length).toBeGreaterThan(100);
    expect(results.filter((r) => !r.passed).map((r) => r.name)).toEqual([]);
  });

  it('an edited vendored curve takes effect (and the same test fails against the packaged one)', async () => {
    const packaged = readFileSync(path.join(ROOT, 'stdlib/retry.policy'), 'utf8');
    const edited = packaged.replace('after 5m, 10m, 20m, 40m', 'after 7m, 10m, 20m, 40m');
    expect(edited).not.toBe(packaged);

    const own = await compileSet({ 'policies/acme.policy': onStandard('7m'), 'stdlib/retry.policy': edited });
    expect(where(own)).toEqual([]);
    expect(runTests(own.ir!.tests, await loadArtifact(own)).map((r) => r.passed)).toEqual([true]);

    const shipped = await compileSet({ 'policies/acme.policy': onStandard('7m') });
    expect(shipped.ir!.files.map((f) => f.path)).toContain('petrel:stdlib/retry.policy');
    expect(runTests(shipped.ir!.tests, await loadArtifact(shipped)).map((r) => r.passed)).toEqual([false]);
  });

  it('stdlibUses says which copy each `use stdlib/…` loaded', () => {
    const files = { 'policies/acme.policy': onStandard('5m') + 'use stdlib/bounces\n', 'stdlib/retry.policy': readFileSync(path.join(ROOT, 'stdlib/retry.policy'), 'utf8') };
    const set = load(Object.keys(files), memoryHost(files), stdlibDir());
    expect(stdlibUses(set).map((u) => `${u.file}:${u.line}:${u.column} ${u.use} ${u.resolved} ${u.from}`)).toEqual([
      'policies/acme.policy:2:1 stdlib/retry stdlib/retry.policy set',
      'policies/acme.policy:14:1 stdlib/bounces petrel:stdlib/bounces.policy packaged',
    ]);
  });

  it('of two copies of stdlib/retry, each file gets the one under its nearest ancestor', async () => {
    const curve = (first: string) => `policy stdlib-retry version 1\nretry standard {\n  after ${first}\n  expire 1d\n}\n`;
    const files = {
      'a/policies/acme.policy': onStandard('7m'),
      'a/stdlib/retry.policy': curve('7m'),
      'b/stdlib/retry.policy': curve('9m'),
    };
    const set = load(Object.keys(files), memoryHost(files), stdlibDir());
    expect(stdlibUses(set).map((u) => u.resolved)).toEqual(['a/stdlib/retry.policy']);
    // Both copies are inputs and define `standard`: one RES002, at the later, naming both.
    const result = await compileSet(files, true);
    expect(where(result)).toEqual(['RES002 b/stdlib/retry.policy:2:7']);
  });
});

describe('a name defined in two different files', () => {
  it('is one RES002 at the user file, naming both files with their lines, with a label at the other', async () => {
    const files = { 'policies/acme.policy': onStandard('5m') + '\nretry standard {\n  after 1m\n  expire 1d\n}\n' };
    const result = await compileSet(files, true);
    expect(where(result)).toEqual(['RES002 policies/acme.policy:15:7']);
    const [d] = result.diagnostics;
    expect(d!.labels!.map((l) => `${l.span.file}:${l.span.line}:${l.span.column}`)).toEqual(['petrel:stdlib/retry.policy:15:7']);
    expect(d!.message).toContain('`policies/acme.policy:15`');
    expect(d!.message).toContain('`petrel:stdlib/retry.policy:15`');
    expect(d!.help).toContain('`stdlib/retry.policy`');
  });

  it('three definitions are still one RES002, with a label at each other definition', async () => {
    const curve = (name: string) => `policy ${name} version 1\nretry slow {\n  after 1h\n  expire 1d\n}\n`;
    const result = await compileSet({ 'a.policy': curve('a'), 'b.policy': curve('b'), 'c.policy': curve('c') }, true);
    expect(where(result)).toEqual(['RES002 c.policy:2:7']);
    expect(result.diagnostics[0]!.labels!.map((l) => `${l.span.file}:${l.span.line}:${l.span.column}`)).toEqual(['a.policy:2:7', 'b.policy:2:7']);
  });

  it('is no RES005 for a file that uses one of the defining files', async () => {
    // other.policy comes first, so its `standard` is the first definition; acme.policy
    // does not use it, but it uses stdlib/retry, which defines `standard` too.
    const files = { 'policies/a-other.policy': 'policy other version 1\nretry standard {\n  after 1m\n  expire 1d\n}\n', 'policies/acme.policy': onStandard('5m') };
    const result = await compileSet(files, true);
    expect(where(result)).toEqual(['RES002 policies/a-other.policy:2:7']);
  });

  it('a name seen only in a file not used is still RES005, naming that file', async () => {
    const files = { 'policies/acme.policy': onStandard('5m').replace('use stdlib/retry\n', ''), 'policies/curves.policy': 'policy curves version 1\nretry standard {\n  after 1m\n  expire 1d\n}\n' };
    const result = await compileSet(files, true);
    expect(where(result)).toEqual(['RES005 policies/acme.policy:5:9']);
  });
});
