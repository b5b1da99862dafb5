/**
 * The policy compiler `petrel run` injects into the runtime (runtime/policy/policy-compiler.ts
 * is the interface): a worker thread builds a set and runs its `test` blocks, or runs an
 * uploaded version's tests (compile-worker.ts), so acceptance and delivery on the main
 * thread never wait on the compiler's CPU and the runtime holds no compiler code. One job
 * at a time; the worker stays up between jobs (no start-up cost per push) and is replaced
 * after `recycleAfter` jobs, because every module it imported to test stays in its memory.
 */
import { Worker } from 'node:worker_threads';
import { listPolicyFiles, type TestResult } from '../compiler/index.ts';
import { workerEntry, type CompileAnswer, type CompileJob, type PolicyCompiler, type Problem, type TestAnswer, type TestJob } from '../runtime/index.ts';

/** A message to the compile worker; its answer is the matching `CompileAnswer` or `TestAnswer`. */
export type WorkerJob = { kind: 'build'; job: CompileJob } | { kind: 'test'; job: TestJob };

/**
 * The failed expectations of a test run, as problems and as a report (what `petrel test`
 * prints for failures, and the summary line); undefined when every test passed. The
 * compile worker, `petrel deploy` and the runtime's deploy endpoint all refuse with it.
 */
export function testFailures(results: readonly TestResult[]): { problems: Problem[]; report: string } | undefined {
  const failed = results.filter((r) => !r.passed);
  if (failed.length === 0) return undefined;
  const problems: Problem[] = [];
  const lines: string[] = [];
  for (const r of failed) {
    lines.push(`FAIL ${r.loc.file}:${r.loc.line} ${r.name}`);
    for (const f of r.failures) {
      const what = `expect ${f.expectation}: expected ${f.expected}, got ${f.actual}`;
      lines.push(`  ${f.loc.file}:${f.loc.line}: ${what}`);
      problems.push({ code: 'TEST', severity: 'error', message: `test "${r.name}": ${what}`, file: f.loc.file, line: f.loc.line, column: f.loc.column });
    }
  }
  return { problems, report: `${lines.join('\n')}\ntests: ${results.length - failed.length} passed, ${failed.length} failed\n` };
}

export function createPolicyCompiler(options: { recycleAfter?: number } = {}): PolicyCompiler {
  const recycleAfter = options.recycleAfter ?? 20;
  let worker: Worker | undefined;
  let jobs = 0;
  let queue: Promise<unknown> = Promise.resolve();

  const start = (): Worker => {
    const entry = workerEntry(new URL('./compile-worker.ts', import.meta.url));
    const w = new Worker(entry.url, { execArgv: entry.execArgv });
    // An idle compile worker must not keep the process alive.
    w.unref();
    return w;
  };

  const run = (message: WorkerJob): Promise<CompileAnswer | TestAnswer> =>
    new Promise((resolve) => {
      if (!worker) {
        worker = start();
        jobs = 0;
      }
      jobs++;
      const w = worker;
      const done = (answer: CompileAnswer | TestAnswer) => {
        w.off('message', done);
        w.off('error', failed);
        w.off('exit', exited);
        // Replace a worn worker now, while nothing waits, so the next job pays no start-up.
        if (worker === w && jobs >= recycleAfter) {
          void w.terminate();
          worker = start();
          jobs = 0;
        }
        resolve(answer);
      };
      const failed = (e: Error) => {
        if (worker === w) worker = undefined;
        done({ ok: false, stage: 'internal', report: `compile worker failed: ${e.message}\n`, problems: [], ms: 0 });
      };
      const exited = (code: number) => failed(new Error(`exited with code ${code}`));
      w.on('message', done);
      w.on('error', failed);
      w.on('exit', exited);
      w.postMessage(message);
    });

  /** Runs jobs one after another; the worker answers a job of each kind with its kind of answer. */
  const serial = <A extends CompileAnswer | TestAnswer>(message: WorkerJob): Promise<A> => {
    const answer = queue.then(() => run(message) as Promise<A>);
    queue = answer.catch(() => undefined);
    return answer;
  };

  return {
    listInputs: async (dir) => listPolicyFiles(dir),
    build: (job) => serial<CompileAnswer>({ kind: 'build', job }),
    test: (job) => serial<TestAnswer>({ kind: 'test', job }),
    async close() {
      await queue;
      await worker?.terminate();
      worker = undefined;
    },
  };
}
