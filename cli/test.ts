/** `petrel test`: run the `test` blocks against the compiled artifact. */
import { COMPILER_VERSION, compile, renderDiagnostics, renderGithubAnnotation, runTests, type TestResult } from '../compiler/index.ts';
import { importArtifactText } from '../runtime/index.ts';
import { defaultSetName, diskHost, EXIT, findPolicyFiles, parseCommandArgs, UsageError, type Io } from './common.ts';

export const TEST_HELP = `usage: petrel test [options] <paths…>

Build the policy files and run every \`test\` block against the compiled artifact (the
module the runtime loads), with the runtime's reaction state machine on a simulated clock.

options:
  --format <human|json|junit|github>
                               output format (default: human); github: a failing
                               expectation is an error annotation at its line, and
                               policy errors are annotations as \`petrel check\` makes them
  --filter <text>              run only tests whose name contains <text>
  --quiet                      human format: print only failures and the summary
  -h, --help                   show this help

exit codes: 0 all tests pass, 2 usage error, 3 a test failed or the policies have errors
`;

const FORMATS = ['human', 'json', 'junit', 'github'] as const;

export async function testCommand(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parseCommandArgs(argv, { format: { type: 'string' }, filter: { type: 'string' }, quiet: { type: 'boolean' } });
  if (values.help) {
    io.out(TEST_HELP);
    return EXIT.ok;
  }
  const format = (values.format ?? 'human') as (typeof FORMATS)[number];
  if (!FORMATS.includes(format)) throw new UsageError(`unknown format \`${values.format}\`; use one of ${FORMATS.join(', ')}`);
  if (positionals.length === 0) throw new UsageError('name at least one policy file or directory');
  const result = await compile({ inputs: findPolicyFiles(positionals, io.cwd), host: diskHost(io.cwd), name: defaultSetName(positionals, io.cwd) });
  if (!result.artifact) {
    const rendered = renderDiagnostics(result.diagnostics, format === 'github' ? 'github' : 'human', { sources: result.sources, toolVersion: COMPILER_VERSION });
    if (format === 'github') io.out(rendered);
    else io.err(rendered);
    return EXIT.policy;
  }
  const artifact = await importArtifactText(result.artifact);
  const tests = result.ir!.tests.filter((t) => values.filter === undefined || t.name.includes(values.filter));
  const results = runTests(tests, artifact);
  const render = { json: (r: TestResult[]) => JSON.stringify(r, null, 2) + '\n', junit, github, human: (r: TestResult[]) => human(r, values.quiet ?? false) }[format];
  io.out(render(results));
  return results.every((r) => r.passed) ? EXIT.ok : EXIT.policy;
}

function human(results: TestResult[], quiet: boolean): string {
  const lines: string[] = [];
  for (const r of results) {
    if (quiet && r.passed) continue;
    lines.push(`${r.passed ? 'PASS' : 'FAIL'} ${r.loc.file}:${r.loc.line} ${r.name}`);
    for (const f of r.failures) {
      lines.push(`  ${f.loc.file}:${f.loc.line}: expect ${f.expectation}`);
      lines.push(`    expected: ${f.expected}`);
      lines.push(`    actual:   ${f.actual}`);
    }
  }
  if (!quiet || results.some((r) => !r.passed)) lines.push('');
  lines.push(summary(results));
  return lines.join('\n') + '\n';
}

/** GitHub Actions annotations: one error at each failing expectation's line, then the summary. */
function github(results: TestResult[]): string {
  const annotations = results.flatMap((r) =>
    r.failures.map((f) => renderGithubAnnotation({ severity: 'error', file: f.loc.file, line: f.loc.line, column: f.loc.column, title: `petrel test: ${r.name}`, message: `expect ${f.expectation}: expected ${f.expected}, got ${f.actual}` })),
  );
  return annotations.join('') + summary(results) + '\n';
}

const summary = (results: TestResult[]) => {
  const failed = results.filter((r) => !r.passed).length;
  return `tests: ${results.length - failed} passed, ${failed} failed`;
};

const xml = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

function junit(results: TestResult[]): string {
  const byFile = new Map<string, TestResult[]>();
  for (const r of results) byFile.set(r.loc.file, [...(byFile.get(r.loc.file) ?? []), r]);
  const out = ['<?xml version="1.0" encoding="UTF-8"?>', `<testsuites name="petrel" tests="${results.length}" failures="${results.filter((r) => !r.passed).length}">`];
  for (const [file, list] of byFile) {
    out.push(`  <testsuite name="${xml(file)}" tests="${list.length}" failures="${list.filter((r) => !r.passed).length}">`);
    for (const r of list) {
      const open = `    <testcase name="${xml(r.name)}" classname="${xml(file)}" file="${xml(file)}" line="${r.loc.line}"`;
      if (r.passed) out.push(`${open}/>`);
      else {
        out.push(`${open}>`);
        for (const f of r.failures) {
          out.push(`      <failure message="${xml(`${f.loc.file}:${f.loc.line}: expect ${f.expectation}: expected ${f.expected}, got ${f.actual}`)}" type="expectation">${xml(`expected: ${f.expected}\nactual:   ${f.actual}`)}</failure>`);
        }
        out.push('    </testcase>');
      }
    }
    out.push('  </testsuite>');
  }
  out.push('</testsuites>');
  return out.join('\n') + '\n';
}
