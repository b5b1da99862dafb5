/**
 * fast-check arbitraries for the parser's property tests.
 *
 * `policyishText` is text made of the language's own fragments (keywords, braces,
 * literals, comments) thrown together, mostly invalid, to drive the parser's recovery.
 *
 * `validPolicyText` is a structurally valid policy built from the grammar (every statement
 * kind `build-ast.ts` reads), then written out with an untidy layout: random indentation,
 * `;` between statements, blank lines, comments on their own lines and at line ends, and
 * lists continued over lines after a comma. It must parse with no diagnostics.
 */
import fc from 'fast-check';
import { BOUNCE_CATEGORIES, DISPOSITIONS, PHASES, TLS_MODES } from '../../vocabulary/index.ts';

// ---------------------------------------------------------------------------------------
// Fragments for invalid text

const KEYWORDS = [
  'policy', 'version', 'use', 'default', 'provider', 'domain', 'global', 'match', 'mx', 'on', 'reply', 'when', 'in',
  'phase', 'example', 'rules', 'retry', 'warmup', 'source', 'pool', 'tenant', 'test', 'connections', 'connect-rate',
  'rate', 'data-rate', 'messages-per-connection', 'recipients-per-transaction', 'tls', 'expire', 'per', 'every',
  'after', 'then', 'exponential', 'cap', 'jitter', 'attempts', 'schedule', 'start', 'grow', 'daily', 'for',
  'overflow', 'address', 'ehlo', 'since', 'backoff', 'suspend', 'disable', 'bounce', 'classify', 'skip-mx',
  'reroute', 'disposition', 'deliver', 'to', 'times', 'wait', 'expect', 'no', 'never', 'day', 'limit', 'unlimited',
  'verify', 'rcpt', 'hard', 'soft', 'throttle', 'block', 'destination',
];

const FRAGMENTS = [
  ...KEYWORDS,
  '{', '}', '{}', ';', ',', ':', '\n', '\r\n', '\t', ' ', '  ', '"', '/', '#', '# a comment\n', '[*.]', '*.', '.',
  '"421 4.7.0 deferred"', '"unterminated', '"esc \\" aped"', '/deferred/i', '/TS0[1-4]/', '/a\\/b/', '/[/', '/ x/',
  '30m', '1h30m', '2d', '1w', '90s', '5', '0', '007', '3.5', '10%', 'x1.4', 'x2', '3600/h', '20/s', '10MB/min', '5/fortnight', '1.5/s',
  '4xx', '421', '45x', '5.7.1', '4.x.x', '5.7.x', '999', 'yahoo.com', '[*.]gmail.com', '*.yahoodns.net', '163.com', 'a.b.',
  'someone@example.com', '192.0.2.10', '"2001:db8::1"', '2026-11-20', '2026-13-45', '2026.11.2', 'stdlib/retry', './common', '../x/y',
  'yahoo', 'bad-mailbox', 'provider:yahoo', 'é', '😀', '\u0000', '\u2028', 'x', '_', '-', '@', '%', '*', '[', ']', '\\',
];

/** Text made of policy fragments, joined with or without spaces: mostly invalid, sometimes nearly valid. */
export const policyishText: fc.Arbitrary<string> = fc
  .array(fc.tuple(fc.oneof({ weight: 5, arbitrary: fc.constantFrom(...FRAGMENTS) }, { weight: 1, arbitrary: fc.string({ maxLength: 4 }) }), fc.constantFrom('', ' ', '\n')), {
    maxLength: 60,
  })
  .map((parts) => parts.map(([fragment, sep]) => fragment + sep).join(''));

/** Arbitrary text: full unicode, policy fragments, and fragments after a valid header. */
export const anyText: fc.Arbitrary<string> = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 200 }),
  fc.string({ unit: 'grapheme', maxLength: 100 }),
  policyishText,
  policyishText.map((text) => `policy p version 1\n${text}`),
);

// ---------------------------------------------------------------------------------------
// Valid policies: literals

/** Words that are keywords somewhere; generated names avoid them so no statement is misread. */
const RESERVED = new Set([...KEYWORDS, ...PHASES, ...DISPOSITIONS, ...TLS_MODES, 'global']);

