/**
 * Feedback loops: the `X-Petrel-Id` header Petrel adds to every message it accepts (when
 * a feedback secret is configured), and the reading of ARF reports (RFC 5965) that
 * mailbox providers send back when a recipient marks such a message as spam.
 *
 * `X-Petrel-Id: v1.QUEUEID.TENANT.CAMPAIGN.MAC` — tenant and campaign base64url-encoded
 * (empty when absent), MAC = HMAC-SHA256(secret, "v1.QUEUEID.TENANT.CAMPAIGN") base64url,
 * the first 16 bytes (128 bits). A report whose enclosed message carries no valid token is
 * refused: without the secret nobody can make Petrel suppress an address they choose.
 *
 * The complaining recipient comes from the report's `Original-Rcpt-To` field; when the
 * provider redacted it, from the enclosed message's `To:` when that names exactly one
 * address. A report naming neither cannot suppress anyone and is refused.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { field, headerFields, readMime, splitHeader, type MimePart } from './mime-parts.ts';
import { normalAddress } from './suppression.ts';

export const FEEDBACK_HEADER = 'X-Petrel-Id';

/** What a token says about the message it was put on. */
export interface FeedbackOrigin {
  id: string;
  tenant: string;
  campaign: string;
}

const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64url');
const mac = (secret: string | Buffer, text: string) => createHmac('sha256', secret).update(text).digest().subarray(0, 16);

/** The header line (with CRLF) for a message. */
export function feedbackHeader(secret: string | Buffer, origin: FeedbackOrigin): string {
  const text = `v1.${origin.id}.${b64(origin.tenant)}.${b64(origin.campaign)}`;
  return `${FEEDBACK_HEADER}: ${text}.${mac(secret, text).toString('base64url')}\r\n`;
}

/** The origin a token names, when its MAC is right; undefined otherwise. */
export function verifyFeedbackToken(secret: string | Buffer, token: string): FeedbackOrigin | undefined {
  const m = /^v1\.([\x21-\x2d\x2f-\x7e]{1,256})\.([A-Za-z0-9_-]{0,400})\.([A-Za-z0-9_-]{0,400})\.([A-Za-z0-9_-]{22})$/.exec(token.trim());
  if (!m) return undefined;
  const given = Buffer.from(m[4]!, 'base64url');
  const want = mac(secret, `v1.${m[1]}.${m[2]}.${m[3]}`);
  if (given.length !== want.length || !timingSafeEqual(given, want)) return undefined;
  return { id: m[1]!, tenant: Buffer.from(m[2]!, 'base64url').toString('utf8'), campaign: Buffer.from(m[3]!, 'base64url').toString('utf8') };
}

/** A complaint read from a report: who complained about which message. */
export interface Complaint {
  origin: FeedbackOrigin;
  rcpt: string;
  /** `Feedback-Type` (abuse, fraud, virus, other, not-spam). */
  feedbackType: string;
  /** The enclosed message's Message-ID, if it had one. */
  messageId: string;
  /** `User-Agent` of the report, e.g. the provider's FBL name. */
  reporter: string;
  sourceIp: string;
  arrivalDate: string;
}

export type FeedbackResult = { ok: true; complaint: Complaint } | { ok: false; error: string };

/** The header block of the report's third part: `message/rfc822` or `text/rfc822-headers`. */
const enclosedHead = (p: MimePart): string => splitHeader(p.body).head;

/** Reads an ARF report (RFC 5965) and checks its token; the error says what is missing. */
export function readFeedbackReport(raw: Buffer, secret: string | Buffer): FeedbackResult {
  const report = readMime(raw);
  if (report.type !== 'multipart/report' || report.params['report-type']?.toLowerCase() !== 'feedback-report') return { ok: false, error: 'not an ARF report (multipart/report; report-type=feedback-report)' };
  const fields = report.parts.find((p) => p.type === 'message/feedback-report');
  if (!fields) return { ok: false, error: 'the report has no message/feedback-report part' };
  const meta = headerFields(fields.body.toString('latin1').trim());
  const enclosed = report.parts.find((p) => p.type === 'message/rfc822' || p.type === 'text/rfc822-headers');
  if (!enclosed) return { ok: false, error: 'the report encloses no message or headers (message/rfc822, text/rfc822-headers)' };
  const original = headerFields(enclosedHead(enclosed));
  const token = field(original, FEEDBACK_HEADER.toLowerCase());
  if (!token) return { ok: false, error: `the reported message has no ${FEEDBACK_HEADER} header: not sent by this Petrel, or the provider removed it` };
  const origin = verifyFeedbackToken(secret, token);
  if (!origin) return { ok: false, error: `the reported message's ${FEEDBACK_HEADER} is forged or was made with another secret` };
  const toHeader = field(original, 'to') ?? '';
  const single = /^[^,]*$/.test(toHeader) ? /<?([^\s<>,]+@[^\s<>,]+)>?\s*$/.exec(toHeader)?.[1] : undefined;
  const rcpt = normalAddress(field(meta, 'original-rcpt-to')?.replace(/^<|>$/g, '') ?? single ?? '');
  if (!rcpt) return { ok: false, error: 'the report names no recipient (Original-Rcpt-To, or a single To: address)' };
  return {
    ok: true,
    complaint: {
      origin,
      rcpt,
      feedbackType: (field(meta, 'feedback-type') ?? 'abuse').toLowerCase().slice(0, 40),
      messageId: (field(original, 'message-id') ?? '').slice(0, 500),
      reporter: (field(meta, 'user-agent') ?? '').slice(0, 200),
      sourceIp: (field(meta, 'source-ip') ?? '').slice(0, 64),
      arrivalDate: (field(meta, 'arrival-date') ?? field(meta, 'received-date') ?? '').slice(0, 100),
    },
  };
}
