/**
 * Text and times from outside, made safe to print. SMTP replies, addresses, message ids,
 * tenant and campaign names come from peers we do not trust (a submitting client, a
 * receiving MX); anything the runtime writes to a line-oriented place — an accounting CSV
 * field, a warning, a log line — passes through {@link printable} first, so one record
 * is always one line and no control byte reaches a terminal. Times that came from a
 * state file or an artifact pass through {@link isoTime}, which never throws.
 */

/** The largest time a `Date` can hold, in ms either side of the epoch (ECMA-262 §21.4.1.22). */
const MAX_DATE_MS = 8.64e15;

/** How a character that is not printable is written: `\r` `\n` `\t` and `\\` by name, others as `\xNN` or `\uNNNN`. */
function escapeChar(c: string): string {
  switch (c) {
    case '\\':
      return '\\\\';
    case '\r':
      return '\\r';
    case '\n':
      return '\\n';
    case '\t':
      return '\\t';
  }
  const code = c.codePointAt(0)!;
  return code < 0x100 ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
}

/**
 * C0 controls, DEL, C1 controls (U+0085 is a line break to some tools), the Unicode line
 * and paragraph separators, and the backslash (so that the escaping is reversible: a
 * backslash in the output always starts an escape).
 */
const UNPRINTABLE = /[\x00-\x1f\x7f-\x9f\u2028\u2029\\]/gu;

/** The ellipsis that marks a value cut at its byte bound. */
const CUT = '…';

/**
 * `text` with every line break and control character escaped (`\r`, `\n`, `\t`, `\\`,
 * other C0/DEL/C1 bytes as `\xNN`, U+2028/U+2029 as `\u2028`/`\u2029`), and, when
 * `maxBytes` is given, cut to at most that many UTF-8 bytes, ending in `…` when cut.
 *
 * INVARIANT: the result holds no character below U+0020, no DEL, no C1 control and no
 * Unicode line separator, so it never spans lines; it is never longer than `maxBytes`
 * bytes, and a cut never splits a character or an escape.
 */
export function printable(text: string, maxBytes?: number): string {
  // Every character takes at least one byte, so only the first maxBytes + 1 can be kept
  // (or decide that a cut is needed): a huge input costs no more than a short one.
  const head = maxBytes === undefined ? text : text.slice(0, maxBytes + 1);
  const escaped = head.replace(UNPRINTABLE, escapeChar);
  if (maxBytes === undefined || (head.length === text.length && Buffer.byteLength(escaped) <= maxBytes)) return escaped;
  return cutToBytes(escaped, maxBytes);
}

/** `escaped` cut to `maxBytes` UTF-8 bytes including the final `…`, at a character boundary and never inside an escape. */
function cutToBytes(escaped: string, maxBytes: number): string {
  const budget = maxBytes - Buffer.byteLength(CUT);
  if (budget < 0) return '';
  let bytes = 0;
  let end = 0;
  // Walk escapes as units (`\x0d`, `\\`) and other characters by code point.
  for (const m of escaped.matchAll(/\\(?:x[0-9a-f]{2}|u[0-9a-f]{4}|.)|[\s\S]/gu)) {
    const size = Buffer.byteLength(m[0]);
    if (bytes + size > budget) break;
    bytes += size;
    end = m.index + m[0].length;
  }
  return escaped.slice(0, end) + CUT;
}

/**
 * `new Date(ms).toISOString()` for any number: a time beyond what a `Date` holds is
 * clamped to the nearest one it does (`+275760-09-13T00:00:00.000Z`), and NaN is the epoch.
 * Status and metrics code formats times from a state file or an artifact with this, so a
 * bad value shows as an odd date instead of throwing `RangeError: Invalid time value`.
 */
export function isoTime(ms: number): string {
  const clamped = Number.isNaN(ms) ? 0 : Math.min(MAX_DATE_MS, Math.max(-MAX_DATE_MS, ms));
  return new Date(clamped).toISOString();
}

/** `text` percent-decoded, or undefined when it is not valid percent-encoding (`%ZZ`): a path segment from a client. */
export function percentDecoded(text: string): string | undefined {
  try {
    return decodeURIComponent(text);
  } catch {
    return undefined;
  }
}
