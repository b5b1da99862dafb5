/**
 * The JSON Schemas that ajv checks data with cannot import `vocabulary/`, so they spell its
 * lists again: the compiler's IR schema, the runtime's config schema, the deploy request
 * and the state file's snapshot. Each enum there that uses a word of a vocabulary list
 * must be that list, word for word and in order (a `null` beside it aside), and the IR
 * schema's action variants must be `ACTION_TYPES`: a word added to a list and not to a
 * schema fails here. And no TypeScript file spells a whole list out again (as an array or
 * a union of its quoted words, in order): it imports the list or the type.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { policyStateSnapshotSchema } from '../../runtime/decide/index.ts';
import { deployRequestSchema } from '../../runtime/policy/index.ts';
import { ACTION_TYPES, BOUNCE_CATEGORIES, DISPOSITIONS, LIMIT_SCOPES, PHASES, SUSPEND_TARGETS, TLS_MODES } from '../../vocabulary/index.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const readJson = (file: string): unknown => JSON.parse(readFileSync(path.join(ROOT, file), 'utf8'));

const LISTS: Record<string, readonly string[]> = { PHASES, DISPOSITIONS, TLS_MODES, BOUNCE_CATEGORIES, LIMIT_SCOPES, SUSPEND_TARGETS, ACTION_TYPES };

/** A list of words a schema accepts, and where. */
interface Choice {
  at: string;
  words: unknown[];
}

/** Every `enum`, and the `type` constants of every `oneOf` (a discriminated union such as the IR's actions). */
function choicesOf(node: unknown, at = '#'): Choice[] {
  if (typeof node !== 'object' || node === null) return [];
  const out: Choice[] = [];
  const record = node as Record<string, unknown>;
  if (Array.isArray(record['enum'])) out.push({ at: `${at}/enum`, words: record['enum'] });
  if (Array.isArray(record['oneOf'])) {
    const types = record['oneOf'].map((v) => (v as { properties?: { type?: { const?: unknown } } }).properties?.type?.const);
    if (types.every((t) => typeof t === 'string')) out.push({ at: `${at}/oneOf/type`, words: types });
  }
  for (const [key, value] of Object.entries(record)) out.push(...choicesOf(value, `${at}/${key}`));
  return out;
}

/** What is wrong with the choices of a schema: one line for each that uses vocabulary words but is not one list. */
function mismatches(choices: Choice[]): string[] {
  return choices.flatMap(({ at, words }) => {
    const strings = words.filter((w) => w !== null);
    const sharing = Object.entries(LISTS).filter(([, list]) => strings.some((w) => list.includes(w as string)));
    if (sharing.length === 0) return [];
    if (sharing.some(([, list]) => JSON.stringify(list) === JSON.stringify(strings))) return [];
    return [`${at}: ${JSON.stringify(strings)} is not ${sharing.map(([name]) => name).join(' or ')}`];
  });
}

/** The vocabulary lists a schema spells out, by name. */
function listsIn(choices: Choice[]): string[] {
  return Object.entries(LISTS)
    .filter(([, list]) => choices.some(({ words }) => JSON.stringify(words.filter((w) => w !== null)) === JSON.stringify(list)))
    .map(([name]) => name);
}

const SCHEMAS: Record<string, unknown> = {
  'compiler/ir.schema.json': readJson('compiler/ir.schema.json'),
  'runtime/config.schema.json': readJson('runtime/config.schema.json'),
  deployRequestSchema,
  policyStateSnapshotSchema,
};

describe('schemas spell the vocabulary as vocabulary/ defines it', () => {
  for (const [name, schema] of Object.entries(SCHEMAS)) {
    it(`${name}: every enum of vocabulary words is one whole list`, () => {
      expect(mismatches(choicesOf(schema))).toEqual([]);
    });
  }

  it('the IR schema spells every list, the deploy request and the state file the ones they check', () => {
    expect(listsIn(choicesOf(SCHEMAS['compiler/ir.schema.json']))).toEqual(Object.keys(LISTS));
    expect(listsIn(choicesOf(deployRequestSchema))).toEqual(['PHASES', 'DISPOSITIONS', 'SUSPEND_TARGETS']);
    expect(listsIn(choicesOf(policyStateSnapshotSchema))).toEqual(['SUSPEND_TARGETS']);
  });

  it('finds a list that lost a word, gained one, or changed order', () => {
    const schema = {
      definitions: {
        phase: { enum: ['connect', 'ehlo', 'mail', 'rcpt'] },
        tls: { enum: ['opportunistic', 'required', 'verify', 'disabled', 'dane'] },
        target: { enum: ['source', 'destination', 'tenant', null] },
        other: { enum: ['exact', 'subdomains'] },
      },
      action: { oneOf: ACTION_TYPES.slice(1).map((type) => ({ properties: { type: { const: type } } })) },
    };
    expect(mismatches(choicesOf(schema))).toEqual([
      '#/definitions/phase/enum: ["connect","ehlo","mail","rcpt"] is not PHASES',
      '#/definitions/tls/enum: ["opportunistic","required","verify","disabled","dane"] is not TLS_MODES',
      '#/definitions/target/enum: ["source","destination","tenant"] is not LIMIT_SCOPES or SUSPEND_TARGETS',
      `#/action/oneOf/type: ${JSON.stringify(ACTION_TYPES.slice(1))} is not ACTION_TYPES`,
    ]);
  });
});

/**
 * Copies of a list in files other work owns, to be replaced by an import of the list (or,
 * for a type, of its type); by file name, so a file that moves keeps its entry. Remove an
 * entry when it is fixed; anything not on this list fails.
 */
const KNOWN_COPIES: readonly string[] = [
  'deploy-request.ts DISPOSITIONS',
  'deploy-request.ts PHASES',
  'deploy-request.ts SUSPEND_TARGETS',
  'limiters.ts LIMIT_SCOPES',
];

/** Where each list of `lists` is spelled out in `text` (`'a', 'b', 'c'` or `'a' | 'b' | 'c'`, either quote, any spacing and line breaks, in order): its name. */
function copiesIn(text: string, lists: Record<string, readonly string[]>): string[] {
  return Object.entries(lists)
    .filter(([, list]) => new RegExp(list.map((word) => `['"]${word}['"]`).join('\\s*[,|]\\s*')).test(text))
    .map(([name]) => name);
}

function sourceFiles(dir: string): string[] {
  return readdirSync(path.join(ROOT, dir), { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts'))
    .map((e) => path.join(e.parentPath, e.name));
}

describe('each list is defined once', () => {
  it('no source file outside vocabulary/ spells a list out', () => {
    const files = ['grammar', 'compiler', 'runtime', 'cli', 'simulate'].flatMap(sourceFiles);
    expect(files.length).toBeGreaterThan(60);
    const copies = files.flatMap((file) => copiesIn(readFileSync(file, 'utf8'), LISTS).map((name) => `${path.basename(file)} ${name}`));
    expect(copies.filter((c) => !KNOWN_COPIES.includes(c))).toEqual([]);
  });

  it('finds a list spelled out as an array or a union, across lines', () => {
    expect(copiesIn(`const MODES = ['opportunistic', 'required',\n  'verify', "disabled"];`, LISTS)).toEqual(['TLS_MODES']);
    expect(copiesIn(`type T = 'destination' | 'source' | 'tenant' | null;`, LISTS)).toEqual(['SUSPEND_TARGETS']);
    expect(copiesIn(`const some = ['hard', 'soft'];\nconst other = ['connect', 'mail', 'rcpt', 'data'];`, LISTS)).toEqual([]);
  });
});
