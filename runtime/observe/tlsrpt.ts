/**
 * TLS reporting (RFC 8460): one aggregate report per recipient (policy) domain and UTC
 * day, written as the RFC's JSON (§4.4) to `<dir>/<YYYY-MM-DD>/<domain>.json`: for every
 * policy a session ran under (`sts`, `tlsa`, or `no-policy-found` when discovery failed),
 * the successful and failed session counts and the failure details grouped by result
 * type, sending IP, MX host, receiving IP and reason. Sending the reports to the domain's
 * `rua` is not done; the files are what a sender or a cron job mails.
 *
 * Files are rewritten whole (temporary file + rename) every `flushMs` and on `close`;
 * a day's file already on disk is read back before the first session of that domain and
 * day is added, so counts go on across a restart. Bounded: `MAX_POLICIES` per report and
 * `MAX_FAILURE_DETAILS` per policy (more are counted in the summary only), `MAX_REPORTS`
 * in memory (the oldest day's are written and dropped first).
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { isoTime, printable } from './text.ts';

/** RFC 8460 §4.3 result types. */
export type TlsRptFailureType =
  | 'starttls-not-supported'
  | 'certificate-host-mismatch'
  | 'certificate-expired'
  | 'certificate-not-trusted'
  | 'validation-failure'
  | 'tlsa-invalid'
  | 'dnssec-invalid'
  | 'dane-required'
  | 'sts-policy-fetch-error'
  | 'sts-policy-invalid'
  | 'sts-webpki-invalid';

/** One session (or one host refused before connecting) under a recipient domain's policy. */
export interface TlsRptSession {
  at: number;
  /** The policy domain: the recipient domain. */
  domain: string;
  policyType: 'sts' | 'tlsa' | 'no-policy-found';
  /** The policy as fetched (MTA-STS lines) or the TLSA records in presentation form. */
  policyStrings: string[];
  /** MTA-STS `mx` patterns. */
  mxPatterns?: string[];
  mxHost: string;
  sendingIp?: string;
  receivingIp?: string;
  /** Absent: a successful session. */
  failure?: { type: TlsRptFailureType; reason: string };
}

export interface TlsRptWriter {
  record(session: TlsRptSession): void;
  /** Writes every report changed since the last flush. */
  flush(): void;
  /** Flushes and stops the timer. */
  close(): void;
}

export interface TlsRptOptions {
  /** `organization-name` of the reports. */
  organization?: string;
  /** `contact-info`. */
  contact?: string;
  /** Default 60 s; 0: every record is written at once. */
  flushMs?: number;
}

export const MAX_POLICIES = 16;
export const MAX_FAILURE_DETAILS = 256;
export const MAX_REPORTS = 10_000;

interface FailureDetail {
  'result-type': TlsRptFailureType;
  'sending-mta-ip'?: string;
  'receiving-mx-hostname': string;
  'receiving-ip'?: string;
  'failed-session-count': number;
  'failure-reason-code': string;
}
interface PolicyReport {
  policy: { 'policy-type': string; 'policy-string': string[]; 'policy-domain': string; 'mx-host'?: string[] };
  summary: { 'total-successful-session-count': number; 'total-failure-session-count': number };
  'failure-details': FailureDetail[];
}
/** The RFC 8460 §4.4 report. */
export interface TlsRptReport {
  'organization-name': string;
  'date-range': { 'start-datetime': string; 'end-datetime': string };
  'contact-info': string;
  'report-id': string;
  policies: PolicyReport[];
}

/** A file name for a domain: itself when it is a plain host name, else a hash (names come from recipient addresses). */
export function reportFileName(domain: string): string {
  return /^[a-z0-9_-]+(\.[a-z0-9_-]+)*$/.test(domain) && domain.length <= 253 ? `${domain}.json` : `domain-${createHash('sha256').update(domain).digest('hex').slice(0, 32)}.json`;
}

