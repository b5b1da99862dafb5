/**
 * Rendering diagnostics: the one place where diagnostic data becomes text (see STYLE.md).
 *
 * Stages only produce `Diagnostic` values; the CLI picks a format and prints what this
 * returns. Nothing here reads files, the clock or the environment: source text and the
 * tool version come in through `RenderOptions`.
 */
import type { Diagnostic, Severity, Span } from '../grammar/index.ts';
import { CODES, type CodeInfo } from './codes.ts';

/**
 * How diagnostics are printed: `human` for a terminal (caret snippets), `json` for scripts,
 * `github` for GitHub Actions workflow annotations, `sarif` for code-scanning tools.
 */
export type OutputFormat = 'human' | 'json' | 'github' | 'sarif';

/** Every output format, in the order the CLI lists them. */
export const OUTPUT_FORMATS: readonly OutputFormat[] = ['human', 'json', 'github', 'sarif'];

/** What a renderer needs beyond the diagnostics themselves. */
export interface RenderOptions {
  /** File text by path, for the human snippet (source line + underline). A file missing here renders without snippet. */
  sources: ReadonlyMap<string, string>;
  /** ANSI colours in human output; default false. */
  color?: boolean;
  /** Tool version for SARIF `tool.driver.version`. */
  toolVersion: string;
}

/**
 * Render `diagnostics` as text in `format`. Human and GitHub output are empty for no
 * diagnostics; JSON and SARIF always produce a complete document. Non-empty output ends
 * with a newline.
 *
 * Throws only on a broken invariant: SARIF output of a diagnostic whose code is not in
 * the registry.
 */
export function renderDiagnostics(diagnostics: readonly Diagnostic[], format: OutputFormat, options: RenderOptions): string {
  switch (format) {
    case 'human':
      return renderHuman(diagnostics, options);
    case 'json':
      return renderJson(diagnostics);
    case 'github':
      return renderGithub(diagnostics);
    case 'sarif':
      return renderSarif(diagnostics, options);
    default:
      return unreachable(format);
  }
}

function unreachable(format: never): never {
  throw new Error(`unknown output format ${String(format)}`);
}

/** An empty span (`offset === endOffset`) marks a position between characters, not a character. */
function isEmpty(span: Span): boolean {
  return span.endOffset <= span.offset;
}

function location(span: Span): string {
  return `${span.file}:${span.line}:${span.column}`;
}

// ---------------------------------------------------------------------------------------
// human

const ANSI = { bold: '1', red: '1;31', yellow: '1;33', blue: '1;34', cyan: '1;36' } as const;

function renderHuman(diagnostics: readonly Diagnostic[], options: RenderOptions): string {
  if (diagnostics.length === 0) return '';
  const paint = (style: keyof typeof ANSI, text: string): string =>
    options.color ? `\x1b[${ANSI[style]}m${text}\x1b[0m` : text;
  // Split each file once per call, not once per diagnostic: one file often has many.
  const linesByFile = new Map<string, readonly string[]>();
  const sourceLines = (file: string): readonly string[] | undefined => {
    let lines = linesByFile.get(file);
    if (lines === undefined) {
      const text = options.sources.get(file);
      if (text === undefined) return undefined;
      lines = text.split(/\r?\n/);
      linesByFile.set(file, lines);
    }
    return lines;
  };

  const blocks = diagnostics.map((d) => {
    const severityStyle = d.severity === 'error' ? 'red' : 'yellow';
    const out = [`${paint('bold', `${location(d.span)}:`)} ${paint(severityStyle, `${d.severity}[${d.code}]`)}: ${paint('bold', d.message)}`];
    const lineText = sourceLines(d.span.file)?.[d.span.line - 1];
    if (lineText !== undefined) {
      const { row, underline } = snippet(lineText, d.span);
      const number = String(d.span.line);
      out.push(`${paint('blue', ` ${number} |`)} ${row}`.trimEnd());
      out.push(`${paint('blue', ` ${' '.repeat(number.length)} |`)} ${underline.padding}${paint(severityStyle, underline.carets)}`);
    }
    for (const label of d.labels ?? []) out.push(`  ${paint('cyan', '= note')}: ${location(label.span)}: ${label.message}`);
    if (d.help !== undefined) out.push(`  ${paint('cyan', '= help')}: ${d.help}`);
    return out.join('\n');
  });

  return `${blocks.join('\n\n')}\n\n${summary(diagnostics)}\n`;
}

