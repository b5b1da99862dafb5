/**
 * The grammar stage: policy text → AST, with diagnostics. `parse` never throws on user
 * input; a file with errors still yields every construct that could be read.
 */
import type { IToken } from 'chevrotain';
import type { PolicyFile } from './ast.ts';
import { buildAst, tokenSpan } from './build-ast.ts';
import type { Diagnostic } from './diagnostic.ts';
import { tokensToCst } from './parser.ts';
import { policyLexer } from './tokens.ts';

export * from './ast.ts';
export * from './diagnostic.ts';
export { parseDomainPattern, patternText } from './build-ast.ts';
export { closest, didYouMean, editDistance } from './suggest.ts';
export { format, withoutPositions } from './format.ts';

/** The result of parsing one file. */
export interface ParseResult {
  ast: PolicyFile;
  diagnostics: Diagnostic[];
}

/** Parses one policy file. `file` is the path used in spans and diagnostics. */
export function parse(text: string, file: string): ParseResult {
  const diagnostics: Diagnostic[] = [];
  const lexed = policyLexer.tokenize(text);
  for (const error of lexed.errors) {
    const offset = error.offset;
    const ch = text.slice(offset, offset + error.length);
    const span = { file, line: error.line ?? 1, column: error.column ?? 1, endLine: error.line ?? 1, endColumn: (error.column ?? 1) + Math.max(0, error.length - 1), offset, endOffset: offset + error.length };
    const first = ch[0] ?? '';
    const message =
      first === '"' ? 'unterminated string' : first === '/' ? 'unterminated or malformed regex literal' : `unexpected character \`${first}\``;
    const help = first === '"' ? 'close the string with `"` on the same line' : first === '/' ? 'a regex is written `/…/` on one line; escape a slash inside it as `\\/`' : undefined;
    diagnostics.push({ code: 'PARSE001', severity: 'error', message, span: { ...span, endColumn: span.column, endOffset: offset + 1 }, ...(help ? { help } : {}) });
  }
  const { cst, errors } = tokensToCst(lexed.tokens);
  for (const error of errors) {
    const tok: IToken = error.token;
    const atEnd = tok.tokenType.name === 'EOF' || !Number.isFinite(tok.startOffset);
    const span = atEnd ? endOfText(text, file) : tokenSpan(file, tok);
    const message = atEnd ? 'unexpected end of file: a `{` is not closed' : tok.image === '}' ? 'unexpected `}` with no open `{`' : `unexpected \`${tok.image === '\n' ? 'end of line' : tok.image}\``;
    diagnostics.push({ code: 'PARSE002', severity: 'error', message, span });
  }
  for (const stray of (cst.children['RCurly'] as IToken[] | undefined) ?? []) {
    diagnostics.push({ code: 'PARSE002', severity: 'error', message: 'unexpected `}` with no open `{`', span: tokenSpan(file, stray), help: 'remove it, or add the `{` it was meant to close' });
  }
  const comments = (lexed.groups['comments'] ?? []).map((tok) => ({ text: tok.image, span: tokenSpan(file, tok) }));
  const built = buildAst(cst, file, text, comments);
  diagnostics.push(...built.diagnostics);
  if (!built.sawHeader && text.trim() !== '') {
    diagnostics.push({ code: 'PARSE006', severity: 'error', message: 'missing `policy` header', span: { file, line: 1, column: 1, endLine: 1, endColumn: 1, offset: 0, endOffset: 0 }, help: 'start the file with `policy NAME version VERSION`, for example `policy yahoo version 2026.11.1`' });
  }
  diagnostics.sort((a, b) => a.span.offset - b.span.offset);
  return { ast: built.ast, diagnostics };
}

function endOfText(text: string, file: string) {
  const lines = text.split('\n');
  const line = lines.length;
  const column = (lines[lines.length - 1]?.length ?? 0) + 1;
  return { file, line, column, endLine: line, endColumn: column, offset: text.length, endOffset: text.length };
}
