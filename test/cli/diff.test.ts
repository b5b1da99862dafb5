/**
 * `petrel diff`: copies of the shipped policies and stdlib, edited one way each, compared
 * by the CLI (in this process, and the real binary for exit codes and --help); the git mode
 * on a real repository with two commits, whose work tree and index it must not touch.
 */
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { PolicyDiff } from '../../compiler/diff.ts';
import { compile, diskHost, listPolicyFiles } from '../../compiler/index.ts';
import { MAX_ROWS } from '../../cli/diff.ts';
import { main } from '../../cli/main.ts';
import { ROOT, runPetrel } from '../helpers.ts';
import { git, policyRepo, ratePolicy } from './policy-repo.ts';

let dir: string | undefined;
afterEach(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});

/** A temporary directory with `base/` and `head/`, each a copy of the shipped policies/ and stdlib/. */
function copies(): { base: string; head: string } {
  dir = mkdtempSync(path.join(tmpdir(), 'petrel-diff-'));
  const sides = { base: path.join(dir, 'base'), head: path.join(dir, 'head') };
  for (const side of Object.values(sides)) for (const d of ['policies', 'stdlib']) cpSync(path.join(ROOT, d), path.join(side, d), { recursive: true });
  return sides;
}

/** Replaces `from` by `to` in `file`; the edit must apply. */
function edit(file: string, from: string | RegExp, to: string): void {
  const text = readFileSync(file, 'utf8');
  const out = text.replace(from, to);
  expect(out, `edit of ${file}`).not.toBe(text);
  writeFileSync(file, out);
}

async function petrel(argv: string[], cwd = dir!): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await main(argv, { out: (t) => (out += t), err: (t) => (err += t), cwd });
  return { code, out, err };
}

async function json(...argv: string[]): Promise<PolicyDiff> {
  const r = await petrel(['diff', ...argv, '--format', 'json']);
  expect(r.code, r.err).toBe(1);
  return JSON.parse(r.out) as PolicyDiff;
}

const YAHOO_RATE = /^ {2}rate 3600\/h per source$/m;

