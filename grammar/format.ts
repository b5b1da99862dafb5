/**
 * The canonical layout of policy text, behind `petrel fmt`.
 *
 * Printing is driven by the AST: keywords and the structure of every statement come from
 * the nodes. Every literal (numbers with units, rates, regexes, strings, domains, names) is
 * copied from the source text through its span, so formatting never changes how a value
 * is spelled; only layout is canonical:
 *   - two-space indentation, one statement per line, `{` at the end of the head line and
 *     `}` on a line of its own (blocks are never collapsed onto one line);
 *   - statements stay in source order; within a block at most one blank line is kept
 *     where the source had one or more; top-level definitions are separated by exactly one
 *     blank line (consecutive `use` lines keep their own spacing);
 *   - the parts of one statement are separated by single spaces, list items by `, `, and
 *     reply matchers are printed in a fixed order: codes, statuses, texts, `phase`, `when`.
 *
 * Comments are placed by position: a comment on its own line goes before the statement
 * that follows it (or before the closing `}` / at the end of the file when none follows);
 * a comment at the end of a statement's line stays there; a comment at the end of a `{`
 * line stays after the `{`. A comment written inside a statement that spanned several lines
 * (a list continued after a comma) cannot stay where it was once the statement is on one
 * line, so it moves to its own line just before the statement. No comment is ever dropped.
 */
import type { IToken } from 'chevrotain';
import type * as A from './ast.ts';
import type { Span } from './diagnostic.ts';
import { policyLexer } from './tokens.ts';

/**
 * Prints `file` in canonical layout. `text` must be the exact text `file` was parsed from
 * (literals and comment positions are read from it), and the parse must have had no
 * errors: `format` relies on a complete AST. The result ends with exactly one newline,
 * except for a file with nothing in it, which formats to the empty string.
 */
export function format(file: A.PolicyFile, text: string): string {
  const src = new Source(text);
  const root: Node = { ...newNode('', file.span, fileStatements(file, src)), isFile: true };
  for (const comment of file.comments) place(comment, root, src);
  const out: string[] = [];
  printBlock(root, 0, out, src, true);
  return out.length === 0 ? '' : out.join('\n') + '\n';
}

/** One statement to print: its head and, for block statements, the statements inside. */
interface Node {
  head: string;
  /**
   * Where the statement stood in the source; comments and blank lines are placed by it.
   * For statements whose keyword the AST keeps no span for (`then every`, `jitter`,
   * `overflow pool`, `address`, …), this is the span of their value, on the same line:
   * nothing, not even a comment, can stand between the keyword and the value.
   */
  span: Span;
  /** Present for statements printed with a `{ … }` block, even an empty one. */
  children?: Node[];
  /** The file itself: the root, whose statements have no `{` around them. */
  isFile?: boolean;
  /** `use` lines may sit together at the top level without a blank line between them. */
  isUse?: boolean;
  /** Comments on their own lines before the statement. */
  leading: A.Comment[];
  /** Comments written inside the statement's head; printed just before it. */
  inner: A.Comment[];
  /** The comment at the end of the `{` line. */
  headTrailing?: A.Comment;
  /** The comment at the end of the statement's (last) line. */
  trailing?: A.Comment;
  /** Comments after the last statement of the block, before `}`. */
  closing: A.Comment[];
}

function newNode(head: string, span: Span, children?: Node[]): Node {
  return { head, span, ...(children ? { children: inSourceOrder(children) } : {}), leading: [], inner: [], closing: [] };
}

function inSourceOrder(nodes: Node[]): Node[] {
  return [...nodes].sort((a, b) => a.span.offset - b.span.offset);
}

/** The source text and its tokens, to copy literals as written and to find `{`. */
class Source {
  private readonly tokens: IToken[];
  /** The offset at which each line starts. */
  private readonly lineStarts: number[] = [0];

  constructor(readonly text: string) {
    this.tokens = policyLexer.tokenize(text).tokens.filter((tok) => tok.tokenType.name !== 'Newline');
    for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', i + 1)) this.lineStarts.push(i + 1);
  }

