/**
 * The compile worker: builds a policy set and runs its `test` blocks against the built
 * module, off the delivery path (hot reload, runtime/policy-compiler.ts). One request at
 * a time; answers with the artifact's texts or with why it was refused.
 */
import { parentPort } from 'node:worker_threads';
import { COMPILER_VERSION, compile, diskHost, renderDiagnostics, runTests } from '../compiler/index.ts';
import { importArtifactText } from './loader.ts';
import type { CompileJob, CompileAnswer } from './policy-compiler.ts';

async function build(job: CompileJob): Promise<CompileAnswer> {
  const started = performance.now();
  const result = await compile({ inputs: job.inputs, host: diskHost(job.cwd), name: job.name });
  const render = () => renderDiagnostics(result.diagnostics, 'human', { sources: result.sources, toolVersion: COMPILER_VERSION, color: false });
  const problems = result.diagnostics.map((d) => ({ code: d.code, severity: d.severity, message: d.message, file: d.span.file, line: d.span.line, column: d.span.column }));
  if (!result.artifact) return { ok: false, stage: 'compile', report: render(), problems, ms: performance.now() - started };
  const artifact = await importArtifactText(result.artifact);
  const results = runTests(result.ir!.tests, artifact);
  const failed = results.filter((r) => !r.passed);
  if (failed.length > 0) {
    const lines = failed.flatMap((r) => [`FAIL ${r.loc.file}:${r.loc.line} ${r.name}`, ...r.failures.map((f) => `  ${f.loc.file}:${f.loc.line}: expect ${f.expectation}: expected ${f.expected}, got ${f.actual}`)]);
    return {
      ok: false,
      stage: 'test',
      report: `${lines.join('\n')}\ntests: ${results.length - failed.length} passed, ${failed.length} failed\n`,
      problems: failed.flatMap((r) => r.failures.map((f) => ({ code: 'TEST', severity: 'error', message: `test "${r.name}": expect ${f.expectation}: expected ${f.expected}, got ${f.actual}`, file: f.loc.file, line: f.loc.line, column: f.loc.column }))),
      ms: performance.now() - started,
    };
  }
  return { ok: true, artifact: result.artifact, tests: results.length, warnings: render(), ms: performance.now() - started };
}

parentPort!.on('message', (job: CompileJob) => {
  build(job).then(
    (answer) => parentPort!.postMessage(answer),
    (e: Error) => parentPort!.postMessage({ ok: false, stage: 'internal', report: `internal error: ${e.stack ?? e.message}\n`, problems: [], ms: 0 } satisfies CompileAnswer),
  );
});
