/**
 * The X-Petrel-* control headers of a submitted message: read them, and remove them
 * before delivery (like PowerMTA's X-virtual-MTA, they steer Petrel and must not leak).
 */

/** Control headers Petrel reads, lowercase. */
export const CONTROL_HEADERS = ['x-petrel-tenant', 'x-petrel-pool', 'x-petrel-campaign'] as const;

export interface ControlValues {
  tenant?: string;
  pool?: string;
  campaign?: string;
}

/**
 * Splits the header block off `raw`, takes the control headers out (with their folded
 * continuation lines), and returns their values and the message without them. The body
 * and every other header are kept byte for byte.
 */
export function takeControlHeaders(raw: Buffer): { values: ControlValues; message: Buffer } {
  const text = raw.toString('latin1');
  const crlf = text.indexOf('\r\n\r\n');
  const lf = text.indexOf('\n\n');
  const end = crlf !== -1 && (lf === -1 || crlf < lf) ? crlf + 2 : lf !== -1 ? lf + 1 : text.length;
  const head = text.slice(0, end);
  const lines = head.split(/(?<=\n)/);
  const values: ControlValues = {};
  const kept: string[] = [];
  let dropping: keyof ControlValues | undefined;
  for (const line of lines) {
    const continuation = line.startsWith(' ') || line.startsWith('\t');
    if (continuation && dropping) {
      // A folded line continues the value (RFC 5322 unfolding: the line break goes).
      values[dropping] = `${values[dropping] ?? ''} ${line.trim()}`.trim();
      continue;
    }
    dropping = undefined;
    const m = /^([!-9;-~]+):[ \t]*(.*?)\r?\n?$/.exec(line);
    const name = m?.[1]?.toLowerCase();
    if (m && name && (CONTROL_HEADERS as readonly string[]).includes(name)) {
      dropping = name === 'x-petrel-tenant' ? 'tenant' : name === 'x-petrel-pool' ? 'pool' : 'campaign';
      values[dropping] = m[2]!.trim();
      continue;
    }
    kept.push(line);
  }
  if (kept.length === lines.length) return { values, message: raw };
  return { values, message: Buffer.concat([Buffer.from(kept.join(''), 'latin1'), raw.subarray(Buffer.byteLength(head, 'latin1'))]) };
}