  /**
   * The 1-based line a span starts on. Lines are counted here from offsets, where only
   * `\n` ends a line, as it does for the parser (a `\r` is white space): the lexer's own
   * line numbers count a `\r\n` twice.
   */
  firstLine(span: Span): number {
    return this.lineAt(span.offset);
  }

  /** The 1-based line a span ends on. */
  lastLine(span: Span): number {
    return this.lineAt(Math.max(span.offset, span.endOffset - 1));
  }

  private lineAt(offset: number): number {
    let lo = 0;
    let hi = this.lineStarts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.lineStarts[mid]! <= offset) lo = mid;
      else hi = mid - 1;
    }
    return lo + 1;
  }

  /** The text a span covers, as written. */
  raw(span: Span): string {
    return this.text.slice(span.offset, span.endOffset);
  }

  /** The tokens (no newlines, no comments) inside `span`. */
  tokensIn(span: Span): IToken[] {
    const out: IToken[] = [];
    for (let i = this.firstAt(span.offset); i < this.tokens.length && this.tokens[i]!.startOffset < span.endOffset; i++) out.push(this.tokens[i]!);
    return out;
  }

  /** The index of the first token that starts at or after `offset` (binary search: files can be long). */
  private firstAt(offset: number): number {
    let lo = 0;
    let hi = this.tokens.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.tokens[mid]!.startOffset < offset) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /**
   * Several tokens as written, with any run of white space (or a line break after a comma)
   * between two of them shown as one space: the same tokens, on one line.
   */
  joined(span: Span): string {
    let out = '';
    let end = -1;
    for (const tok of this.tokensIn(span)) {
      if (out !== '' && tok.startOffset !== end) out += ' ';
      out += tok.image;
      end = tok.startOffset + tok.image.length;
    }
    return out;
  }

  /** The first string literal inside `span`, quotes and escapes as written. */
  stringIn(span: Span): string {
    const tok = this.tokensIn(span).find((t) => t.tokenType.name === 'StringLit');
    if (!tok) throw new Error(`format: no string literal at offset ${span.offset}`);
    return tok.image;
  }

  /** The `{` that opens the block of the statement starting at `span` (a statement's atoms never include `{`). */
  openBrace(span: Span): { offset: number; line: number } {
    let i = this.firstAt(span.offset);
    while (i < this.tokens.length && this.tokens[i]!.tokenType.name !== 'LCurly') i++;
    const tok = this.tokens[i];
    if (!tok || tok.startOffset >= span.endOffset) throw new Error(`format: no block in the statement at offset ${span.offset}`);
    return { offset: tok.startOffset, line: this.lineAt(tok.startOffset) };
  }

  /** Whether the statement at `span` was written with a `{ … }` block (its span then ends with `}`). */
  hasBlock(span: Span): boolean {
    return this.text[span.endOffset - 1] === '}';
  }
}

// ---------------------------------------------------------------------------------------
// AST → statements

function fileStatements(file: A.PolicyFile, src: Source): Node[] {
  const nodes: Node[] = [];
  if (file.header) {
    const h = file.header;
    nodes.push(newNode(`policy ${src.raw(h.name.span)} version ${src.raw(h.version.span)}`, h.span));
  }
  for (const use of file.uses) {
    // The path token is the one after `use`; it keeps its quotes if it had them.
    const path = src.tokensIn(use.span)[1]!.image;
    nodes.push({ ...newNode(`use ${path}`, use.span), isUse: true });
  }
  for (const item of file.items) nodes.push(itemStatement(item, src));
  return nodes;
}

