/**
 * Checks on received mail: SPF, DKIM, DMARC and ARC (mailauth's `authenticate`, 4.13.3)
 * for a message arriving over SMTP, an `Authentication-Results` header (RFC 8601) with
 * this server's EHLO name as its authserv-id added on top, and a disposition per result:
 * `tag` (the header only) or `reject` (`550 5.7.1`, the message not taken). There is no
 * hold queue: DMARC `p=quarantine` is tagged or rejected, as configured.
 *
 * Invariants:
 * - Every `Authentication-Results` field already in the message that claims our
 *   authserv-id is removed (RFC 8601 §5: a forged one would be believed downstream);
 *   fields of other authserv-ids are kept byte for byte.
 * - DNS goes through the injected resolver only; every lookup is bounded by `timeoutMs`
 *   (an answer not in time is a DNS error: mailauth reports `temperror`, which is tagged,
 *   never rejected), SPF by mailauth's RFC 7208 limits (10 lookups, 2 void), DKIM to the
 *   topmost {@link MAX_DKIM_SIGNATURES} signatures, the whole check to 4 × `timeoutMs`.
 * - A check that throws (a message mailauth cannot parse) or runs out of time tags the
 *   message `none (checks failed)` / `none (checks timed out)`; it never refuses or
 *   crashes a session.
 */
import { Resolver } from 'node:dns/promises';
import { createRequire } from 'node:module';
import { Readable } from 'node:stream';
import type { AuthenticateOptions, AuthenticateResult } from 'mailauth';
import { SubmissionRefused } from './screen.ts';

/** What to do with a result: add the header only, or refuse the message `550 5.7.1`. */
export type InboundDisposition = 'tag' | 'reject';

/** `(name, rrtype)` → the records, as node's `dns.promises.resolve` answers (TXT: string[][]). */
export type InboundResolver = (name: string, rrtype: string) => Promise<unknown>;

/** The `inbound` section of the config (docs/runtime.md, "Checks on received mail"). */
export interface InboundAuthOptions {
  /** Check mail from the client networks too (default false: only mail from outside them). */
  checkClientNetworks?: boolean;
  /** DMARC fail where the domain publishes `p=reject` (default `reject`). */
  dmarcReject?: InboundDisposition;
  /** DMARC fail where the domain publishes `p=quarantine` (default `tag`). */
  dmarcQuarantine?: InboundDisposition;
  /** SPF `fail` (`-all` matched; default `tag`). */
  spfFail?: InboundDisposition;
  /** Bound on each DNS lookup, milliseconds (default 5000). */
  timeoutMs?: number;
  /** The DNS (default: the system's resolver, or the config's `dns.resolver` address). */
  resolver?: InboundResolver;
}

/** The SMTP transaction the message came in: client address, HELO name, MAIL FROM. */
export interface InboundOrigin {
  ip: string;
  helo: string | undefined;
  mailFrom: string;
}

/** Checks one received message; see {@link createInboundAuth}. */
export type InboundCheck = (message: readonly Buffer[], origin: InboundOrigin) => Promise<Buffer[]>;

/** DKIM signatures verified per message (the topmost ones): each costs a DNS lookup and a hash of the body. */
export const MAX_DKIM_SIGNATURES = 8;
/** The whole check, in lookups' time: past `timeoutMs` times this, the message is tagged `none (checks timed out)`. */
const CHECK_TIMEOUT_LOOKUPS = 4;

const require = createRequire(import.meta.url);
const { authenticate } = require('mailauth') as { authenticate(input: Readable, opts: AuthenticateOptions): Promise<AuthenticateResult> };

/**
 * The check for this server (`authservId`: its EHLO name). It verifies `message` (its
 * first chunk the header block, as takeControlHeadersOfChunks leaves it; only its first
 * {@link MAX_DKIM_SIGNATURES} DKIM signatures) and returns it without our-authserv-id
 * `Authentication-Results` fields and with the new header on top; or throws
 * {@link SubmissionRefused} when a `reject` disposition applies.
 */
