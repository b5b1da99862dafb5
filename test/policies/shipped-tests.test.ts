/** Every `test` block of the shipped policies and stdlib passes against the compiled artifact. */
import { describe, expect, it } from 'vitest';
import { runTests } from '../../compiler/run-tests.ts';
import { compileRepoFiles, loadArtifact, shippedFiles } from '../helpers.ts';

describe('shipped policy tests', () => {
  it('all pass, and there are at least 150', async () => {
    const result = await compileRepoFiles(shippedFiles());
    expect(result.diagnostics).toEqual([]);
    const results = runTests(result.ir!.tests, await loadArtifact(result));
    expect(results.length).toBeGreaterThanOrEqual(150);
    const failures = results.filter((r) => !r.passed).map((r) => ({ test: `${r.loc.file}:${r.loc.line} ${r.name}`, failures: r.failures }));
    expect(failures).toEqual([]);
  });
});
