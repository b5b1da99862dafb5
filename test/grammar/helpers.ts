/**
 * Helpers shared by the grammar tests: comparing ASTs without positions, and the
 * parse → format → re-parse round trip that `petrel fmt` relies on.
 */
import { format } from '../../grammar/format.ts';
import { parse, type Diagnostic, type PolicyFile } from '../../grammar/index.ts';

/** Keys that only say where something was written. */
const POSITION_KEYS = new Set(['span', 'headSpan', 'scopeSpan']);

/**
 * The AST as plain data without positions: what must survive formatting. Comments are
 * compared by text only (trailing white space is layout, so it is not compared either).
 */
export function withoutPositions(file: PolicyFile): unknown {
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
