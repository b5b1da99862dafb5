/**
 * CST → AST. The CST is a tree of generic statements (see `parser.ts`); here each
 * statement is read by its leading keyword, its arguments are checked (units, numbers,
 * names) and typed AST nodes are built. A statement that cannot be read yields one
 * diagnostic and is left out; the rest of the file is still read.
 */
import type { CstNode, IToken } from 'chevrotain';
import { isIP } from 'node:net';
import { DISPOSITIONS, PHASES, SUSPEND_TARGETS, TLS_MODES, type Phase } from '../vocabulary/index.ts';
import type * as A from './ast.ts';
import { joinSpans, type Diagnostic, type Span } from './diagnostic.ts';
import { VALUE_LIMITS, withinLimit, type ValueKind } from './limits.ts';
import { didYouMean } from './suggest.ts';

/** A statement from the CST: its atoms and, if it has one, its block. */
interface Stmt {
  atoms: IToken[];
  block?: Stmt[];
  /** The `{` … `}` of the block. */
  blockSpan?: Span;
  span: Span;
}

/** Flattens the generic CST into statements; tokens inserted by error recovery are dropped. */
function cstToStatements(node: CstNode, file: string): Stmt[] {
  const out: Stmt[] = [];
  for (const child of (node.children['statement'] as CstNode[] | undefined) ?? []) {
    const atoms: IToken[] = [];
    for (const atom of (child.children['atom'] as CstNode[] | undefined) ?? []) {
      for (const list of Object.values(atom.children)) {
        for (const tok of list as IToken[]) {
          if (!tok.isInsertedInRecovery && Number.isFinite(tok.startOffset) && tok.tokenType.name !== 'Newline') atoms.push(tok);
        }
      }
    }
    if (atoms.length === 0) continue;
    const stmt: Stmt = { atoms, span: tokenSpan(file, atoms[0]!, atoms[atoms.length - 1]!) };
    const block = (child.children['block'] as CstNode[] | undefined)?.[0];
    if (block) {
      const inner = (block.children['statements'] as CstNode[] | undefined)?.[0];
      stmt.block = inner ? cstToStatements(inner, file) : [];
      const open = (block.children['LCurly'] as IToken[] | undefined)?.[0];
      const close = (block.children['RCurly'] as IToken[] | undefined)?.[0];
      if (open) {
        const last = close && !close.isInsertedInRecovery && Number.isFinite(close.startOffset) ? close : open;
        stmt.blockSpan = tokenSpan(file, open, last);
        stmt.span = joinSpans(stmt.span, stmt.blockSpan);
      }
    }
    // Statements nested in a `statements` node (the `statements` rule is recursive only via blocks).
    out.push(stmt);
  }
  // Chevrotain stores order per child kind; restore source order.
  return out.sort((a, b) => a.span.offset - b.span.offset);
}

/** The span of one token, or from `first` to `last`. */
export function tokenSpan(file: string, first: IToken, last: IToken = first): Span {
  return {
    file,
    line: first.startLine ?? 1,
    column: first.startColumn ?? 1,
    endLine: last.endLine ?? first.startLine ?? 1,
    endColumn: last.endColumn ?? first.startColumn ?? 1,
    offset: first.startOffset,
    endOffset: (last.endOffset ?? last.startOffset) + 1,
  };
}

const SECONDS: Record<string, number> = { s: 1, sec: 1, m: 60, min: 60, h: 3600, hour: 3600, d: 86400, day: 86400, w: 604800, week: 604800 };
const DURATION_UNITS = ['s', 'm', 'min', 'h', 'd', 'w'];
const RATE_UNITS = ['s', 'sec', 'min', 'm', 'h', 'hour', 'd', 'day'];
const SIZE_BYTES: Record<string, number> = { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 };

/** Thrown inside one statement's reader to abandon that statement; never escapes `buildAst`. */
class StatementError {
  constructor(readonly diagnostic: Diagnostic) {}
}

/** Reads the atoms of one statement left to right. */
class Reader {
  private index = 0;
  constructor(
    readonly stmt: Stmt,
    private readonly file: string,
  ) {}

  get done(): boolean {
    return this.index >= this.stmt.atoms.length;
  }

  peek(): IToken | undefined {
    return this.stmt.atoms[this.index];
  }

  peekText(): string | undefined {
    return this.peek()?.image;
  }

  span(tok: IToken): Span {
    return tokenSpan(this.file, tok);
  }

  /** The span from token `from` to the last token read. */
  spanFrom(from: IToken): Span {
    const last = this.stmt.atoms[Math.max(0, this.index - 1)] ?? from;
    return tokenSpan(this.file, from, last.startOffset >= from.startOffset ? last : from);
  }

  fail(code: string, message: string, span?: Span, help?: string): never {
    throw new StatementError({ code, severity: 'error', message, span: span ?? this.stmt.span, ...(help ? { help } : {}) });
  }

  /** The next atom, or a PARSE002 saying what was expected. */
  next(expected: string): IToken {
    const tok = this.stmt.atoms[this.index];
    if (!tok) {
      const last = this.stmt.atoms[this.stmt.atoms.length - 1]!;
      const at = this.span(last);
      this.fail('PARSE002', `expected ${expected} after \`${last.image}\``, { ...at, line: at.endLine, column: at.endColumn + 1, endColumn: at.endColumn + 1, offset: at.endOffset, endOffset: at.endOffset });
    }
    this.index++;
    return tok;
  }

  /** Consumes `word` if it is next. */
  accept(word: string): IToken | undefined {
    const tok = this.peek();
    if (tok && tok.image === word) {
      this.index++;
      return tok;
    }
    return undefined;
  }

  expectWord(word: string, context: string): IToken {
    const tok = this.next(`\`${word}\``);
    if (tok.image !== word) this.fail('PARSE002', `expected \`${word}\` ${context}, found \`${tok.image}\``, this.span(tok));
    return tok;
  }

