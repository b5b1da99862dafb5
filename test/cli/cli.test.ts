/** The real `petrel` binary: exit codes, output formats, and what `build` writes. */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ArtifactManifest, PolicyArtifact } from '../../runtime/abi.ts';
import { runPetrel } from '../helpers.ts';

let dir: string;
const BROKEN = `policy broken version 1.0.0
use stdlib/retry

provider acme {
  match domain acme.example
  rate 3600 per source
  retry bulkk
}
`;
const WARNING_ONLY = `policy warn version 1.0.0

provider acme {
  match domain acme.example
  on reply 550 /unknown user/i {
    bounce bad-mailbox
  }
}
`;

/** Two tests: one passes, one has two expectations, the second of which fails. */
const FAILING_TEST = `policy failing version 1.0.0
use stdlib/bounces

default {
  connections 5 per source
}

test "passes" {
  deliver to x@example.com
  reply "550 5.1.1 no such user"
  expect bounce bad-mailbox
}

test "unknown user is spam, says nobody" {
  deliver to x@example.com
  reply "550 5.1.1 no such user"
  expect bounce bad-mailbox
  expect bounce spam-related
}
`;

beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'petrel-cli-'));
  writeFileSync(path.join(dir, 'broken.policy'), BROKEN);
  writeFileSync(path.join(dir, 'warn.policy'), WARNING_ONLY);
  mkdirSync(path.join(dir, 'tests'));
  writeFileSync(path.join(dir, 'tests', 'failing.policy'), FAILING_TEST);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('petrel (usage)', () => {
  it('prints help and exits 0 with --help, 2 with no command', () => {
    const help = runPetrel(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/usage: petrel <command>/);
    expect(help.stdout).toMatch(/check/);
    expect(runPetrel([]).code).toBe(2);
  });

  it('rejects unknown commands and options by name with exit 2', () => {
    const cmd = runPetrel(['chek']);
    expect(cmd.code).toBe(2);
    expect(cmd.stderr).toMatch(/unknown command `chek`/);
    const opt = runPetrel(['check', '--colour', 'policies']);
    expect(opt.code).toBe(2);
    expect(opt.stderr).toMatch(/unknown option `--colour`/);
    const fmt = runPetrel(['check', '--format', 'xml', 'policies']);
    expect(fmt.code).toBe(2);
    expect(fmt.stderr).toMatch(/unknown format `xml`/);
    expect(runPetrel(['check', 'no/such/dir']).code).toBe(2);
    expect(runPetrel(['build', 'policies']).stderr).toMatch(/--out DIR/);
  });

  it('has --help on each command', () => {
    for (const command of ['check', 'build', 'test', 'fmt']) {
      const r = runPetrel([command, '--help']);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`usage: petrel ${command}`));
    }
  });
});

