/**
 * Outbound TLS policy: how a session to one MX host of one recipient domain must be
 * secured, decided before connecting, and what became of it, for TLS-RPT.
 *
 * Precedence (docs/runtime.md, "Outbound TLS: MTA-STS, DANE, TLS-RPT"):
 * 1. DANE (RFC 7672), when a validating resolver is configured: validated, usable TLSA
 *    records for the MX host make TLS mandatory and authenticated by them; a failed TLSA
 *    lookup makes the host unusable now; unusable or no (or insecure) records fall through.
 * 2. MTA-STS (RFC 8461), when on: `enforce` delivers only to MX hosts the policy lists,
 *    with `verify` TLS (CA chain and MX name); `testing` delivers as the policy's `tls`
 *    says and records what would have failed; `none` falls through.
 * 3. The policy's own `tls` mode.
 *
 * A host refused before connecting gives a synthesized 4xx reply (LOCAL_REPLIES), so the
 * delivery goes on to the next MX and is deferred, never sent in clear.
 *
 * With a validating resolver, the MX host's address is looked up through it too (RFC 7672
 * §2.2.2 wants the address records secure), and the session connects to that address with
 * the MX name for SNI and verification; without one the system resolver connects by name.
 */
import net, { type LookupFunction } from 'node:net';
import { rootCertificates } from 'node:tls';
import type { TlsRptFailureType, TlsRptSession } from '../observe/index.ts';
import { lookupTlsa } from './dane.ts';
import { Resolver } from 'node:dns/promises';
import type { MtaSts, TxtLookup } from './mta-sts.ts';
import { mxAllowed } from './mta-sts.ts';
import { addressText, txtText, type SecureDns } from './secure-dns.ts';
import { LOCAL_REPLIES, type SessionOptions, type SessionResult, type SmtpSession } from './smtp-client.ts';

export interface TlsPolicyOptions {
  /** The local validating resolver: turns DANE on, and MX addresses are looked up through it. */
  dns?: SecureDns;
  /** MTA-STS discovery and cache: turns MTA-STS on. */
  mtaSts?: MtaSts;
  /** Extra trusted CA certificates (PEM) for MX verification, besides the system's (tests, private PKIs). */
  extraCa?: readonly string[];
  /** Each session's outcome under a policy, for TLS-RPT (observe/tlsrpt.ts). */
  report?: (session: TlsRptSession) => void;
  clock?: () => number;
}

export interface TlsPolicy {
  /** Opens a session to `options.host` for mail to `domain` through `transport`, under the domain's TLS policy. */
  open(transport: (o: SessionOptions) => Promise<SessionResult>, domain: string, options: SessionOptions): Promise<SessionResult>;
  /** Whether an idle session may carry mail for `domain`: only one opened for that domain (policies are per domain). */
  mayReuse(session: SmtpSession, domain: string): boolean;
}

/** What TLS-RPT calls the policy a session ran under. */
type Applied = Pick<TlsRptSession, 'policyType' | 'policyStrings' | 'mxPatterns'>;

