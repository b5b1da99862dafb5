/**
 * Every ```policy block of README.md and docs/*.md is checked, so a reader can trust what
 * the docs show. The words after `policy` in the block's info string say what it is:
 *
 *   ```policy                a whole file: `petrel check` reports nothing (no error, no
 *                            warning) and `petrel fmt --check` is clean.
 *   ```policy fragment       top-level definitions without the `policy` header: checked
 *                            as a file with a header, a `use` of each stdlib file and of
 *                            `context.policy`, then the block. That file defines what
 *                            examples name without defining (CONTEXT: sources ip1, ip2,
 *                            mta1-mta3, pool warm, ramp cold-ip, provider yahoo, domain
 *                            partner.example). A context entry or stdlib file that defines
 *                            a name the block defines itself is left out.
 *   ```policy fragment provider   statements of a destination block: wrapped into
 *                            `provider doc { match domain doc.example … }`, then as fragment.
 *   ```policy fragment rule  actions and lines of a reply rule: wrapped into
 *                            `on reply 4xx { … example "421 4.7.0 try again later" }` in
 *                            that provider.
 *   ```policy syntax [provider|rule]  only the grammar: wrapped as a fragment, it parses
 *                            without errors and is formatted; the files and names it
 *                            refers to are not looked up.
 *   ```policy with-shipped   a user's file, checked as `policies/x.policy` of a repository
 *                            with Petrel installed, together with the shipped policies and
 *                            the earlier `with-shipped` blocks of the same page (the files
 *                            of that repository it has shown so far), as
 *                            `petrel check node_modules/petrel/policies policies` does.
 *   … unformatted            (after any of the above) checks as said, but `fmt` changes
 *                            it: the formatter's input, shown before its output.
 *   ```policy error CODE…    a deliberate mistake: `check` reports each CODE and no other.
 *
 * A block whose first line is `# NAME.policy` holds several files, each starting at such a
 * line (the RES003 and RES005 examples); its files are checked together.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { compile } from '../../compiler/index.ts';
import { format, parse, type PolicyFile } from '../../grammar/index.ts';
import { memoryHost, ROOT, shippedFiles } from '../helpers.ts';

interface Block {
  /** `docs/language.md:56`: the file and the line of the block's first text line. */
  where: string;
  info: string[];
  text: string;
}

/** The ```policy blocks of one Markdown file (fenced with three backticks, any indentation). */
function policyBlocks(file: string): Block[] {
  const lines = readFileSync(path.join(ROOT, file), 'utf8').split('\n');
  const blocks: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)```policy(.*)$/.exec(lines[i]!);
    if (!open) continue;
    const indent = open[1]!.length;
    const end = lines.findIndex((l, j) => j > i && /^\s*```\s*$/.test(l));
    expect(end, `${file}:${i + 1}: a \`\`\`policy block that is never closed`).toBeGreaterThan(i);
    blocks.push({ where: `${file}:${i + 2}`, info: open[2]!.trim().split(/\s+/).filter(Boolean), text: lines.slice(i + 1, end).map((l) => l.slice(indent)).join('\n') + '\n' });
    i = end;
  }
  return blocks;
}