  /** One of `choices`; a misspelling gets "did you mean". */
  choice<T extends string>(choices: readonly T[], what: string): { value: T; span: Span } {
    const tok = this.next(what);
    if (!(choices as readonly string[]).includes(tok.image)) {
      this.fail('PARSE002', `expected ${what}, found \`${tok.image}\``, this.span(tok), didYouMean(tok.image, choices) ?? `one of ${choices.map((c) => `\`${c}\``).join(', ')}`);
    }
    return { value: tok.image as T, span: this.span(tok) };
  }

  name(what: string): A.Name {
    const tok = this.next(what);
    if (tok.tokenType.name !== 'Identifier') this.fail('PARSE002', `expected ${what}, found \`${tok.image}\``, this.span(tok));
    return { text: tok.image, span: this.span(tok) };
  }

  string(what: string): { text: string; span: Span } {
    const tok = this.next(what);
    if (tok.tokenType.name === 'UnterminatedString') this.fail('PARSE001', 'unterminated string', this.span(tok), 'close the string with `"` on the same line');
    if (tok.tokenType.name !== 'StringLit') this.fail('PARSE002', `expected ${what} in double quotes, found \`${tok.image}\``, this.span(tok));
    return { text: unquote(tok.image), span: this.span(tok) };
  }

  /** `value` (in the base unit of `kind`) if it is within its bound (`limits.ts`), else a VAL015 at `tok`. */
  bounded(kind: ValueKind, value: number, what: string, tok: IToken): number {
    if (!withinLimit(kind, value)) this.fail('VAL015', `\`${tok.image}\` is too large for ${what}: at most ${VALUE_LIMITS[kind].text}`, this.span(tok));
    return value;
  }

  /** A positive or zero integer without unit. */
  integer(what: string): A.NumberValue {
    const tok = this.next(what);
    const span = this.span(tok);
    if (tok.tokenType.name !== 'NumberLit') this.fail('PARSE002', `expected ${what} (a number), found \`${tok.image}\``, span);
    if (!/^\d+$/.test(tok.image)) {
      const unit = /^\d+(?:\.\d+)?([A-Za-z%]+)$/.exec(tok.image)?.[1];
      if (unit) this.fail('PARSE004', `${what} is a plain number; \`${unit}\` is not a unit here`, span, `write \`${tok.image.slice(0, -unit.length)}\``);
      this.fail('PARSE005', `expected ${what} as a whole number, found \`${tok.image}\``, span);
    }
    return { value: this.bounded('count', Number(tok.image), what, tok), span };
  }

  duration(what: string): A.DurationValue {
    const tok = this.next(`${what} (a duration such as \`30m\`)`);
    const span = this.span(tok);
    if (tok.tokenType.name !== 'NumberLit') this.fail('PARSE002', `expected ${what} (a duration such as \`30m\`), found \`${tok.image}\``, span);
    if (/^\d+(\.\d+)?$/.test(tok.image)) {
      this.fail('PARSE003', `missing time unit in ${what}: \`${tok.image}\``, span, `write \`${tok.image}s\`, \`${tok.image}m\`, \`${tok.image}h\` or \`${tok.image}d\``);
    }
    const parts = [...tok.image.matchAll(/(\d+(?:\.\d+)?)([A-Za-z%]+)/g)];
    if (parts.map((p) => p[0]).join('') !== tok.image) this.fail('PARSE005', `\`${tok.image}\` is not a duration`, span, 'write a number and a unit, for example `90s`, `30m`, `1h30m` or `2d`');
    let seconds = 0;
    for (const [, num, unit] of parts) {
      const factor = SECONDS[unit!];
      if (factor === undefined || !DURATION_UNITS.includes(unit!)) {
        this.fail('PARSE004', `\`${unit}\` is not a time unit in \`${tok.image}\``, span, didYouMean(unit!, DURATION_UNITS) ?? `use one of ${DURATION_UNITS.map((u) => `\`${u}\``).join(', ')}`);
      }
      seconds += Number(num) * factor;
    }
    return { seconds: this.bounded('duration', seconds, what, tok), span };
  }

  /** `20/s`, `3600/h`; with `size`, the count may carry a size unit (`10MB/min`) and is in bytes. */
  rate(what: string, size = false): A.RateValue {
    const example = size ? '`10MB/min`' : '`20/s`';
    const tok = this.next(`${what} (a rate such as ${example})`);
    const span = this.span(tok);
    if (tok.tokenType.name !== 'RateLit') {
      const bare = tok.tokenType.name === 'NumberLit' ? /^(\d+(?:\.\d+)?)([A-Za-z]*)$/.exec(tok.image) : null;
      if (bare && !bare[2]) this.fail('PARSE003', `missing time unit in ${what}: \`${tok.image}\``, span, `write it per time unit, for example \`${tok.image}/h\``);
      if (bare && size && SIZE_BYTES[bare[2]!.toLowerCase()] !== undefined) this.fail('PARSE003', `missing time unit in ${what}: \`${tok.image}\``, span, `write it per time unit, for example \`${tok.image}/min\``);
      if (bare) this.fail('PARSE004', `\`${tok.image}\` is not a rate`, span, `write a count per time unit, for example \`${bare[1]}/${RATE_UNITS.includes(bare[2]!) ? bare[2] : 'h'}\``);
      this.fail('PARSE002', `expected ${what} (a rate such as ${example}), found \`${tok.image}\``, span);
    }
    const [, num, countUnit, timeUnit] = /^(\d+(?:\.\d+)?)([A-Za-z]*)\/([A-Za-z]+)$/.exec(tok.image) ?? [];
    if (num === undefined) this.fail('PARSE005', `\`${tok.image}\` is not a rate`, span, `write a rate such as ${example}`);
    if (!RATE_UNITS.includes(timeUnit!)) {
      this.fail('PARSE004', `\`/${timeUnit}\` is not a time unit in \`${tok.image}\``, span, didYouMean(timeUnit!, RATE_UNITS) ?? 'use `/s`, `/min`, `/h` or `/day`');
    }
    let count = Number(num);
    if (size) {
      const bytes = SIZE_BYTES[(countUnit || '').toLowerCase()];
      if (!countUnit) this.fail('PARSE003', `missing size unit in ${what}: \`${tok.image}\``, span, `write \`${num}KB/${timeUnit}\` or \`${num}MB/${timeUnit}\``);
      if (bytes === undefined) this.fail('PARSE004', `\`${countUnit}\` is not a size unit in \`${tok.image}\``, span, 'use `B`, `KB`, `MB` or `GB`');
      count *= bytes;
    } else if (countUnit) {
      this.fail('PARSE004', `${what} counts messages or connections; \`${countUnit}\` is not allowed in \`${tok.image}\``, span, `write \`${num}/${timeUnit}\``);
    }
    return { count: this.bounded(size ? 'data-rate' : 'rate', count, what, tok), perSeconds: SECONDS[timeUnit!]!, span };
  }

  percent(what: string): A.NumberValue {
    const tok = this.next(`${what} (a percentage such as \`10%\`)`);
    const span = this.span(tok);
    const m = /^(\d+(?:\.\d+)?)(%?)$/.exec(tok.image);
    if (!m) this.fail('PARSE005', `expected ${what} as a percentage such as \`10%\`, found \`${tok.image}\``, span);
    if (!m[2]) this.fail('PARSE003', `missing \`%\` in ${what}: \`${tok.image}\``, span, `write \`${tok.image}%\``);
    return { value: this.bounded('percent', Number(m[1]), what, tok) / 100, span };
  }

  factor(what: string): A.NumberValue {
    const tok = this.next(`${what} (a factor such as \`x1.4\`)`);
    const span = this.span(tok);
    if (tok.tokenType.name !== 'FactorLit') this.fail('PARSE005', `expected ${what} as a factor such as \`x1.4\`, found \`${tok.image}\``, span);
    return { value: this.bounded('factor', Number(tok.image.slice(1)), what, tok), span };
  }

  domainPattern(what: string): A.DomainPattern {
    const tok = this.next(what);
    const span = this.span(tok);
    if (tok.tokenType.name !== 'DomainLit') {
      this.fail('PARSE005', `expected ${what} such as \`example.com\`, \`*.example.com\` or \`[*.]example.com\`, found \`${tok.image}\``, span);
    }
    return parseDomainPattern(tok.image, span);
  }

  /** A comma-separated list of at least one item. */
  list<T>(read: () => T): T[] {
    const items = [read()];
    while (this.accept(',')) items.push(read());
    return items;
  }

  /** Complains about anything left over on the line. */
  end(): void {
    const tok = this.peek();
    if (tok) {
      const last = this.stmt.atoms[this.stmt.atoms.length - 1]!;
      this.fail('PARSE002', `unexpected \`${tok.image}\` at the end of \`${this.stmt.atoms[0]!.image}\``, tokenSpan(this.file, tok, last));
    }
  }
}

