/**
 * The accounting record of one recipient's outcome (PowerMTA's acct fields plus the
 * policy version and rule that decided it), and the receipt records written at accept.
 */
import type { Reaction } from '../abi.ts';
import type { TlsInfo } from '../deliver/index.ts';
import type { SpooledMessage } from '../spool/index.ts';
import type { AccountingRecord, RecordType } from './accounting.ts';

/** Where a rule is, as the status API and accounting show it: `file:line`. */
export const ruleAt = (r: { file: string; line: number } | null) => (r ? `${r.file}:${r.line}` : null);

/** What decided an outcome and where it went: the record's fields besides the message's own. */
export interface AccountedOutcome {
  type: RecordType;
  rcpt: string;
  /** The queue (`queueOf`) and the source name: the record's `queue` is `queue/source`. */
  queue: string;
  source: string;
  reply: string;
  reaction: Reaction | undefined;
  mxHost: string;
  /** The manifest hash of the version that decided it. */
  policyVersion: string;
  at: number;
  /** The session's TLS: null in plain text, undefined when no session was open (connection or policy failure). */
  tls?: TlsInfo | null;
}

export function outcomeRecord(m: SpooledMessage, o: AccountedOutcome): AccountingRecord {
  const { type, reaction } = o;
  const status = /^\d{3}[ -](\d\.\d{1,3}\.\d{1,3})/.exec(o.reply)?.[1] ?? (type === 'd' ? '2.0.0' : type === 'b' ? '5.0.0' : '4.0.0');
  return {
    type,
    timeLogged: o.at,
    timeQueued: m.receivedAt,
    orig: m.envelope.from,
    rcpt: o.rcpt,
    dsnAction: type === 'd' ? 'relayed' : type === 'b' ? 'failed' : 'delayed',
    dsnStatus: status,
    dsnDiag: `smtp;${o.reply}`,
    dsnMta: o.mxHost ? `dns;${o.mxHost}` : '',
    bounceCat: reaction && reaction.category !== 'success' ? reaction.category : '',
    vmta: o.source,
    queue: `${o.queue}/${o.source}`,
    jobId: m.campaign ?? '',
    tenant: m.tenant ?? '',
    policyVersion: o.policyVersion,
    policyRule: ruleAt(reaction?.rule ?? null) ?? '',
    tlsVersion: o.tls?.protocol ?? '',
    tlsCipher: o.tls?.cipher ?? '',
    tlsVerified: o.tls === undefined ? '' : (o.tls?.verified ?? 'none'),
  };
}

/** PowerMTA's `r` records: one per recipient, when the message is accepted. */
export function receiptRecords(m: { envelope: { from: string; to: readonly string[] }; receivedAt: number; campaign?: string; tenant?: string }, policyVersion: string): AccountingRecord[] {
  return m.envelope.to.map((rcpt) => ({ type: 'r', timeLogged: m.receivedAt, timeQueued: m.receivedAt, orig: m.envelope.from, rcpt, dsnAction: '', dsnStatus: '', dsnDiag: '', dsnMta: '', bounceCat: '', vmta: '', queue: '', jobId: m.campaign ?? '', tenant: m.tenant ?? '', policyVersion, policyRule: '', tlsVersion: '', tlsCipher: '', tlsVerified: '' }));
}
