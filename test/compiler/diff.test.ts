/**
 * compiler/diff.ts: two compiled sets (IR and the loaded module, whose `react` judges the
 * example replies) → the effective change. Each case edits one thing and asserts the whole
 * diff, so a change listed that should not be (or a missing one) fails.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { diffPolicies, type DiffSide, type PolicyDiff } from '../../compiler/diff.ts';
import { durationWords } from '../../vocabulary/index.ts';
import { compileFiles, loadArtifact, ROOT, shippedFiles } from '../helpers.ts';

/** Compiles in-memory files into one side of a diff. */
async function side(files: Record<string, string>): Promise<DiffSide> {
  const result = await compileFiles(files);
  return { ir: result.ir!, artifact: await loadArtifact(result) };
}

async function diff(before: Record<string, string>, after: Record<string, string>): Promise<PolicyDiff> {
  return diffPolicies(await side(before), await side(after));
}

/** The parts of a diff that say what changed (without the sides' names). */
const changes = (d: PolicyDiff) => ({ routes: d.routes, routing: d.routing, definitions: d.definitions });

const BASE = `policy acme version 1

default {
  connections 10 per source
  retry slow
}

provider acme {
  match domain acme.example, [*.]acme-mail.example
  match mx *.mx.acme.example
  rate 3600/h per source
  rate 20/s
  data-rate 10MB/min per source
  tls required
  retry slow
  expire 2d
  on reply 421 /rate limited/i when 3 in 10m {
    backoff 30m {
      rate 600/h per source
      retry every 20m
    }
    example "421 4.7.0 Rate limited, slow down"
  }
  on reply 554 /blocklisted/i {
    suspend source 2h
    example "554 5.7.1 Your IP is blocklisted"
  }
  on reply 5xx "mailbox full" {
    classify quota-issues
    retry after 1h
    example "552 5.2.2 Mailbox full"
  }
}

provider other {
  match domain other.example
  retry fast
}

retry slow {
  after 15m, 30m
  then every 2h
  jitter 10%
  expire 3d
}

retry fast {
  after 1m
  then every 10m
}
`;

const files = (text: string) => ({ 'policies/acme.policy': text });

/** BASE with one edit; the edit must apply. */
function edit(from: string | RegExp, to: string, text = BASE): string {
  const out = text.replace(from, to);
  expect(out, `edit ${String(from)}`).not.toBe(text);
  return out;
}

