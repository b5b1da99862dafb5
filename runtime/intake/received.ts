/**
 * The `Received:` trace header Petrel prepends to every message it accepts (RFC 5321
 * §4.4): who handed it over (`from`), who took it (`by`), how (`with`), the queue id and
 * when. Everything from the client (EHLO name, recipient) is reduced to characters that
 * cannot end the header or fold it into another one.
 */

/** What the trace header says about one acceptance; the runtime adds the id and the time. */
export interface ReceivedFrom {
  /** The name the client gave in EHLO/HELO (SMTP), absent for HTTP. */
  helo?: string;
  /** The client's address (IPv4-mapped IPv6 addresses are shown as IPv4). */
  address?: string;
  /** The client's name from reverse DNS, when it resolved. */
  hostname?: string;
  /** `ESMTP`, `ESMTPS`, `ESMTPA`, `ESMTPSA`, `SMTP`, `HTTP`, `HTTPS` (RFC 3848 names for SMTP). */
  protocol: string;
}

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const two = (n: number) => String(n).padStart(2, '0');

/** `ms` as an RFC 5322 date-time in UTC: `Tue, 3 Feb 2026 09:04:05 +0000`. */
export function rfc5322Date(ms: number): string {
  const d = new Date(ms);
  const time = `${two(d.getUTCHours())}:${two(d.getUTCMinutes())}:${two(d.getUTCSeconds())}`;
  return `${DAYS[d.getUTCDay()]}, ${d.getUTCDate()} ${MONTHS[d.getUTCMonth()]} ${d.getUTCFullYear()} ${time} +0000`;
}

/**
 * A client-given token as a header can carry it: at most 255 characters of domain, address
 * and mailbox characters; anything else becomes `?`. INVARIANT: the result holds no
 * whitespace, control character, `(`, `)`, `;` or `<>`, so it can neither break the line
 * nor the header's structure.
 */
function token(text: string): string {
  return text.slice(0, 255).replace(/[^A-Za-z0-9.\-_:@+=!#$%&'*/?^`{|}~[\]]/g, '?');
}

/**
 * The header, CRLF-terminated and folded before each clause:
 * `Received: from HELO (HOST [ADDR])\r\n\tby NAME (Petrel) with PROTO id ID\r\n\tfor <RCPT>; DATE\r\n`.
 * `for` is given only for a message with a single recipient (RFC 5321 §4.4 leaves it out
 * for several, which would tell every recipient of the copy the others' addresses).
 */
export function receivedHeader(from: ReceivedFrom, by: string, id: string, recipients: readonly string[], ms: number): string {
  const address = from.address?.replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/i, '');
  const where = [from.hostname && !from.hostname.startsWith('[') ? token(from.hostname) : undefined, address ? `[${token(address)}]` : undefined].filter(Boolean).join(' ');
  const fromClause = from.helo ? `from ${token(from.helo)}${where ? ` (${where})` : ''}` : where ? `from ${where}` : '';
  const forClause = recipients.length === 1 ? `\r\n\tfor <${token(recipients[0]!)}>` : '';
  return `Received: ${fromClause ? `${fromClause}\r\n\t` : ''}by ${token(by)} (Petrel) with ${token(from.protocol)} id ${token(id)}${forClause}; ${rfc5322Date(ms)}\r\n`;
}
