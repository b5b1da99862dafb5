/**
 * Conformance: the compiled artifact and the reference interpreter give equal answers
 * on random routes, replies, attempts and ages, over the shipped policies and over
 * randomly generated policy sets.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { interpret } from '../../compiler/index.ts';
import type { Phase, PolicyArtifact } from '../../runtime/abi.ts';
import { compileFiles, compileRepoFiles, loadArtifact, shippedFiles } from '../helpers.ts';

const LABELS = ['mail', 'mx', 'eu', 'us', 'a', 'b', 'shop', 'news'];
const BASES = ['alpha.example', 'beta.example', 'gamma.test', 'delta.co.uk', 'epsilon.net'];
const PHASES: Phase[] = ['connect', 'ehlo', 'mail', 'rcpt', 'data'];

const REPLY_TEMPLATES = [
  '421 4.7.0 [TS01] Messages from 192.0.2.1 temporarily deferred due to user complaints',
  '421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred',
  '450 4.2.1 Mailbox busy, try again later',
  '451 4.7.1 Greylisted, please retry',
  '452 4.2.2 The email account that you tried to reach is over quota',
  '550 5.1.1 <someone@example.com>: Recipient address rejected: User unknown',
  '550 Requested action not taken: mailbox unavailable',
  '550 5.7.1 Message rejected as spam',
  '550 5.7.1 Relaying denied',
  '552 5.2.2 Mailbox full',
  '553 5.7.1 [BL21] Connections will not be accepted from 192.0.2.1',
  '554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using Spamhaus',
  '421 Too many connections',
  '250 2.0.0 OK queued as 12345',
  '354 Start mail input',
  'connection timed out',
  '',
  '550-5.7.26 This mail is unauthenticated\n550 5.7.26 See the DMARC policy',
  // Case and non-ASCII text: the compiled module scans for literals on a case-folded copy.
  '550 5.7.1 MESSAGE REJECTED AS SPAM',
  '552 5.2.2 MAİLBOX FULL',
  '550 5.7.1 blocKed using Spamhaus',
  '421 4.7.0 [tss04] Messages temporarily deferred — réputation',
  '550 5.1.1 Recipient address rejected: user unknown in relay recipient table (Σ)',
];

const domainTree = fc.tuple(fc.subarray(LABELS, { maxLength: 2 }), fc.constantFrom(...BASES)).map(([labels, base]) => [...labels, base].join('.'));

const reply = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...REPLY_TEMPLATES) },
  {
    weight: 2,
    arbitrary: fc
      .tuple(fc.constantFrom('2', '3', '4', '5'), fc.integer({ min: 0, max: 59 }), fc.option(fc.tuple(fc.constantFrom(2, 4, 5), fc.integer({ min: 0, max: 9 }), fc.integer({ min: 0, max: 30 }))), fc.constantFrom('', 'spam', 'quota exceeded', 'mailbox full', 'blocked', 'Deferred', '[TS02]', 'try later', 'MAILBOX FULL'))
      .map(([cls, rest, status, text]) => `${cls}${String(rest).padStart(2, '0')} ${status ? status.join('.') + ' ' : ''}${text}`),
  },
  { weight: 1, arbitrary: fc.string({ maxLength: 40 }) },
);

/** A random but valid policy set: providers over a shared domain tree, a domain block, rules without examples. */
const policySet = fc
  .record({
    claims: fc.uniqueArray(domainTree, { minLength: 1, maxLength: 8 }),
    mxClaims: fc.uniqueArray(domainTree.map((d) => `mxhost.${d}`), { maxLength: 3 }),
    kinds: fc.array(fc.constantFrom('', '*.', '[*.]'), { minLength: 8, maxLength: 8 }),
    owners: fc.array(fc.integer({ min: 0, max: 2 }), { minLength: 11, maxLength: 11 }),
    rules: fc.array(
      fc.record({
        owner: fc.integer({ min: 0, max: 3 }),
        codes: fc.subarray(['421', '4xx', '45x', '550', '5xx', '554', '25x'], { maxLength: 2 }),
        statuses: fc.subarray(['5.1.1', '4.7.x', '5.7.1', '4.x.x', '5.2.2'], { maxLength: 2 }),
        texts: fc.subarray(['/\\[TS0[12]\\]/', '/spam/i', '/quota/i', '"mailbox full"', '"blocked"', '/^4\\d\\d /'], { maxLength: 2 }),
        phases: fc.subarray(PHASES, { maxLength: 2 }),
        trigger: fc.boolean(),
        action: fc.constantFrom('bounce spam-related', 'classify quota-issues', 'backoff 30m {\n      rate 10/min per source\n    }', 'suspend source 1h', 'retry after 10m', 'disable source', 'skip-mx', 'retry', 'disposition block'),
      }),
      { maxLength: 10 },
    ),
    domainBlock: fc.option(domainTree),
  })
  .map(({ claims, mxClaims, kinds, owners, rules, domainBlock }) => {
    // Each provider owns one domain of its own, so none is empty and `for provider p0` resolves.
    const providers: string[][] = [0, 1, 2].map((i) => [`match domain own${i}.example`]);
    claims.forEach((d, i) => providers[owners[i]!]!.push(`match domain ${kinds[i]}${d}`));
    mxClaims.forEach((d, i) => providers[owners[8 + i]!]!.push(`match mx *.${d}`));
    const ruleText = (owner: number) =>
      rules
        .filter((r) => r.owner === owner)
        .filter((r) => r.codes.length + r.statuses.length + r.texts.length > 0)
        .map((r) => `  on reply ${[...r.codes, ...r.statuses, ...r.texts].join(' ')}${r.phases.length ? ` phase ${r.phases.join(', ')}` : ''}${r.trigger ? ' when 2 in 1h' : ''} {\n    ${r.action}\n  }`)
        .join('\n');
    let text = `policy random version 1.0.0\nuse stdlib/retry\n\ndefault {\n  retry standard\n${ruleText(3)}\n}\n`;
    providers.forEach((matches, i) => {
      text += `\nprovider p${i} {\n  ${matches.join('\n  ')}\n  rate ${10 + i}/s\n  retry bulk\n${ruleText(i)}\n}\n`;
    });
    if (domainBlock) text += `\ndomain ${domainBlock} {\n  tls required\n  expire 1d\n}\n`;
    text += `\nwarmup ramp {\n  schedule 10/day, 20/day, 40/day\n  for provider p0 {\n    start 5/day grow x1.5 cap 200/day\n  }\n}\nsource s1 {\n  address 192.0.2.1\n  warmup ramp since 2026-11-01\n  rate 100/h\n}\ntenant t1 {\n  rate 500/h\n}\n`;
    return { text, domains: [...claims, 'own0.example', 'x.own1.example', ...(domainBlock ? [domainBlock] : [])], mx: mxClaims };
  });

