/**
 * Helpers shared by the grammar tests: comparing ASTs without positions, and the
 * parse → format → re-parse round trip that `petrel fmt` relies on.
 */
import { format, withoutPositions } from '../../grammar/format.ts';
import { parse, type Diagnostic, type PolicyFile } from '../../grammar/index.ts';
import { policyLexer } from '../../grammar/tokens.ts';

export { withoutPositions };

/** What a diagnostic says, without its prose: for readable assertion failures. */
export function summary(diagnostics: Diagnostic[]): string[] {
  return diagnostics.map((d) => `${d.code} ${d.span.line}:${d.span.column} ${d.message}`);
}

/** The result of formatting `text` once and then formatting the output again. */
export interface RoundTrip {
  /** The AST of the input. */
  before: PolicyFile;
  formatted: string;
  /** The AST of the formatted text. */
  after: PolicyFile;
  /** Diagnostics from re-parsing the formatted text (there should be none). */
  diagnostics: Diagnostic[];
  /** `formatted`, formatted again. */
  twice: string;
}

/**
 * Parses `text` (which must parse cleanly: a test input with errors is a broken test),
 * formats it, re-parses the output and formats that again.
 */
export function roundTrip(text: string, file = 'test.policy'): RoundTrip {
  const first = parse(text, file);
  if (first.diagnostics.length > 0) throw new Error(`test input does not parse cleanly:\n${summary(first.diagnostics).join('\n')}\n---\n${text}`);
  const formatted = format(first.ast, text);
  const second = parse(formatted, file);
  return { before: first.ast, formatted, after: second.ast, diagnostics: second.diagnostics, twice: format(second.ast, formatted) };
}

/**
 * What is wrong with the layout of formatter output, if anything: the final newline,
 * blank lines, trailing white space, and indentation of two spaces per open block with
 * `{` only at the end of a line and `}` alone on its line (a trailing comment aside).
 * Braces are found with the lexer, so braces inside strings, regexes and comments do not count.
 */
export function layoutProblems(out: string): string[] {
  const problems: string[] = [];
  if (out === '') return problems;
  if (!out.endsWith('\n') || out.endsWith('\n\n')) problems.push('does not end with exactly one newline');
  if (out.includes('\n\n\n')) problems.push('has two blank lines in a row');
  const lines = out.split('\n').slice(0, -1);
  const tokensByLine = new Map<number, string[]>();
  for (const tok of policyLexer.tokenize(out).tokens) {
    if (tok.tokenType.name === 'Newline') continue;
    const line = tok.startLine ?? 0;
    tokensByLine.set(line, [...(tokensByLine.get(line) ?? []), tok.image]);
  }
  let depth = 0;
  for (const [i, line] of lines.entries()) {
    const where = `line ${i + 1} \`${line}\``;
    if (line !== line.trimEnd()) problems.push(`${where} has trailing white space`);
    if (line === '') {
      if (tokensByLine.get(i)?.at(-1) === '{') problems.push(`${where}: blank line after \`{\``);
      if (tokensByLine.get(i + 2)?.[0] === '}') problems.push(`${where}: blank line before \`}\``);
      continue;
    }
    const tokens = tokensByLine.get(i + 1) ?? [];
    if (tokens[0] === '}') {
      depth--;
      if (tokens.length > 1) problems.push(`${where}: \`}\` is not alone on its line`);
    }
    const indent = line.length - line.trimStart().length;
    if (indent !== 2 * depth || /^\s*\t/.test(line)) problems.push(`${where} is indented ${indent}, expected ${2 * depth}`);
    const open = tokens.indexOf('{');
    if (open >= 0 && open !== tokens.length - 1) problems.push(`${where}: \`{\` is not at the end of the line`);
    if (tokens.indexOf('}') > 0) problems.push(`${where}: \`}\` is not at the start of the line`);
    if (open >= 0) depth++;
  }
  if (depth !== 0) problems.push(`blocks left open: ${depth}`);
  return problems;
}
