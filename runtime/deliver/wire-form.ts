/**
 * Whether a message is already in its SMTP DATA wire form (RFC 5321 §2.3.8, §4.5.2): every
 * line ends in CRLF (no bare CR, no bare LF) and no line starts with "." (a dot there would
 * need the transparency dot). Such a body goes onto the socket as it is: smtp-client.ts
 * then skips nodemailer's DATA encoder, which looks at every byte in JavaScript (about
 * 1 ms of CPU per 100 KB measured here, docs/performance.md "Delivery throughput").
 *
 * The check asks Buffer.indexOf (native memchr) for each line end instead of looping over
 * bytes: a few microseconds per line, so tens of microseconds for a 100 KB message.
 * A body that fails it is rare (a line starting with a dot, a bare LF from an SMTP client)
 * and is sent through nodemailer's encoder as before, so nothing is encoded twice and no
 * second copy of the encoding rules exists here.
 */

const CR = 0x0d;
const LF = 0x0a;
const DOT = 0x2e;

/**
 * True when `body` can be written after DATA unchanged, the terminator `.CRLF` (after a
 * final CRLF, or `CRLF.CRLF` without one) being all that is added.
 * INVARIANT: true implies every CR is followed by LF, every LF follows a CR, and no
 * line (the first included) starts with ".".
 */
export function isWireForm(body: Uint8Array): boolean {
  if (body[0] === DOT) return false;
  const bytes = Buffer.isBuffer(body) ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  for (let lf = bytes.indexOf(LF); lf !== -1; lf = bytes.indexOf(LF, lf + 1)) {
    if (bytes[lf - 1] !== CR || bytes[lf + 1] === DOT) return false;
  }
  // Every LF has its CR; a CR without its LF (bare, or the last byte) remains to be found.
  for (let cr = bytes.indexOf(CR); cr !== -1; cr = bytes.indexOf(CR, cr + 1)) {
    if (bytes[cr + 1] !== LF) return false;
  }
  return true;
}