function probes(domains: string[], mx: string[]) {
  const domain = fc.oneof(fc.constantFrom(...domains), domainTree, domainTree.map((d) => d.toUpperCase() + '.'), fc.domain());
  const mxHosts = fc.option(fc.array(fc.oneof(fc.constantFrom(...(mx.length ? mx : ['mx.none.example'])).map((d) => `mx1.${d}`), domainTree), { maxLength: 3 }), { nil: undefined });
  return fc.record({
    domain,
    mxHosts,
    reply,
    phase: fc.option(fc.constantFrom(...PHASES), { nil: undefined }),
    attempt: fc.oneof(fc.integer({ min: -1, max: 120 }), fc.double({ min: 0, max: 10, noNaN: true })),
    age: fc.oneof(fc.integer({ min: -1, max: 60 }), fc.double({ min: 0, max: 60, noNaN: true })),
    source: fc.constantFrom(undefined, 's1', 'nope'),
    tenant: fc.constantFrom(undefined, 't1', 'nope'),
    curve: fc.constantFrom(undefined, 'standard', 'bulk', 'nope'),
  });
}

type Probe = ReturnType<typeof probes> extends fc.Arbitrary<infer T> ? T : never;

function agree(compiled: PolicyArtifact, reference: PolicyArtifact, p: Probe, ramps: string[]): void {
  const route = compiled.route(p.domain, p.mxHosts);
  expect(route, `route(${p.domain}, ${JSON.stringify(p.mxHosts)})`).toBe(reference.route(p.domain, p.mxHosts));
  for (const id of [route, 'default', 'provider:none']) {
    expect(compiled.settings(id, p.source, p.tenant)).toEqual(reference.settings(id, p.source, p.tenant));
    expect(compiled.react(id, p.reply, p.phase), `react(${id}, ${JSON.stringify(p.reply)}, ${p.phase})`).toEqual(reference.react(id, p.reply, p.phase));
    expect(compiled.retryDelay(id, p.attempt, p.reply, p.curve)).toEqual(reference.retryDelay(id, p.attempt, p.reply, p.curve));
    expect(compiled.retryDelay(id, p.attempt)).toEqual(reference.retryDelay(id, p.attempt));
    for (const ramp of [...ramps, 'nope']) expect(compiled.warmupLimit(ramp, id, p.age)).toEqual(reference.warmupLimit(ramp, id, p.age));
  }
}

