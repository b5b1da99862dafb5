/**
 * MTA-STS (RFC 8461): a recipient domain's policy of which MX hosts may receive its mail
 * and that they must present a valid certificate.
 *
 * Discovery (§3, §5.1): the `_mta-sts.<domain>` TXT record (`v=STSv1; id=…`); when its id
 * differs from the cached policy's, or no unexpired policy is cached, the policy is fetched
 * from `https://mta-sts.<domain>/.well-known/mta-sts.txt` — certificate verified against
 * the system's CAs plus any configured extra CA, no redirects, 200 only, at most
 * `MAX_POLICY_BYTES`, within `fetchTimeoutMs` — and cached for its `max_age`. A failed TXT
 * lookup or fetch keeps using an unexpired cached policy (§5.1); without one the domain has
 * no policy (the failure is kept for TLS-RPT). The cache is a JSON file, so policies
 * survive a restart (a policy's point is to protect the first connection after one).
 *
 * No module state: `createMtaSts` gives one cache per runtime.
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import type { LookupFunction } from 'node:net';
import path from 'node:path';
import { rootCertificates } from 'node:tls';

/** A parsed policy (§3.2). */
export interface MtaStsPolicy {
  mode: 'enforce' | 'testing' | 'none';
  /** MX patterns: `mx.example.com` or `*.example.com` (one leftmost label). */
  mx: string[];
  /** Seconds. */
  maxAge: number;
  /** The policy's lines as fetched, for TLS-RPT's `policy-string`. */
  lines: string[];
}

/** What applies to a domain now: its policy (and its id), or none and why. */
export type MtaStsLookup = { kind: 'policy'; policy: MtaStsPolicy; id: string } | { kind: 'none'; failure?: { type: 'sts-policy-fetch-error' | 'sts-policy-invalid' | 'sts-webpki-invalid'; reason: string } };

/** TXT lookups: the texts at a name (none for NXDOMAIN/NODATA), or why the lookup failed. */
export type TxtLookup = (name: string) => Promise<{ ok: true; texts: string[] } | { ok: false; reason: string }>;

/** Fetches a domain's policy text. */
export type PolicyFetch = (domain: string) => Promise<{ ok: true; text: string } | { ok: false; reason: string; webpki: boolean }>;

export interface MtaStsOptions {
  txt: TxtLookup;
  fetch: PolicyFetch;
  /** The cache file (JSON); none: memory only. */
  cacheFile?: string;
  clock?: () => number;
  /** How long a TXT answer is trusted before it is asked again, ms (default 5 min). */
  txtTtlMs?: number;
}

export interface MtaSts {
  lookup(domain: string): Promise<MtaStsLookup>;
  /** Policies cached now. */
  readonly size: number;
}

/** The largest policy read (RFC 8461 §3.3 suggests 64 KB). */
export const MAX_POLICY_BYTES = 64 * 1024;
/** RFC 8461 §3.2: max_age at most 31557600 s (about a year). */
const MAX_AGE_LIMIT = 31_557_600;
/** Cached policies (and TXT answers) at most; the oldest go first. */
const MAX_CACHED = 100_000;

/** Parses a policy body; the reason names the problem when it is not one. */
export function parseMtaStsPolicy(text: string): { ok: true; policy: MtaStsPolicy } | { ok: false; reason: string } {
  const lines = text.split(/\r?\n/).filter((l) => l.trim() !== '');
  const fields = new Map<string, string[]>();
  for (const line of lines) {
    const m = /^([A-Za-z0-9_]+)\s*:\s*(.*?)\s*$/.exec(line);
    if (!m) return { ok: false, reason: `not a key: value line: \`${line.slice(0, 80)}\`` };
    const key = m[1]!.toLowerCase();
    fields.set(key, [...(fields.get(key) ?? []), m[2]!]);
  }
  const one = (key: string) => fields.get(key)?.[0];
  if (one('version') !== 'STSv1') return { ok: false, reason: 'version is not STSv1' };
  const mode = one('mode');
  if (mode !== 'enforce' && mode !== 'testing' && mode !== 'none') return { ok: false, reason: `mode \`${mode ?? ''}\` is not enforce, testing or none` };
  const maxAge = Number(one('max_age'));
  if (!/^\d{1,10}$/.test(one('max_age') ?? '') || maxAge > MAX_AGE_LIMIT) return { ok: false, reason: 'max_age is not a number of seconds up to 31557600' };
  const mx = (fields.get('mx') ?? []).map((p) => p.toLowerCase().replace(/\.$/, ''));
  if (mx.some((p) => !/^(\*\.)?[a-z0-9-]+(\.[a-z0-9-]+)+$/.test(p))) return { ok: false, reason: 'an mx pattern is not a host name or *.name' };
  if (mode !== 'none' && mx.length === 0) return { ok: false, reason: 'no mx pattern' };
  return { ok: true, policy: { mode, mx, maxAge, lines } };
}

