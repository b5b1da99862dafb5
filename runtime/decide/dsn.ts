/**
 * Delivery status notifications (RFC 3464): the `multipart/report;
 * report-type=delivery-status` message that tells a sender a recipient bounced, expired
 * or (optionally) is delayed — a human-readable part, the `message/delivery-status` part
 * (per-message and per-recipient fields) and, when the original is still at hand, its
 * header block (`text/rfc822-headers`). Built with nodemailer's MIME tree (MimeNode).
 *
 * INVARIANT: a DSN goes from the null sender (`<>`) and none is made for a message whose
 * sender is null — so a DSN that cannot be delivered never causes another: no loops.
 * `dsnFor` returns undefined for those.
 */
import MimeNode from 'nodemailer/lib/mime-node';

/** One recipient's line in a DSN. */
export interface DsnRecipient {
  rcpt: string;
  /** RFC 3464 action. */
  action: 'failed' | 'delayed';
  /** Enhanced status code, e.g. `5.1.1`. */
  status: string;
  /** The reply as received (`550 5.1.1 no such user`), or what Petrel decided (`message expired`). */
  diagnostic: string;
  /** The MX host that answered, if one did. */
  remoteMta: string;
}

export interface DsnInput {
  /** The original message: its queue id, sender, when it arrived. */
  message: { id: string; envelope: { from: string }; receivedAt: number };
  recipients: readonly DsnRecipient[];
  /** Our name: the Reporting-MTA and the DSN's From domain. */
  reportingMta: string;
  /** The original message's header block, when still readable. */
  originalHeaders?: string | undefined;
  now: number;
}

/** The DSN to spool: from the null sender to the original sender; undefined when none may be sent. */
export async function dsnFor(input: DsnInput): Promise<{ envelope: { from: string; to: string[] }; raw: Buffer } | undefined> {
  const sender = input.message.envelope.from;
  if (sender === '' || input.recipients.length === 0) return undefined;
  const failed = input.recipients.some((r) => r.action === 'failed');
  const root = new MimeNode('multipart/report; report-type=delivery-status', { hostname: input.reportingMta, newline: 'win' });
  root.setHeader({
    from: `Mail Delivery System <mailer-daemon@${input.reportingMta}>`,
    to: sender,
    subject: failed ? 'Undelivered Mail Returned to Sender' : 'Delayed Mail (still being retried)',
    date: new Date(input.now).toUTCString(),
    'auto-submitted': 'auto-replied',
  });
  root.createChild('text/plain; charset=utf-8').setContent(humanText(input, failed));
  root.createChild('message/delivery-status').setContent(statusFields(input));
  if (input.originalHeaders) root.createChild('text/rfc822-headers').setContent(input.originalHeaders.replace(/\r?\n/g, '\r\n').replace(/(\r\n)*$/, '\r\n'));
  return { envelope: { from: '', to: [sender] }, raw: await root.build() };
}

function humanText(input: DsnInput, failed: boolean): string {
  const lines = input.recipients.map((r) => `  <${r.rcpt}>: ${r.diagnostic}`);
  const intro = failed
    ? 'This is the mail system at ' + input.reportingMta + '.\r\n\r\nYour message could not be delivered to the following recipients:'
    : 'This is the mail system at ' + input.reportingMta + '.\r\n\r\nYour message has not been delivered yet to the following recipients; delivery is still being tried:';
  return `${intro}\r\n\r\n${lines.join('\r\n')}\r\n\r\nQueue id: ${input.message.id}\r\n`;
}

/** The `message/delivery-status` body: per-message fields, then one block per recipient. */
function statusFields(input: DsnInput): string {
  const oneLine = (s: string) => s.replace(/[\r\n\t]+/g, ' ').replace(/[^\x20-\x7e]/g, '?').slice(0, 900);
  const blocks = [[`Reporting-MTA: dns; ${input.reportingMta}`, `X-Petrel-Queue-Id: ${input.message.id}`, `Arrival-Date: ${new Date(input.message.receivedAt).toUTCString()}`]];
  for (const r of input.recipients) {
    const diag = r.diagnostic.match(/^\d{3}[ -]/) ? `smtp; ${oneLine(r.diagnostic)}` : `x-petrel; ${oneLine(r.diagnostic)}`;
    blocks.push([`Final-Recipient: rfc822; ${oneLine(r.rcpt)}`, `Action: ${r.action}`, `Status: ${r.status}`, ...(r.remoteMta ? [`Remote-MTA: dns; ${oneLine(r.remoteMta)}`] : []), `Diagnostic-Code: ${diag}`, `Last-Attempt-Date: ${new Date(input.now).toUTCString()}`]);
  }
  return blocks.map((b) => b.join('\r\n') + '\r\n').join('\r\n');
}