/**
 * The source row and its underline. Widths count code points, not UTF-16 units, so an
 * astral character (an emoji in a string) takes one terminal cell in both rows. A tab
 * becomes one space in both rows, because its width on screen depends on the terminal.
 */
function snippet(lineText: string, span: Span): { row: string; underline: { padding: string; carets: string } } {
  const row = lineText.replaceAll('\t', ' ');
  const start = span.column - 1;
  // INVARIANT: `end` is exclusive; multi-line spans stop at the end of their first line.
  const end = span.endLine > span.line ? row.length : span.endColumn;
  // A column may point past the end of the line (a missing `;` at end of line), so pad
  // by columns beyond the text too.
  const before = codePoints(row.slice(0, start)) + Math.max(0, start - row.length);
  const width = isEmpty(span) ? 1 : Math.max(1, codePoints(row.slice(start, end)));
  return { row, underline: { padding: ' '.repeat(before), carets: '^'.repeat(width) } };
}

function codePoints(text: string): number {
  let count = 0;
  for (const _ of text) count++;
  return count;
}

function summary(diagnostics: readonly Diagnostic[]): string {
  const errors = diagnostics.filter((d) => d.severity === 'error').length;
  const warnings = diagnostics.length - errors;
  return `${plural(errors, 'error')}, ${plural(warnings, 'warning')}`;
}

function plural(count: number, word: string): string {
  return `${count} ${word}${count === 1 ? '' : 's'}`;
}

// ---------------------------------------------------------------------------------------
// json

/** One diagnostic in `--format json`: flat positions, so scripts need no knowledge of `Span`. */
interface JsonDiagnostic {
  code: string;
  severity: Severity;
  message: string;
  file: string;
  line: number;
  column: number;
  endLine: number;
  endColumn: number;
  help?: string;
  labels?: { file: string; line: number; column: number; message: string }[];
}

function renderJson(diagnostics: readonly Diagnostic[]): string {
  const out = diagnostics.map((d): JsonDiagnostic => {
    const { file, line, column, endLine, endColumn } = d.span;
    const json: JsonDiagnostic = { code: d.code, severity: d.severity, message: d.message, file, line, column, endLine, endColumn };
    if (d.help !== undefined) json.help = d.help;
    if (d.labels !== undefined && d.labels.length > 0) {
      json.labels = d.labels.map(({ span, message }) => ({ file: span.file, line: span.line, column: span.column, message }));
    }
    return json;
  });
  return `${JSON.stringify(out, null, 2)}\n`;
}

// ---------------------------------------------------------------------------------------
// github

// GitHub's workflow-command parser splits properties on `,` and the command on `::`, and
// reads each command from one line, so these characters must be percent-encoded.
function escapeData(text: string): string {
  return text.replaceAll('%', '%25').replaceAll('\r', '%0D').replaceAll('\n', '%0A');
}

function escapeProperty(text: string): string {
  return escapeData(text).replaceAll(':', '%3A').replaceAll(',', '%2C');
}

/** One GitHub Actions annotation: where it points, its title, its one-paragraph message. */
export interface GithubAnnotation {
  severity: Severity;
  file: string;
  line: number;
  column?: number;
  endLine?: number;
  endColumn?: number;
  title: string;
  message: string;
}

/**
 * A workflow command (`::error file=…,line=…,title=…::message`) that GitHub shows at that
 * line of the pull request; properties and message escaped so one annotation is one line.
 */
export function renderGithubAnnotation(a: GithubAnnotation): string {
  const properties = [
    `file=${escapeProperty(a.file)}`,
    `line=${a.line}`,
    ...(a.column === undefined ? [] : [`col=${a.column}`]),
    ...(a.endLine === undefined ? [] : [`endLine=${a.endLine}`]),
    ...(a.endColumn === undefined ? [] : [`endColumn=${a.endColumn}`]),
    `title=${escapeProperty(a.title)}`,
  ].join(',');
  return `::${a.severity} ${properties}::${escapeData(a.message)}\n`;
}

