/**
 * Golden diagnostics. Every registered code has a fixture under
 * `test/fixtures/diagnostics/` (`CODE.policy`, or `CODE/` when the mistake needs several
 * files) that triggers that code and nothing else. Tests assert on codes, severities and
 * positions, never on prose (as typescript-eslint's rule tests do); the wording is kept in
 * one human-rendered snapshot instead, so a change to a message shows up in review.
 *
 * `all-mistakes.policy` holds one mistake of every class `petrel check` must catch, and is
 * checked through the CLI itself.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { diskHost, findPolicyFiles } from '../../cli/common.ts';
import { main } from '../../cli/main.ts';
import { CODES, compile, renderDiagnostics, type CompileResult, type DiagnosticCode } from '../../compiler/index.ts';
import type { Diagnostic, Severity } from '../../grammar/index.ts';
import { ROOT } from '../helpers.ts';

const FIXTURES = 'test/fixtures/diagnostics';
const ALL_MISTAKES = 'all-mistakes';

/** A diagnostic reduced to what the tests assert: code, severity and where. */
interface Reported {
  code: string;
  severity: Severity;
  /** Only for directory fixtures: the file, relative to the fixture directory. */
  file?: string;
  line: number;
  column: number;
  /** Positions of related labels (`line:column`, prefixed by the file when it differs). */
  labels?: string[];
}

/**
 * What each fixture reports, in the compiler's order (by file, then position). A fixture
 * whose output is not listed here fails the registry test below.
 */
const EXPECTED: Record<string, Reported[]> = {
  PARSE001: [{ code: 'PARSE001', severity: 'error', line: 8, column: 7 }],
  PARSE002: [{ code: 'PARSE002', severity: 'error', line: 7, column: 3 }],
  PARSE003: [{ code: 'PARSE003', severity: 'error', line: 6, column: 8 }],
  PARSE004: [{ code: 'PARSE004', severity: 'error', line: 6, column: 8 }],
  PARSE005: [{ code: 'PARSE005', severity: 'error', line: 5, column: 11 }],
  PARSE006: [{ code: 'PARSE006', severity: 'error', line: 1, column: 1 }],
  RES001: [{ code: 'RES001', severity: 'error', line: 8, column: 9 }],
  RES002: [{ code: 'RES002', severity: 'error', line: 9, column: 8, labels: ['4:8'] }],
  RES003: [{ code: 'RES003', severity: 'error', file: 'warmup.policy', line: 3, column: 1 }],
  RES004: [{ code: 'RES004', severity: 'error', file: 'main.policy', line: 3, column: 1 }],
  RES005: [{ code: 'RES005', severity: 'error', file: 'main.policy', line: 6, column: 9 }],
  VAL001: [{ code: 'VAL001', severity: 'error', line: 7, column: 8 }],
  VAL002: [{ code: 'VAL002', severity: 'error', line: 7, column: 10 }],
  VAL003: [{ code: 'VAL003', severity: 'error', line: 6, column: 12 }],
  VAL004: [{ code: 'VAL004', severity: 'error', line: 6, column: 16 }],
  VAL005: [{ code: 'VAL005', severity: 'error', line: 9, column: 5 }],
  VAL006: [{ code: 'VAL006', severity: 'error', line: 10, column: 3, labels: ['6:3'] }],
  VAL007: [{ code: 'VAL007', severity: 'warning', line: 6, column: 3 }],
  VAL008: [{ code: 'VAL008', severity: 'error', line: 9, column: 16, labels: ['5:29'] }],
  VAL009: [{ code: 'VAL009', severity: 'error', line: 4, column: 10 }],
  VAL010: [{ code: 'VAL010', severity: 'error', line: 5, column: 38, labels: ['5:29'] }],
  VAL011: [{ code: 'VAL011', severity: 'error', line: 6, column: 16 }],
  VAL012: [{ code: 'VAL012', severity: 'error', line: 8, column: 3, labels: ['6:3'] }],
  VAL013: [{ code: 'VAL013', severity: 'error', line: 8, column: 5 }],
  VAL014: [{ code: 'VAL014', severity: 'warning', line: 7, column: 3, labels: ['6:3'] }],
  // One of each kind of number: count, rate, data rate, trigger count, duration, retry
  // delay, percentage, factor, warmup cap, test wait, test count, test day.
  VAL015: [
    { code: 'VAL015', severity: 'error', line: 6, column: 15 },
    { code: 'VAL015', severity: 'error', line: 7, column: 8 },
    { code: 'VAL015', severity: 'error', line: 8, column: 13 },
    { code: 'VAL015', severity: 'error', line: 9, column: 29 },
    { code: 'VAL015', severity: 'error', line: 14, column: 20 },
    { code: 'VAL015', severity: 'error', line: 19, column: 24 },
    { code: 'VAL015', severity: 'error', line: 19, column: 52 },
    { code: 'VAL015', severity: 'error', line: 20, column: 40 },
    { code: 'VAL015', severity: 'error', line: 24, column: 57 },
    { code: 'VAL015', severity: 'error', line: 29, column: 8 },
    { code: 'VAL015', severity: 'error', line: 30, column: 73 },
    { code: 'VAL015', severity: 'error', line: 31, column: 26 },
  ],
  VAL016: [{ code: 'VAL016', severity: 'error', line: 7, column: 5, labels: ['8:5'] }],
  TEST001: [{ code: 'TEST001', severity: 'error', line: 15, column: 17 }],
  TEST002: [{ code: 'TEST002', severity: 'error', line: 12, column: 6 }],
  [ALL_MISTAKES]: [
    { code: 'PARSE002', severity: 'error', line: 11, column: 3 },
    { code: 'PARSE003', severity: 'error', line: 12, column: 8 },
    { code: 'PARSE004', severity: 'error', line: 13, column: 16 },
    { code: 'RES001', severity: 'error', line: 14, column: 9 },
    { code: 'VAL003', severity: 'error', line: 16, column: 12 },
    { code: 'VAL004', severity: 'error', line: 20, column: 16 },
    { code: 'VAL007', severity: 'warning', line: 24, column: 3 },
    { code: 'VAL001', severity: 'error', line: 32, column: 8 },
    { code: 'VAL002', severity: 'error', line: 34, column: 3 },
    { code: 'VAL005', severity: 'error', line: 38, column: 5 },
    { code: 'VAL006', severity: 'error', line: 44, column: 3, labels: ['40:3'] },
    { code: 'VAL008', severity: 'error', line: 57, column: 25, labels: ['52:29'] },
    { code: 'VAL009', severity: 'error', line: 60, column: 10 },
    { code: 'RES002', severity: 'error', line: 69, column: 8, labels: ['64:8'] },
    { code: 'VAL010', severity: 'error', line: 78, column: 38, labels: ['78:29'] },
    { code: 'TEST001', severity: 'error', line: 84, column: 16 },
    { code: 'VAL015', severity: 'error', line: 89, column: 20 },
  ],
};

