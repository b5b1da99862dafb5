/**
 * A message's accounting trail: the records of its recipients in the accounting files,
 * for `petrel queue show` and the message search. A record names no queue id (PowerMTA's
 * columns), so a message's records are those with its sender, one of its recipients and
 * its `timeQueued` (to the second, as written).
 *
 * Bounded: the files of the days from its arrival to `now`, at most `MAX_DAYS` of them,
 * read line by line (never whole), and at most `MAX_RECORDS` records returned.
 */
import { createReadStream, existsSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { ACCOUNTING_FIELDS, csvField, FIELD_MAX_BYTES, powerMtaTime } from './accounting.ts';
import { isoTime, printable } from './text.ts';

const MAX_DAYS = 14;
const MAX_RECORDS = 1000;
const DAY_MS = 86_400_000;

/** The CSV lines (as written, without the newline) of a message's records. */
export async function accountingTrail(dir: string, m: { envelope: { from: string; to: readonly string[] }; receivedAt: number }, now: number): Promise<string[]> {
  const queued = powerMtaTime(m.receivedAt);
  // Field values as csvLine writes them, so the comparison is on the written form.
  const written = (field: 'orig' | 'rcpt', value: string) => csvField(printable(value, FIELD_MAX_BYTES[field]));
  const orig = written('orig', m.envelope.from);
  const rcpts = new Set(m.envelope.to.map((r) => written('rcpt', r)));
  const [iQueued, iOrig, iRcpt] = (['timeQueued', 'orig', 'rcpt'] as const).map((f) => ACCOUNTING_FIELDS.indexOf(f));
  const found: string[] = [];
  const firstDay = Math.floor(m.receivedAt / DAY_MS);
  const lastDay = Math.min(Math.floor(now / DAY_MS), firstDay + MAX_DAYS - 1);
  for (let day = firstDay; day <= lastDay && found.length < MAX_RECORDS; day++) {
    const file = path.join(dir, `acct-${isoTime(day * DAY_MS).slice(0, 10)}.csv`);
    if (!existsSync(file)) continue;
    const lines = createInterface({ input: createReadStream(file, 'utf8'), crlfDelay: Infinity });
    for await (const line of lines) {
      // Quoted fields may hold commas: those lines are split as CSV only when they could match.
      if (!line.includes(queued)) continue;
      const cells = splitCsv(line);
      if (cells[iQueued!] === queued && cells[iOrig!] === orig && rcpts.has(cells[iRcpt!]!)) found.push(line);
      if (found.length >= MAX_RECORDS) break;
    }
    lines.close();
  }
  return found;
}

/** A trail's finished recipients (as written) and how: `delivered` (a `d` record), `bounced`, or `expired` (a `b` record with status 4.4.7); the last such record wins. */
export function finalOutcomes(lines: readonly string[]): Record<string, 'delivered' | 'bounced' | 'expired'> {
  const [iType, iRcpt, iStatus] = (['type', 'rcpt', 'dsnStatus'] as const).map((f) => ACCOUNTING_FIELDS.indexOf(f));
  const outcomes: Record<string, 'delivered' | 'bounced' | 'expired'> = {};
  for (const line of lines) {
    const cells = splitCsv(line).map(unquote);
    const rcpt = cells[iRcpt!] ?? '';
    if (cells[iType!] === 'd') outcomes[rcpt] = 'delivered';
    else if (cells[iType!] === 'b') outcomes[rcpt] = cells[iStatus!] === '4.4.7' ? 'expired' : 'bounced';
  }
  return outcomes;
}

/** A field's value from its written form (RFC 4180 quotes undone). */
const unquote = (cell: string) => (cell.startsWith('"') && cell.endsWith('"') ? cell.slice(1, -1).replace(/""/g, '"') : cell);

/** One CSV line's fields as written (quotes kept), split on the commas outside quotes. */
function splitCsv(line: string): string[] {
  const cells: string[] = [];
  let start = 0;
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    if (line[i] === '"') quoted = !quoted;
    else if (line[i] === ',' && !quoted) cells.push(line.slice(start, i)), (start = i + 1);
  }
  cells.push(line.slice(start));
  return cells;
}