describe('compiled artifact ≡ reference interpreter', () => {
  it('agrees on the shipped policies for random inputs', async () => {
    const result = await compileRepoFiles(shippedFiles());
    const compiled = await loadArtifact(result);
    const reference = interpret(result.ir!, compiled.meta);
    const domains = result.ir!.routes.flatMap((r) => r.domains.map((d) => d.domain));
    const mx = result.ir!.routes.flatMap((r) => r.mx.map((d) => d.domain));
    fc.assert(
      fc.property(probes(domains.length ? domains : ['none.example'], mx), (p) => agree(compiled, reference, p, Object.keys(result.ir!.warmups))),
      { numRuns: 3000 },
    );
  });

  it('agrees on random policy sets', async () => {
    await fc.assert(
      fc.asyncProperty(policySet, async (set) => {
        const result = await compileFiles({ 'random.policy': set.text });
        const errors = result.diagnostics.filter((d) => d.severity === 'error');
        expect(errors, set.text).toEqual([]);
        const compiled = await loadArtifact(result);
        const reference = interpret(result.ir!, compiled.meta);
        for (const p of fc.sample(probes(set.domains, set.mx), 150)) agree(compiled, reference, p, ['ramp']);
      }),
      { numRuns: 30 },
    );
  });
});

describe('route() caches', () => {
  it('answer for the MX set given, when one domain is asked with another set or a changed array', async () => {
    const result = await compileFiles({
      'mx.policy': 'policy mx version 1.0.0\n\nprovider a {\n  match domain a.example\n  match mx *.mx-a.example\n}\n\nprovider b {\n  match domain b.example\n  match mx *.mx-b.example\n}\n',
    });
    const compiled = await loadArtifact(result);
    const reference = interpret(result.ir!, compiled.meta);
    const hosts = ['mx1.mx-a.example', 'mx2.mx-a.example'];
    const asked: (string[] | undefined)[] = [hosts, ['mx1.mx-b.example'], undefined, [...hosts], ['mx1.mx-a.example', 'mx1.mx-b.example'], []];
    for (const mx of asked) expect(compiled.route('brand.example', mx), JSON.stringify(mx)).toBe(reference.route('brand.example', mx));
    expect(compiled.route('brand.example', hosts)).toBe('provider:a');
    hosts[1] = 'mx2.mx-b.example';
    expect(compiled.route('brand.example', hosts)).toBe('default');
    hosts[0] = 'mx1.mx-b.example';
    expect(compiled.route('brand.example', hosts)).toBe('provider:b');
  });
});
