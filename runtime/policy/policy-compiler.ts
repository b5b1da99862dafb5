/**
 * What the runtime asks of the policy compiler, which it does not contain: `petrel run`
 * (cli/policy-compiler.ts) injects an implementation that builds and tests in a worker
 * thread, so the delivery runtime imports no compiler code and never runs it on the
 * thread that accepts and delivers mail.
 */
import type { ArtifactManifest } from '../abi.ts';
import type { ArtifactTexts } from './loader.ts';

/** What to build: `.policy` files (absolute paths), read relative to `cwd`. */
export interface CompileJob {
  inputs: string[];
  cwd: string;
  name: string;
}

/** An uploaded version's test blocks, run against its artifact before it goes live. */
export interface TestJob {
  artifact: ArtifactTexts;
  /**
   * The `test` blocks as `petrel deploy` sent them: checked against the deploy request's
   * schema (deploy-request.ts) before they get here, otherwise opaque to the runtime.
   */
  tests: readonly unknown[];
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

/** Why a build or a test run was refused: the stage, what `petrel test` would print, and the problems. */
export interface CompileRefusal {
  ok: false;
  stage: 'compile' | 'test' | 'internal';
  report: string;
  problems: Problem[];
  ms: number;
}

export type CompileAnswer = { ok: true; artifact: { module: string; moduleFile: string; sourceMap: string; manifest: ArtifactManifest }; tests: number; warnings: string; ms: number } | CompileRefusal;

export type TestAnswer = { ok: true; tests: number; ms: number } | CompileRefusal;

export interface PolicyCompiler {
  /** The `.policy` files a build of directory `dir` compiles (for a git commit's export). */
  listInputs(dir: string): Promise<string[]>;
  build(job: CompileJob): Promise<CompileAnswer>;
  test(job: TestJob): Promise<TestAnswer>;
  close(): Promise<void>;
}