export function openTlsRpt(dir: string, options: TlsRptOptions = {}): TlsRptWriter {
  const organization = options.organization ?? 'petrel';
  const flushMs = options.flushMs ?? 60_000;
  const reports = new Map<string, { file: string; report: TlsRptReport; dirty: boolean }>();
  let timer: NodeJS.Timeout | undefined;

  function reportFor(day: string, domain: string) {
    const key = `${day}|${domain}`;
    let entry = reports.get(key);
    if (entry) return entry;
    const file = path.join(dir, day, reportFileName(domain));
    entry = { file, report: readReport(file) ?? newReport(day, domain), dirty: true };
    reports.set(key, entry);
    while (reports.size > MAX_REPORTS) {
      const [oldest, e] = reports.entries().next().value!;
      if (e.dirty) write(e);
      reports.delete(oldest);
    }
    return entry;
  }

  function newReport(day: string, domain: string): TlsRptReport {
    return {
      'organization-name': organization,
      'date-range': { 'start-datetime': `${day}T00:00:00Z`, 'end-datetime': `${day}T23:59:59Z` },
      'contact-info': options.contact ?? '',
      'report-id': `${day}_${domain}@${organization}`,
      policies: [],
    };
  }

  function write(e: { file: string; report: TlsRptReport; dirty: boolean }) {
    mkdirSync(path.dirname(e.file), { recursive: true });
    writeFileSync(`${e.file}.tmp`, JSON.stringify(e.report, null, 2) + '\n');
    renameSync(`${e.file}.tmp`, e.file);
    e.dirty = false;
  }

  function flush(): void {
    if (timer) clearTimeout(timer);
    timer = undefined;
    for (const e of reports.values()) if (e.dirty) write(e);
    // Days before today are finished: keep only today's reports in memory.
    const today = isoTime(Date.now()).slice(0, 10);
    for (const [key] of reports) if (key.slice(0, 10) < today) reports.delete(key);
  }

  return {
    record(s) {
      const entry = reportFor(isoTime(s.at).slice(0, 10), s.domain);
      const strings = s.policyStrings.map((l) => printable(l, 1024));
      let p = entry.report.policies.find((x) => x.policy['policy-type'] === s.policyType && JSON.stringify(x.policy['policy-string']) === JSON.stringify(strings));
      if (!p) {
        if (entry.report.policies.length >= MAX_POLICIES) return;
        p = { policy: { 'policy-type': s.policyType, 'policy-string': strings, 'policy-domain': s.domain, ...(s.mxPatterns ? { 'mx-host': s.mxPatterns } : {}) }, summary: { 'total-successful-session-count': 0, 'total-failure-session-count': 0 }, 'failure-details': [] };
        entry.report.policies.push(p);
      }
      entry.dirty = true;
      if (!s.failure) p.summary['total-successful-session-count']++;
      else {
        p.summary['total-failure-session-count']++;
        const detail: Omit<FailureDetail, 'failed-session-count'> = { 'result-type': s.failure.type, ...(s.sendingIp ? { 'sending-mta-ip': s.sendingIp } : {}), 'receiving-mx-hostname': s.mxHost, ...(s.receivingIp ? { 'receiving-ip': s.receivingIp } : {}), 'failure-reason-code': printable(s.failure.reason, 512) };
        const same = p['failure-details'].find((d) => d['result-type'] === detail['result-type'] && d['sending-mta-ip'] === detail['sending-mta-ip'] && d['receiving-mx-hostname'] === detail['receiving-mx-hostname'] && d['receiving-ip'] === detail['receiving-ip'] && d['failure-reason-code'] === detail['failure-reason-code']);
        if (same) same['failed-session-count']++;
        else if (p['failure-details'].length < MAX_FAILURE_DETAILS) p['failure-details'].push({ ...detail, 'failed-session-count': 1 });
      }
      if (flushMs === 0) flush();
      // A timed flush must not throw from a timer: a failed write stays dirty and is tried at the next one.
      else timer ??= setTimeout(() => {
        try {
          flush();
        } catch {
          timer = undefined;
        }
      }, flushMs);
    },
    flush,
    close() {
      flush();
    },
  };
}

/** A report file written earlier (to go on counting), or undefined when absent or unreadable. */
function readReport(file: string): TlsRptReport | undefined {
  try {
    const r = JSON.parse(readFileSync(file, 'utf8')) as TlsRptReport;
    return Array.isArray(r.policies) ? { ...r, policies: r.policies.slice(0, MAX_POLICIES) } : undefined;
  } catch {
    return undefined;
  }
}