function itemStatement(item: A.TopItem, src: Source): Node {
  const raw = (span: Span) => src.raw(span);
  switch (item.kind) {
    case 'destination': {
      const head =
        item.type === 'default' ? 'default' : item.type === 'provider' ? `provider ${raw(item.name.span)}` : `domain ${item.domains.map((d) => raw(d.span)).join(', ')}`;
      const body = [
        ...item.matches.map((m) => newNode(`match ${m.on} ${m.patterns.map((p) => raw(p.span)).join(', ')}`, m.span)),
        ...item.settings.map((s) => settingStatement(s, src)),
        ...item.rules.map((r) => ruleStatement(r, src)),
      ];
      return newNode(head, item.span, body);
    }
    case 'global':
      return newNode('global', item.span, item.settings.map((s) => settingStatement(s, src)));
    case 'rule-set':
      return newNode(`rules ${raw(item.name.span)}`, item.span, item.rules.map((r) => ruleStatement(r, src)));
    case 'retry-curve':
      return newNode(`retry ${raw(item.name.span)}`, item.span, curveStatements(item.body, src));
    case 'warmup': {
      const body: Node[] = [];
      if (item.plan) body.push(newNode(planHead(item.plan, src), item.plan.span));
      for (const o of item.overrides) {
        body.push(newNode(`for ${o.targetType} ${raw(o.target.span)}`, o.span, o.plan ? [newNode(planHead(o.plan, src), o.plan.span)] : []));
      }
      if (item.overflow) body.push(newNode(`overflow pool ${raw(item.overflow.span)}`, item.overflow.span));
      return newNode(`warmup ${raw(item.name.span)}`, item.span, body);
    }
    case 'source': {
      const body = item.settings.map((s) => settingStatement(s, src));
      if (item.address) body.push(newNode(`address ${raw(item.address.span)}`, item.address.span));
      if (item.ehlo) body.push(newNode(`ehlo ${raw(item.ehlo.span)}`, item.ehlo.span));
      if (item.warmup) body.push(newNode(`warmup ${raw(item.warmup.ramp.span)} since ${raw(item.warmup.since.span)}`, item.warmup.span));
      return newNode(`source ${raw(item.name.span)}`, item.span, body);
    }
    case 'pool': {
      // The AST keeps one flat list; the source's lines (`a, b` then `c`) are rebuilt from the commas.
      const lines = groupByCommas(item.sources, src).map((names) => newNode(names.map((n) => raw(n.span)).join(', '), cover(names)));
      return newNode(`pool ${raw(item.name.span)}`, item.span, lines);
    }
    case 'tenant': {
      const body = item.settings.map((s) => settingStatement(s, src));
      if (item.pool) body.push(newNode(`pool ${raw(item.pool.span)}`, item.pool.span));
      return newNode(`tenant ${raw(item.name.span)}`, item.span, body);
    }
    case 'test':
      return newNode(`test ${raw(item.name.span)}`, item.span, item.steps.map((s) => newNode(testStepHead(s, src), s.span)));
  }
}

function settingStatement(setting: A.Setting, src: Source): Node {
  if (setting.kind !== 'retry') return newNode(settingHead(setting, src), setting.span);
  const curve = setting.curve;
  if (!('kind' in curve)) return newNode(`retry ${src.raw(curve.span)}`, setting.span);
  // `retry every 30m` and `retry { then every 30m }` give the same AST; keep the form used.
  if (!src.hasBlock(setting.span) && curve.repeat) return newNode(`retry every ${src.raw(curve.repeat.span)}`, setting.span);
  return newNode('retry', setting.span, curveStatements(curve, src));
}

/** A setting on one line; `retry` with a block is printed by `settingStatement`. */
function settingHead(setting: A.Setting, src: Source): string {
  switch (setting.kind) {
    case 'connections':
    case 'connect-rate':
    case 'rate':
    case 'data-rate': {
      const scope = setting.scope === undefined ? '' : setting.scope === 'global' ? ' global' : ` per ${setting.scope}`;
      return `${setting.kind} ${src.raw(setting.value.span)}${scope}`;
    }
    case 'messages-per-connection':
    case 'recipients-per-transaction':
      return `${setting.kind} ${src.raw(setting.value.span)}`;
    case 'tls':
      return `tls ${setting.mode}`;
    case 'expire':
      return `expire ${src.raw(setting.value.span)}`;
    case 'retry':
      // INVARIANT: only limits reach here (from `expect`); `retry` settings go through `settingStatement`.
      throw new Error('format: a retry setting has no one-line head');
  }
}