const DOCS = ['README.md', ...readdirSync(path.join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];

const STDLIB = ['retry', 'bounces', 'warmup'].map((name) => ({ use: `use stdlib/${name}\n`, defines: definitions(parse(readFileSync(path.join(ROOT, 'stdlib', `${name}.policy`), 'utf8'), name).ast) }));

/** What examples name without defining; each entry is left out when the block defines it. */
const CONTEXT = [
  'source ip1 {\n  address 192.0.2.10\n}\n',
  'source ip2 {\n  address 192.0.2.11\n}\n',
  'source mta1 {\n  address 192.0.2.20\n}\n',
  'source mta2 {\n  address 192.0.2.21\n}\n',
  'source mta3 {\n  address 192.0.2.22\n}\n',
  'source warm1 {\n  address 192.0.2.30\n}\n',
  'pool warm {\n  warm1\n}\n',
  'warmup cold-ip {\n  schedule 50/day, 100/day\n}\n',
  'provider yahoo {\n  match domain yahoo.com\n}\n',
  'domain partner.example {\n  tls required\n}\n',
];

/** `kind name` of each top-level definition of a file (`source ip1`, `destination yahoo`). */
function definitions(ast: PolicyFile): string[] {
  return ast.items.flatMap((item) => ('name' in item && item.name && typeof item.name === 'object' && 'text' in item.name ? [`${item.kind} ${item.name.text}`] : []));
}

/** The shipped policies where an installed Petrel has them, by path relative to the user's repository. */
function shippedPolicies(): Record<string, string> {
  const shipped = shippedFiles().filter((p) => p.startsWith('policies/'));
  return Object.fromEntries(shipped.map((p) => [`node_modules/petrel/${p}`, readFileSync(path.join(ROOT, p), 'utf8')]));
}

const indent = (text: string, by: string) => text.replace(/^(?=.)/gm, by);

/** The block as the files to check, by name; `main` is the one the block's text is in. */
function filesOf(block: Block, page: readonly Block[]): { files: Record<string, string>; main: string } {
  if (/^# \S+\.policy\n/.test(block.text)) {
    const files: Record<string, string> = {};
    for (const part of block.text.split(/^(?=# \S+\.policy$)/m)) files[/^# (\S+\.policy)/.exec(part)![1]!] = part.replace(/^.*\n/, '').replace(/^\n+/, '');
    return { files, main: Object.keys(files)[0]! };
  }
  if (block.info.includes('with-shipped')) {
    const earlier = page.slice(0, page.indexOf(block)).filter((b) => b.info.includes('with-shipped'));
    const own = Object.fromEntries(earlier.map((b, n) => [`policies/earlier-${n + 1}.policy`, b.text]));
    return { files: { 'policies/x.policy': block.text, ...own, ...shippedPolicies() }, main: 'policies/x.policy' };
  }
  if (!block.info.includes('fragment') && !block.info.includes('syntax')) return { files: { 'x.policy': block.text }, main: 'x.policy' };
  const context = block.info.find((w) => w === 'provider' || w === 'rule');
  const body =
    context === 'provider'
      ? `provider doc {\n  match domain doc.example\n${indent(block.text, '  ')}}\n`
      : context === 'rule'
        ? `provider doc {\n  match domain doc.example\n\n  on reply 4xx {\n${indent(block.text, '    ')}    example "421 4.7.0 try again later"\n  }\n}\n`
        : block.text;
  const own = new Set(definitions(parse(body, 'x.policy').ast));
  const uses = STDLIB.filter((lib) => !lib.defines.some((d) => own.has(d))).map((lib) => lib.use);
  const main = ['policy doc version 1\n', [...uses, 'use ./context\n'].join(''), body].join('\n');
  const needed = CONTEXT.filter((entry) => !definitions(parse(entry, 'context.policy').ast).some((d) => own.has(d)));
  return { files: { 'x.policy': main, 'context.policy': ['policy context version 1\n', ...needed].join('\n') }, main: 'x.policy' };
}

async function codesOf(files: Record<string, string>): Promise<string[]> {
  const result = await compile({ inputs: Object.keys(files), host: memoryHost(files, '/docs'), name: 'docs', checkOnly: true });
  return result.diagnostics.map((d) => `${d.code} ${d.span.file}:${d.span.line}:${d.span.column} ${d.message}`);
}

const formatted = (text: string) => format(parse(text, 'x.policy').ast, text);

const WORDS = ['fragment', 'syntax', 'provider', 'rule', 'with-shipped', 'unformatted'];

it('finds the policy blocks of every page', () => {
  const counts = Object.fromEntries(DOCS.map((doc) => [doc, policyBlocks(doc).length]));
  expect(counts['README.md']).toBeGreaterThan(0);
  expect(counts['docs/language.md']).toBeGreaterThan(50);
  expect(counts['docs/policies.md']).toBeGreaterThan(0);
});

describe.each(DOCS.filter((doc) => policyBlocks(doc).length > 0))('%s', (doc) => {
  const blocks = policyBlocks(doc);
  it.each(blocks.map((b) => [`${b.where} ${b.info.join(' ') || 'file'}`, b] as const))('%s', async (_, block) => {
    const { files, main } = filesOf(block, blocks);
    if (block.info[0] === 'error') {
      const codes = block.info.slice(1);
      expect(codes.length, 'name the codes: ```policy error CODE').toBeGreaterThan(0);
      const reported = await codesOf(files);
      expect([...new Set(reported.map((r) => r.split(' ')[0]))].sort(), reported.join('\n')).toEqual([...codes].sort());
      return;
    }
    for (const word of block.info) expect(WORDS, `unknown word \`${word}\` after \`\`\`policy`).toContain(word);
    if (block.info.includes('syntax')) {
      expect(parse(files[main]!, main).diagnostics.map((d) => `${d.code} ${d.message}`)).toEqual([]);
    } else {
      const reported = await codesOf(files);
      expect(reported, reported.join('\n')).toEqual([]);
    }
    for (const [name, text] of Object.entries(files)) {
      if (block.info.includes('unformatted') && name === main) expect(formatted(text), `${name} is meant to be unformatted`).not.toBe(text);
      else expect(formatted(text), `${name} is not formatted as petrel fmt would`).toBe(text);
    }
  });
});
