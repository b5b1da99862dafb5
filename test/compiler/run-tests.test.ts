/** `petrel test` semantics: test blocks run against the compiled module with the reaction state machine. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runTests } from '../../compiler/run-tests.ts';
import { compileFiles, loadArtifact, runPetrel } from '../helpers.ts';

const POLICY = `policy acme version 1.0.0

provider acme {
  match domain acme.example
  match mx *.mx.acme.example
  rate 100/min per source
  retry {
    after 5m, 15m
    then every 1h
  }
  on reply 421 /rate limited/i when 3 in 10m {
    backoff 30m {
      rate 10/min per source
      retry every 20m
    }
    example "421 4.7.0 Rate limited, slow down"
  }
  on reply 554 /blocklisted/i {
    suspend source 2h
    example "554 5.7.1 Your IP is blocklisted"
  }
  on reply 550 5.1.1 {
    bounce bad-mailbox
    example "550 5.1.1 No such user"
  }
}

warmup cold {
  schedule 50/day, 100/day
}

source ip1 {
  address 192.0.2.1
}
`;

const TESTS = `
test "routes by domain and by MX" {
  deliver to a@acme.example
  expect route provider:acme
  deliver to a@brand.example mx mx1.mx.acme.example
  expect route provider:acme
  deliver to a@nobody.example
  expect route default
}

test "backoff starts on the third rate-limit within 10 minutes, and ends" {
  deliver to a@acme.example source ip1
  reply "421 4.7.0 Rate limited, slow down" 2 times
  expect no backoff
  expect disposition throttle
  reply "421 4.7.0 Rate limited, slow down"
  expect backoff 30m
  expect rate 10/min per source
  expect retry 20m
  wait 29m
  expect backoff
  wait 1m
  expect no backoff
  expect rate 100/min per source
}

test "hits outside the window do not add up" {
  deliver to a@acme.example
  reply "421 4.7.0 Rate limited, slow down" 2 times
  wait 11m
  reply "421 4.7.0 Rate limited, slow down"
  expect no backoff
}

test "a block suspends the source for two hours" {
  deliver to a@acme.example source ip1
  reply "554 5.7.1 Your IP is blocklisted"
  expect disposition block
  expect suspend source 2h
  wait 2h
  expect no suspend
}

test "bounces and retries" {
  deliver to a@acme.example
  reply "550 5.1.1 No such user"
  expect bounce bad-mailbox
  expect retry never
  deliver to b@acme.example
  reply "451 4.3.0 Temporary failure"
  expect retry 5m
  reply "451 4.3.0 Temporary failure"
  expect retry 15m
  reply "451 4.3.0 Temporary failure"
  expect retry 1h
}

test "warmup limits" {
  deliver to a@acme.example
  expect warmup cold day 1 limit 50
  expect warmup cold day 2 limit 100
  expect warmup cold day 3 limit unlimited
}
`;

const WRONG = `
test "deliberately wrong" {
  deliver to a@acme.example
  reply "550 5.1.1 No such user"
  expect category quota-issues
  expect backoff 30m
}
`;

const WRONG_LIMIT = `
test "limit spelt back as written" {
  deliver to a@acme.example
  expect rate 10/min per source
}
`;

describe('runTests', () => {
  it('passes every expectation of a correct test set', async () => {
    const result = await compileFiles({ 'acme.policy': POLICY + TESTS });
    expect(result.diagnostics).toEqual([]);
    const results = runTests(result.ir!.tests, await loadArtifact(result));
    expect(results.map((r) => [r.name, r.passed, r.failures])).toEqual(results.map((r) => [r.name, true, []]));
    expect(results).toHaveLength(6);
    expect(results.reduce((n, r) => n + r.checks, 0)).toBe(23);
  });

  it('reports each failed expectation with its line, expected and actual', async () => {
    const result = await compileFiles({ 'acme.policy': POLICY + WRONG });
    const [r] = runTests(result.ir!.tests, await loadArtifact(result));
    const base = POLICY.split('\n').length;
    expect(r!.passed).toBe(false);
    expect(r!.failures).toEqual([
      { loc: { file: 'acme.policy', line: base + 4, column: 3 }, expectation: 'category quota-issues', expected: 'quota-issues', actual: 'bad-mailbox' },
      { loc: { file: 'acme.policy', line: base + 5, column: 3 }, expectation: 'backoff 30m', expected: 'backoff 30m', actual: 'no backoff' },
    ]);
  });
});

describe('runTests limit expectations', () => {
  it('reports a wrong limit in policy spelling', async () => {
    const result = await compileFiles({ 'acme.policy': POLICY + WRONG_LIMIT });
    const [r] = runTests(result.ir!.tests, await loadArtifact(result));
    expect(r!.failures.map((f) => [f.expectation, f.expected, f.actual])).toEqual([['rate 10/min per source', '10/min per source', '100/min per source']]);
  });
});

describe('petrel test (binary)', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'petrel-test-cmd-'));
    writeFileSync(path.join(dir, 'good.policy'), POLICY + TESTS);
    const other = 'policy other version 1.0.0\n\nprovider other {\n  match domain other.example\n  on reply 550 5.1.1 {\n    bounce bad-mailbox\n    example "550 5.1.1 No such user"\n  }\n}\n';
    writeFileSync(path.join(dir, 'bad.policy'), other + WRONG.replace(/acme\.example/g, 'other.example'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('exits 0 when all pass and prints a summary', () => {
    const r = runPetrel(['test', 'good.policy'], { cwd: dir });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^PASS good\.policy:\d+ routes by domain and by MX$/m);
    expect(r.stdout).toMatch(/tests: 6 passed, 0 failed/);
  });

  it('prints only failures and the summary with --quiet', () => {
    const r = runPetrel(['test', '--quiet', 'good.policy', 'bad.policy'], { cwd: dir });
    expect(r.code).toBe(3);
    expect(r.stdout).not.toMatch(/^PASS/m);
    expect(r.stdout).toMatch(/^FAIL bad\.policy:\d+ deliberately wrong$/m);
    expect(r.stdout).toMatch(/tests: 6 passed, 1 failed\n$/);
  });

  it('exits 3 on a failing expectation and says where', () => {
    const r = runPetrel(['test', 'bad.policy'], { cwd: dir });
    expect(r.code).toBe(3);
    expect(r.stdout).toMatch(/^FAIL bad\.policy:\d+ deliberately wrong$/m);
    expect(r.stdout).toMatch(/bad\.policy:\d+: expect category quota-issues\n {4}expected: quota-issues\n {4}actual: {3}bad-mailbox/);
  });

  it('writes JUnit XML', () => {
    const r = runPetrel(['test', '--format', 'junit', 'good.policy', 'bad.policy'], { cwd: dir });
    expect(r.code).toBe(3);
    expect(r.stdout).toMatch(/^<\?xml version="1.0" encoding="UTF-8"\?>\n<testsuites name="petrel" tests="7" failures="1">/);
    expect(r.stdout).toMatch(/<testcase name="deliberately wrong" classname="bad.policy" file="bad.policy" line="\d+">\n\s+<failure message="bad.policy:\d+: expect category quota-issues: expected quota-issues, got bad-mailbox"/);
  });
});