/** Whether MX host `host` matches one of the policy's patterns (§4.1: `*.` stands for exactly one label). */
export function mxAllowed(policy: MtaStsPolicy, host: string): boolean {
  const h = host.toLowerCase().replace(/\.$/, '');
  return policy.mx.some((p) => (p.startsWith('*.') ? h.endsWith(p.slice(1)) && !h.slice(0, -(p.length - 1)).includes('.') && h.length > p.length - 1 : h === p));
}

/** The `id` of the one `v=STSv1` TXT record, or why there is none (§3.1). */
export function stsRecordId(texts: readonly string[]): string | undefined {
  const sts = texts.filter((t) => /^v=STSv1\s*(;|$)/.test(t));
  if (sts.length !== 1) return undefined;
  return /(?:^|;)\s*id=([A-Za-z0-9]{1,32})\s*(?:;|$)/.exec(sts[0]!)?.[1];
}

interface Cached {
  id: string;
  policy: MtaStsPolicy;
  fetchedAt: number;
}

export function createMtaSts(options: MtaStsOptions): MtaSts {
  const clock = options.clock ?? Date.now;
  const txtTtlMs = options.txtTtlMs ?? 5 * 60_000;
  const cache = readCache(options.cacheFile);
  const txtSeen = new Map<string, { until: number; id: string | undefined | null }>();
  const pending = new Map<string, Promise<MtaStsLookup>>();

  const unexpired = (domain: string): Cached | undefined => {
    const c = cache.get(domain);
    return c && c.fetchedAt + c.policy.maxAge * 1000 > clock() ? c : undefined;
  };

  async function discover(domain: string): Promise<MtaStsLookup> {
    const now = clock();
    let seen = txtSeen.get(domain);
    if (!seen || seen.until <= now) {
      const txt = await options.txt(`_mta-sts.${domain}`);
      // null: the lookup failed (keep what is cached); undefined: no valid STSv1 record.
      seen = { until: now + txtTtlMs, id: txt.ok ? stsRecordId(txt.texts) : null };
      txtSeen.delete(domain);
      txtSeen.set(domain, seen);
      while (txtSeen.size > MAX_CACHED) txtSeen.delete(txtSeen.keys().next().value!);
    }
    const cached = unexpired(domain);
    if (seen.id === null || seen.id === undefined) return cached ? { kind: 'policy', policy: cached.policy, id: cached.id } : { kind: 'none' };
    if (cached && cached.id === seen.id) return { kind: 'policy', policy: cached.policy, id: cached.id };
    const fetched = await options.fetch(domain);
    const parsed = fetched.ok ? parseMtaStsPolicy(fetched.text) : undefined;
    if (!fetched.ok || !parsed?.ok) {
      if (cached) return { kind: 'policy', policy: cached.policy, id: cached.id };
      const failure = !fetched.ok ? { type: fetched.webpki ? ('sts-webpki-invalid' as const) : ('sts-policy-fetch-error' as const), reason: fetched.reason } : { type: 'sts-policy-invalid' as const, reason: (parsed as { reason: string }).reason };
      return { kind: 'none', failure };
    }
    cache.delete(domain);
    cache.set(domain, { id: seen.id, policy: parsed.policy, fetchedAt: clock() });
    while (cache.size > MAX_CACHED) cache.delete(cache.keys().next().value!);
    writeCache(options.cacheFile, cache);
    return { kind: 'policy', policy: parsed.policy, id: seen.id };
  }

  return {
    lookup(domain) {
      const name = domain.toLowerCase().replace(/\.$/, '');
      // Concurrent deliveries to one domain share one discovery.
      let p = pending.get(name);
      if (!p) {
        p = discover(name).finally(() => pending.delete(name));
        pending.set(name, p);
      }
      return p;
    },
    get size() {
      return cache.size;
    },
  };
}