describe('petrel check', () => {
  it('passes the shipped policies and stdlib with exit 0', () => {
    const r = runPetrel(['check', 'policies', 'stdlib', '--deny-warnings']);
    expect(r.stderr).toMatch(/no problems/);
    expect(r.code).toBe(0);
  });

  it('reports errors with positions, source line, underline and help, exit 3', () => {
    const r = runPetrel(['check', path.join(dir, 'broken.policy')], { cwd: dir });
    expect(r.code).toBe(3);
    expect(r.stderr).toContain('broken.policy:6:8: error[PARSE003]: missing time unit');
    expect(r.stderr).toContain(' 6 |   rate 3600 per source');
    expect(r.stderr).toContain('broken.policy:7:9: error[RES001]: unknown retry curve `bulkk`');
    expect(r.stderr).toContain('= help: did you mean `bulk`?');
    expect(r.stderr).toMatch(/2 errors, 0 warnings/);
  });

  it('prints JSON diagnostics', () => {
    const r = runPetrel(['check', '--format', 'json', 'broken.policy'], { cwd: dir });
    expect(r.code).toBe(3);
    const list = JSON.parse(r.stdout) as { code: string; line: number; column: number; file: string }[];
    expect(list.map((d) => [d.code, d.file, d.line, d.column])).toEqual([
      ['PARSE003', 'broken.policy', 6, 8],
      ['RES001', 'broken.policy', 7, 9],
    ]);
  });

  it('prints GitHub annotations', () => {
    const r = runPetrel(['check', '--format', 'github', 'broken.policy'], { cwd: dir });
    expect(r.code).toBe(3);
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^::error file=broken\.policy,line=6,col=8,endLine=6,endColumn=\d+,title=PARSE003::missing time unit/);
    expect(lines[1]).toMatch(/^::error file=broken\.policy,line=7,col=9,.*title=RES001::unknown retry curve `bulkk` \(help: did you mean `bulk`\?\)$/);
  });

  it('prints SARIF 2.1.0 with the rule registry', () => {
    const r = runPetrel(['check', '--format', 'sarif', 'broken.policy'], { cwd: dir });
    expect(r.code).toBe(3);
    const log = JSON.parse(r.stdout);
    expect(log.version).toBe('2.1.0');
    const run = log.runs[0];
    expect(run.tool.driver.name).toBe('petrel');
    expect(run.tool.driver.rules.map((x: { id: string }) => x.id)).toContain('VAL004');
    expect(run.results.map((x: { ruleId: string }) => x.ruleId)).toEqual(['PARSE003', 'RES001']);
    expect(run.results[0].locations[0].physicalLocation.region).toMatchObject({ startLine: 6, startColumn: 8 });
  });

  it('exits 0 on warnings, 3 with --deny-warnings', () => {
    const plain = runPetrel(['check', 'warn.policy'], { cwd: dir });
    expect(plain.code).toBe(0);
    expect(plain.stderr).toMatch(/warning\[VAL007\]/);
    expect(runPetrel(['check', '--deny-warnings', 'warn.policy'], { cwd: dir }).code).toBe(3);
  });
});

describe('petrel test --format github', () => {
  it('annotates each failing expectation at its line, with the test as title, and exits 3', () => {
    const r = runPetrel(['test', '--format', 'github', 'tests'], { cwd: dir });
    expect(r.code).toBe(3);
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(2);
    // Where, and the title with GitHub's escapes; the wording of expected/actual is run-tests.ts's.
    expect(lines[0]).toMatch(/^::error file=tests\/failing\.policy,line=18,col=3,title=petrel test%3A unknown user is spam%2C says nobody::expect bounce spam-related: expected .*spam-related.*, got .*bad-mailbox/);
    expect(lines[1]).toBe('tests: 1 passed, 1 failed');
  });

  it('prints no annotation when every test passes', () => {
    const r = runPetrel(['test', '--format', 'github', '--filter', 'passes', 'tests'], { cwd: dir });
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('tests: 1 passed, 0 failed\n');
  });

  it('annotates policy errors as check does, on stdout', () => {
    const r = runPetrel(['test', '--format', 'github', 'broken.policy'], { cwd: dir });
    expect(r.code).toBe(3);
    expect(r.stdout).toMatch(/^::error file=broken\.policy,line=6,col=8,endLine=6,endColumn=\d+,title=PARSE003::missing time unit/);
  });
});