function renderGithub(diagnostics: readonly Diagnostic[]): string {
  return diagnostics
    .map((d) => {
      const { file, line, column, endLine, endColumn } = d.span;
      const message = d.help === undefined ? d.message : `${d.message} (help: ${d.help})`;
      return renderGithubAnnotation({ severity: d.severity, file, line, column, endLine, endColumn, title: d.code, message });
    })
    .join('');
}

// ---------------------------------------------------------------------------------------
// sarif

const SARIF_SCHEMA = 'https://json.schemastore.org/sarif-2.1.0.json';
const INFORMATION_URI = 'https://github.com/petrel/petrel';

interface SarifPhysicalLocation {
  artifactLocation: { uri: string; uriBaseId?: string };
  region: { startLine: number; startColumn: number; endLine: number; endColumn: number };
}

function renderSarif(diagnostics: readonly Diagnostic[], options: RenderOptions): string {
  const registry = Object.entries(CODES) as [string, CodeInfo][];
  const ruleIndex = new Map(registry.map(([code], index) => [code, index]));
  const rules = registry.map(([code, info]) => ({
    id: code,
    name: info.name,
    shortDescription: { text: info.summary },
    defaultConfiguration: { level: info.severity },
    helpUri: `${INFORMATION_URI}/blob/main/docs/language.md#${code.toLowerCase()}`,
  }));

  const results = diagnostics.map((d) => {
    const index = ruleIndex.get(d.code);
    if (index === undefined) throw new Error(`unregistered diagnostic code ${d.code}`);
    const result = {
      ruleId: d.code,
      ruleIndex: index,
      level: d.severity,
      message: { text: d.help === undefined ? d.message : `${d.message} — help: ${d.help}` },
      locations: [{ physicalLocation: physicalLocation(d.span) }],
    };
    if (d.labels === undefined || d.labels.length === 0) return result;
    const relatedLocations = d.labels.map((label, id) => ({
      id,
      physicalLocation: physicalLocation(label.span),
      message: { text: label.message },
    }));
    return { ...result, relatedLocations };
  });

  const log = {
    $schema: SARIF_SCHEMA,
    version: '2.1.0',
    runs: [
      {
        tool: { driver: { name: 'petrel', version: options.toolVersion, informationUri: INFORMATION_URI, rules } },
        // Span columns index JavaScript strings; SARIF's default is code points.
        columnKind: 'utf16CodeUnits',
        results,
      },
    ],
  };
  return `${JSON.stringify(log, null, 2)}\n`;
}

function physicalLocation(span: Span): SarifPhysicalLocation {
  return {
    artifactLocation: artifactLocation(span.file),
    region: {
      startLine: span.line,
      startColumn: span.column,
      endLine: span.endLine,
      // SARIF's endColumn is exclusive, ours inclusive; an empty span stays empty.
      endColumn: isEmpty(span) ? span.column : span.endColumn + 1,
    },
  };
}

/**
 * The SARIF artifact location of a path as the user named it. Relative paths stay relative
 * to `%SRCROOT%` (the checkout, for code-scanning uploads); absolute ones become `file:`
 * URIs. Segments are percent-encoded so a space, `#` or `?` in a name stays part of the path.
 */
function artifactLocation(file: string): { uri: string; uriBaseId?: string } {
  const path = file.replaceAll('\\', '/');
  const segments = path.split('/');
  const drive = /^[A-Za-z]:$/.test(segments[0]!);
  const uri = segments.map((segment, i) => (i === 0 && drive ? segment : encodeURIComponent(segment))).join('/');
  if (drive) return { uri: `file:///${uri}` };
  if (path.startsWith('//')) return { uri: `file:${uri}` };
  if (path.startsWith('/')) return { uri: `file://${uri}` };
  return { uri, uriBaseId: '%SRCROOT%' };
}
