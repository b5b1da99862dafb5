/**
 * The X-Petrel-* control headers of a submitted message: read them, and remove them
 * before delivery (like PowerMTA's X-virtual-MTA, they steer Petrel and must not leak).
 *
 * Line breaks: LF and CRLF end a header line. A bare CR (one not followed by LF) is a line
 * break to some mail software and not to others, so a header field holding one could be
 * read as two fields downstream: `X-Petrel-Tenant: a<CR>Bcc: x` would smuggle a `Bcc`.
 * Every header field with a bare CR (its first line or a folded one) is therefore removed
 * whole, and never read as a control header: after this, the header block holds no bare
 * CR, and every reader splits it the same way.
 */

/** Control headers Petrel reads, lowercase. */
export const CONTROL_HEADERS = ['x-petrel-tenant', 'x-petrel-pool', 'x-petrel-campaign'] as const;

export interface ControlValues {
  tenant?: string;
  pool?: string;
  campaign?: string;
}

const KEY_OF: Record<(typeof CONTROL_HEADERS)[number], keyof ControlValues> = { 'x-petrel-tenant': 'tenant', 'x-petrel-pool': 'pool', 'x-petrel-campaign': 'campaign' };
const LF = 0x0a;
const CR = 0x0d;

/** The header lines of `raw` (each with its LF), and where the header block ends (after its empty line). */
function headerLines(raw: Uint8Array): { lines: [start: number, end: number][]; end: number } {
  const lines: [number, number][] = [];
  let start = 0;
  while (start < raw.length) {
    const lf = raw.indexOf(LF, start);
    const end = lf === -1 ? raw.length : lf + 1;
    const empty = end - start === 1 || (end - start === 2 && raw[start] === CR);
    if (empty && lf !== -1) return { lines, end };
    lines.push([start, end]);
    start = end;
  }
  return { lines, end: raw.length };
}

/** Whether `raw[start, end)` holds a CR not followed by LF. */
function hasBareCr(raw: Uint8Array, start: number, end: number): boolean {
  for (let i = raw.indexOf(CR, start); i !== -1 && i < end; i = raw.indexOf(CR, i + 1)) if (raw[i + 1] !== LF) return true;
  return false;
}

const PETREL_PREFIX = Buffer.from('x-petrel-', 'latin1');

/** Whether the field `raw[start, end)` starts with `X-Petrel-` (in any case), as every control header does. */
function isPetrelField(raw: Uint8Array, start: number, end: number): boolean {
  if (end - start < PETREL_PREFIX.length) return false;
  // ASCII letters' lowercase is their uppercase | 0x20; '-' has that bit set already.
  for (let i = 0; i < PETREL_PREFIX.length; i++) if ((raw[start + i]! | 0x20) !== PETREL_PREFIX[i]) return false;
  return true;
}

/** The control header one whole field (`text`, folded lines included) is, with its unfolded value; undefined for any other field. */
function controlField(text: string): { key: keyof ControlValues; value: string } | undefined {
  const m = /^([!-9;-~]+):/.exec(text);
  const key = m ? KEY_OF[m[1]!.toLowerCase() as keyof typeof KEY_OF] : undefined;
  // RFC 5322 unfolding: the line breaks go, the folded lines join with a space.
  return key && { key, value: text.slice(m![0].length).split(/\r?\n/).map((s) => s.trim()).filter(Boolean).join(' ') };
}

/**
 * Splits the header block off `raw`, takes the control headers out (with their folded
 * continuation lines) and every field holding a bare CR, and returns the control values
 * and the message without them. The body and every other header are kept byte for byte;
 * when nothing is taken, `message` is `raw` itself. Only the header block is read.
 */
export function takeControlHeaders(raw: Buffer): { values: ControlValues; message: Buffer } {
  const { lines, end } = headerLines(raw);
  // Fields: a line and the folded lines (starting with space or tab) that follow it.
  const fields: [number, number][][] = [];
  for (const line of lines) {
    const folded = raw[line[0]] === 0x20 || raw[line[0]] === 0x09;
    if (folded && fields.length > 0) fields[fields.length - 1]!.push(line);
    else fields.push([line]);
  }
  const values: ControlValues = {};
  const kept: Buffer[] = [];
  let taken = 0;
  for (const field of fields) {
    const from = field[0]![0];
    const to = field[field.length - 1]![1];
    if (hasBareCr(raw, from, to)) {
      taken++;
      continue;
    }
    // Only a field named X-Petrel-… can be a control header: the others are kept unread.
    const control = isPetrelField(raw, from, to) ? controlField(raw.toString('latin1', from, to)) : undefined;
    if (control) {
      values[control.key] = control.value;
      taken++;
      continue;
    }
    kept.push(raw.subarray(from, to));
  }
  if (taken === 0) return { values, message: raw };
  return { values, message: Buffer.concat([...kept, raw.subarray(lines.length > 0 ? lines[lines.length - 1]![1] : 0, end), raw.subarray(end)]) };
}

/** How many bytes of `chunks`, taken as one message, its header block (with its empty line) spans; all of them without an empty line. */
function headerLength(chunks: readonly Uint8Array[]): number {
  let offset = 0;
  let lineStart = true;
  let crAtLineStart = false;
  for (const chunk of chunks) {
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i];
      if (b === LF && (lineStart || crAtLineStart)) return offset + i + 1;
      crAtLineStart = lineStart && b === CR;
      lineStart = b === LF;
    }
    offset += chunk.length;
  }
  return offset;
}

/**
 * {@link takeControlHeaders} for a message given as chunks (as it streamed in): only the
 * chunks holding the header block are joined and read; the message comes back as chunks,
 * the body's not copied.
 */
export function takeControlHeadersOfChunks(chunks: readonly Buffer[]): { values: ControlValues; message: Buffer[] } {
  const headBytes = headerLength(chunks);
  const head: Buffer[] = [];
  const rest: Buffer[] = [];
  let offset = 0;
  for (const chunk of chunks) {
    const cut = Math.min(Math.max(headBytes - offset, 0), chunk.length);
    if (cut > 0) head.push(chunk.subarray(0, cut));
    if (cut < chunk.length) rest.push(chunk.subarray(cut));
    offset += chunk.length;
  }
  const { values, message } = takeControlHeaders(head.length === 1 ? head[0]! : Buffer.concat(head));
  return { values, message: [message, ...rest] };
}
