/**
 * The reply corpus (test/fixtures/replies/*.tsv): real SMTP replies labelled with the
 * category and disposition a deliverability engineer would assign. Shared by the corpus
 * test and `npm run eval:replies`.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { PolicyArtifact } from '../runtime/index.ts';

export interface CorpusRow {
  file: string;
  line: number;
  route: string;
  reply: string;
  category: string;
  /** Empty for success. */
  disposition: string;
  source: string;
}

/** The corpus files in `dir`, sorted: every `.tsv`. */
export function corpusFiles(dir: string): string[] {
  return readdirSync(dir).filter((n) => n.endsWith('.tsv')).sort();
}

/**
 * Reads the named `.tsv` files of `dir` (default: all of them). Header line first; `#` lines are
 * comments; `\n` in a reply is a newline. A name that is not a corpus file of `dir` is an error
 * that lists the files there.
 */
export function readCorpus(dir: string, names: readonly string[] = corpusFiles(dir)): CorpusRow[] {
  const known = corpusFiles(dir);
  const unknown = names.filter((n) => !known.includes(n));
  if (unknown.length) throw new Error(`no corpus file \`${unknown.join('`, `')}\` in ${dir}; the files are ${known.join(', ')}`);
  const rows: CorpusRow[] = [];
  for (const name of names) {
    const lines = readFileSync(path.join(dir, name), 'utf8').split('\n');
    lines.forEach((text, i) => {
      if (i === 0 || text.trim() === '' || text.startsWith('#')) return;
      const [route, reply, category, disposition, source] = text.split('\t');
      if (route === undefined || reply === undefined || category === undefined) throw new Error(`${name}:${i + 1}: expected route, reply, category, disposition, source separated by tabs`);
      rows.push({ file: name, line: i + 1, route, reply: reply.replace(/\\n/g, '\n'), category, disposition: disposition ?? '', source: source ?? '' });
    });
  }
  return rows;
}

export interface Evaluation {
  rows: number;
  categoryCorrect: number;
  dispositionCorrect: number;
  bothCorrect: number;
  byRoute: Map<string, { rows: number; category: number; disposition: number }>;
  /** confusion.get(expected).get(actual) = count */
  confusion: Map<string, Map<string, number>>;
  misses: { row: CorpusRow; category: string; disposition: string }[];
}

/** Classifies every row with the artifact and tallies the results. */
export function evaluate(artifact: PolicyArtifact, rows: CorpusRow[]): Evaluation {
  const e: Evaluation = { rows: rows.length, categoryCorrect: 0, dispositionCorrect: 0, bothCorrect: 0, byRoute: new Map(), confusion: new Map(), misses: [] };
  for (const row of rows) {
    const r = artifact.react(row.route, row.reply);
    const disposition = r.disposition ?? '';
    const cat = r.category === row.category;
    const disp = disposition === row.disposition;
    e.categoryCorrect += cat ? 1 : 0;
    e.dispositionCorrect += disp ? 1 : 0;
    e.bothCorrect += cat && disp ? 1 : 0;
    const stats = e.byRoute.get(row.route) ?? { rows: 0, category: 0, disposition: 0 };
    stats.rows++;
    stats.category += cat ? 1 : 0;
    stats.disposition += disp ? 1 : 0;
    e.byRoute.set(row.route, stats);
    const inner = e.confusion.get(row.category) ?? new Map<string, number>();
    inner.set(r.category, (inner.get(r.category) ?? 0) + 1);
    e.confusion.set(row.category, inner);
    if (!cat || !disp) e.misses.push({ row, category: r.category, disposition });
  }
  return e;
}

const pct = (n: number, d: number) => (d === 0 ? '-' : `${((100 * n) / d).toFixed(1)}%`);

/** The report `npm run eval:replies` prints. */
export function formatEvaluation(e: Evaluation): string {
  const out: string[] = [];
  out.push(`reply corpus: ${e.rows} replies; category ${pct(e.categoryCorrect, e.rows)}, disposition ${pct(e.dispositionCorrect, e.rows)}, both ${pct(e.bothCorrect, e.rows)}`);
  out.push('', 'per route:', `  ${'route'.padEnd(28)} ${'rows'.padStart(5)} ${'category'.padStart(9)} ${'disposition'.padStart(12)}`);
  for (const [route, s] of [...e.byRoute].sort(([a], [b]) => a.localeCompare(b))) {
    out.push(`  ${route.padEnd(28)} ${String(s.rows).padStart(5)} ${pct(s.category, s.rows).padStart(9)} ${pct(s.disposition, s.rows).padStart(12)}`);
  }
  const labels = [...new Set([...e.confusion.keys(), ...[...e.confusion.values()].flatMap((m) => [...m.keys()])])].sort();
  const short = (l: string) => l.replace(/-related|-issues|-errors/, '').slice(0, 9);
  out.push('', 'confusion (rows: expected category, columns: what the policies said):');
  out.push(`  ${''.padEnd(20)}${labels.map((l) => short(l).padStart(10)).join('')}`);
  for (const expected of labels.filter((l) => e.confusion.has(l))) {
    const row = e.confusion.get(expected)!;
    out.push(`  ${expected.padEnd(20)}${labels.map((l) => String(row.get(l) ?? '.').padStart(10)).join('')}`);
  }
  if (e.misses.length) {
    out.push('', 'misclassified:');
    for (const m of e.misses) out.push(`  ${m.row.file}:${m.row.line} ${m.row.route}: expected ${m.row.category}/${m.row.disposition || '-'}, got ${m.category}/${m.disposition || '-'}: ${m.row.reply.replace(/\n/g, '\\n').slice(0, 110)}`);
  }
  return out.join('\n') + '\n';
}