/** The mistakes `petrel check` must catch (from the issue), and the code each one gets. */
const MISTAKE_CLASSES: Record<string, DiagnosticCode> = {
  'syntax error': 'PARSE002',
  'unknown name, with "did you mean"': 'RES001',
  'duplicate definition': 'RES002',
  'missing unit': 'PARSE003',
  'wrong unit': 'PARSE004',
  'impossible value (a rate of zero)': 'VAL001',
  'expire shorter than the first retry': 'VAL002',
  'invalid regex': 'VAL003',
  'catastrophic-backtracking regex': 'VAL004',
  'rule that does not match its own example': 'VAL005',
  'rule shadowed by an earlier rule': 'VAL006',
  'rule with no example (a warning)': 'VAL007',
  'two providers claiming one domain': 'VAL008',
  'provider that matches nothing': 'VAL009',
  'warmup ramp that goes down': 'VAL010',
  'test block naming unknown things': 'TEST001',
  'a duration too large to mean anything (issue 11)': 'VAL015',
};

/** Every fixture: `CODE.policy` files and `CODE/` directories, by name without extension. */
function fixtureNames(): string[] {
  return readdirSync(path.join(ROOT, FIXTURES))
    .filter((entry) => entry.endsWith('.policy') || statSync(path.join(ROOT, FIXTURES, entry)).isDirectory())
    .map((entry) => entry.replace(/\.policy$/, ''))
    .sort();
}

/** The fixture's path relative to the repository root, as a user would pass it to `petrel check`. */
function fixturePath(name: string): string {
  const dir = `${FIXTURES}/${name}`;
  return isDirectory(dir) ? dir : `${dir}.policy`;
}

function isDirectory(relative: string): boolean {
  try {
    return statSync(path.join(ROOT, relative)).isDirectory();
  } catch {
    return false;
  }
}

const compiled = new Map<string, Promise<CompileResult>>();

/** Checks a fixture the way `petrel check` does (a directory means every file in it); memoised. */
function checkFixture(name: string): Promise<CompileResult> {
  let result = compiled.get(name);
  if (!result) {
    result = compile({ inputs: findPolicyFiles([fixturePath(name)], ROOT), host: diskHost(ROOT), name, checkOnly: true });
    compiled.set(name, result);
  }
  return result;
}

/** `d` as the tests compare it; `dir` is set for directory fixtures. */
function reported(d: Pick<Diagnostic, 'code' | 'severity' | 'span' | 'labels'>, dir?: string): Reported {
  const out: Reported = { code: d.code, severity: d.severity, line: d.span.line, column: d.span.column };
  if (dir !== undefined) out.file = path.posix.relative(dir, d.span.file);
  if (d.labels?.length) {
    out.labels = d.labels.map((l) => `${l.span.file === d.span.file ? '' : `${l.span.file}:`}${l.span.line}:${l.span.column}`);
  }
  return out;
}

