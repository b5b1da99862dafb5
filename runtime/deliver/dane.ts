/**
 * DANE for SMTP (RFC 7672): the TLSA records of an MX host, and whether the certificate
 * chain a server presented after STARTTLS matches them.
 *
 * - Only a DNSSEC-validated answer counts (AD from the local validating resolver,
 *   secure-dns.ts); an insecure answer is as if there were no records.
 * - Usable records are DANE-TA(2) and DANE-EE(3), selector 0 (certificate) or 1 (SPKI),
 *   matching type 0 (full), 1 (SHA-256) or 2 (SHA-512) — RFC 7672 §3.1; PKIX-TA(0) and
 *   PKIX-EE(1) are unusable for SMTP (§3.1.3).
 * - DANE-EE: the leaf certificate (or its key) matches; names and dates are not checked
 *   (§3.1.1). DANE-TA: a certificate of the presented chain matches, the leaf chains to it
 *   by signature, is within its dates, and names the MX host (§3.2.2).
 *
 * `matchDane` is pure and takes plain data, so it runs where the TLS socket is (a delivery
 * worker thread, smtp-client.ts).
 */
import { createHash, X509Certificate } from 'node:crypto';
import type { SecureDns } from './secure-dns.ts';

/** One TLSA record, as data that crosses a worker thread boundary. */
export interface TlsaRecord {
  usage: number;
  selector: number;
  matchingType: number;
  /** The certificate association data, hex. */
  data: string;
}

/** What DANE says about one MX host. */
export type DaneLookup =
  /** No validated TLSA records (none, or an insecure answer): DANE does not apply. */
  | { kind: 'none'; secure: boolean }
  /** Validated records, some usable: TLS is mandatory and must authenticate against them. */
  | { kind: 'dane'; records: TlsaRecord[]; name: string }
  /** Validated records, none usable: TLS opportunistically, unauthenticated (§2.2). */
  | { kind: 'unusable'; records: TlsaRecord[]; name: string }
  /** The lookup failed (SERVFAIL: bogus or unreachable): the host is not to be used now (§2.2). */
  | { kind: 'failed'; reason: string };

/** How DANE authenticated a session. */
export type DaneVerified = 'dane-ee' | 'dane-ta';

/** TLSA records at most, per host: more are a misconfigured or hostile zone. */
const MAX_TLSA = 64;

/** Reads TLSA RDATA. */
export function parseTlsa(rdata: Buffer): TlsaRecord | undefined {
  if (rdata.length < 3) return undefined;
  return { usage: rdata[0]!, selector: rdata[1]!, matchingType: rdata[2]!, data: rdata.subarray(3).toString('hex') };
}

/** Whether RFC 7672 lets an SMTP client use this record (and the data length fits its hash). */
export function usableTlsa(r: TlsaRecord): boolean {
  const length = { 0: undefined, 1: 64, 2: 128 }[r.matchingType as 0 | 1 | 2];
  return (r.usage === 2 || r.usage === 3) && (r.selector === 0 || r.selector === 1) && [0, 1, 2].includes(r.matchingType) && r.data.length > 0 && (length === undefined || r.data.length === length);
}

/** The TLSA records of `_port._tcp.host`, as DANE reads them. */
export async function lookupTlsa(dns: SecureDns, host: string, port: number): Promise<DaneLookup> {
  const name = `_${port}._tcp.${host}`;
  const answer = await dns.query(name, 'TLSA');
  if (!answer.ok) return { kind: 'failed', reason: `TLSA lookup for ${name} failed (${answer.reason})` };
  if (!answer.authenticated || answer.records.length === 0) return { kind: 'none', secure: answer.authenticated };
  const records = answer.records.slice(0, MAX_TLSA).flatMap((r) => parseTlsa(r) ?? []);
  const usable = records.filter(usableTlsa);
  return usable.length > 0 ? { kind: 'dane', records: usable, name: host } : { kind: 'unusable', records, name: host };
}

function associated(cert: X509Certificate, r: TlsaRecord): boolean {
  const selected = r.selector === 0 ? cert.raw : cert.publicKey.export({ type: 'spki', format: 'der' });
  const data = r.matchingType === 0 ? selected : createHash(r.matchingType === 1 ? 'sha256' : 'sha512').update(selected).digest();
  return data.toString('hex') === r.data.toLowerCase();
}

/**
 * Whether the chain the server presented (DER, leaf first) matches `records` for MX host
 * `name`: `dane-ee` or `dane-ta`, or null with the reason. `now` for the DANE-TA date check.
 */
export function matchDane(chain: readonly Buffer[], records: readonly TlsaRecord[], name: string, now: number): { verified: DaneVerified } | { verified: null; reason: string } {
  let certs: X509Certificate[];
  try {
    certs = chain.map((der) => new X509Certificate(der));
  } catch {
    return { verified: null, reason: 'the server presented an unreadable certificate' };
  }
  const leaf = certs[0];
  if (!leaf) return { verified: null, reason: 'the server presented no certificate' };
  if (records.some((r) => r.usage === 3 && associated(leaf, r))) return { verified: 'dane-ee' };
  const taRecords = records.filter((r) => r.usage === 2);
  if (taRecords.length === 0) return { verified: null, reason: 'certificate matches no DANE-EE TLSA record' };
  // The path leaf → issuer → … as presented; the trust anchor is any of it (but the leaf) matching a DANE-TA record.
  for (let i = 1; i < certs.length; i++) {
    const issuer = certs[i]!;
    const below = certs[i - 1]!;
    if (!below.checkIssued(issuer) || !below.verify(issuer.publicKey)) break;
    if (!taRecords.some((r) => associated(issuer, r))) continue;
    if (Date.parse(leaf.validFrom) > now || Date.parse(leaf.validTo) < now) return { verified: null, reason: 'certificate is outside its validity dates' };
    if (leaf.checkHost(name, { subject: 'default' }) === undefined) return { verified: null, reason: `certificate does not name ${name}` };
    return { verified: 'dane-ta' };
  }
  return { verified: null, reason: 'certificate chain matches no TLSA record' };
}
