/**
 * A small, bounded MIME reader: enough to take a multipart report apart (RFC 6522: ARF
 * feedback reports, DSNs) — the header fields of a part (unfolded, names lower-cased),
 * its content type and parameters, its body decoded from base64 or quoted-printable, and
 * the parts of a multipart body split on its boundary.
 *
 * Not a general mail parser: no charsets beyond latin1/UTF-8 bytes, no encoded words. It
 * never throws on bad input; depth and part count are bounded (`MAX_DEPTH`, `MAX_PARTS`),
 * so a hostile report cannot make it recurse or allocate without end.
 */

export interface MimePart {
  /** Header fields in order: lower-cased name, unfolded value. */
  headers: [name: string, value: string][];
  /** `type/subtype`, lower-cased; `text/plain` when absent. */
  type: string;
  params: Record<string, string>;
  /** The decoded body (transfer encoding undone). */
  body: Buffer;
  /** The parts of a multipart body; empty otherwise. */
  parts: MimePart[];
}

const MAX_DEPTH = 4;
const MAX_PARTS = 32;

/** The header block and the body of a message or part (split at the first empty line). */
export function splitHeader(raw: Buffer): { head: string; body: Buffer } {
  const text = raw.toString('latin1');
  const m = /\r?\n\r?\n/.exec(text);
  if (!m) return { head: text, body: Buffer.alloc(0) };
  return { head: text.slice(0, m.index), body: raw.subarray(m.index + m[0].length) };
}

/** Header fields of a header block, unfolded (RFC 5322 2.2.3), names lower-cased. */
export function headerFields(head: string): [string, string][] {
  const fields: [string, string][] = [];
  for (const line of head.split(/\r?\n/)) {
    if (/^[ \t]/.test(line) && fields.length > 0) fields[fields.length - 1]![1] += ' ' + line.trim();
    else {
      const m = /^([!-9;-~]+):\s*(.*)$/.exec(line);
      if (m) fields.push([m[1]!.toLowerCase(), m[2]!.trim()]);
    }
  }
  return fields;
}

/** A field's first value. */
export const field = (headers: readonly [string, string][], name: string): string | undefined => headers.find(([n]) => n === name)?.[1];

/** `type/subtype; a=b; c="d"` → type and parameters (names lower-cased). */
export function contentType(value: string | undefined): { type: string; params: Record<string, string> } {
  const [type, ...rest] = (value ?? 'text/plain').split(';');
  const params: Record<string, string> = {};
  for (const p of rest) {
    const m = /^\s*([^=\s]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s;]*))/.exec(p);
    if (m) params[m[1]!.toLowerCase()] = m[2] !== undefined ? m[2].replace(/\\(.)/g, '$1') : m[3]!;
  }
  return { type: (type ?? '').trim().toLowerCase() || 'text/plain', params };
}

function decode(body: Buffer, encoding: string | undefined): Buffer {
  const e = (encoding ?? '').trim().toLowerCase();
  if (e === 'base64') return Buffer.from(body.toString('latin1').replace(/[^A-Za-z0-9+/=]/g, ''), 'base64');
  if (e === 'quoted-printable') {
    const text = body.toString('latin1').replace(/=\r?\n/g, '');
    return Buffer.from(text.replace(/=([0-9A-Fa-f]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16))), 'latin1');
  }
  return body;
}

/** The parts between `--boundary` lines, the preamble and epilogue dropped. */
function splitMultipart(body: Buffer, boundary: string): Buffer[] {
  const text = body.toString('latin1');
  const delimiter = `--${boundary}`;
  const parts: Buffer[] = [];
  let at = text.indexOf(delimiter);
  while (at !== -1 && parts.length < MAX_PARTS) {
    const lineEnd = text.indexOf('\n', at);
    if (lineEnd === -1 || text.startsWith(`${delimiter}--`, at)) break;
    const next = text.indexOf(`\n${delimiter}`, lineEnd);
    const end = next === -1 ? text.length : next;
    parts.push(body.subarray(lineEnd + 1, end > 0 && text[end - 1] === '\r' ? end - 1 : end));
    at = next === -1 ? -1 : next + 1;
  }
  return parts;
}

/** Reads a message or part; multiparts are split (to `MAX_DEPTH`). */
export function readMime(raw: Buffer, depth = 0): MimePart {
  const { head, body } = splitHeader(raw);
  const headers = headerFields(head);
  const { type, params } = contentType(field(headers, 'content-type'));
  const decoded = decode(body, field(headers, 'content-transfer-encoding'));
  const parts = type.startsWith('multipart/') && params.boundary && depth < MAX_DEPTH ? splitMultipart(decoded, params.boundary).map((p) => readMime(p, depth + 1)) : [];
  return { headers, type, params, body: decoded, parts };
}