describe('petrel build', () => {
  it('writes a manifest and a module that answers per the ABI; two builds are byte-identical', async () => {
    const out1 = path.join(dir, 'out1');
    const out2 = path.join(dir, 'out2');
    const b1 = runPetrel(['build', 'policies', 'stdlib', '--out', out1]);
    expect(b1.code, b1.stderr).toBe(0);
    expect(runPetrel(['build', 'policies', 'stdlib', '--out', out2]).code).toBe(0);
    const manifest = JSON.parse(readFileSync(path.join(out1, 'manifest.json'), 'utf8')) as ArtifactManifest;
    expect(manifest).toMatchObject({ name: 'policies', abi: 1, compiler: { name: 'petrel' } });
    expect(Object.keys(manifest).sort()).toEqual(['abi', 'compiler', 'delivery', 'hash', 'module', 'name', 'sources', 'version']);
    expect(readdirSync(out1).sort()).toEqual(['manifest.json', manifest.module, `${manifest.module}.map`].sort());
    expect(readFileSync(path.join(out1, manifest.module))).toEqual(readFileSync(path.join(out2, manifest.module)));
    expect(readFileSync(path.join(out1, `${manifest.module}.map`))).toEqual(readFileSync(path.join(out2, `${manifest.module}.map`)));
    expect(readFileSync(path.join(out1, 'manifest.json'))).toEqual(readFileSync(path.join(out2, 'manifest.json')));

    const artifact = (await import(pathToFileURL(path.join(out1, manifest.module)).href)).default as PolicyArtifact;
    expect(Object.keys(artifact).sort()).toEqual(['meta', 'react', 'retryDelay', 'route', 'settings', 'warmupLimit']);
    expect(artifact.meta.hash).toBe(manifest.hash);
    const route = artifact.route('yahoo.com');
    expect(route).toBe('provider:yahoo');
    expect(artifact.react(route, '421 4.7.0 [TS01] Messages from 192.0.2.1 temporarily deferred due to user complaints').actions[0]).toMatchObject({ type: 'backoff' });
  });

  it('writes nothing and exits 3 when the policies have errors', () => {
    const out = path.join(dir, 'out-broken');
    const r = runPetrel(['build', 'broken.policy', '--out', out], { cwd: dir });
    expect(r.code).toBe(3);
    expect(existsSync(out)).toBe(false);
  });
});

describe('petrel fmt', () => {
  const MESSY = 'policy messy version 1.0.0\nprovider acme { match domain acme.example;   rate 10/s per source   # slow\n}\n';
  const TIDY = 'policy messy version 1.0.0\n\nprovider acme {\n  match domain acme.example\n  rate 10/s per source # slow\n}\n';

  it('prints the canonical form, and it is what --write leaves on disk', () => {
    writeFileSync(path.join(dir, 'messy.policy'), MESSY);
    const printed = runPetrel(['fmt', 'messy.policy'], { cwd: dir });
    expect(printed.code).toBe(0);
    expect(printed.stdout).toBe(TIDY);
    expect(readFileSync(path.join(dir, 'messy.policy'), 'utf8')).toBe(MESSY);

    const check = runPetrel(['fmt', '--check', 'messy.policy'], { cwd: dir });
    expect(check.code).toBe(3);
    expect(check.stdout).toBe('messy.policy\n');

    expect(runPetrel(['fmt', '--write', 'messy.policy'], { cwd: dir }).code).toBe(0);
    expect(readFileSync(path.join(dir, 'messy.policy'), 'utf8')).toBe(TIDY);
    expect(runPetrel(['fmt', '--check', 'messy.policy'], { cwd: dir }).code).toBe(0);
  });

  it('leaves a file with syntax errors untouched and exits 3', () => {
    const broken = 'policy b version 1\nprovider acme {\n  rat 10/s\n}\n';
    writeFileSync(path.join(dir, 'syntax.policy'), broken);
    const r = runPetrel(['fmt', '--write', 'syntax.policy'], { cwd: dir });
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/syntax\.policy:3:3: error\[PARSE002\]/);
    expect(readFileSync(path.join(dir, 'syntax.policy'), 'utf8')).toBe(broken);
  });

  it('keeps the shipped policies and stdlib canonically formatted', () => {
    const r = runPetrel(['fmt', '--check', 'policies', 'stdlib']);
    expect(r.stdout).toBe('');
    expect(r.code).toBe(0);
  });

  it('refuses --check with --write', () => {
    expect(runPetrel(['fmt', '--check', '--write', 'policies']).code).toBe(2);
  });
});
