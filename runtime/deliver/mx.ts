/**
 * MX resolution for delivery: which hosts receive mail for a domain, in the order to
 * try them (RFC 5321 §5.1), with a cache, and a static override for tests and staging.
 *
 * - MX records sorted by preference; hosts of equal preference in random order (the
 *   RFC asks for load spreading; the random source is injectable for tests).
 * - No MX record: the domain's own address records (the "implicit MX", RFC 5321 §5.1).
 * - A null MX (one record, exchange `.`, RFC 7505): the domain accepts no mail — a
 *   permanent failure, never retried.
 * - NXDOMAIN: permanent (`bad-domain`); any other DNS failure (SERVFAIL, timeout,
 *   refused): temporary, retried later.
 * - Answers and permanent failures are cached for `ttlMs` (node:dns does not expose MX
 *   TTLs), temporary failures for `negativeTtlMs`.
 *
 * No module state: build one resolver per runtime and pass it where it is needed.
 */
import { Resolver } from 'node:dns/promises';

/** One host to try, in order. */
export interface MxHost {
  host: string;
  port: number;
  preference: number;
}

export type MxAnswer =
  | { ok: true; hosts: MxHost[]; via: 'mx' | 'implicit' | 'override' }
  | { ok: false; permanent: boolean; reason: string; code: string };

/** The subset of `node:dns/promises` Resolver this uses. */
export interface DnsClient {
  resolveMx(name: string): Promise<{ exchange: string; priority: number }[]>;
  resolve4(name: string): Promise<string[]>;
  resolve6(name: string): Promise<string[]>;
}

export interface MxResolverOptions {
  /** DNS servers (`host` or `host:port`); default: the system's. */
  servers?: string[];
  /**
   * Static routing: domain (or `*` for every domain) → `host:port` or `host`, or several
   * separated by commas, in preference order (`"127.0.0.1:2601, 127.0.0.1:2602"`). Wins
   * over DNS.
   */
  override?: Record<string, string>;
  /** Port to deliver to when the override or DNS gives none. */
  port?: number;
  ttlMs?: number;
  negativeTtlMs?: number;
  /** Per-query timeout, milliseconds. */
  timeoutMs?: number;
  clock?: () => number;
  random?: () => number;
  /** Use this client instead of a node:dns Resolver (for another transport). */
  client?: DnsClient;
}

export interface MxResolver {
  resolve(domain: string): Promise<MxAnswer>;
  /** Drops cached answers (all, or one domain's). */
  forget(domain?: string): void;
  /** Cache size, for status pages. */
  readonly size: number;
}

const PERMANENT = new Set(['ENOTFOUND', 'NXDOMAIN']);
const NO_DATA = new Set(['ENODATA', 'ENOTFOUND']);

/** Parses `host`, `host:port` or `[v6]:port`. */
function hostPort(value: string, defaultPort: number): { host: string; port: number } {
  const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(value);
  if (v6) return { host: v6[1]!, port: v6[2] ? Number(v6[2]) : defaultPort };
  const i = value.lastIndexOf(':');
  if (i > 0 && value.indexOf(':') === i) return { host: value.slice(0, i), port: Number(value.slice(i + 1)) };
  return { host: value, port: defaultPort };
}

export function createMxResolver(options: MxResolverOptions = {}): MxResolver {
  const port = options.port ?? 25;
  const ttlMs = options.ttlMs ?? 5 * 60_000;
  const negativeTtlMs = options.negativeTtlMs ?? 60_000;
  const clock = options.clock ?? Date.now;
  const random = options.random ?? Math.random;
  const override = new Map(Object.entries(options.override ?? {}).map(([k, v]) => [k.toLowerCase(), v]));
  let client = options.client;
  if (!client) {
    const resolver = new Resolver({ timeout: options.timeoutMs ?? 5000, tries: 2 });
    if (options.servers) resolver.setServers(options.servers);
    client = resolver;
  }
  const dns = client;
  const cache = new Map<string, { until: number; answer: Promise<MxAnswer> }>();

  async function lookup(domain: string): Promise<MxAnswer> {
    let records: { exchange: string; priority: number }[];
    try {
      records = await dns.resolveMx(domain);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? 'EUNKNOWN';
      if (NO_DATA.has(code) && code === 'ENODATA') records = [];
      else if (PERMANENT.has(code)) return { ok: false, permanent: true, code, reason: `${domain}: no such domain` };
      else return { ok: false, permanent: false, code, reason: `${domain}: MX lookup failed (${code})` };
    }
    if (records.length === 1 && (records[0]!.exchange === '' || records[0]!.exchange === '.')) {
      return { ok: false, permanent: true, code: 'NULLMX', reason: `${domain} accepts no mail (null MX)` };
    }
    if (records.length === 0) {
      // Implicit MX: the domain itself, if it has an address. A lookup that fails for a
      // reason other than "no such records" leaves the answer open: temporary, not NOMX.
      let temporary: string | undefined;
      const has = async (f: (n: string) => Promise<string[]>) => {
        try {
          return (await f(domain)).length > 0;
        } catch (e) {
          const code = (e as NodeJS.ErrnoException).code ?? 'EUNKNOWN';
          if (code !== 'ENODATA' && !PERMANENT.has(code)) temporary = code;
          return false;
        }
      };
      if ((await has((n) => dns.resolve4(n))) || (await has((n) => dns.resolve6(n)))) return { ok: true, via: 'implicit', hosts: [{ host: domain, port, preference: 0 }] };
      if (temporary) return { ok: false, permanent: false, code: temporary, reason: `${domain}: address lookup failed (${temporary})` };
      return { ok: false, permanent: true, code: 'NOMX', reason: `${domain} has no MX and no address records` };
    }
    const usable = records.filter((r) => r.exchange !== '' && r.exchange !== '.');
    if (usable.length === 0) return { ok: false, permanent: true, code: 'NULLMX', reason: `${domain} accepts no mail (only null MX records)` };
    // Preference order; equal preferences shuffled (a random key per host, then sort).
    const keyed = usable
      .map((r) => ({ host: r.exchange.toLowerCase().replace(/\.$/, ''), port, preference: r.priority, key: random() }));
    keyed.sort((a, b) => a.preference - b.preference || a.key - b.key);
    return { ok: true, via: 'mx', hosts: keyed.map(({ host, port: p, preference }) => ({ host, port: p, preference })) };
  }

  return {
    async resolve(domain) {
      const name = domain.toLowerCase().replace(/\.$/, '');
      const fixed = override.get(name) ?? override.get('*');
      if (fixed !== undefined) return { ok: true, via: 'override', hosts: fixed.split(',').map((h, i) => ({ ...hostPort(h.trim(), port), preference: i * 10 })) };
      const now = clock();
      const hit = cache.get(name);
      if (hit && hit.until > now) return hit.answer;
      // Concurrent lookups of one domain share one query.
      const answer = lookup(name);
      cache.set(name, { until: now + ttlMs, answer });
      const settled = await answer;
      if (!settled.ok) cache.set(name, { until: now + (settled.permanent ? ttlMs : negativeTtlMs), answer });
      return settled;
    },
    forget(domain) {
      if (domain === undefined) cache.clear();
      else cache.delete(domain.toLowerCase().replace(/\.$/, ''));
    },
    get size() {
      return cache.size;
    },
  };
}