function unquote(image: string): string {
  return image.slice(1, -1).replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c === 't' ? '\t' : c));
}

/** A pattern as canonical text: `yahoo.com`, `*.yahoo.com` or `[*.]yahoo.com`. */
export function patternText(p: Pick<A.DomainPattern, 'kind' | 'domain'>): string {
  return p.kind === 'exact' ? p.domain : p.kind === 'subdomains' ? `*.${p.domain}` : `[*.]${p.domain}`;
}

/** Reads `yahoo.com`, `*.yahoo.com` or `[*.]yahoo.com` into a pattern (lowercase, no final dot). */
export function parseDomainPattern(text: string, span: Span): A.DomainPattern {
  const lower = text.toLowerCase().replace(/\.$/, '');
  if (lower.startsWith('[*.]')) return { kind: 'self-and-subdomains', domain: lower.slice(4), span };
  if (lower.startsWith('*.')) return { kind: 'subdomains', domain: lower.slice(2), span };
  return { kind: 'exact', domain: lower, span };
}

const TOP_LEVEL = ['policy', 'use', 'default', 'provider', 'domain', 'global', 'rules', 'retry', 'warmup', 'source', 'pool', 'tenant', 'test'];
const LIMIT_KEYWORDS = ['connections', 'connect-rate', 'rate', 'data-rate'];
const DESTINATION_KEYWORDS = ['match', ...LIMIT_KEYWORDS, 'messages-per-connection', 'recipients-per-transaction', 'tls', 'retry', 'expire', 'on', 'rules'];
const BACKOFF_KEYWORDS = [...LIMIT_KEYWORDS, 'messages-per-connection', 'recipients-per-transaction', 'tls', 'retry', 'expire'];
const RULE_KEYWORDS = ['backoff', 'suspend', 'disable', 'bounce', 'retry', 'recover', 'classify', 'skip-mx', 'reroute', 'disposition', 'example'];
const CURVE_KEYWORDS = ['after', 'then', 'exponential', 'jitter', 'expire', 'attempts'];
const WARMUP_KEYWORDS = ['schedule', 'start', 'for', 'overflow'];
const SOURCE_KEYWORDS = ['address', 'ehlo', 'warmup', ...LIMIT_KEYWORDS];
const TENANT_KEYWORDS = ['pool', ...LIMIT_KEYWORDS];
const TEST_KEYWORDS = ['deliver', 'reply', 'wait', 'expect'];