function curveStatements(body: A.RetryCurveBody, src: Source): Node[] {
  const raw = (span: Span) => src.raw(span);
  const nodes: Node[] = [];
  if (body.steps.length) nodes.push(newNode(`after ${body.steps.map((s) => raw(s.span)).join(', ')}`, cover(body.steps)));
  if (body.repeat) nodes.push(newNode(`then every ${raw(body.repeat.span)}`, body.repeat.span));
  if (body.exponential) {
    const e = body.exponential;
    nodes.push(newNode(`exponential ${raw(e.initial.span)} ${raw(e.factor.span)}${e.cap ? ` cap ${raw(e.cap.span)}` : ''}`, e.span));
  }
  if (body.jitter) nodes.push(newNode(`jitter ${raw(body.jitter.span)}`, body.jitter.span));
  if (body.expire) nodes.push(newNode(`expire ${raw(body.expire.span)}`, body.expire.span));
  if (body.attempts) nodes.push(newNode(`attempts ${raw(body.attempts.span)}`, body.attempts.span));
  return nodes;
}

function planHead(plan: A.WarmupPlan, src: Source): string {
  if (plan.kind === 'schedule') return `schedule ${plan.steps.map((s) => src.raw(s.span)).join(', ')}`;
  // `daily` is an optional word the AST does not keep; the canonical form always has it.
  return `start ${src.raw(plan.start.span)} grow ${src.raw(plan.factor.span)} daily${plan.cap ? ` cap ${src.raw(plan.cap.span)}` : ''}`;
}

function ruleStatement(rule: A.ReplyRule | A.RuleSetRef, src: Source): Node {
  const raw = (span: Span) => src.raw(span);
  if (rule.kind === 'rules-ref') return newNode(`rules ${raw(rule.name.span)}`, rule.span);
  const m = rule.matcher;
  // Items of one kind are alternatives (`, `); kinds are all required (a space between them).
  const head = [
    'on reply',
    m.codes.map((c) => raw(c.span)).join(', '),
    m.statuses.map((s) => raw(s.span)).join(', '),
    m.texts.map((t) => raw(t.span)).join(', '),
    m.phases.length ? `phase ${m.phases.join(', ')}` : '',
    rule.trigger ? `when ${raw(rule.trigger.count.span)} in ${raw(rule.trigger.within.span)}` : '',
  ]
    .filter((part) => part !== '')
    .join(' ');
  const body = rule.actions.map((a) => actionStatement(a, src));
  if (rule.disposition) body.push(newNode(`disposition ${rule.disposition.value}`, rule.disposition.span));
  for (const ex of rule.examples) body.push(newNode(`example ${src.stringIn(ex.span)}${ex.phase ? ` phase ${ex.phase}` : ''}`, ex.span));
  return newNode(head, rule.span, body);
}

function actionStatement(action: A.Action, src: Source): Node {
  const raw = (span: Span) => src.raw(span);
  switch (action.kind) {
    case 'backoff': {
      const head = `backoff ${raw(action.duration.span)}`;
      const hasBlock = action.overrides.length > 0 || src.hasBlock(action.span);
      return newNode(head, action.span, hasBlock ? action.overrides.map((s) => settingStatement(s, src)) : undefined);
    }
    case 'suspend':
      return newNode(`suspend ${action.target} ${raw(action.duration.span)}`, action.span);
    case 'disable-source':
      return newNode('disable source', action.span);
    case 'bounce':
    case 'classify':
      return newNode(`${action.kind} ${raw(action.category.span)}`, action.span);
    case 'retry':
      return newNode(['retry', ...(action.after ? [`after ${raw(action.after.span)}`] : []), ...(action.attempts ? [`attempts ${raw(action.attempts.span)}`] : [])].join(' '), action.span);
    case 'recover':
      return newNode(`recover ${raw(action.duration.span)}`, action.span);
    case 'skip-mx':
      return newNode('skip-mx', action.span);
    case 'reroute':
      return newNode(`reroute pool ${raw(action.pool.span)}`, action.span);
  }
}