function reportedFor(name: string, result: CompileResult): Reported[] {
  const dir = isDirectory(`${FIXTURES}/${name}`) ? `${FIXTURES}/${name}` : undefined;
  return result.diagnostics.map((d) => reported(d, dir));
}

const codeFixtures = fixtureNames().filter((name) => name !== ALL_MISTAKES);

describe('diagnostic fixtures', () => {
  it('cover the registry: one fixture per code, and no fixture for an unregistered code', () => {
    expect(codeFixtures).toEqual(Object.keys(CODES).sort());
    expect(fixtureNames().sort()).toEqual(Object.keys(EXPECTED).sort());
  });

  it.each(fixtureNames())('%s starts with a comment saying what mistake it contains', (name) => {
    const files = findPolicyFiles([fixturePath(name)], ROOT);
    expect(files.length).toBeGreaterThan(0);
    for (const file of files) expect(readFileSync(file, 'utf8')).toMatch(/^# \S.*\n/);
  });

  it.each(codeFixtures)('%s reports its own code and no other', async (name) => {
    const { diagnostics } = await checkFixture(name);
    expect(new Set(diagnostics.map((d) => d.code))).toEqual(new Set([name]));
    expect(diagnostics.every((d) => d.severity === CODES[name as DiagnosticCode].severity)).toBe(true);
  });

  it.each(fixtureNames())('%s reports the expected codes at the expected positions', async (name) => {
    expect(reportedFor(name, await checkFixture(name))).toEqual(EXPECTED[name]);
  });

  it('render to the human snapshot', async () => {
    const sections: string[] = [];
    for (const name of fixtureNames()) {
      const result = await checkFixture(name);
      const human = renderDiagnostics(result.diagnostics, 'human', { sources: result.sources, toolVersion: 'test' });
      sections.push(`=== ${fixturePath(name)}\n\n${human}`);
    }
    await expect(sections.join('\n')).toMatchFileSnapshot('./__snapshots__/diagnostics.human.txt');
  });

  it.each(fixtureNames())('%s never makes a full compile throw; warnings alone still build', async (name) => {
    const result = await compile({ inputs: findPolicyFiles([fixturePath(name)], ROOT), host: diskHost(ROOT), name, checkOnly: false });
    const errors = result.diagnostics.filter((d) => d.severity === 'error');
    expect(result.artifact === undefined).toBe(errors.length > 0);
  });
});

describe('`petrel check` on all-mistakes.policy', () => {
  async function check(): Promise<{ exit: number; diagnostics: (Reported & { help?: string })[] }> {
    const out: string[] = [];
    const exit = await main(['check', '--format', 'json', fixturePath(ALL_MISTAKES)], { out: (t) => out.push(t), err: () => {}, cwd: ROOT });
    return { exit, diagnostics: JSON.parse(out.join('')) };
  }

  it('reports every mistake, each at its line and column, and exits 3', async () => {
    const { exit, diagnostics } = await check();
    expect(exit).toBe(3);
    expect(diagnostics.map(({ code, severity, line, column }) => ({ code, severity, line, column }))).toEqual(
      EXPECTED[ALL_MISTAKES]!.map(({ code, severity, line, column }) => ({ code, severity, line, column })),
    );
  });

  it('has one diagnostic for each class of mistake the issue lists', async () => {
    const { diagnostics } = await check();
    for (const [mistake, code] of Object.entries(MISTAKE_CLASSES)) {
      expect(diagnostics.filter((d) => d.code === code), mistake).toHaveLength(1);
    }
    expect(diagnostics).toHaveLength(Object.keys(MISTAKE_CLASSES).length);
  });

  it('suggests the name that was meant for a misspelt one', async () => {
    const { diagnostics } = await check();
    expect(diagnostics.find((d) => d.code === 'RES001')?.help).toContain('`bulk`');
    expect(diagnostics.find((d) => d.code === 'TEST001')?.help).toContain('`provider:yahoo`');
  });
});

describe('shipped policies', () => {
  const shipped = findPolicyFiles(['policies', 'stdlib'], ROOT);

  it('check clean together', async () => {
    const result = await compile({ inputs: shipped, host: diskHost(ROOT), name: 'policies', checkOnly: true });
    expect(result.diagnostics.map((d) => reported(d))).toEqual([]);
  });

  it.each(shipped.map((file) => path.relative(ROOT, file)))('%s checks clean on its own', async (file) => {
    const result = await compile({ inputs: [file], host: diskHost(ROOT), name: 'policies', checkOnly: true });
    expect(result.diagnostics.map((d) => reported(d))).toEqual([]);
  });
});
