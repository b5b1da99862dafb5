/**
 * Tables as `petrel diff` prints them (its policy changes and its outcomes): lists capped at
 * MAX_ROWS for human and markdown output, and markdown for pull-request comments and GitHub
 * job summaries — inline code that survives any text, and tables.
 */

/** At most this many rows per table in human and markdown output (JSON has all). */
export const MAX_ROWS = 50;

/** The first MAX_ROWS of a list, and a line saying how many were left out. */
export function capped<T>(list: readonly T[]): { shown: readonly T[]; more: string | undefined } {
  return { shown: list.slice(0, MAX_ROWS), more: list.length > MAX_ROWS ? `… and ${list.length - MAX_ROWS} more (all of them with --format json)` : undefined };
}

/** Inline code for a markdown table cell: a fence longer than any backtick run inside, pipes escaped. */
export function code(text: string | null): string {
  if (text === null) return '—';
  const flat = text.replace(/\r?\n/g, ' ').replace(/\|/g, '\\|');
  const fence = '`'.repeat(Math.max(0, ...(flat.match(/`+/g) ?? []).map((run) => run.length)) + 1);
  const pad = flat.startsWith('`') || flat.endsWith('`') ? ' ' : '';
  return `${fence}${pad}${flat}${pad}${fence}`;
}

/** A table: header, rows, and a line in italics after it (`more`) when rows were left out. */
export function table(head: string[], rows: string[][], more: string | undefined): string[] {
  return [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`), ...(more ? ['', `_${more}_`] : []), ''];
}