/** The cache file's entries; an unreadable or malformed file is an empty cache (policies are fetched again). */
function readCache(file: string | undefined): Map<string, Cached> {
  const cache = new Map<string, Cached>();
  if (!file) return cache;
  let data: unknown;
  try {
    data = JSON.parse(readFileSync(file, 'utf8'));
  } catch {
    return cache;
  }
  if (typeof data !== 'object' || data === null) return cache;
  for (const [domain, entry] of Object.entries(data as Record<string, { id?: unknown; text?: unknown; fetchedAt?: unknown }>).slice(0, MAX_CACHED)) {
    if (typeof entry?.id !== 'string' || typeof entry.text !== 'string' || typeof entry.fetchedAt !== 'number') continue;
    const parsed = parseMtaStsPolicy(entry.text);
    if (parsed.ok) cache.set(domain, { id: entry.id, policy: parsed.policy, fetchedAt: entry.fetchedAt });
  }
  return cache;
}

/** Writes the cache whole, through a temporary file and a rename, so a crash leaves the old or the new file. */
function writeCache(file: string | undefined, cache: Map<string, Cached>): void {
  if (!file) return;
  const data = Object.fromEntries([...cache].map(([d, c]) => [d, { id: c.id, text: c.policy.lines.join('\n'), fetchedAt: c.fetchedAt }]));
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(`${file}.tmp`, JSON.stringify(data));
  renameSync(`${file}.tmp`, file);
}

export interface HttpsFetchOptions {
  /** Extra trusted CA certificates (PEM), besides the system's: for tests and private PKIs. */
  ca?: readonly string[];
  /** Default 443; another for tests. */
  port?: number;
  timeoutMs?: number;
  /** Resolves `mta-sts.<domain>` (default: the system's resolver). */
  lookup?: LookupFunction;
}

/** Fetches `https://mta-sts.<domain>/.well-known/mta-sts.txt` as RFC 8461 §3.3 says: validated certificate, no redirects, 200, text/plain, bounded. */
export function httpsPolicyFetch(options: HttpsFetchOptions = {}): PolicyFetch {
  const ca = options.ca && options.ca.length > 0 ? [...rootCertificates, ...options.ca] : undefined;
  const timeoutMs = options.timeoutMs ?? 60_000;
  return (domain) =>
    new Promise((resolve) => {
      const host = `mta-sts.${domain}`;
      let settled = false;
      const done = (r: Awaited<ReturnType<PolicyFetch>>) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        req.destroy();
        resolve(r);
      };
      const req = https.get({ host, servername: host, port: options.port ?? 443, path: '/.well-known/mta-sts.txt', ...(ca ? { ca } : {}), ...(options.lookup ? { lookup: options.lookup } : {}), headers: { 'user-agent': 'petrel' }, agent: false }, (res) => {
        const type = String(res.headers['content-type'] ?? '');
        if (res.statusCode !== 200) return done({ ok: false, webpki: false, reason: `${host} answered HTTP ${res.statusCode}` });
        if (!/^text\/plain\b/i.test(type)) return done({ ok: false, webpki: false, reason: `${host} sent ${type || 'no content type'}, not text/plain` });
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > MAX_POLICY_BYTES) done({ ok: false, webpki: false, reason: `${host}'s policy is larger than ${MAX_POLICY_BYTES} bytes` });
          else chunks.push(c);
        });
        res.on('end', () => done({ ok: true, text: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', (e) => done({ ok: false, webpki: false, reason: `${host}: ${e.message}` }));
      });
      const timer = setTimeout(() => done({ ok: false, webpki: false, reason: `${host} did not answer within ${timeoutMs} ms` }), timeoutMs);
      req.on('error', (e: NodeJS.ErrnoException) => done({ ok: false, webpki: /CERT|UNABLE_TO|ALTNAME|SELF_SIGNED/.test(e.code ?? ''), reason: `${host}: ${e.code ?? e.message}` }));
    });
}
