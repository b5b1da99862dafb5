/**
 * The message index: what the message search needs and the accounting records lack (they
 * name no queue id and no Message-ID, as PowerMTA's columns do not). One JSON line per
 * accepted message — queue id, Message-ID, sender, recipients, arrival time — in daily files
 * `msgs-YYYY-MM-DD.ndjson` (UTC day of arrival) in SPOOL/message-index/ — the runtime's own
 * state, not beside the accounting files, whose directory holds only accounting — so a message
 * that finished (delivered, bounced, expired) and left the spool is still found, and its
 * accounting trail read (accounting-trail.ts matches on sender, recipient and arrival).
 *
 * Like accounting, it is a log, not the spool: lines are buffered and appended every
 * `flushMs`; a crash can lose the last unflushed lines, never a message.
 *
 * Bounds: a line holds at most {@link MAX_INDEXED_RECIPIENTS} recipients (the trail reads
 * those); at most {@link MAX_BUFFERED_LINES} lines a file wait while appends fail; a
 * search reads the files of the last {@link SEARCH_DAYS} days, line by line, newest day
 * first, and returns at most `limit`.
 */
import { appendFileSync, createReadStream, existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { isoTime } from './text.ts';

/** One accepted message as the index holds it. */
export interface IndexedMessage {
  id: string;
  /** Normalised by {@link normaliseMessageId}; empty when the message had none. */
  messageId: string;
  from: string;
  to: string[];
  receivedAt: number;
  tenant?: string;
}

/** What a search names: exactly one of a queue id, a Message-ID or a recipient glob. */
export type MessageQuery = { id: string } | { messageId: string } | { rcpt: string };

export interface MessageIndex {
  /** Indexes an accepted message; `chunks` is the message as submitted (its header block first). */
  write(m: Omit<IndexedMessage, 'messageId'>, chunks: readonly Buffer[]): void;
  /** Appends what is buffered. */
  flush(): void;
  close(): void;
  /** The messages that match, newest first, at most `limit`. */
  find(query: MessageQuery, now: number, limit: number): Promise<IndexedMessage[]>;
}

/** Days of index a search reads, today included. */
export const SEARCH_DAYS = 7;
export const MAX_INDEXED_RECIPIENTS = 1000;
/** Lines held for a file while its appends fail. */
const MAX_BUFFERED_LINES = 100_000;
/** The header block is looked for in the first this many bytes of the message. */
const MAX_HEAD_BYTES = 64 * 1024;
const DAY_MS = 86_400_000;

/** A Message-ID as searched: without surrounding space and angle brackets, lower-cased, at most 998 characters. */
export function normaliseMessageId(text: string): string {
  return text.trim().replace(/^<\s*/, '').replace(/\s*>$/, '').toLowerCase().slice(0, 998);
}

/**
 * The Message-ID field in a header block: its name at a line start, its value up to the
 * line break not followed by space or tab (folded lines included). The two alternatives
 * start on disjoint characters, so the match is linear.
 */
const MESSAGE_ID_FIELD = /(?:^|\n)message-id[ \t]*:((?:[^\r\n]|\r?\n[ \t])*)/i;

/**
 * The normalised Message-ID of a message (its first chunk: the header block), or empty.
 * It runs for every accepted message, so it reads only the header block and only the one
 * field (mime-parts.ts's `headerFields` would unfold and lower-case every field: 5× the time).
 */
export function messageIdOf(chunks: readonly Buffer[]): string {
  const first = chunks[0];
  if (!first) return '';
  const crlf = first.indexOf('\r\n\r\n');
  const end = crlf >= 0 ? crlf : first.indexOf('\n\n');
  const head = first.toString('latin1', 0, Math.min(end >= 0 ? end : first.length, MAX_HEAD_BYTES));
  const value = MESSAGE_ID_FIELD.exec(head)?.[1];
  return value === undefined ? '' : normaliseMessageId(value.replace(/\r?\n[ \t]/g, ' '));
}

/**
 * The index in `dir`. `globMatch` says whether a recipient matches a search's glob: the
 * queue API's (decide/queue-ops.ts), passed in so that observe/ does not import decide/,
 * which imports observe/.
 */
export function openMessageIndex(dir: string, options: { globMatch: (glob: string, text: string) => boolean; flushMs?: number }): MessageIndex {
  const flushMs = options.flushMs ?? 200;
  mkdirSync(dir, { recursive: true });
  const fileOf = (ms: number) => path.join(dir, `msgs-${isoTime(ms).slice(0, 10)}.ndjson`);
  const buffers = new Map<string, string[]>();
  let timer: NodeJS.Timeout | undefined;
  const flush = () => {
    if (timer) clearTimeout(timer);
    timer = undefined;
    for (const [file, lines] of buffers) {
      appendFileSync(file, lines.join(''));
      buffers.delete(file); // after its append: a failure leaves only the files not yet written buffered
    }
  };
  /** A failed timed append is retried at the next write or flush; it never throws from the timer. */
  const flushQuietly = () => {
    try {
      flush();
    } catch (e) {
      process.emitWarning(`petrel: cannot append to the message index in ${dir}: ${(e as Error).message}`);
    }
  };
  return {
    write(m, chunks) {
      const entry: IndexedMessage = { ...m, messageId: messageIdOf(chunks), to: m.to.slice(0, MAX_INDEXED_RECIPIENTS) };
      const file = fileOf(m.receivedAt);
      const lines = buffers.get(file) ?? buffers.set(file, []).get(file)!;
      // While appends fail (a full disk), the oldest buffered lines go: the index is a help, never a memory leak.
      if (lines.length >= MAX_BUFFERED_LINES) lines.shift();
      lines.push(JSON.stringify(entry) + '\n');
      if (!timer) timer = setTimeout(flushQuietly, flushMs);
    },
    flush,
    close: flushQuietly,
    async find(query, now, limit) {
      flushQuietly();
      const found: IndexedMessage[] = [];
      const today = Math.floor(now / DAY_MS);
      for (let day = today; day > today - SEARCH_DAYS && found.length < limit; day--) {
        const file = fileOf(day * DAY_MS);
        if (existsSync(file)) found.push(...(await matchesIn(file, matcher(query, options.globMatch), limit - found.length)));
      }
      return found;
    },
  };
}

/** The last `limit` lines of `file` that match, newest first. */
async function matchesIn(file: string, matches: Matcher, limit: number): Promise<IndexedMessage[]> {
  const found: IndexedMessage[] = [];
  const lines = createInterface({ input: createReadStream(file, 'utf8'), crlfDelay: Infinity });
  for await (const line of lines) {
    if (!matches.quick(line)) continue;
    let m: IndexedMessage;
    try {
      m = JSON.parse(line) as IndexedMessage;
    } catch {
      continue; // a line torn by a crash
    }
    if (!matches.exactly(m)) continue;
    found.push(m);
    if (found.length > limit) found.shift();
  }
  return found.reverse();
}

/** A cheap test on the line's text (no false negatives), then the exact one on the entry. */
interface Matcher {
  quick(line: string): boolean;
  exactly(m: IndexedMessage): boolean;
}

function matcher(query: MessageQuery, globMatch: (glob: string, text: string) => boolean): Matcher {
  if ('id' in query) return { quick: (l) => l.includes(JSON.stringify(query.id)), exactly: (m) => m.id === query.id };
  if ('messageId' in query) {
    const wanted = normaliseMessageId(query.messageId);
    const literal = JSON.stringify(wanted).slice(1, -1);
    return { quick: (l) => l.toLowerCase().includes(literal), exactly: (m) => m.messageId === wanted };
  }
  return { quick: () => true, exactly: (m) => m.to.some((r) => globMatch(query.rcpt, r)) };
}
