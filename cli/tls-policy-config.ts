/**
 * `petrel run`'s outbound TLS policy from the config's `dns` and `tls` sections
 * (docs/runtime.md, "Outbound TLS: MTA-STS, DANE, TLS-RPT"): the validating resolver,
 * MTA-STS discovery with its cache file, the extra CAs, and the TLS-RPT writer.
 * A bad value is a UsageError that names the key. Without either section there is no TLS
 * policy: every session follows the policy's `tls` mode, as before.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { createMtaSts, createSecureDns, createTlsPolicy, httpsPolicyFetch, lookupThrough, systemTxt, txtThrough, type SecureDns, type TlsPolicy } from '../runtime/deliver/index.ts';
import { openTlsRpt, type TlsRptWriter } from '../runtime/observe/index.ts';
import { UsageError } from './common.ts';

/** The config's `dns` section. */
export interface DnsConfig {
  resolver?: string;
  timeoutMs?: number;
}

/** The config's `tls` section. */
export interface TlsConfig {
  mtaSts?: { enabled?: boolean; cacheFile?: string; fetchTimeoutSeconds?: number; httpsPort?: number };
  extraCaFiles?: string[];
  reportDir?: string;
  reportOrganization?: string;
  reportContact?: string;
}

/** The most bytes read from one extra CA file. */
const MAX_CA_FILE_BYTES = 1 << 20;

/**
 * Builds the TLS policy `petrel run` hands the runtime; `at` resolves a configured path,
 * `spoolDir` holds the MTA-STS cache by default. The TLS-RPT writer is the caller's to close.
 */
export function tlsPolicyFromConfig(dns: DnsConfig | undefined, tls: TlsConfig | undefined, at: (p: string) => string, spoolDir: string): { tlsPolicy: TlsPolicy; tlsrpt: TlsRptWriter } {
  let resolver: SecureDns | undefined;
  if (dns?.resolver !== undefined) {
    try {
      resolver = createSecureDns(dns.resolver, { timeoutMs: dns.timeoutMs ?? 5_000 });
    } catch (e) {
      throw new UsageError(`config: \`dns.resolver\`: ${(e as Error).message}`);
    }
  }
  const extraCa = (tls?.extraCaFiles ?? []).map((file, i) => {
    let pem: string;
    try {
      const buffer = readFileSync(at(file));
      if (buffer.length > MAX_CA_FILE_BYTES) throw new Error(`larger than ${MAX_CA_FILE_BYTES} bytes`);
      pem = buffer.toString('utf8');
    } catch (e) {
      throw new UsageError(`config: cannot read \`tls.extraCaFiles.${i}\` ${file}: ${(e as Error).message}`);
    }
    if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new UsageError(`config: \`tls.extraCaFiles.${i}\` ${file} holds no PEM certificate`);
    return pem;
  });
  const sts = tls?.mtaSts ?? {};
  const mtaSts =
    tls === undefined || sts.enabled === false
      ? undefined
      : createMtaSts({
          txt: resolver ? txtThrough(resolver) : systemTxt(),
          fetch: httpsPolicyFetch({ ca: extraCa, port: sts.httpsPort ?? 443, timeoutMs: (sts.fetchTimeoutSeconds ?? 60) * 1000, ...(resolver ? { lookup: lookupThrough(resolver) } : {}) }),
          cacheFile: sts.cacheFile ? at(sts.cacheFile) : path.join(spoolDir, 'mta-sts.json'),
        });
  const tlsrpt = openTlsRpt(at(tls?.reportDir ?? 'var/tlsrpt'), { ...(tls?.reportOrganization ? { organization: tls.reportOrganization } : {}), ...(tls?.reportContact ? { contact: tls.reportContact } : {}) });
  const tlsPolicy = createTlsPolicy({ ...(resolver ? { dns: resolver } : {}), ...(mtaSts ? { mtaSts } : {}), extraCa, report: (s) => tlsrpt.record(s) });
  return { tlsPolicy, tlsrpt };
}
