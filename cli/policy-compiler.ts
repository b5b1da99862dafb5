/**
 * Compiling policy versions off the delivery path: a worker thread builds the set and
 * runs its `test` blocks (compile-worker.ts), so acceptance and delivery on the
 * main thread never wait on the compiler's CPU. One build at a time; the worker stays up
 * between builds (no start-up cost per push) and is replaced after `recycleAfter` builds,
 * because every module it imported to test stays in its memory.
 */
import { Worker } from 'node:worker_threads';
import type { TestResult } from '../../compiler/index.ts';
import type { ArtifactManifest } from '../abi.ts';
import { workerEntry } from '../deliver/index.ts';

/** What to build: `.policy` files (absolute paths), read relative to `cwd`. */
export interface CompileJob {
  inputs: string[];
  cwd: string;
  name: string;
}

/** One diagnostic or failed expectation, for `/api/v1/policy` and logs. */
export interface Problem {
  code: string;
  severity: string;
  message: string;
  file: string;
  line: number;
  column: number;
}

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

export type CompileAnswer =
  | { ok: true; artifact: { module: string; moduleFile: string; sourceMap: string; manifest: ArtifactManifest }; tests: number; warnings: string; ms: number }
  | { ok: false; stage: 'compile' | 'test' | 'internal'; report: string; problems: Problem[]; ms: number };

export interface PolicyCompiler {
  build(job: CompileJob): Promise<CompileAnswer>;
  close(): Promise<void>;
}

export function createPolicyCompiler(options: { recycleAfter?: number } = {}): PolicyCompiler {
  const recycleAfter = options.recycleAfter ?? 20;
  let worker: Worker | undefined;
  let builds = 0;
  let queue: Promise<unknown> = Promise.resolve();

  const start = (): Worker => {
    const entry = workerEntry(new URL('./compile-worker.ts', import.meta.url));
    const w = new Worker(entry.url, { execArgv: entry.execArgv });
    // An idle compile worker must not keep the process alive.
    w.unref();
    return w;
  };

  const run = (job: CompileJob): Promise<CompileAnswer> =>
    new Promise((resolve) => {
      if (!worker) {
        worker = start();
        builds = 0;
      }
      builds++;
      const w = worker;
      const done = (answer: CompileAnswer) => {
        w.off('message', done);
        w.off('error', failed);
        w.off('exit', exited);
        // Replace a worn worker now, while nothing waits, so the next build pays no start-up.
        if (worker === w && builds >= recycleAfter) {
          void w.terminate();
          worker = start();
          builds = 0;
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
      w.postMessage(job);
    });

  return {
    build(job) {
      const answer = queue.then(() => run(job));
      queue = answer.catch(() => undefined);
      return answer;
    },
    async close() {
      await queue;
      await worker?.terminate();
      worker = undefined;
    },
  };
}