export function createInboundAuth(options: InboundAuthOptions, authservId: string): InboundCheck {
  const timeoutMs = options.timeoutMs ?? 5000;
  const resolve = options.resolver ?? nodeResolver();
  const resolver = (name: string, rrtype: string) => withTimeout(resolve(name, rrtype), timeoutMs, `${name} ${rrtype}`) as Promise<string[][]>;
  return async (message, origin) => {
    const [head = Buffer.alloc(0), ...body] = message;
    let headers: string;
    try {
      let signatures = 0;
      const checked = [dropFields(head, (f) => /^dkim-signature[ \t]*:/i.test(f) && ++signatures > MAX_DKIM_SIGNATURES), ...body];
      const opts: AuthenticateOptions = { ip: origin.ip.replace(/^::ffff:(?=\d+\.)/i, ''), helo: origin.helo, sender: origin.mailFrom, mta: authservId, resolver, disableBimi: true };
      const result = await withTimeout(authenticate(Readable.from(checked), opts), CHECK_TIMEOUT_LOOKUPS * timeoutMs, 'the checks');
      const refusal = refusalOf(result, options);
      if (refusal) throw new SubmissionRefused(550, refusal);
      headers = result.headers;
    } catch (e) {
      if (e instanceof SubmissionRefused) throw e;
      const why = (e as { code?: string }).code === 'ETIMEOUT' ? 'timed out' : 'failed';
      headers = `Authentication-Results: ${authservId}; none (checks ${why})\r\n`;
    }
    return [Buffer.from(headers, 'latin1'), withoutOurResults(head, authservId), ...body];
  };
}

/** The `550 5.7.1` text when a `reject` disposition applies to `result`, else undefined. */
export function refusalOf(result: Pick<AuthenticateResult, 'spf' | 'dmarc'>, options: InboundAuthOptions): string | undefined {
  const dmarc = result.dmarc;
  if (dmarc && dmarc.status.result === 'fail') {
    const policy = dmarc.policy;
    const disposition = policy === 'reject' ? (options.dmarcReject ?? 'reject') : policy === 'quarantine' ? (options.dmarcQuarantine ?? 'tag') : 'tag';
    if (disposition === 'reject') return `5.7.1 DMARC policy of ${dmarc.domain} (p=${policy}) rejects this message: it is not authenticated for that domain`;
  }
  const spf = result.spf;
  if (spf && spf.status.result === 'fail' && (options.spfFail ?? 'tag') === 'reject') return `5.7.1 SPF of ${spf.domain} does not permit ${spf['client-ip'] ?? 'this address'} to send for it`;
  return undefined;
}

/**
 * The header block `head` without the `Authentication-Results` fields whose authserv-id is
 * `authservId` (case-insensitive, RFC 8601 §2.2; CFWS before it allowed); `head` itself
 * when there is none. Fields are split at line breaks not followed by space or tab.
 */
export function withoutOurResults(head: Buffer, authservId: string): Buffer {
  return dropFields(head, (field) => {
    const m = /^authentication-results[ \t]*:((?:[ \t\r\n]|\([^()]*\))*)([^;\s()]+)/i.exec(field);
    return m !== null && m[2]!.toLowerCase() === authservId.toLowerCase();
  });
}

/**
 * The header block `head` without the fields `drop` says (each given whole, folded lines
 * and line break included, in order); `head` itself when none. A field ends at a line
 * break not followed by space or tab (takeControlHeaders left no bare CR to disagree on).
 */
function dropFields(head: Buffer, drop: (field: string) => boolean): Buffer {
  const fields = head.toString('latin1').split(/(?<=\n)(?![ \t])/);
  const kept = fields.filter((f) => !drop(f));
  return kept.length === fields.length ? head : Buffer.from(kept.join(''), 'latin1');
}

/** `promise`, or a DNS-like error (mailauth reads it as a temporary failure) after `ms`. */
function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(Object.assign(new Error(`${what}: no answer in ${ms} ms`), { code: 'ETIMEOUT' })), ms);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

/** node's resolver: the system's servers, or the one at `address` (`host:port`, as config `dns.resolver` gives it). */
export function nodeResolver(address?: string): InboundResolver {
  const r = new Resolver({ timeout: 5000, tries: 2 });
  if (address) r.setServers([address]);
  return (name, rrtype) => r.resolve(name, rrtype);
}
