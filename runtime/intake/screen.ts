/**
 * The last look at a submission before it is spooled: recipients at the feedback
 * addresses take the message as a feedback report (feedback.ts), and recipients on the
 * tenant's suppression list (suppression.ts) are refused or dropped.
 *
 * After DATA a message gets one answer for all its recipients, so: when every
 * deliverable recipient is suppressed and the tenant refuses (`suppressed: "refuse"`, the
 * default), the whole message is refused — SMTP `550 5.1.1`, HTTP 422 — with the address
 * and why; otherwise suppressed recipients are dropped (an accounting record each) and
 * the others are spooled. A report Petrel cannot use (not ARF, no valid token, no
 * recipient) is refused `550 5.6.0` / 422 with the reason.
 */
import { readFeedbackReport, type Complaint } from './feedback.ts';
import type { SuppressionEntry, SuppressionList } from './suppression.ts';

/** A submission refused with an answer the client is told: SMTP code and text, HTTP status. */
export class SubmissionRefused extends Error {
  readonly responseCode: number;
  readonly httpStatus = 422;
  constructor(code: number, text: string) {
    super(text);
    this.responseCode = code;
  }
}

export interface FeedbackIntake {
  secret: string;
  /** Full addresses (lower case) that receive reports. */
  addresses: ReadonlySet<string>;
  /** Domains (lower case) every address of which receives reports. */
  domains: ReadonlySet<string>;
}

export interface ScreenDeps {
  suppression: SuppressionList;
  feedback?: FeedbackIntake | undefined;
  /** The tenant's `suppressed` setting (`off`: its submissions are not checked against the list). */
  mode(tenant: string): 'refuse' | 'drop' | 'off';
  complaint(c: Complaint): Promise<void>;
  /** A suppressed recipient was dropped: its accounting record. */
  dropped(rcpt: string, entry: SuppressionEntry): void;
}

/** Whether reports sent to `address` are taken here. */
export function isFeedbackAddress(feedback: FeedbackIntake | undefined, address: string): boolean {
  if (!feedback) return false;
  const a = address.toLowerCase();
  return feedback.addresses.has(a) || feedback.domains.has(a.slice(a.lastIndexOf('@') + 1));
}

/** The recipients to spool (possibly none); throws `SubmissionRefused`. */
export async function screenSubmission(deps: ScreenDeps, to: readonly string[], message: () => Buffer, tenant: string): Promise<string[]> {
  const reports = to.filter((r) => isFeedbackAddress(deps.feedback, r));
  if (reports.length > 0) {
    const read = readFeedbackReport(message(), deps.feedback!.secret);
    if (!read.ok) throw new SubmissionRefused(550, `5.6.0 Feedback report not taken: ${read.error}`);
    await deps.complaint(read.complaint);
  }
  const rest = to.filter((r) => !reports.includes(r));
  if (deps.mode(tenant) === 'off') return rest;
  const suppressed = rest.map((r) => [r, deps.suppression.has(tenant, r)] as const).filter((x): x is readonly [string, SuppressionEntry] => x[1] !== undefined);
  if (suppressed.length === 0) return rest;
  if (suppressed.length === rest.length && deps.mode(tenant) === 'refuse') {
    const [rcpt, e] = suppressed[0]!;
    throw new SubmissionRefused(550, `5.1.1 <${rcpt}> is suppressed${tenant ? ` for tenant ${tenant}` : ''}: ${e.reason === 'complaint' ? 'the recipient complained' : e.reason === 'manual' ? 'added by the operator' : `it bounced (${e.reason})`}; remove it from the suppression list to send again`);
  }
  for (const [rcpt, e] of suppressed) deps.dropped(rcpt, e);
  return rest.filter((r) => !suppressed.some(([s]) => s === r));
}
