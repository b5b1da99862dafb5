/**
 * Positions and diagnostics shared by every stage.
 *
 * Diagnostics are data (see STYLE.md): a stable `code` from the registry in
 * `compiler/codes.ts`, a one-line lowercase `message` with user input in backticks,
 * the `span` it concerns, and optional `help` and related `labels`. Rendering to text,
 * JSON, GitHub annotations or SARIF happens in one place (`compiler/render.ts`).
 */

/** A range in one source file. Lines and columns are 1-based; `end*` is inclusive of the last character. */
export interface Span {
  /** Path of the file as the user named it (relative paths stay relative). */
  file: string;
  line: number;
  column: number;
  endLine: number;
  endColumn: number;
  /** 0-based character offsets into the file text; `endOffset` is exclusive. */
  offset: number;
  endOffset: number;
}

export type Severity = 'error' | 'warning';

/** A secondary location that explains a diagnostic ("first defined here"). */
export interface Label {
  span: Span;
  message: string;
}

/** One problem found in the sources. */
export interface Diagnostic {
  /** Stable code from the registry, for example `RES001`. */
  code: string;
  severity: Severity;
  /** One line, lowercase, no final period, user input in backticks. */
  message: string;
  span: Span;
  labels?: Label[];
  /** What to do about it, for example "did you mean `bulk`?". */
  help?: string;
}

/** A span that covers no text at the start of a file, for file-level problems. */
export function fileSpan(file: string): Span {
  return { file, line: 1, column: 1, endLine: 1, endColumn: 1, offset: 0, endOffset: 0 };
}

/** The smallest span that covers both `a` and `b` (same file). */
export function joinSpans(a: Span, b: Span): Span {
  const first = a.offset <= b.offset ? a : b;
  const last = a.endOffset >= b.endOffset ? a : b;
  return { ...first, endLine: last.endLine, endColumn: last.endColumn, endOffset: last.endOffset };
}

/** Whether any diagnostic is an error. */
export function hasErrors(diagnostics: readonly Diagnostic[]): boolean {
  return diagnostics.some((d) => d.severity === 'error');
}
