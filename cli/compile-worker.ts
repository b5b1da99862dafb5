/**
 * The compile worker (cli/policy-compiler.ts starts it): builds a policy set and runs its
 * `test` blocks against the built module, or runs an uploaded version's tests against its
 * artifact, off the delivery path. One job at a time; answers with the artifact's texts,
 * the number of tests passed, or why it was refused.
 */
import { parentPort } from 'node:worker_threads';
import { COMPILER_VERSION, compile, diskHost, renderDiagnostics, runTests, type IRTest } from '../compiler/index.ts';
import { importArtifactText, type CompileAnswer, type CompileJob, type TestAnswer, type TestJob } from '../runtime/index.ts';
import { testFailures, type WorkerJob } from './policy-compiler.ts';

async function build(job: CompileJob): Promise<CompileAnswer> {
  const started = performance.now();
  const result = await compile({ inputs: job.inputs, host: diskHost(job.cwd), name: job.name });
  const render = () => renderDiagnostics(result.diagnostics, 'human', { sources: result.sources, toolVersion: COMPILER_VERSION, color: false });
  const problems = result.diagnostics.map((d) => ({ code: d.code, severity: d.severity, message: d.message, file: d.span.file, line: d.span.line, column: d.span.column }));
  if (!result.artifact) return { ok: false, stage: 'compile', report: render(), problems, ms: performance.now() - started };
  const artifact = await importArtifactText(result.artifact);
  const results = runTests(result.ir!.tests, artifact);
  const failures = testFailures(results);
  if (failures) return { ok: false, stage: 'test', ...failures, ms: performance.now() - started };
  return { ok: true, artifact: result.artifact, tests: results.length, warnings: render(), ms: performance.now() - started };
}

/** Runs uploaded tests; the deploy endpoint checked them against its schema (runtime/policy/deploy-request.ts). */
async function test(job: TestJob): Promise<TestAnswer> {
  const started = performance.now();
  const results = runTests(job.tests as IRTest[], await importArtifactText(job.artifact));
  const failures = testFailures(results);
  if (failures) return { ok: false, stage: 'test', ...failures, ms: performance.now() - started };
  return { ok: true, tests: results.length, ms: performance.now() - started };
}

parentPort!.on('message', (message: WorkerJob) => {
  (message.kind === 'build' ? build(message.job) : test(message.job)).then(
    (answer) => parentPort!.postMessage(answer),
    (e: Error) => parentPort!.postMessage({ ok: false, stage: 'internal', report: `internal error: ${e.stack ?? e.message}\n`, problems: [], ms: 0 } satisfies CompileAnswer),
  );
});