describe('diffPolicies', () => {
  it('finds no effective change in a rewrite that means the same: rate units, comments, blank lines, layout', async () => {
    const same = edit('rate 3600/h per source', 'rate 60/min per source')
      .replace('provider acme {', '# a comment\n\nprovider acme {\n')
      .replace('expire 2d', 'expire 48h');
    const d = await diff(files(BASE), files(same));
    expect(changes(d)).toEqual({ routes: [], routing: [], definitions: [] });
    expect(d.changed).toBe(false);
  });

  it('names a changed limit of one route, in the language words, and nothing else', async () => {
    const d = await diff(files(BASE), files(edit('rate 3600/h per source', 'rate 2400/h per source')));
    expect(changes(d)).toEqual({
      routes: [{ route: 'provider:acme', status: 'changed', loc: expect.objectContaining({ file: 'policies/acme.policy' }), settings: [{ field: 'rate per source', before: '3600/h per source', after: '2400/h per source' }], rules: [], reactions: [] }],
      routing: [],
      definitions: [],
    });
    expect(d.changed).toBe(true);
  });

  it('lists every kind of limit and setting by its scope: connections, rates, data rates, per-connection counts, tls, expire', async () => {
    const after = edit('data-rate 10MB/min per source', 'data-rate 512KB/s per source\n  connect-rate 30/min per source\n  messages-per-connection 20\n  recipients-per-transaction 10')
      .replace('tls required', 'tls verify')
      .replace('expire 2d', 'expire 1d12h')
      .replace('rate 20/s', 'connections 5');
    const d = await diff(files(BASE), files(after));
    expect(d.routes.map((r) => r.route)).toEqual(['provider:acme']);
    expect(d.routes[0]!.settings).toEqual([
      { field: 'rate', before: '20/s', after: null },
      { field: 'data-rate per source', before: '10MB/min per source', after: '512KB/s per source' },
      { field: 'messages-per-connection', before: 'no limit', after: '20' },
      { field: 'recipients-per-transaction', before: '100', after: '10' },
      { field: 'tls', before: 'required', after: 'verify' },
      { field: 'expire', before: '2d', after: '1d12h' },
      { field: 'connections', before: null, after: '5' },
      { field: 'connect-rate per source', before: null, after: '30/min per source' },
    ]);
  });

  it('a limit in default shows in every route that inherits it', async () => {
    const d = await diff(files(BASE), files(edit('connections 10 per source', 'connections 4 per source')));
    expect(d.routes.map((r) => r.route)).toEqual(['default', 'provider:acme', 'provider:other']);
    for (const r of d.routes) expect(r.settings).toEqual([{ field: 'connections per source', before: '10 per source', after: '4 per source' }]);
  });

  it('a retry curve edit shows in every route using it, and as the curve', async () => {
    const d = await diff(files(BASE), files(edit('then every 2h', 'then every 3h\n  attempts 12')));
    expect(d.routes.map((r) => r.route)).toEqual(['default', 'provider:acme']);
    for (const r of d.routes) {
      expect(r.settings).toEqual([
        { field: 'retry then every', before: '2h', after: '3h' },
        { field: 'retry attempts', before: null, after: '12' },
      ]);
    }
    expect(d.definitions).toEqual([{ kind: 'retry', name: 'slow', status: 'changed', loc: expect.objectContaining({ line: expect.any(Number) }), fields: [{ field: 'then every', before: '2h', after: '3h' }, { field: 'attempts', before: null, after: '12' }] }]);
  });

  it('a route that changes curve names the curve and each statement that differs', async () => {
    const d = await diff(files(BASE), files(edit(/(match domain other\.example\n\s+)retry fast/, '$1retry slow')));
    expect(d.routes.map((r) => [r.route, r.settings])).toEqual([
      [
        'provider:other',
        [
          { field: 'expire', before: '2d', after: '3d' },
          { field: 'retry', before: 'fast', after: 'slow' },
          { field: 'retry after', before: '1m', after: '15m, 30m' },
          { field: 'retry then every', before: '10m', after: '2h' },
          { field: 'retry jitter', before: null, after: '10%' },
          { field: 'retry expire', before: null, after: '3d' },
        ],
      ],
    ]);
  });

  it('lists a changed rule by its matcher, and the example replies whose reaction changed, before → after', async () => {
    const d = await diff(files(BASE), files(edit('suspend source 2h', 'bounce spam-related')));
    expect(d.routes).toHaveLength(1);
    const r = d.routes[0]!;
    expect(r.settings).toEqual([]);
    expect(r.rules).toEqual([
      {
        status: 'changed',
        rule: 'on reply 554 /blocklisted/i',
        position: { before: 2, after: 2 },
        loc: expect.objectContaining({ file: 'policies/acme.policy' }),
        fields: [
          { field: 'category', before: 'by the reply', after: 'spam-related' },
          { field: 'disposition', before: 'block', after: 'hard' },
          { field: 'actions', before: 'suspend source 2h', after: 'bounce spam-related' },
        ],
      },
    ]);
    expect(r.reactions).toEqual([
      { reply: '554 5.7.1 Your IP is blocklisted', phase: null, before: 'spam-related, block: suspend source 2h', after: 'spam-related, hard: bounce spam-related', ruleBefore: expect.stringMatching(/^policies\/acme\.policy:\d+$/), ruleAfter: expect.stringMatching(/^policies\/acme\.policy:\d+$/) },
    ]);
  });

  it('a new rule in front shows as added, and the example replies of both sides that it now decides as reactions that changed', async () => {
    const before = edit('example "554 5.7.1 Your IP is blocklisted"', 'example "554 5.7.1 Your IP is blocklisted"\n    example "554 5.7.1 Listed: blocklisted by a list"');
    const after = edit('  on reply 421 /rate limited/i', '  on reply 5xx /your ip is/i {\n    bounce policy-related\n    example "550 Your IP is not welcome"\n  }\n  on reply 421 /rate limited/i', before);
    const d = await diff(files(before), files(after));
    const r = d.routes[0]!;
    expect(r.rules).toEqual([{ status: 'added', rule: 'on reply 5xx /your ip is/i', position: { before: null, after: 1 }, loc: expect.any(Object), fields: expect.arrayContaining([{ field: 'actions', before: null, after: 'bounce policy-related' }]) }]);
    // The base's example the new rule now catches, and the new rule's own (built-in classification before).
    expect(r.reactions.map((x) => [x.reply, x.before, x.after, x.ruleBefore === null])).toEqual([
      ['554 5.7.1 Your IP is blocklisted', 'spam-related, block: suspend source 2h', 'policy-related, hard: bounce policy-related', false],
      ['550 Your IP is not welcome', 'other, hard', 'policy-related, hard: bounce policy-related', true],
    ]);
    const back = await diff(files(after), files(before));
    expect(back.routes[0]!.rules.map((x) => [x.status, x.position])).toEqual([['removed', { before: 1, after: null }]]);
    expect(back.routes[0]!.reactions).toHaveLength(2);
  });

  it('two rules swapped are moved, and a trigger or a backoff override change is a changed rule', async () => {
    const swapped = BASE.replace(/( {2}on reply 554[\s\S]*?\n {2}\}\n)( {2}on reply 5xx "mailbox full"[\s\S]*?\n {2}\}\n)/, '$2$1');
    expect(swapped).not.toBe(BASE);
    const moved = await diff(files(BASE), files(swapped));
    expect(moved.routes[0]!.rules.map((x) => [x.status, x.rule, x.position])).toEqual([
      ['moved', 'on reply 554 /blocklisted/i', { before: 2, after: 3 }],
      ['moved', 'on reply 5xx "mailbox full"', { before: 3, after: 2 }],
    ]);
    // The two match different replies: swapping them changes no reaction.
    expect(moved.routes[0]!.reactions).toEqual([]);

    const d = await diff(files(BASE), files(edit('when 3 in 10m', 'when 5 in 10m').replace('retry every 20m', 'retry every 30m')));
    expect(d.routes[0]!.rules[0]!.fields).toEqual([
      { field: 'trigger', before: 'when 3 in 10m', after: 'when 5 in 10m' },
      { field: 'actions', before: 'backoff 30m { rate 600/h per source; retry every 20m }', after: 'backoff 30m { rate 600/h per source; retry every 30m }' },
    ]);
    expect(d.routes[0]!.reactions.map((x) => [x.before, x.after])).toEqual([
      ['policy-related, throttle: backoff 30m { rate 600/h per source; retry every 20m } (when 3 in 10m)', 'policy-related, throttle: backoff 30m { rate 600/h per source; retry every 30m } (when 5 in 10m)'],
    ]);
  });

  it('routing: a domain added, moved or dropped, and an MX rollup added, each with the route before and after', async () => {
    const after = edit('match domain acme.example, [*.]acme-mail.example', 'match domain acme.example, new.example\n  match mx *.mx.new.example').replace('match domain other.example', 'match domain other.example, [*.]acme-mail.example');
    const d = await diff(files(BASE), files(after));
    expect(d.routing).toEqual([
      { kind: 'domain', pattern: '[*.]acme-mail.example', before: 'provider:acme', after: 'provider:other' },
      { kind: 'domain', pattern: 'new.example', before: 'default', after: 'provider:acme' },
      { kind: 'mx', pattern: '*.mx.new.example', before: 'default', after: 'provider:acme' },
    ]);
    // Routing moves are not setting changes: the routes' own settings and rules are the same.
    expect(d.routes).toEqual([]);
    const dropped = await diff(files(BASE), files(edit(', [*.]acme-mail.example', '')));
    expect(dropped.routing).toEqual([{ kind: 'domain', pattern: '[*.]acme-mail.example', before: 'provider:acme', after: 'default' }]);
  });

  it('a route added or removed is listed with its settings; its domains as moved', async () => {
    const extra = `${BASE}\ndomain vip.example {\n  connections 2\n}\n`;
    const d = await diff(files(BASE), files(extra));
    expect(d.routes).toEqual([
      {
        route: 'domain:vip.example',
        status: 'added',
        loc: expect.any(Object),
        settings: expect.arrayContaining([{ field: 'connections', before: null, after: '2' }, { field: 'reply rules', before: null, after: '0' }]),
        rules: [],
        reactions: [],
      },
    ]);
    expect(d.routing).toEqual([{ kind: 'domain', pattern: 'vip.example', before: 'default', after: 'domain:vip.example' }]);
    const back = await diff(files(extra), files(BASE));
    expect(back.routes.map((r) => [r.route, r.status])).toEqual([['domain:vip.example', 'removed']]);
  });

  it('warmup ramps, sources, pools, tenants and global limits', async () => {
    const defs = `
warmup cold {
  schedule 50/day, 100/day
  for provider acme {
    start 20/day grow x1.4 daily
  }
  overflow pool warm
}
source ip1 {
  address 192.0.2.10
  ehlo mta1.example.com
}
source ip2 {
  address 192.0.2.11
  warmup cold since 2026-11-20
}
pool warm {
  ip1
}
tenant shop {
  pool warm
  rate 100/min
}
global {
  connections 500
}
`;
    const after = defs
      .replace('schedule 50/day, 100/day', 'schedule 50/day, 200/day')
      .replace('x1.4', 'x1.5')
      .replace('address 192.0.2.11', 'address 192.0.2.12')
      .replace('pool warm {\n  ip1\n}', 'pool warm {\n  ip1, ip2\n}')
      .replace('rate 100/min', 'rate 200/min')
      .replace('connections 500', 'connections 400');
    const d = await diff(files(BASE + defs), files(BASE + after));
    expect(d.routes).toEqual([]);
    expect(d.definitions.map((x) => [x.kind, x.name, x.status, x.fields])).toEqual([
      ['warmup', 'cold', 'changed', [{ field: 'schedule', before: '50/day, 100/day', after: '50/day, 200/day' }, { field: 'for provider:acme', before: 'start 20/day grow x1.4 daily', after: 'start 20/day grow x1.5 daily' }]],
      ['source', 'ip2', 'changed', [{ field: 'address', before: '192.0.2.11', after: '192.0.2.12' }]],
      ['pool', 'warm', 'changed', [{ field: 'sources', before: 'ip1', after: 'ip1, ip2' }]],
      ['tenant', 'shop', 'changed', [{ field: 'rate', before: '100/min', after: '200/min' }]],
      ['global', 'global', 'changed', [{ field: 'connections', before: '500', after: '400' }]],
    ]);
    const removed = await diff(files(BASE + defs), files(BASE + defs.replace(/tenant shop \{[^}]*\}/, '')));
    expect(removed.definitions).toEqual([{ kind: 'tenant', name: 'shop', status: 'removed', loc: expect.any(Object), fields: [{ field: 'pool', before: 'warm', after: null }, { field: 'rate', before: '100/min', after: null }] }]);
  });

  it('on the shipped policies: one provider\'s rate is exactly one change, and its domains are not listed', async () => {
    const shipped = Object.fromEntries(shippedFiles().map((f) => [f, readFileSync(path.join(ROOT, f), 'utf8')]));
    const yahoo = shipped['policies/yahoo.policy']!;
    const edited = { ...shipped, 'policies/yahoo.policy': edit(/^ {2}rate 3600\/h per source$/m, '  rate 2400/h per source', yahoo) };
    const d = await diff(shipped, edited);
    expect(changes(d)).toEqual({
      routes: [{ route: 'provider:yahoo', status: 'changed', loc: expect.objectContaining({ file: 'policies/yahoo.policy' }), settings: [{ field: 'rate per source', before: '3600/h per source', after: '2400/h per source' }], rules: [], reactions: [] }],
      routing: [],
      definitions: [],
    });
  });

  it('writes durations as a policy would', () => {
    expect([0, 59, 90, 3600, 5400, 172800, 129600].map(durationWords)).toEqual(['0s', '59s', '1m30s', '1h', '1h30m', '2d', '1d12h']);
  });
});