function testStepHead(step: A.TestStep, src: Source): string {
  const raw = (span: Span) => src.raw(span);
  switch (step.kind) {
    case 'deliver': {
      let head = `deliver to ${raw(step.to.span)}`;
      if (step.mx.length) head += ` mx ${step.mx.map((h) => raw(h.span)).join(', ')}`;
      if (step.source) head += ` source ${raw(step.source.span)}`;
      if (step.tenant) head += ` tenant ${raw(step.tenant.span)}`;
      return head;
    }
    case 'reply':
      // `1 times` is the default and not kept in the AST, so it is not printed.
      return `reply ${src.stringIn(step.span)}${step.times !== 1 ? ` ${integer(step.times)} times` : ''}${step.phase ? ` phase ${step.phase}` : ''}`;
    case 'wait':
      return `wait ${raw(step.duration.span)}`;
    case 'expect':
      return `expect ${expectationText(step.expectation, src)}`;
  }
}

function expectationText(e: A.Expectation, src: Source): string {
  const raw = (span: Span) => src.raw(span);
  const no = 'none' in e && e.none ? 'no ' : '';
  switch (e.what) {
    case 'route':
      // A route is several tokens (`provider:yahoo`); keep them as written, on one line.
      return `route ${src.joined(e.route.span)}`;
    case 'category':
    case 'bounce':
      return `${e.what} ${raw(e.category.span)}`;
    case 'disposition':
      return `disposition ${e.disposition}`;
    case 'backoff':
      return e.none ? 'no backoff' : e.duration ? `backoff ${raw(e.duration.span)}` : 'backoff';
    case 'suspend':
      return e.none ? 'no suspend' : `suspend ${e.target}${e.duration ? ` ${raw(e.duration.span)}` : ''}`;
    case 'disable-source':
      return `${no}disable source`;
    case 'skip-mx':
      return `${no}skip-mx`;
    case 'reroute':
      return `reroute pool ${raw(e.pool.span)}`;
    case 'retry':
      // `expect no retry` and `expect retry never` give the same AST; the first is canonical.
      return e.never ? 'no retry' : e.delay ? `retry ${raw(e.delay.span)}` : 'retry';
    case 'warmup':
      return `warmup ${raw(e.ramp.span)} day ${integer(e.day)} limit ${e.limit === 'unlimited' ? 'unlimited' : integer(e.limit)}`;
    case 'setting':
      return settingHead(e.setting, src);
  }
}

/** A whole number the AST keeps without its span, spelled so that it reads back as the same number. */
function integer(value: number): string {
  return Number.isSafeInteger(value) ? String(value) : BigInt(value).toString();
}

/**
 * Splits a flat list of values back into the statements they were written in: two
 * neighbours belong to one statement when a comma stands between them in the source.
 */
