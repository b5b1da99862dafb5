/**
 * Generated policy sets for benchmarks: many domains (exact, wildcard and MX rollup) and
 * many reply rules, shaped like a large real deployment. Deterministic: the same
 * arguments always give the same text.
 */

/** A small deterministic PRNG (mulberry32), so generated sets and inputs are reproducible. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const WORDS = ['deferred', 'blocked', 'throttled', 'rejected', 'limit', 'quota', 'spam', 'policy', 'reputation', 'volume', 'complaint', 'unknown', 'disabled', 'busy', 'greylisted', 'timeout'];

export interface GeneratedSet {
  text: string;
  /** Exact domains claimed (for lookups that hit). */
  exact: string[];
  /** Parent domains claimed with `[*.]` (lookups use their subdomains). */
  wildcards: string[];
  /** MX host suffixes claimed (lookups send MX hosts under them). */
  mx: string[];
  rules: number;
}

/**
 * `domains` domains over `domains / 20` providers (16 exact + 2 wildcard + 2 via MX each),
 * and `rules` reply rules spread over the providers, each with a code, an enhanced status
 * or a regex, and an example that it matches.
 */
export function generatePolicySet(domains: number, rules: number): GeneratedSet {
  const providers = Math.max(1, Math.round(domains / 20));
  const rulesPer = Math.ceil(rules / providers);
  const random = prng(domains * 7919 + rules);
  const exact: string[] = [];
  const wildcards: string[] = [];
  const mx: string[] = [];
  const out: string[] = [`policy generated version 1.0.0`, ''];
  let ruleCount = 0;
  for (let p = 0; p < providers; p++) {
    const own = Array.from({ length: 16 }, (_, i) => `d${i}-p${p}.example`);
    const wild = [`w0-p${p}.example`, `w1-p${p}.example`];
    const hosts = [`mx-p${p}.example.net`];
    exact.push(...own);
    wildcards.push(...wild);
    mx.push(...hosts);
    out.push(`provider p${p} {`);
    out.push(`  match domain ${own.join(', ')}`);
    out.push(`  match domain ${wild.map((w) => `[*.]${w}`).join(', ')}`);
    out.push(`  match mx ${hosts.map((h) => `*.${h}`).join(', ')}`);
    out.push(`  connections ${5 + (p % 20)} per source`);
    out.push(`  rate ${100 + p}/h per source`);
    for (let r = 0; r < rulesPer && ruleCount < rules; r++, ruleCount++) {
      const word = WORDS[Math.floor(random() * WORDS.length)]!;
      const tag = `P${p}R${r}X`;
      const kind = r % 4;
      if (kind === 0) {
        out.push(`  on reply 421 /\\[${tag}\\]/ when 3 in 1h {`, `    backoff 30m {`, `      rate 10/min per source`, `    }`, `    example "421 4.7.0 [${tag}] ${word} from 192.0.2.1"`, `  }`);
      } else if (kind === 1) {
        out.push(`  on reply 5.7.${(r % 30) + 1} /${word} ${tag}/i {`, `    bounce spam-related`, `    example "550 5.7.${(r % 30) + 1} ${word.toUpperCase()} ${tag} see https://postmaster.example"`, `  }`);
      } else if (kind === 2) {
        out.push(`  on reply 4xx "${tag.toLowerCase()} ${word}" {`, `    retry after ${5 + r}m`, `    example "451 4.3.0 ${tag} ${word} try later"`, `  }`);
      } else {
        out.push(`  on reply 554 /^554[ -].*${tag}/ {`, `    suspend source 1h`, `    example "554 5.7.1 listed ${tag}"`, `  }`);
      }
    }
    out.push('}', '');
  }
  return { text: out.join('\n'), exact, wildcards, mx, rules: ruleCount };
}

/** Route lookups: 40% exact hits, 30% subdomains of wildcards, 20% MX rollup, 10% misses. */
export function routeInputs(set: GeneratedSet, count: number): { domain: string; mx?: string[] }[] {
  const random = prng(count + 17);
  const pick = <T>(list: T[]) => list[Math.floor(random() * list.length)]!;
  return Array.from({ length: count }, (_, i) => {
    const r = i % 10;
    if (r < 4) return { domain: pick(set.exact) };
    if (r < 7) return { domain: `mail${i % 5}.${pick(set.wildcards)}` };
    if (r < 9) {
      const host = pick(set.mx);
      return { domain: `brand${i}.example.org`, mx: [`mx1.${host}`, `mx2.${host}`] };
    }
    return { domain: `nobody${i}.example.com` };
  });
}

/** Generated replies: success, temporary and permanent failures, some that no rule matches. */
export function generatedReplies(count: number): string[] {
  const random = prng(count + 99);
  const templates = [
    (n: number) => `250 2.0.0 OK ${n.toString(16)} - gsmtp`,
    (n: number) => `250 ok ${n}`,
    (n: number) => `421 4.7.0 Try again later, closing connection. (EHLO) ${n}`,
    (n: number) => `450 4.2.1 The user you are trying to contact is receiving mail too quickly ${n}`,
    (n: number) => `451 4.3.0 Mail server temporarily rejected message. ${n}`,
    (n: number) => `452 4.2.2 The email account that you tried to reach is over quota ${n}`,
    (n: number) => `550 5.1.1 <user${n}@example.com>: Recipient address rejected: User unknown in virtual mailbox table`,
    (n: number) => `550 5.7.1 Message rejected due to content restrictions ${n}`,
    (n: number) => `554 5.7.1 Service unavailable; Client host [192.0.2.${n % 255}] blocked using zen.spamhaus.org`,
    (n: number) => `553 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1) ${n}`,
    (n: number) => `500 5.5.1 Command unrecognized: "XYZZY ${n}"`,
    (n: number) => `421 Service not available, closing transmission channel ${n}`,
  ];
  return Array.from({ length: count }, (_, i) => templates[Math.floor(random() * templates.length)]!(i));
}