describe('petrel diff', () => {
  it('one provider\'s rate edited: exactly that change and that provider, its domains not listed as moved (the binary, human)', () => {
    const { head } = copies();
    edit(path.join(head, 'policies/yahoo.policy'), YAHOO_RATE, '  rate 2400/h per source');
    const r = runPetrel(['diff', 'base', 'head'], { cwd: dir });
    expect(r.code, r.stderr).toBe(1);
    expect(r.stdout.split('\n')).toEqual([
      expect.stringMatching(/^base base \(\d+\.\d+\.\d+\), head head \(\d+\.\d+\.\d+\)$/),
      '',
      expect.stringMatching(/^provider:yahoo {2}changed {2}policies\/yahoo\.policy:\d+$/),
      '  rate per source  3600/h per source → 2400/h per source',
      '',
      '1 destination changed',
      '',
    ]);
  });

  it('names the same change in JSON: one route, one setting, no routing and no definitions', async () => {
    const { head } = copies();
    edit(path.join(head, 'policies/yahoo.policy'), YAHOO_RATE, '  rate 2400/h per source');
    const d = await json('base', 'head');
    expect(d.routes.map((r) => [r.route, r.settings, r.rules, r.reactions])).toEqual([['provider:yahoo', [{ field: 'rate per source', before: '3600/h per source', after: '2400/h per source' }], [], []]]);
    expect(d.routing).toEqual([]);
    expect(d.definitions).toEqual([]);
  });

  it('identical trees: exit 0 and "no effective change", also after comments and a version bump', async () => {
    const { head } = copies();
    expect(await petrel(['diff', 'base', 'head'])).toMatchObject({ code: 0, out: expect.stringMatching(/\nno effective change\n$/) });
    edit(path.join(head, 'policies/yahoo.policy'), /^policy yahoo version \S+/m, 'policy yahoo version 2027.1.1\n# a note for reviewers');
    const r = await petrel(['diff', 'base', 'head', '--format', 'markdown']);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/^## petrel diff: no effective change\n/);
  });

  it('a domain added to a provider is moved from default to that provider', async () => {
    const { head } = copies();
    edit(path.join(head, 'policies/yahoo.policy'), /^ {2}match domain verizon\.net$/m, '  match domain verizon.net, shop-mail.example');
    const d = await json('base', 'head');
    expect(d.routing).toEqual([{ kind: 'domain', pattern: 'shop-mail.example', before: 'default', after: 'provider:yahoo' }]);
    expect(d.routes).toEqual([]);
    const human = await petrel(['diff', 'base', 'head']);
    expect(human.out).toContain('routing:\n  domain shop-mail.example  default → provider:yahoo\n');
  });

  it('human and markdown show at most MAX_ROWS rows per table and say how many more; JSON has all', async () => {
    const { head } = copies();
    const domains = Array.from({ length: MAX_ROWS + 7 }, (_, i) => `shop${i}.example`);
    edit(path.join(head, 'policies/yahoo.policy'), /^ {2}match domain verizon\.net$/m, `  match domain verizon.net\n  match domain ${domains.join(', ')}`);
    expect((await json('base', 'head')).routing).toHaveLength(MAX_ROWS + 7);
    const human = (await petrel(['diff', 'base', 'head'])).out;
    expect(human.split('\n').filter((l) => / {2}default → provider:yahoo$/.test(l))).toHaveLength(MAX_ROWS);
    expect(human).toContain('  … and 7 more (all of them with --format json)\n');
    const markdown = (await petrel(['diff', 'base', 'head', '--format', 'markdown'])).out;
    expect(markdown.split('\n').filter((l) => l.startsWith('| domain |'))).toHaveLength(MAX_ROWS);
    expect(markdown).toContain('_… and 7 more (all of them with --format json)_');
  });

  it('a rule\'s disposition changed: the rule, and the example replies whose reaction changed, in every route using the rule set', async () => {
    const { head } = copies();
    // TS03 suspends the source (a block); make it bounce the recipient instead.
    edit(path.join(head, 'policies/yahoo.policy'), /(on reply \/\\\[TS03\\\]\/ \{\n\s+classify spam-related\n\s+)suspend source 4h/, '$1retry after 1h\n    disposition soft');
    const d = await json('base', 'head');
    const usingYahooRules = ['provider:att', 'provider:cox', 'provider:yahoo'];
    expect(d.routes.map((r) => r.route)).toEqual(usingYahooRules);
    for (const r of d.routes) {
      expect(r.settings).toEqual([]);
      expect(r.rules.map((x) => [x.status, x.rule, x.fields])).toEqual([
        [
          'changed',
          'on reply /\\[TS03\\]/',
          [
            { field: 'disposition', before: 'block', after: 'soft' },
            { field: 'actions', before: 'suspend source 4h', after: 'retry after 1h' },
          ],
        ],
      ]);
      expect(r.reactions).toEqual([
        { reply: '421 4.7.1 [TS03] All messages from 192.0.2.1 permanently deferred', phase: null, before: 'spam-related, block: suspend source 4h', after: 'spam-related, soft: retry after 1h', ruleBefore: expect.stringMatching(/^policies\/yahoo\.policy:\d+$/), ruleAfter: expect.stringMatching(/^policies\/yahoo\.policy:\d+$/) },
      ]);
    }
  });

  it('a retry curve edit shows in every route using it, and as the curve', async () => {
    const { base, head } = copies();
    edit(path.join(head, 'stdlib/retry.policy'), /(retry bulk \{[^}]*then every )2h/, '$13h');
    const d = await json('base', 'head');
    // Every route whose effective curve is `bulk`, as the base's IR says.
    const compiled = await compile({ inputs: listPolicyFiles(base), host: diskHost(base), name: 'base' });
    const bulk = compiled.ir!.routes.filter((r) => r.settings.retry === 'bulk').map((r) => r.id);
    expect(bulk).toEqual(expect.arrayContaining(['provider:yahoo', 'provider:yahoo-japan']));
    expect(d.routes.map((r) => [r.route, r.settings])).toEqual(bulk.map((route) => [route, [{ field: 'retry then every', before: '2h', after: '3h' }]]));
    expect(d.definitions.map((x) => [x.kind, x.name, x.fields])).toEqual([['retry', 'bulk', [{ field: 'then every', before: '2h', after: '3h' }]]]);
  });

  it('markdown: a heading per changed destination, a table row per limit, routing as a table', async () => {
    const { head } = copies();
    const yahoo = path.join(head, 'policies/yahoo.policy');
    edit(yahoo, YAHOO_RATE, '  rate 2400/h per source');
    edit(yahoo, /^ {2}connections 10 per source$/m, '  connections 8 per source');
    edit(yahoo, /^ {2}match domain verizon\.net$/m, '  match domain verizon.net, shop-mail.example');
    edit(path.join(head, 'policies/google.policy'), /^ {2}tls required$/m, '  tls verify');
    const r = await petrel(['diff', 'base', 'head', '--format', 'markdown']);
    expect(r.code, r.err).toBe(1);
    const lines = r.out.split('\n');
    expect(lines[0]).toBe('## petrel diff: 2 destinations changed, 1 routing change');
    expect(lines.filter((l) => l.startsWith('### '))).toEqual(['### `provider:google` changed', '### `provider:yahoo` changed', '### Routing']);
    const section = (heading: string) => r.out.split(`${heading}\n`)[1]!.split('\n### ')[0]!;
    const rows = (text: string) => text.split('\n').filter((l) => l.startsWith('| ') && !l.startsWith('| setting') && !l.startsWith('| match'));
    expect(rows(section('### `provider:yahoo` changed'))).toEqual(['| connections per source | `10 per source` | `8 per source` |', '| rate per source | `3600/h per source` | `2400/h per source` |']);
    expect(rows(section('### `provider:google` changed'))).toEqual(['| tls | `required` | `verify` |']);
    expect(rows(section('### Routing'))).toEqual(['| domain | `shop-mail.example` | `default` | `provider:yahoo` |']);
  });

  it('markdown cells keep pipes and backticks of replies inside the cell', async () => {
    const { head } = copies();
    edit(path.join(head, 'policies/yahoo.policy'), /example "554 Message not allowed - \[299\]"/, 'example "554 Message not allowed - [299]"\n    example "554 message not allowed - [300] a|b `c`"');
    edit(path.join(head, 'policies/yahoo.policy'), /(on reply 5xx \/message not allowed - \\\[\\d\+\\\]\/i \{\n\s+)bounce policy-related/, '$1bounce content-related');
    const r = await petrel(['diff', 'base', 'head', '--format', 'markdown']);
    expect(r.out).toContain('| `` 554 message not allowed - [300] a\\|b `c` `` | `policy-related, hard: bounce policy-related` | `content-related, hard: bounce content-related` |');
  });

  it('compares two refs of a git repository, without touching its work tree or index', async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'petrel-diff-git-'));
    const repo = policyRepo(dir, { 'reload.policy': ratePolicy('100/min') });
    repo.push({ 'reload.policy': ratePolicy('200/min') }, 'faster');
    // Uncommitted work and a staged file: both must be left as they are.
    writeFileSync(path.join(repo.work, 'reload.policy'), ratePolicy('999/min'));
    writeFileSync(path.join(repo.work, 'staged.policy'), 'policy staged version 1\n');
    git(repo.work, 'add', 'staged.policy');
    const status = git(repo.work, 'status', '--porcelain');
    const r = await petrel(['diff', '--git', repo.work, 'HEAD~1', 'HEAD', '--format', 'json']);
    expect(r.code, r.err).toBe(1);
    const d = JSON.parse(r.out) as PolicyDiff;
    expect(d.base.name).toMatch(/^HEAD~1 \([0-9a-f]{12}\)$/);
    expect(d.routes.map((x) => [x.route, x.settings])).toEqual([['provider:example', [{ field: 'rate', before: '100/min', after: '200/min' }]]]);
    expect(git(repo.work, 'status', '--porcelain')).toBe(status);
    expect(readFileSync(path.join(repo.work, 'reload.policy'), 'utf8')).toBe(ratePolicy('999/min'));
    // REPO defaults to the working directory; the bare repository works too; a ref to itself is no change.
    expect((await petrel(['diff', '--git', 'origin/main~1', 'origin/main'], repo.work)).code).toBe(1);
    expect(await petrel(['diff', '--git', repo.bare, 'main', 'main'])).toMatchObject({ code: 0, out: expect.stringContaining('no effective change') });
    expect(await petrel(['diff', '--git', repo.bare, 'main', 'nope'])).toMatchObject({ code: 2, err: expect.stringContaining('head: `nope` is not a commit of') });
  });

  it('policy errors on one side: exit 3, naming the side, nothing compared', async () => {
    const { head } = copies();
    edit(path.join(head, 'policies/yahoo.policy'), YAHOO_RATE, '  rate 3600 per source');
    const r = await petrel(['diff', 'base', 'head']);
    expect(r.code).toBe(3);
    expect(r.out).toBe('');
    expect(r.err).toMatch(/^petrel diff: the head \(`head`\) has policy errors; nothing compared\n/);
    expect(r.err).toContain('policies/yahoo.policy');
    expect((await petrel(['diff', 'head', 'base'])).err).toMatch(/^petrel diff: the base \(`head`\)/);
  });

  it('usage errors exit 2: a format, a missing side, an empty side, a missing --path; --path narrows each side', async () => {
    const { head } = copies();
    expect(await petrel(['diff', 'base', 'head', '--format', 'html'])).toMatchObject({ code: 2, err: expect.stringContaining('unknown format `html`') });
    expect(await petrel(['diff', 'base'])).toMatchObject({ code: 2, err: expect.stringContaining('name two directories or files') });
    expect(await petrel(['diff', 'base', 'nowhere'])).toMatchObject({ code: 2, err: expect.stringContaining('head: no such file or directory: `nowhere`') });
    expect(await petrel(['diff', 'base', 'head', '--path', 'nothing'])).toMatchObject({ code: 2, err: expect.stringContaining('no such file or directory: `nothing`') });
    expect(await petrel(['diff', 'base', 'head', '--colour'])).toMatchObject({ code: 2, err: expect.stringContaining('unknown option `--colour`') });
    expect(await petrel(['diff', 'base', 'head', '--path', '../base'])).toMatchObject({ code: 2, err: expect.stringContaining('must be relative to each side, and inside it') });
    expect(await petrel(['diff', 'base/policies/yahoo.policy', 'head/policies/yahoo.policy', '--path', 'policies'])).toMatchObject({ code: 2, err: expect.stringContaining('is a file') });
    mkdirSync(path.join(dir!, 'empty'));
    expect(await petrel(['diff', 'base', 'empty'])).toMatchObject({ code: 2, err: expect.stringContaining('head `empty` holds no .policy files') });
    edit(path.join(head, 'policies/yahoo.policy'), YAHOO_RATE, '  rate 2400/h per source');
    // Only google.policy (and the files it uses) on each side: the yahoo edit is not seen.
    expect(await petrel(['diff', 'base', 'head', '--path', 'policies/google.policy'])).toMatchObject({ code: 0 });
    // Two single files: each compiled with what it uses.
    expect((await petrel(['diff', 'base/policies/yahoo.policy', 'head/policies/yahoo.policy'])).code).toBe(1);
  });

  it('has --help, and is listed in petrel --help', () => {
    const r = runPetrel(['diff', '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^usage: petrel diff \[options\] <base> <head>\n {7}petrel diff --git \[REPO\] <base-ref> <head-ref>/);
    expect(r.stdout).toContain('--format <human|markdown|json>');
    expect(runPetrel(['--help']).stdout).toMatch(/\n {2}diff {10}show the effective change/);
  });
});