const name = fc
  .stringMatching(/^[A-Za-z_][A-Za-z0-9_-]{0,7}$/)
  // `x1` is a growth factor, not a name.
  .filter((n) => !RESERVED.has(n) && !/^x\d/.test(n));

const digits = (max: number) => fc.integer({ min: 0, max }).map(String);
const integer = fc.oneof(digits(99_999), digits(99).map((n) => '00' + n));
const decimal = fc.oneof(digits(9_999), fc.tuple(digits(99), digits(99)).map(([a, b]) => `${a}.${b}`));

// Valid values stay within `grammar/limits.ts` (VAL015 past it): each duration part at most half a year.
const HALF_YEAR: Record<string, number> = { s: 9_999, m: 9_999, min: 9_999, h: 4_380, d: 182, w: 26 };
const durationPart = fc.tuple(decimal, fc.constantFrom('s', 'm', 'min', 'h', 'd', 'w')).filter(([n, u]) => Number(n) <= HALF_YEAR[u]!).map(([n, u]) => n + u);
const duration = fc.array(durationPart, { minLength: 1, maxLength: 2 }).map((parts) => parts.join(''));
const timeUnit = fc.constantFrom('s', 'sec', 'min', 'm', 'h', 'hour', 'd', 'day');
const rate = fc.tuple(decimal, timeUnit).map(([n, u]) => `${n}/${u}`);
const dataRate = fc.tuple(decimal, fc.constantFrom('B', 'KB', 'MB', 'GB', 'kb', 'mb'), timeUnit).filter(([n, s]) => s !== 'GB' || Number(n) <= 1024).map(([n, s, u]) => `${n}${s}/${u}`);
const percent = fc.oneof(digits(100), fc.tuple(digits(99), digits(99)).map(([a, b]) => `${a}.${b}`)).map((n) => n + '%');
const factor = fc.oneof(digits(9), fc.tuple(digits(9), digits(99))).map((f) => 'x' + (Array.isArray(f) ? f.join('.') : f));

const label = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9-]{0,5}$/);
const lastLabel = fc.stringMatching(/^[A-Za-z][A-Za-z0-9-]{0,4}$/);
const domain = fc.tuple(fc.array(label, { minLength: 1, maxLength: 2 }), lastLabel).map(([labels, last]) => [...labels, last].join('.'));
const domainPattern = fc.tuple(fc.constantFrom('', '', '*.', '[*.]'), domain, fc.constantFrom('', '', '', '.')).map((parts) => parts.join(''));