/** Builds the AST of one file from its CST; statement-level problems become diagnostics. */
export function buildAst(cst: CstNode, file: string, text: string, comments: A.Comment[]): { ast: A.PolicyFile; diagnostics: Diagnostic[]; sawHeader: boolean } {
  const diagnostics: Diagnostic[] = [];
  const statements = cstToStatements(cst, file);
  const ast: A.PolicyFile = {
    kind: 'file',
    file,
    span: { file, line: 1, column: 1, endLine: 1, endColumn: 1, offset: 0, endOffset: text.length },
    uses: [],
    items: [],
    comments,
  };

  /** Runs `read` on one statement; a StatementError becomes a diagnostic and the statement is skipped. */
  function each<T>(stmts: Stmt[] | undefined, read: (r: Reader, s: Stmt) => T | undefined): T[] {
    const out: T[] = [];
    for (const s of stmts ?? []) {
      try {
        const value = read(new Reader(s, file), s);
        if (value !== undefined) out.push(value);
      } catch (e) {
        if (!(e instanceof StatementError)) throw e;
        diagnostics.push(e.diagnostic);
      }
    }
    return out;
  }

  function unknownStatement(r: Reader, where: string, allowed: readonly string[]): never {
    const tok = r.peek()!;
    r.fail('PARSE002', `\`${tok.image}\` is not allowed in ${where}`, r.span(tok), didYouMean(tok.image, allowed) ?? `expected one of ${allowed.map((k) => `\`${k}\``).join(', ')}`);
  }

  function requireBlock(r: Reader, s: Stmt, what: string): Stmt[] {
    if (!s.block) r.fail('PARSE002', `${what} needs a \`{ … }\` block`, s.span);
    return s.block;
  }

  function noBlock(r: Reader, s: Stmt): void {
    if (s.block) r.fail('PARSE002', `\`${s.atoms[0]!.image}\` takes no \`{ … }\` block`, s.blockSpan);
  }

  function readScope(r: Reader): { scope?: A.Scope; scopeSpan?: Span } {
    const per = r.accept('per');
    if (per) {
      const choice = r.choice(['source', 'tenant', 'destination'] as const, 'a scope after `per`');
      return { scope: choice.value, scopeSpan: joinSpans(r.span(per), choice.span) };
    }
    const global = r.accept('global');
    if (global) return { scope: 'global', scopeSpan: r.span(global) };
    return {};
  }

  /** Limits and destination settings; shared by destinations, backoff overrides, global, sources and tenants. */
  function readSetting(r: Reader, s: Stmt, keyword: string): A.Setting {
    const head = r.next('a setting');
    switch (keyword) {
      case 'connections': {
        const value = r.integer('`connections`');
        const scope = readScope(r);
        r.end();
        noBlock(r, s);
        return { kind: 'connections', value, ...scope, span: r.spanFrom(head) };
      }
      case 'connect-rate':
      case 'rate':
      case 'data-rate': {
        const value = r.rate(`\`${keyword}\``, keyword === 'data-rate');
        const scope = readScope(r);
        r.end();
        noBlock(r, s);
        return { kind: keyword, value, ...scope, span: r.spanFrom(head) };
      }
      case 'messages-per-connection':
      case 'recipients-per-transaction': {
        const value = r.integer(`\`${keyword}\``);
        r.end();
        noBlock(r, s);
        return { kind: keyword, value, span: r.spanFrom(head) };
      }
      case 'tls': {
        const mode = r.choice(TLS_MODES, 'a TLS mode');
        r.end();
        noBlock(r, s);
        return { kind: 'tls', mode: mode.value, span: r.spanFrom(head) };
      }
      case 'expire': {
        const value = r.duration('`expire`');
        r.end();
        noBlock(r, s);
        return { kind: 'expire', value, span: r.spanFrom(head) };
      }
      case 'retry': {
        if (s.block) {
          r.end();
          return { kind: 'retry', curve: readCurveBody(s.block, s.span), span: s.span };
        }
        if (r.peekText() === 'every') {
          r.next('`every`');
          const every = r.duration('`retry every`');
          r.end();
          return { kind: 'retry', curve: { kind: 'retry-body', steps: [], repeat: every, span: r.spanFrom(head) }, span: r.spanFrom(head) };
        }
        const curve = r.name('a retry curve name, `every DURATION` or a `{ … }` block');
        r.end();
        return { kind: 'retry', curve, span: r.spanFrom(head) };
      }
    }
    throw new Error(`readSetting called for ${keyword}`);
  }

  function readCurveBody(stmts: Stmt[], span: Span): A.RetryCurveBody {
    const body: A.RetryCurveBody = { kind: 'retry-body', steps: [], span };
    each(stmts, (r, s) => {
      const keyword = r.peekText()!;
      if (!CURVE_KEYWORDS.includes(keyword)) unknownStatement(r, 'a retry curve', CURVE_KEYWORDS);
      const head = r.next('a retry setting');
      noBlock(r, s);
      const field = keyword === 'after' ? 'steps' : keyword === 'then' ? 'repeat' : keyword;
      if (field !== 'steps' && body[field as keyof A.RetryCurveBody] !== undefined) r.fail('VAL012', `\`${keyword}\` is set twice in this retry curve`, r.span(head));
      if (field === 'steps' && body.steps.length > 0) r.fail('VAL012', '`after` is set twice in this retry curve', r.span(head), 'list every delay in one `after` line');
      switch (keyword) {
        case 'after':
          body.steps.push(...r.list(() => r.duration('a retry delay')));
          break;
        case 'then':
          r.expectWord('every', 'after `then`');
          body.repeat = r.duration('`then every`');
          break;
        case 'exponential': {
          const initial = r.duration('the first exponential delay');
          const factor = r.factor('the growth factor');
          const cap = r.accept('cap') ? r.duration('the longest delay') : undefined;
          body.exponential = { initial, factor, ...(cap ? { cap } : {}), span: s.span };
          break;
        }
        case 'jitter':
          body.jitter = r.percent('`jitter`');
          break;
        case 'expire':
          body.expire = r.duration('`expire`');
          break;
        case 'attempts':
          body.attempts = r.integer('`attempts`');
          break;
      }
      r.end();
      return true;
    });
    return body;
  }

  function readDestinationBody(dest: A.Destination, stmts: Stmt[]): void {
    each(stmts, (r, s) => {
      const keyword = r.peekText()!;
      if (!DESTINATION_KEYWORDS.includes(keyword)) unknownStatement(r, `a ${dest.type} block`, DESTINATION_KEYWORDS);
      if (keyword === 'match') {
        const head = r.next('`match`');
        const on = r.choice(['domain', 'mx'] as const, '`domain` or `mx` after `match`');
        const patterns = r.list(() => r.domainPattern(on.value === 'mx' ? 'an MX host pattern' : 'a domain'));
        r.end();
        noBlock(r, s);
        dest.matches.push({ kind: 'match', on: on.value, patterns, span: r.spanFrom(head) });
      } else if (keyword === 'on') {
        dest.rules.push(readRule(r, s));
      } else if (keyword === 'rules') {
        dest.rules.push(readRulesRef(r, s));
      } else {
        dest.settings.push(readSetting(r, s, keyword));
      }
      return true;
    });
  }

  function readRulesRef(r: Reader, s: Stmt): A.RuleSetRef {
    const head = r.next('`rules`');
    const name = r.name('a rule set name');
    r.end();
    noBlock(r, s);
    return { kind: 'rules-ref', name, span: r.spanFrom(head) };
  }

  function readRule(r: Reader, s: Stmt): A.ReplyRule {
    const head = r.next('`on`');
    r.expectWord('reply', 'after `on`');
    const matcher: A.ReplyMatcher = { codes: [], statuses: [], texts: [], phases: [] };
    let trigger: A.Trigger | undefined;
    while (!r.done) {
      const tok = r.peek()!;
      if (tok.image === ',') {
        r.next(',');
        continue;
      }
      if (tok.image === 'when') {
        const when = r.next('`when`');
        if (trigger) r.fail('VAL012', 'a rule has one `when` trigger', r.span(when));
        const count = r.integer('the number of replies');
        r.expectWord('in', 'in `when N in DURATION`');
        const within = r.duration('the trigger window');
        trigger = { count, within, span: r.spanFrom(when) };
        continue;
      }
      if (tok.image === 'phase') {
        r.next('`phase`');
        matcher.phases.push(...r.list(() => r.choice(PHASES, 'an SMTP phase').value));
        continue;
      }
      r.next('a reply matcher');
      const span = r.span(tok);
      const type = tok.tokenType.name;
      if (type === 'RegexLit') {
        const last = tok.image.lastIndexOf('/');
        matcher.texts.push({ kind: 'regex', source: tok.image.slice(1, last), flags: tok.image.slice(last + 1), span });
      } else if (type === 'StringLit') {
        matcher.texts.push({ kind: 'substring', text: unquote(tok.image), span });
      } else if (type === 'UnterminatedString') {
        r.fail('PARSE001', 'unterminated string', span, 'close the string with `"` on the same line');
      } else if (/^[2-5](\d\d|\dx|xx)$/.test(tok.image)) {
        matcher.codes.push({ prefix: tok.image.replace(/x+$/, ''), span });
      } else if (/^[245]\.(\d{1,3}|x)\.(\d{1,3}|x)$/.test(tok.image)) {
        const [cls, subject, detail] = tok.image.split('.');
        const part = (p: string): number | null => (p === 'x' ? null : Number(p));
        matcher.statuses.push({ parts: [Number(cls), part(subject!), part(detail!)], text: tok.image, span });
      } else if (type === 'NumberLit' || type === 'DomainLit' || type === 'StatusLit') {
        r.fail('PARSE005', `\`${tok.image}\` is neither a reply code (\`421\`, \`4xx\`) nor an enhanced status code (\`5.7.1\`, \`4.7.x\`)`, span);
      } else {
        r.fail('PARSE002', `unexpected \`${tok.image}\` in \`on reply\`; expected a code, an enhanced status, a regex, a string, \`phase\` or \`when\``, span);
      }
    }
    const headSpan = r.spanFrom(head);
    if (!matcher.codes.length && !matcher.statuses.length && !matcher.texts.length) {
      r.fail('PARSE002', '`on reply` needs something to match: a code, an enhanced status, a regex or a string', headSpan);
    }
    const rule: A.ReplyRule = { kind: 'rule', matcher, ...(trigger ? { trigger } : {}), actions: [], examples: [], headSpan, span: s.span };
    each(requireBlock(r, s, '`on reply`'), (rr, ss) => readRuleStatement(rr, ss, rule));
    return rule;
  }

  function readRuleStatement(r: Reader, s: Stmt, rule: A.ReplyRule): true {
    const keyword = r.peekText()!;
    if (!RULE_KEYWORDS.includes(keyword)) unknownStatement(r, 'a reply rule', RULE_KEYWORDS);
    const head = r.next('an action');
    if (keyword !== 'backoff') noBlock(r, s);
    switch (keyword) {
      case 'backoff': {
        const duration = r.duration('the backoff duration');
        r.end();
        const overrides = each(s.block, (rr, ss) => {
          const kw = rr.peekText()!;
          if (!BACKOFF_KEYWORDS.includes(kw)) unknownStatement(rr, 'a backoff block', BACKOFF_KEYWORDS);
          return readSetting(rr, ss, kw);
        });
        rule.actions.push({ kind: 'backoff', duration, overrides, span: s.span });
        return true;
      }
      case 'suspend': {
        const target = r.choice(SUSPEND_TARGETS, 'what to suspend');
        const duration = r.duration('the suspension');
        rule.actions.push({ kind: 'suspend', target: target.value, duration, span: r.spanFrom(head) });
        break;
      }
      case 'disable':
        r.expectWord('source', 'after `disable`');
        rule.actions.push({ kind: 'disable-source', span: r.spanFrom(head) });
        break;
      case 'bounce':
      case 'classify': {
        const category = r.name('a bounce category');
        rule.actions.push({ kind: keyword, category, span: r.spanFrom(head) });
        break;
      }
      case 'retry': {
        const after = r.accept('after') ? r.duration('the retry delay') : undefined;
        const attempts = r.accept('attempts') ? r.integer('the number of attempts') : undefined;
        rule.actions.push({ kind: 'retry', ...(after ? { after } : {}), ...(attempts ? { attempts } : {}), span: r.spanFrom(head) });
        break;
      }
      case 'recover':
        rule.actions.push({ kind: 'recover', duration: r.duration('the recovery period'), span: r.spanFrom(head) });
        break;
      case 'skip-mx':
        rule.actions.push({ kind: 'skip-mx', span: r.spanFrom(head) });
        break;
      case 'reroute': {
        r.expectWord('pool', 'after `reroute`');
        rule.actions.push({ kind: 'reroute', pool: r.name('a pool name'), span: r.spanFrom(head) });
        break;
      }
      case 'disposition': {
        const value = r.choice(DISPOSITIONS, 'a disposition');
        if (rule.disposition) r.fail('VAL012', 'this rule already states a disposition', r.spanFrom(head));
        rule.disposition = { value: value.value, span: r.spanFrom(head) };
        break;
      }
      case 'example': {
        const text = r.string('an example reply');
        const phase = r.accept('phase') ? r.choice(PHASES, 'an SMTP phase').value : undefined;
        rule.examples.push({ text: text.text, ...(phase ? { phase } : {}), span: r.spanFrom(head) });
        break;
      }
    }
    r.end();
    return true;
  }

  function readWarmupPlan(r: Reader, keyword: string, head: IToken): A.WarmupPlan {
    if (keyword === 'schedule') {
      const steps = r.list(() => r.rate('a daily limit'));
      return { kind: 'schedule', steps, span: r.spanFrom(head) };
    }
    const start = r.rate('the first day’s limit');
    r.expectWord('grow', 'after the start rate');
    const factor = r.factor('the daily growth');
    r.accept('daily');
    const cap = r.accept('cap') ? r.rate('the cap') : undefined;
    return { kind: 'growth', start, factor, ...(cap ? { cap } : {}), span: r.spanFrom(head) };
  }

  function readWarmup(r: Reader, s: Stmt, ramp: A.WarmupRamp): true {
    const keyword = r.peekText()!;
    if (!WARMUP_KEYWORDS.includes(keyword)) unknownStatement(r, 'a warmup block', WARMUP_KEYWORDS);
    const head = r.next('a warmup statement');
    if (keyword === 'schedule' || keyword === 'start') {
      noBlock(r, s);
      if (ramp.plan) r.fail('VAL012', 'this ramp already has a plan (`schedule` or `start`)', r.span(head));
      ramp.plan = readWarmupPlan(r, keyword, head);
    } else if (keyword === 'overflow') {
      noBlock(r, s);
      if (ramp.overflow) r.fail('VAL012', 'this ramp already has an `overflow` pool', r.span(head));
      r.expectWord('pool', 'after `overflow`');
      ramp.overflow = r.name('a pool name');
    } else {
      const targetType = r.choice(['provider', 'domain'] as const, '`provider` or `domain` after `for`');
      const targetTok = r.next('a provider name or a domain');
      const target = { text: targetType.value === 'domain' ? targetTok.image.toLowerCase() : targetTok.image, span: r.span(targetTok) };
      r.end();
      const plans = each(requireBlock(r, s, '`for`'), (rr, ss) => {
        const kw = rr.peekText()!;
        if (kw !== 'schedule' && kw !== 'start') unknownStatement(rr, 'a `for` block of a warmup ramp', ['schedule', 'start']);
        noBlock(rr, ss);
        const plan = readWarmupPlan(rr, kw, rr.next('a plan'));
        rr.end();
        return plan;
      });
      if (plans.length > 1) diagnostics.push({ code: 'VAL012', severity: 'error', message: 'a `for` block has one plan (`schedule` or `start`)', span: plans[1]!.span });
      ramp.overrides.push({ target, targetType: targetType.value, ...(plans[0] ? { plan: plans[0] } : {}), span: s.span });
      return true;
    }
    r.end();
    return true;
  }

  function readTestStep(r: Reader, s: Stmt): A.TestStep {
    const keyword = r.peekText()!;
    if (!TEST_KEYWORDS.includes(keyword)) unknownStatement(r, 'a test', TEST_KEYWORDS);
    const head = r.next('a test step');
    noBlock(r, s);
    let step: A.TestStep;
    switch (keyword) {
      case 'deliver': {
        r.expectWord('to', 'after `deliver`');
        const toTok = r.next('a recipient address');
        if (toTok.tokenType.name !== 'EmailLit') r.fail('PARSE005', `expected a recipient address such as \`someone@example.com\`, found \`${toTok.image}\``, r.span(toTok));
        const deliver: Extract<A.TestStep, { kind: 'deliver' }> = { kind: 'deliver', to: { text: toTok.image, span: r.span(toTok) }, mx: [], span: s.span };
        const seen = new Set<string>();
        while (!r.done) {
          const option = r.choice(['mx', 'source', 'tenant'] as const, '`mx`, `source` or `tenant`');
          if (seen.has(option.value)) r.fail('VAL012', `\`${option.value}\` is given twice`, option.span);
          seen.add(option.value);
          if (option.value === 'mx') deliver.mx = r.list(() => {
            const p = r.domainPattern('an MX host');
            if (p.kind !== 'exact') r.fail('PARSE005', 'an MX host in a test is a host name, not a pattern', p.span, `write a host such as \`mx1.${p.domain}\``);
            return { text: p.domain, span: p.span };
          });
          else deliver[option.value] = r.name(`a ${option.value} name`);
        }
        step = deliver;
        break;
      }
      case 'reply': {
        const text = r.string('the reply text');
        let times: number | undefined;
        let phase: Phase | undefined;
        while (!r.done) {
          const at = r.peek()!;
          if (r.accept('phase')) {
            if (phase) r.fail('VAL012', '`phase` is given twice', r.span(at));
            phase = r.choice(PHASES, 'an SMTP phase').value;
          } else {
            if (times !== undefined) r.fail('VAL012', 'the count is given twice', r.span(at));
            const count = r.integer('how many times');
            if (count.value < 1) r.fail('VAL001', 'a reply is given at least once', count.span);
            times = count.value;
            r.expectWord('times', 'after the count');
          }
        }
        step = { kind: 'reply', text: text.text, times: times ?? 1, ...(phase ? { phase } : {}), span: r.spanFrom(head) };
        break;
      }
      case 'wait':
        step = { kind: 'wait', duration: r.duration('how long to wait'), span: r.spanFrom(head) };
        break;
      default:
        step = { kind: 'expect', expectation: readExpectation(r, s), span: s.span };
    }
    r.end();
    return step;
  }

  function readExpectation(r: Reader, s: Stmt): A.Expectation {
    const none = r.accept('no') !== undefined;
    const what = r.next('what to expect');
    const simple = (e: A.Expectation): A.Expectation => {
      if (none && !('none' in e)) r.fail('PARSE002', `\`expect no ${what.image}\` is not supported`, r.span(what));
      return e;
    };
    switch (what.image) {
      case 'route': {
        const parts: string[] = [];
        const first = r.next('a route such as `provider:yahoo`');
        parts.push(first.image);
        while (!r.done) parts.push(r.next('the rest of the route').image);
        return simple({ what: 'route', route: { text: parts.join(''), span: r.spanFrom(first) } });
      }
      case 'category':
        return simple({ what: 'category', category: r.name('a bounce category') });
      case 'disposition':
        return simple({ what: 'disposition', disposition: r.choice(DISPOSITIONS, 'a disposition').value });
      case 'bounce':
        return simple({ what: 'bounce', category: r.name('a bounce category') });
      case 'backoff':
        return { what: 'backoff', none, ...(!none && !r.done ? { duration: r.duration('the backoff duration') } : {}) };
      case 'suspend': {
        if (none) return { what: 'suspend', none };
        const target = r.choice(SUSPEND_TARGETS, 'what is suspended').value;
        return { what: 'suspend', none, target, ...(!r.done ? { duration: r.duration('the suspension') } : {}) };
      }
      case 'disable':
        r.expectWord('source', 'after `disable`');
        return { what: 'disable-source', none };
      case 'skip-mx':
        return { what: 'skip-mx', none };
      case 'reroute':
        r.expectWord('pool', 'after `reroute`');
        return simple({ what: 'reroute', pool: r.name('a pool name') });
      case 'retry': {
        if (none || r.accept('never')) return { what: 'retry', never: true };
        return { what: 'retry', never: false, ...(!r.done ? { delay: r.duration('the retry delay') } : {}) };
      }
      case 'warmup': {
        const ramp = r.name('a warmup ramp');
        r.expectWord('day', 'after the ramp');
        const day = r.integer('the day').value;
        r.expectWord('limit', 'after the day');
        const limit = r.accept('unlimited') ? 'unlimited' : r.integer('the limit').value;
        return simple({ what: 'warmup', ramp, day, limit });
      }
      case 'connections':
      case 'connect-rate':
      case 'rate':
      case 'data-rate':
      case 'messages-per-connection':
      case 'recipients-per-transaction':
      case 'tls':
      case 'expire': {
        // Re-read the rest of the statement as a setting, starting at the keyword.
        const setting = readSetting(new Reader({ atoms: s.atoms.slice(s.atoms.indexOf(what)), span: s.span }, file), { ...s, atoms: s.atoms.slice(s.atoms.indexOf(what)) }, what.image);
        while (!r.done) r.next('');
        return simple({ what: 'setting', setting });
      }
    }
    const known = ['route', 'category', 'disposition', 'bounce', 'backoff', 'suspend', 'disable', 'skip-mx', 'reroute', 'retry', 'warmup', ...BACKOFF_KEYWORDS];
    return r.fail('PARSE002', `cannot expect \`${what.image}\``, r.span(what), didYouMean(what.image, known) ?? `expected one of ${known.map((k) => `\`${k}\``).join(', ')}`);
  }

  function readLimitsBlock(stmts: Stmt[] | undefined, where: string, allowed: string[], extra?: (r: Reader, s: Stmt, keyword: string) => boolean): A.Setting[] {
    return each(stmts, (r, s) => {
      const keyword = r.peekText()!;
      if (extra?.(r, s, keyword)) return undefined;
      if (!allowed.includes(keyword)) unknownStatement(r, where, allowed);
      return readSetting(r, s, keyword);
    });
  }

  let first = true;
  let sawHeader = false;
  each(statements, (r, s) => {
    const keyword = r.peekText()!;
    const isFirst = first;
    first = false;
    if (!TOP_LEVEL.includes(keyword)) unknownStatement(r, 'the top level of a policy file', TOP_LEVEL);
    const head = r.next('a definition');
    switch (keyword) {
      case 'policy': {
        const again = sawHeader;
        sawHeader = true;
        if (again) r.fail('PARSE006', 'a file has only one `policy` header', s.span);
        if (!isFirst) diagnostics.push({ code: 'PARSE006', severity: 'error', message: 'the `policy` header must be the first statement', span: s.span, help: 'move it to the top of the file' });
        const name = r.name('the policy name');
        r.expectWord('version', 'after the policy name');
        const versionTok = r.next('a version such as `2026.11.2`');
        if (!/^\d[\w.-]*$/.test(versionTok.image)) r.fail('PARSE005', `\`${versionTok.image}\` is not a version`, r.span(versionTok), 'write a version such as `2026.11.2` or `1.4.0`');
        r.end();
        noBlock(r, s);
        ast.header = { kind: 'header', name, version: { text: versionTok.image, span: r.span(versionTok) }, span: r.spanFrom(head) };
        return undefined;
      }
      case 'use': {
        const tok = r.next('a file to use, such as `stdlib/retry`');
        if (tok.tokenType.name !== 'PathLit' && tok.tokenType.name !== 'StringLit') r.fail('PARSE002', `expected a path such as \`stdlib/retry\` or \`"./common"\`, found \`${tok.image}\``, r.span(tok));
        r.end();
        noBlock(r, s);
        ast.uses.push({ kind: 'use', path: tok.tokenType.name === 'StringLit' ? unquote(tok.image) : tok.image, span: r.spanFrom(head) });
        return undefined;
      }
      case 'default':
      case 'provider':
      case 'domain': {
        const dest: A.Destination = { kind: 'destination', type: keyword, name: { text: 'default', span: r.span(head) }, domains: [], matches: [], settings: [], rules: [], span: s.span };
        if (keyword === 'provider') dest.name = r.name('a provider name');
        if (keyword === 'domain') {
          dest.domains = r.list(() => r.domainPattern('a domain'));
          dest.name = { text: patternText(dest.domains[0]!), span: dest.domains[0]!.span };
        }
        r.end();
        readDestinationBody(dest, requireBlock(r, s, `\`${keyword}\``));
        ast.items.push(dest);
        return undefined;
      }
      case 'global': {
        r.end();
        ast.items.push({ kind: 'global', settings: readLimitsBlock(requireBlock(r, s, '`global`'), 'a global block', LIMIT_KEYWORDS), span: s.span });
        return undefined;
      }
      case 'rules': {
        const name = r.name('a rule set name');
        r.end();
        const rules = each(requireBlock(r, s, '`rules`'), (rr, ss) => {
          const kw = rr.peekText()!;
          if (kw === 'on') return readRule(rr, ss);
          if (kw === 'rules') return readRulesRef(rr, ss);
          return unknownStatement(rr, 'a rule set', ['on', 'rules']);
        });
        ast.items.push({ kind: 'rule-set', name, rules, span: s.span });
        return undefined;
      }
      case 'retry': {
        const name = r.name('a retry curve name');
        r.end();
        ast.items.push({ kind: 'retry-curve', name, body: readCurveBody(requireBlock(r, s, '`retry`'), s.span), span: s.span });
        return undefined;
      }
      case 'warmup': {
        const ramp: A.WarmupRamp = { kind: 'warmup', name: r.name('a warmup ramp name'), overrides: [], span: s.span };
        r.end();
        each(requireBlock(r, s, '`warmup`'), (rr, ss) => readWarmup(rr, ss, ramp));
        ast.items.push(ramp);
        return undefined;
      }
      case 'source': {
        const source: A.SourceDef = { kind: 'source', name: r.name('a source name'), settings: [], span: s.span };
        r.end();
        source.settings = readLimitsBlock(requireBlock(r, s, '`source`'), 'a source block', SOURCE_KEYWORDS, (rr, ss, kw) => {
          if (kw !== 'address' && kw !== 'ehlo' && kw !== 'warmup') return false;
          const h = rr.next(kw);
          noBlock(rr, ss);
          if (source[kw as 'address' | 'ehlo' | 'warmup'] !== undefined) rr.fail('VAL012', `\`${kw}\` is set twice in source \`${source.name.text}\``, rr.span(h));
          if (kw === 'warmup') {
            const ramp = rr.name('a warmup ramp');
            rr.expectWord('since', 'after the ramp name');
            const sinceTok = rr.next('a date such as `2026-11-20`');
            if (!isCalendarDate(sinceTok.image)) {
              rr.fail('PARSE005', `\`${sinceTok.image}\` is not a date`, rr.span(sinceTok), 'write the date as YYYY-MM-DD, for example `2026-11-20`');
            }
            source.warmup = { ramp, since: { text: sinceTok.image, span: rr.span(sinceTok) }, span: rr.spanFrom(h) };
          } else {
            const tok = rr.next(kw === 'address' ? 'an IP address' : 'a host name');
            const value = { text: tok.tokenType.name === 'StringLit' ? unquote(tok.image) : tok.image, span: rr.span(tok) };
            if (kw === 'address' && !isIpAddress(value.text)) rr.fail('PARSE005', `\`${value.text}\` is not an IP address`, value.span, 'write an IPv4 address such as `192.0.2.10`, or an IPv6 address in quotes');
            if (kw === 'ehlo' && tok.tokenType.name !== 'DomainLit') rr.fail('PARSE005', `\`${value.text}\` is not a host name`, value.span, 'write a fully qualified host name such as `mta1.example.com`');
            source[kw] = value;
          }
          rr.end();
          return true;
        });
        ast.items.push(source);
        return undefined;
      }
      case 'pool': {
        const name = r.name('a pool name');
        r.end();
        const sources = each(requireBlock(r, s, '`pool`'), (rr) => {
          const names = rr.list(() => rr.name('a source name'));
          rr.end();
          return names;
        }).flat();
        ast.items.push({ kind: 'pool', name, sources, span: s.span });
        return undefined;
      }
      case 'tenant': {
        const tenant: A.TenantDef = { kind: 'tenant', name: r.name('a tenant name'), settings: [], span: s.span };
        r.end();
        tenant.settings = readLimitsBlock(requireBlock(r, s, '`tenant`'), 'a tenant block', TENANT_KEYWORDS, (rr, ss, kw) => {
          if (kw !== 'pool') return false;
          const h = rr.next('pool');
          noBlock(rr, ss);
          if (tenant.pool) rr.fail('VAL012', `\`pool\` is set twice in tenant \`${tenant.name.text}\``, rr.span(h));
          tenant.pool = rr.name('a pool name');
          rr.end();
          return true;
        });
        ast.items.push(tenant);
        return undefined;
      }
      case 'test': {
        const title = r.string('a test description');
        r.end();
        const steps = each(requireBlock(r, s, '`test`'), readTestStep);
        ast.items.push({ kind: 'test', name: title, steps, span: s.span });
        return undefined;
      }
    }
    return undefined;
  });
  return { ast, diagnostics, sawHeader };
}

/** `YYYY-MM-DD` naming a day that exists (`2026-02-30` does not). */
function isCalendarDate(text: string): boolean {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(text)) return false;
  const date = new Date(`${text}T00:00:00Z`);
  return !Number.isNaN(date.getTime()) && date.toISOString().slice(0, 10) === text;
}

function isIpAddress(text: string): boolean {
  return isIP(text) !== 0;
}

export type { Stmt };