function groupByCommas<T extends { span: Span }>(items: T[], src: Source): T[][] {
  const groups: T[][] = [];
  for (const [i, item] of items.entries()) {
    const between = i === 0 ? '' : src.text.slice(items[i - 1]!.span.endOffset, item.span.offset).replace(/#[^\n]*/g, '');
    if (i > 0 && between.includes(',')) groups[groups.length - 1]!.push(item);
    else groups.push([item]);
  }
  return groups;
}

/** The span from the first to the last of `items` (in source order). */
function cover(items: { span: Span }[]): Span {
  const first = items[0]!.span;
  const last = items[items.length - 1]!.span;
  return { ...first, endLine: last.endLine, endColumn: last.endColumn, endOffset: last.endOffset };
}

// ---------------------------------------------------------------------------------------
// Comments

/**
 * Attaches one comment to the statement it belongs with, descending into the block that
 * contains it. `owner` is the file (the root) or a block statement.
 */
function place(comment: A.Comment, owner: Node, src: Source): void {
  const at = comment.span.offset;
  const children = owner.children ?? [];
  const inside = children.find((n) => n.span.offset <= at && at < n.span.endOffset);
  if (inside) {
    if (inside.children && at > src.openBrace(inside.span).offset) place(comment, inside, src);
    else inside.inner.push(comment);
    return;
  }
  const before = children.filter((n) => n.span.endOffset <= at);
  const prev = before[before.length - 1];
  // INVARIANT: a comment runs to the end of its line, so a line has at most one, and at most one statement ends on it before the comment.
  const line = src.firstLine(comment.span);
  if (prev && src.lastLine(prev.span) === line) {
    prev.trailing = comment;
    return;
  }
  if (!prev && !owner.isFile && src.openBrace(owner.span).line === line) {
    owner.headTrailing = comment;
    return;
  }
  const next = children.find((n) => n.span.offset > at);
  if (next) next.leading.push(comment);
  else owner.closing.push(comment);
}

// ---------------------------------------------------------------------------------------
// Printing

/**
 * Prints the statements of `block` (and the comments before its `}`), one blank line
 * kept wherever the source had at least one between two printed lines.
 */
function printBlock(block: Node, depth: number, out: string[], src: Source, topLevel: boolean): void {
  const indent = '  '.repeat(depth);
  // The source line on which the last printed thing ended; undefined at the start of a block.
  let lastLine: number | undefined;
  const blankBefore = (span: Span, forced: boolean): void => {
    if (lastLine !== undefined && (forced || src.firstLine(span) - lastLine > 1)) out.push('');
  };
  const comment = (c: A.Comment): string => c.text.trimEnd();

  const children = block.children ?? [];
  for (const [i, node] of children.entries()) {
    const prev = children[i - 1];
    // Top-level definitions always stand apart; only consecutive `use` lines may touch.
    let forced = topLevel && prev !== undefined && !(prev.isUse && node.isUse);
    for (const c of node.leading) {
      blankBefore(c.span, forced);
      forced = false;
      out.push(indent + comment(c));
      lastLine = src.lastLine(c.span);
    }
    blankBefore(node.span, forced);
    for (const c of node.inner) out.push(indent + comment(c));
    const trailing = (c: A.Comment | undefined) => (c ? ' ' + comment(c) : '');
    if (node.children) {
      const head = wrapList(indent, `${node.head} {`);
      head[head.length - 1] += trailing(node.headTrailing);
      out.push(...head);
      printBlock(node, depth + 1, out, src, false);
      out.push(`${indent}}${trailing(node.trailing)}`);
    } else {
      const lines = wrapList(indent, node.head);
      lines[lines.length - 1] += trailing(node.trailing);
      out.push(...lines);
    }
    lastLine = src.lastLine(node.span);
  }
  for (const c of block.closing) {
    blankBefore(c.span, false);
    out.push(indent + comment(c));
    lastLine = src.lastLine(c.span);
  }
}

/** Lines longer than this are wrapped where a list allows it. */
const WIDTH = 100;
/** Statements that are plain comma lists (no strings or regexes that could hold `, `). */
const LIST_HEADS = ['match ', 'schedule ', 'after ', 'domain '];

/**
 * A list statement too wide for one line, wrapped after commas with the continuation
 * indented four more spaces (a list may continue on the next line after a comma).
 */
function wrapList(indent: string, head: string): string[] {
  if (indent.length + head.length <= WIDTH || !LIST_HEADS.some((h) => head.startsWith(h))) return [indent + head];
  // A block head ends in ` {`, which stays on the last line.
  const items = head.split(', ');
  const lines = [indent + items[0]!];
  for (const item of items.slice(1)) {
    const last = lines.length - 1;
    if (lines[last]!.length + 2 + item.length > WIDTH) {
      lines[last] += ',';
      lines.push(`${indent}    ${item}`);
    } else lines[last] += `, ${item}`;
  }
  return lines;
}

/** Keys that only say where something was written. */
const POSITION_KEYS = new Set(['span', 'headSpan', 'scopeSpan']);

/**
 * The AST as plain data without positions: what must survive formatting. Comments are
 * compared by text only (trailing white space is layout, so it is not compared either).
 */
export function withoutPositions(file: A.PolicyFile): unknown {
  const strip = (value: unknown): unknown => {
    if (Array.isArray(value)) return value.map(strip);
    if (value !== null && typeof value === 'object') {
      const out: Record<string, unknown> = {};
      for (const [key, inner] of Object.entries(value)) if (!POSITION_KEYS.has(key)) out[key] = strip(inner);
      return out;
    }
    return value;
  };
  const { comments, ...rest } = file;
  return { ...(strip(rest) as object), comments: comments.map((c) => c.text.trimEnd()) };
}