const code = fc.tuple(fc.integer({ min: 2, max: 5 }), fc.constantFrom('\\d\\d', '\\dx', 'xx')).chain(([cls, shape]) =>
  fc.stringMatching(new RegExp(`^${shape}$`)).map((rest) => `${cls}${rest}`),
);
const statusPart = fc.oneof(digits(999), fc.constant('x'));
const status = fc.tuple(fc.constantFrom('2', '4', '5'), statusPart, statusPart).map((parts) => parts.join('.'));
const regex = fc
  .tuple(fc.stringMatching(/^[A-Za-z0-9]([A-Za-z0-9 .#,{}]|\\[dw/.]|\[[a-z0-9]{1,3}\]){0,10}$/), fc.constantFrom('', 'i', 'gi'))
  .map(([body, flags]) => `/${body}/${flags}`);
const string = fc.stringMatching(/^([A-Za-z0-9 .:#{},;\[\]-]|\\"){0,20}$/).map((s) => `"${s}"`);
const email = fc.tuple(fc.stringMatching(/^[a-z0-9._+-]{1,6}$/), domain).map(([local, d]) => `${local}@${d}`);
const byte = fc.integer({ min: 0, max: 255 });
const address = fc.oneof(
  fc.tuple(byte, byte, byte, byte).map((b) => b.join('.')),
  fc.integer({ min: 1, max: 0xffff }).map((n) => `"2001:db8::${n.toString(16)}"`),
);
const date = fc.tuple(fc.integer({ min: 2000, max: 2099 }), fc.integer({ min: 1, max: 12 }), fc.integer({ min: 1, max: 28 })).map(
  ([y, m, d]) => `${y}-${String(m).padStart(2, '0')}-${String(d).padStart(2, '0')}`,
);
const version = fc.array(digits(2099), { minLength: 1, maxLength: 3 }).map((parts) => parts.join('.'));
const path = fc.oneof(
  name.map((n) => `stdlib/${n}`),
  name.map((n) => `./${n}`),
  fc.tuple(name, name).map(([a, b]) => `../${a}/${b}`),
  name.map((n) => `"./${n}"`),
);
const category = fc.constantFrom(...BOUNCE_CATEGORIES);
const phase = fc.constantFrom(...PHASES);

// ---------------------------------------------------------------------------------------
// Valid policies: statements

/** A word of a generated statement; an array is a comma-separated list. */
type Word = string | string[];

/** A generated statement: its words and, if it has one, its block. */
export interface GenStatement {
  words: Word[];
  block?: GenStatement[];
}

const statement = (...words: Word[]): GenStatement => ({ words });
const withBlock = (words: Word[], block: GenStatement[]): GenStatement => ({ words, block });
const list = <T>(arb: fc.Arbitrary<T>, maxLength = 3) => fc.array(arb, { minLength: 1, maxLength });
const maybe = <T>(arb: fc.Arbitrary<T>) => fc.option(arb, { nil: undefined });

/** All of `items`, in a random order. */
const permutation = <T>(items: T[]): fc.Arbitrary<T[]> => fc.shuffledSubarray(items, { minLength: items.length, maxLength: items.length });

/** The statements of several arbitraries, interleaved in a random order (a block's statements may come in any order). */
const interleaved = (...parts: fc.Arbitrary<GenStatement[]>[]): fc.Arbitrary<GenStatement[]> =>
  fc.tuple(...parts).chain((lists) => permutation(lists.flat()));

const some = (arb: fc.Arbitrary<GenStatement>, maxLength = 3) => fc.array(arb, { maxLength });
const optional = (arb: fc.Arbitrary<GenStatement>) => maybe(arb).map((s) => (s ? [s] : []));

const scope = fc.constantFrom<string[]>([], [], ['per', 'source'], ['per', 'tenant'], ['per', 'destination'], ['global']);
const limit = fc.oneof(
  fc.tuple(integer, scope).map(([n, s]) => statement('connections', n, ...s)),
  fc.tuple(fc.constantFrom('connect-rate', 'rate'), rate, scope).map(([kw, r, s]) => statement(kw, r, ...s)),
  fc.tuple(dataRate, scope).map(([r, s]) => statement('data-rate', r, ...s)),
);
const oneLineSetting = fc.oneof(
  limit,
  fc.tuple(fc.constantFrom('messages-per-connection', 'recipients-per-transaction'), integer).map(([kw, n]) => statement(kw, n)),
  fc.constantFrom(...TLS_MODES).map((mode) => statement('tls', mode)),
  duration.map((d) => statement('expire', d)),
);

/** A retry curve's statements: each kind at most once (a second one is VAL012), in any order. */
const curveBody = interleaved(
  optional(list(duration, 4).map((ds) => statement('after', ds))),
  optional(duration.map((d) => statement('then', 'every', d))),
  optional(fc.tuple(duration, factor, maybe(duration)).map(([d, f, cap]) => statement('exponential', d, f, ...(cap ? ['cap', cap] : [])))),
  optional(percent.map((p) => statement('jitter', p))),
  optional(duration.map((d) => statement('expire', d))),
  optional(integer.map((n) => statement('attempts', n))),
);

const setting = fc.oneof(
  { weight: 4, arbitrary: oneLineSetting },
  { weight: 1, arbitrary: name.map((n) => statement('retry', n)) },
  { weight: 1, arbitrary: duration.map((d) => statement('retry', 'every', d)) },
  { weight: 1, arbitrary: curveBody.map((body) => withBlock(['retry'], body)) },
);

const ruleHead = fc
  .record({
    codes: fc.array(code, { maxLength: 3 }),
    statuses: fc.array(status, { maxLength: 2 }),
    texts: fc.array(fc.oneof(regex, string), { maxLength: 2 }),
    phases: fc.array(phase, { maxLength: 2 }),
    trigger: maybe(fc.tuple(integer, duration)),
    commas: fc.array(fc.boolean(), { minLength: 5, maxLength: 5 }),
  })
  .filter((h) => h.codes.length + h.statuses.length + h.texts.length > 0)
  .chain((h) => {
    // Matchers of one kind form a list; kinds may come in any order, optionally separated
    // by commas, except after a `phase` list, where a comma would continue the list.
    const units: Word[][] = [];
    for (const [i, items] of [h.codes, h.statuses, h.texts].entries()) if (items.length) units.push(h.commas[i] ? [items, ','] : [items]);
    if (h.phases.length) units.push(['phase', h.phases]);
    if (h.trigger) units.push(['when', h.trigger[0], 'in', h.trigger[1], ...(h.commas[4] ? [','] : [])]);
    return permutation(units).map((order) => ['on', 'reply', ...order.flat()]);
  });

const action = fc.oneof(
  fc.tuple(duration, maybe(some(fc.oneof(oneLineSetting, setting), 3))).map(([d, block]) => (block ? withBlock(['backoff', d], block) : statement('backoff', d))),
  fc.tuple(fc.constantFrom('destination', 'source', 'tenant'), duration).map(([t, d]) => statement('suspend', t, d)),
  fc.constant(statement('disable', 'source')),
  fc.tuple(fc.constantFrom('bounce', 'classify'), category).map(([kw, c]) => statement(kw, c)),
  maybe(duration).map((d) => (d ? statement('retry', 'after', d) : statement('retry'))),
  fc.constant(statement('skip-mx')),
  name.map((p) => statement('reroute', 'pool', p)),
);
const example = fc.tuple(string, maybe(phase)).map(([s, p]) => statement('example', s, ...(p ? ['phase', p] : [])));
const rule = fc
  .tuple(ruleHead, interleaved(some(action), optional(fc.constantFrom(...DISPOSITIONS).map((d) => statement('disposition', d))), some(example, 2)))
  .map(([head, body]) => withBlock(head, body));
const ruleOrRef = fc.oneof({ weight: 3, arbitrary: rule }, { weight: 1, arbitrary: name.map((n) => statement('rules', n)) });

const match = fc.tuple(fc.constantFrom('domain', 'mx'), list(domainPattern)).map(([on, ps]) => statement('match', on, ps));
const destinationBody = interleaved(some(match, 2), some(setting, 3), some(ruleOrRef, 3));
const destination = fc.oneof(
  destinationBody.map((body) => withBlock(['default'], body)),
  fc.tuple(name, destinationBody).map(([n, body]) => withBlock(['provider', n], body)),
  fc.tuple(list(domainPattern), destinationBody).map(([ds, body]) => withBlock(['domain', ds], body)),
);

const plan = fc.oneof(
  list(rate, 5).map((steps) => statement('schedule', steps)),
  fc.tuple(rate, factor, fc.boolean(), maybe(rate)).map(([start, f, daily, cap]) =>
    statement('start', start, 'grow', f, ...(daily ? ['daily'] : []), ...(cap ? ['cap', cap] : [])),
  ),
);
const warmupOverride = fc
  .tuple(fc.oneof(name.map((n) => ['provider', n]), domain.map((d) => ['domain', d])), optional(plan))
  .map(([target, body]) => withBlock(['for', ...target], body));
const warmup = fc
  .tuple(name, interleaved(optional(plan), some(warmupOverride, 2), optional(name.map((p) => statement('overflow', 'pool', p)))))
  .map(([n, body]) => withBlock(['warmup', n], body));

const source = fc
  .tuple(
    name,
    interleaved(
      optional(address.map((a) => statement('address', a))),
      optional(domain.map((d) => statement('ehlo', d))),
      optional(fc.tuple(name, date).map(([r, d]) => statement('warmup', r, 'since', d))),
      some(limit, 2),
    ),
  )
  .map(([n, body]) => withBlock(['source', n], body));
const pool = fc.tuple(name, some(list(name, 4).map((names) => statement(names)), 3)).map(([n, body]) => withBlock(['pool', n], body));
const tenant = fc
  .tuple(name, interleaved(optional(name.map((p) => statement('pool', p))), some(limit, 2)))
  .map(([n, body]) => withBlock(['tenant', n], body));

const deliver = fc
  // A test's MX hosts are host names, not patterns.
  .tuple(email, maybe(list(fc.tuple(domain, fc.constantFrom('', '', '.')).map(([d, dot]) => d + dot))), maybe(name), maybe(name))
  .chain(([to, mx, src, ten]) => {
    const options: Word[][] = [];
    if (mx) options.push(['mx', mx]);
    if (src) options.push(['source', src]);
    if (ten) options.push(['tenant', ten]);
    return permutation(options).map((order) => statement('deliver', 'to', to, ...order.flat()));
  });
const replyStep = fc
  // A reply is given at least once (`0 times` is VAL001).
  .tuple(string, maybe(integer.filter((n) => Number(n) >= 1)), maybe(phase))
  .chain(([text, times, p]) => {
    const options: Word[][] = [];
    if (times !== undefined) options.push([times, 'times']);
    if (p) options.push(['phase', p]);
    return permutation(options).map((order) => statement('reply', text, ...order.flat()));
  });
const route = fc.oneof(
  fc.constant(['default']),
  name.map((n) => ['provider:' + n]),
  name.map((n) => ['provider', ':', n]),
  domain.map((d) => ['domain:' + d]),
);
const expectation: fc.Arbitrary<Word[]> = fc.oneof(
  route.map((r) => ['route', ...r]),
  fc.tuple(fc.constantFrom('category', 'bounce'), category).map(([kw, c]) => [kw, c]),
  fc.constantFrom(...DISPOSITIONS).map((d) => ['disposition', d]),
  maybe(duration).map((d) => (d ? ['backoff', d] : ['backoff'])),
  fc.tuple(fc.constantFrom('destination', 'source', 'tenant'), maybe(duration)).map(([t, d]) => ['suspend', t, ...(d ? [d] : [])]),
  fc.constantFrom<Word[]>(['no', 'backoff'], ['no', 'suspend'], ['disable', 'source'], ['no', 'disable', 'source'], ['skip-mx'], ['no', 'skip-mx']),
  fc.constantFrom<Word[]>(['no', 'retry'], ['retry', 'never'], ['retry']),
  duration.map((d) => ['retry', d]),
  name.map((p) => ['reroute', 'pool', p]),
  fc.tuple(name, digits(400), fc.oneof(digits(100_000), fc.constant('unlimited'))).map(([r, day, lim]) => ['warmup', r, 'day', day, 'limit', lim]),
  oneLineSetting.map((s) => s.words),
);
const testStep = fc.oneof(
  deliver,
  replyStep,
  duration.map((d) => statement('wait', d)),
  { weight: 3, arbitrary: expectation.map((words) => statement('expect', ...words)) },
);
const testBlock = fc.tuple(string, some(testStep, 6)).map(([title, steps]) => withBlock(['test', title], steps));

const topItem = fc.oneof(
  { weight: 3, arbitrary: destination },
  { weight: 1, arbitrary: path.map((p) => statement('use', p)) },
  { weight: 1, arbitrary: some(limit, 3).map((body) => withBlock(['global'], body)) },
  { weight: 1, arbitrary: fc.tuple(name, some(ruleOrRef, 3)).map(([n, body]) => withBlock(['rules', n], body)) },
  { weight: 1, arbitrary: fc.tuple(name, curveBody).map(([n, body]) => withBlock(['retry', n], body)) },
  { weight: 1, arbitrary: warmup },
  { weight: 1, arbitrary: source },
  { weight: 1, arbitrary: pool },
  { weight: 1, arbitrary: tenant },
  { weight: 2, arbitrary: testBlock },
);

/** A valid policy as statements: the header, then top-level items. */
export const validPolicy: fc.Arbitrary<GenStatement[]> = fc
  .tuple(name, version, fc.array(topItem, { maxLength: 6 }))
  .map(([n, v, items]) => [statement('policy', n, 'version', v), ...items]);

// ---------------------------------------------------------------------------------------
// Valid policies: untidy layout

/**
 * Layout choices, read in turn from a list of numbers so that fast-check can shrink a
 * failing layout towards the plainest one (all zeros: no comments, no blank lines).
 */
class Layout {
  private next = 0;
  constructor(private readonly choices: number[]) {}

  private draw(): number {
    const value = this.choices[this.next % this.choices.length]!;
    this.next++;
    return value;
  }

  /** True with roughly `percent` per cent probability (never for a zero choice). */
  chance(percent: number): boolean {
    const value = this.draw();
    return value > 0 && value % 100 < percent;
  }

  pick<T>(options: readonly T[]): T {
    return options[this.draw() % options.length]!;
  }
}

const COMMENT_TEXT = ['# note', '#', '# a, b', '# { not a block }', '# "quoted"', '#x;y', '# retry 5m'];

function indentFor(depth: number, layout: Layout): string {
  return layout.pick(['  '.repeat(depth), '  '.repeat(depth), '\t'.repeat(depth), ' '.repeat(depth * 4 + 1), ''] as const);
}

/** Words written out; with `inline`, everything stays on one line and there are no comments. */
function writeWords(words: Word[], depth: number, layout: Layout, inline: boolean): string {
  // After a comma a list may continue on the next line, possibly after a comment.
  const afterComma = (): string => {
    if (inline || !layout.chance(20)) return layout.pick([' ', ' ', '', '  ']);
    return (layout.chance(40) ? ' ' + layout.pick(COMMENT_TEXT) : '') + '\n' + indentFor(depth + 1, layout);
  };
  let out = '';
  for (const [i, word] of words.entries()) {
    if (i > 0 && !out.endsWith('\n') && !/\s$/.test(out)) out += layout.pick([' ', ' ', '  ', '\t']);
    if (typeof word === 'string') out += word === ',' ? ',' + afterComma() : word;
    else out += word.map((item, j) => (j === 0 ? item : ',' + afterComma() + item)).join('');
  }
  return out;
}

function writeStatements(statements: GenStatement[], depth: number, layout: Layout): string {
  let out = '';
  let continuesLine = false;
  for (const [i, s] of statements.entries()) {
    if (!continuesLine) {
      if (layout.chance(15)) out += '\n'.repeat(layout.pick([1, 2, 3]));
      if (layout.chance(15)) out += indentFor(depth, layout) + layout.pick(COMMENT_TEXT) + '\n';
      out += indentFor(depth, layout);
    }
    out += writeStatement(s, depth, layout);
    const last = i === statements.length - 1;
    continuesLine = !last && layout.chance(20);
    if (continuesLine) out += layout.pick([';', '; ', ' ; ']);
    else out += (layout.chance(15) ? layout.pick([' ', '   ']) + layout.pick(COMMENT_TEXT) : layout.pick(['', '', ' ;', ';'])) + '\n';
  }
  return out;
}

function writeStatement(s: GenStatement, depth: number, layout: Layout): string {
  let out = writeWords(s.words, depth, layout, false);
  if (!s.block) return out;
  if (s.block.every((child) => !child.block) && layout.chance(25)) {
    // A block on one line: `{ a; b }`.
    return out + ' { ' + s.block.map((child) => writeWords(child.words, depth + 1, layout, true)).join('; ') + ' }';
  }
  out += layout.pick([' {', ' {', '{', '  {']);
  if (layout.chance(15)) out += ' ' + layout.pick(COMMENT_TEXT);
  return out + '\n' + writeStatements(s.block, depth + 1, layout) + indentFor(depth, layout) + '}';
}

/** Writes statements as policy text with an untidy layout chosen by `choices`. */
export function writePolicy(statements: GenStatement[], choices: number[]): string {
  return writeStatements(statements, 0, new Layout(choices.length ? choices : [0]));
}

/** The text of a valid policy, written with an untidy layout. */
export const validPolicyText: fc.Arbitrary<string> = fc
  .tuple(validPolicy, fc.array(fc.nat({ max: 9_999 }), { minLength: 1, maxLength: 200 }))
  .map(([statements, choices]) => writePolicy(statements, choices));