export function createTlsPolicy(options: TlsPolicyOptions): TlsPolicy {
  const clock = options.clock ?? Date.now;
  const ca = options.extraCa && options.extraCa.length > 0 ? [...rootCertificates, ...options.extraCa] : undefined;
  const openedFor = new WeakMap<SmtpSession, string>();

  /** Records one session for TLS-RPT: `failure` undefined is a success. */
  function report(domain: string, applied: Applied, o: SessionOptions, failure?: { type: TlsRptFailureType; reason: string }, remote?: string) {
    options.report?.({ at: clock(), domain, ...applied, mxHost: o.mxHost ?? o.host, ...(o.localAddress ? { sendingIp: o.localAddress } : {}), ...(remote ? { receivingIp: remote } : net.isIP(o.host) ? { receivingIp: o.host } : {}), ...(failure ? { failure } : {}) });
  }

  type Open = (o: SessionOptions) => Promise<SessionResult>;
  const refuse = (reply: string): SessionResult => ({ ok: false, phase: 'connect', reply, synthesized: true });
  const remoteOf = (result: SessionResult) => (result.ok ? result.session.remoteAddress : undefined);

  async function open(transport: Open, recipientDomain: string, given: SessionOptions): Promise<SessionResult> {
    const domain = canonical(recipientDomain);
    const name = canonical(given.mxHost ?? given.host);
    const base: SessionOptions = { ...given, ...(ca ? { tlsOptions: { ...given.tlsOptions, ca } } : {}), ...(await addressOf(name, given)) };
    const result = (options.dns && !net.isIP(name) ? await underDane(options.dns, transport, domain, name, base) : undefined) ?? (options.mtaSts ? await underMtaSts(options.mtaSts, transport, domain, name, base) : undefined) ?? (await transport(base));
    if (result.ok) openedFor.set(result.session, domain);
    return result;
  }

  /** The session under DANE, or undefined when DANE does not apply to `name` (no, insecure or only unusable TLSA records). */
  async function underDane(dns: SecureDns, transport: Open, domain: string, name: string, base: SessionOptions): Promise<SessionResult | undefined> {
    const dane = await lookupTlsa(dns, name, base.port);
    const applied: Applied = { policyType: 'tlsa', policyStrings: dane.kind === 'dane' || dane.kind === 'unusable' ? dane.records.map((r) => `${r.usage} ${r.selector} ${r.matchingType} ${r.data}`) : [] };
    if (dane.kind === 'failed') {
      report(domain, applied, base, { type: 'tlsa-invalid', reason: dane.reason });
      return refuse(LOCAL_REPLIES.tlsaLookupFailed(dane.reason));
    }
    if (dane.kind !== 'dane') return undefined;
    const result = await transport({ ...base, mxHost: name, dane: { records: dane.records, name } });
    report(domain, applied, base, result.ok ? undefined : { type: failureType(result.reply, 'dane'), reason: result.reply }, remoteOf(result));
    return result;
  }

  /** The session under the domain's MTA-STS policy, or undefined when it has none (or `mode: none`). */
  async function underMtaSts(mtaSts: MtaSts, transport: Open, domain: string, name: string, base: SessionOptions): Promise<SessionResult | undefined> {
    const sts = await mtaSts.lookup(domain);
    if (sts.kind === 'none' && sts.failure) report(domain, { policyType: 'no-policy-found', policyStrings: [] }, base, { type: sts.failure.type, reason: sts.failure.reason });
    if (sts.kind !== 'policy' || sts.policy.mode === 'none') return undefined;
    const { policy } = sts;
    const applied: Applied = { policyType: 'sts', policyStrings: policy.lines, mxPatterns: policy.mx };
    const listed = mxAllowed(policy, name);
    if (policy.mode === 'enforce') {
      if (!listed) {
        const reply = LOCAL_REPLIES.mtaStsMxNotListed(name, domain);
        report(domain, applied, base, { type: 'validation-failure', reason: reply });
        return refuse(reply);
      }
      const result = await transport({ ...base, mxHost: name, tls: 'verify', verifyReason: 'mta-sts' });
      report(domain, applied, base, result.ok ? undefined : { type: failureType(result.reply, 'sts'), reason: result.reply }, remoteOf(result));
      return result;
    }
    // testing: deliver as the policy's tls says (in TLS when offered), and record what enforce would have refused.
    const result = await transport({ ...base, mxHost: name, tls: base.tls === 'disabled' ? 'opportunistic' : base.tls });
    const failure = !listed
      ? { type: 'validation-failure' as const, reason: LOCAL_REPLIES.mtaStsMxNotListed(name, domain) }
      : !result.ok
        ? { type: failureType(result.reply, 'sts'), reason: result.reply }
        : !result.session.tls
          ? { type: 'starttls-not-supported' as const, reason: LOCAL_REPLIES.tlsNotOffered }
          : !result.session.tls.authorized
            ? { type: 'certificate-not-trusted' as const, reason: `${name} presented a certificate that does not verify for its name` }
            : undefined;
    report(domain, applied, base, failure, remoteOf(result));
    return result;
  }

  /** The MX host's address from the validating resolver (`host` becomes it, `mxHost` the name); nothing to change without one or without an answer. */
  async function addressOf(name: string, given: SessionOptions): Promise<Partial<SessionOptions>> {
    if (!options.dns || net.isIP(given.host) || net.isIP(name)) return {};
    const family = given.localAddress ? net.isIP(given.localAddress) : 4;
    const answer = await options.dns.query(name, family === 6 ? 'AAAA' : 'A');
    const address = answer.ok ? answer.records.map(addressText)[0] : undefined;
    return address ? { host: address, mxHost: name } : {};
  }

  return {
    open,
    mayReuse: (session, domain) => openedFor.get(session) === canonical(domain),
  };
}

/** A DNS name as compared: lower case, no final dot. */
const canonical = (name: string) => name.toLowerCase().replace(/\.$/, '');

/** The TLS-RPT result type (RFC 8460 §4.3) of a session that failed under a policy, from its synthesized reply. */
function failureType(reply: string, policy: 'sts' | 'dane'): TlsRptFailureType {
  if (reply === LOCAL_REPLIES.tlsNotOffered) return 'starttls-not-supported';
  if (/does not match the TLSA records/.test(reply)) return 'validation-failure';
  if (/HOSTNAME|ALTNAME/.test(reply)) return 'certificate-host-mismatch';
  if (/EXPIRED|NOT_YET_VALID/.test(reply)) return 'certificate-expired';
  if (/^421 4\.7\.5 TLS certificate not trusted/.test(reply)) return policy === 'sts' ? 'certificate-not-trusted' : 'validation-failure';
  return 'validation-failure';
}

/** A `lookup` for node:https that resolves through `dns` (the MTA-STS policy host's address), falling back to nothing else. */
export function lookupThrough(dns: SecureDns): LookupFunction {
  return (hostname, opts, callback) => {
    void dns.query(hostname, 'A').then((answer) => {
      const address = answer.ok ? answer.records.map(addressText)[0] : undefined;
      const cb = callback as (err: NodeJS.ErrnoException | null, address: string | { address: string; family: number }[], family?: number) => void;
      if (!address) return cb(Object.assign(new Error(`cannot resolve ${hostname}: ${answer.ok ? 'no address' : answer.reason}`), { code: 'ENOTFOUND' }), '', 4);
      if ((opts as { all?: boolean }).all) cb(null, [{ address, family: 4 }]);
      else cb(null, address, 4);
    });
  };
}

/** TXT lookups (MTA-STS discovery) through the configured resolver. */
export function txtThrough(dns: SecureDns): TxtLookup {
  return async (name) => {
    const answer = await dns.query(name, 'TXT');
    return answer.ok ? { ok: true, texts: answer.records.map(txtText) } : { ok: false, reason: answer.reason };
  };
}

/** TXT lookups through the system's resolver (no validating resolver configured): MTA-STS does not need DNSSEC. */
export function systemTxt(timeoutMs = 5_000): TxtLookup {
  const resolver = new Resolver({ timeout: timeoutMs, tries: 2 });
  return async (name) => {
    try {
      return { ok: true, texts: (await resolver.resolveTxt(name)).map((parts) => parts.join('')) };
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? 'EUNKNOWN';
      return code === 'ENODATA' || code === 'ENOTFOUND' ? { ok: true, texts: [] } : { ok: false, reason: `TXT ${name}: ${code}` };
    }
  };
}
