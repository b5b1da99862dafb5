/** Checks found missing or wrong in review, each pinned by code and position. */
import { describe, expect, it } from 'vitest';
import { compileFiles, loadArtifact } from '../helpers.ts';

const H = 'policy x version 1\n';

async function codes(text: string, extra: Record<string, string> = {}) {
  const r = await compileFiles({ 'x.policy': H + text, ...extra }, { checkOnly: true });
  return r.diagnostics.map((d) => `${d.code} ${d.span.file}:${d.span.line}:${d.span.column}`);
}

describe('checks', () => {
  it('reports two domain blocks claiming one domain (VAL008)', async () => {
    expect(await codes('domain [*.]example.org {\n  tls required\n}\ndomain example.org {\n  tls verify\n}\n')).toEqual(['VAL008 x.policy:5:8']);
    expect(await codes('domain *.example.com {\n  tls required\n}\ndomain example.com {\n  tls verify\n}\n')).toEqual([]);
  });

  it('reports a clash with a stdlib name in the user file, not in the stdlib (RES002)', async () => {
    expect(await codes('use stdlib/retry\nretry bulk {\n  after 5m\n  expire 1d\n}\n')).toEqual(['RES002 x.policy:3:7']);
  });

  it('sees rules shadowed by an included rule set (VAL006)', async () => {
    const text = 'use stdlib/bounces\nprovider a {\n  match domain x.com\n  rules bounces\n  on reply 5.1.1 {\n    bounce inactive-mailbox\n    example "550 5.1.1 user unknown"\n  }\n}\n';
    expect(await codes(text)).toEqual(['VAL006 x.policy:6:3']);
  });

  it('does not call a rule shadowed by an earlier rule limited to another phase', async () => {
    const text = 'provider a {\n  match domain x.com\n  on reply 5xx phase rcpt {\n    bounce bad-mailbox\n    example "550 no" phase rcpt\n  }\n  on reply 5.1.1 {\n    bounce bad-mailbox\n    example "550 5.1.1 no such user"\n  }\n}\n';
    expect(await codes(text)).toEqual([]);
  });

  it('reports an expiry before the first retry once, at the statement that causes it (VAL002)', async () => {
    const text = 'retry quick {\n  after 15m\n  expire 10m\n}\nprovider a {\n  match domain x.com\n  retry quick\n}\nprovider b {\n  match domain y.com\n  retry quick\n  expire 5m\n}\n';
    expect(await codes(text)).toEqual(['VAL002 x.policy:4:10', 'VAL002 x.policy:13:3']);
  });

  it('rejects dates that do not exist (PARSE005)', async () => {
    expect(await codes('warmup w {\n  schedule 10/day\n}\nsource s {\n  warmup w since 2026-02-30\n}\n')).toEqual(['PARSE005 x.policy:6:18']);
  });

  it('says once that the header is misplaced or malformed (PARSE006)', async () => {
    const r = await compileFiles({ 'x.policy': 'use stdlib/retry\npolicy x version 1\n' }, { checkOnly: true });
    expect(r.diagnostics.map((d) => `${d.code} ${d.span.line}:${d.span.column}`)).toEqual(['PARSE006 2:1']);
    const m = await compileFiles({ 'x.policy': 'policy gmail\n' }, { checkOnly: true });
    expect(m.diagnostics.map((d) => d.code)).toEqual(['PARSE002']);
  });

  it('calls `3600h` a wrong unit for a rate (PARSE004)', async () => {
    expect(await codes('provider a {\n  match domain x.com\n  rate 3600h\n}\n')).toEqual(['PARSE004 x.policy:4:8']);
  });

  it('reports settings set twice, however they are spelt (VAL012)', async () => {
    expect(await codes('provider a {\n  match domain x.com\n  rate 20/s\n  rate 30/s per destination\n}\n')).toEqual(['VAL012 x.policy:5:3']);
    expect(await codes('retry c {\n  after 5m\n  expire 3d\n  expire 1h\n}\n')).toEqual(['VAL012 x.policy:5:3']);
    expect(await codes('warmup w {\n  for provider a {\n    schedule 5/day\n    start 100/day grow x0.5\n  }\n}\nprovider a {\n  match domain x.com\n}\n')).toEqual(['VAL012 x.policy:5:5']);
    expect(await codes('source s {\n  address 192.0.2.1\n  address 192.0.2.2\n}\n')).toEqual(['VAL012 x.policy:4:3']);
  });

  it('reads enhanced status patterns with `x` anywhere', async () => {
    expect(await codes('default {\n  on reply 5.x.1 {\n    classify bad-mailbox\n    example "550 5.1.1 nope"\n  }\n}\n')).toEqual([]);
  });

  it('reports an unterminated string once', async () => {
    expect(await codes('default {\n  on reply 550 {\n    example "550 5.1.1 no [such] user\n  }\n}\n')).toEqual(['VAL007 x.policy:3:3', 'PARSE001 x.policy:4:13']);
  });

  it('refuses a warmup `for domain` that no block claims (RES001), and keeps provider names as written', async () => {
    expect(await codes('warmup w {\n  for domain nobody.example {\n    schedule 5/day\n  }\n}\n')).toEqual(['RES001 x.policy:3:14']);
    expect(await codes('provider BigMail {\n  match domain big.example\n}\nwarmup w {\n  for provider BigMail {\n    schedule 5/day\n  }\n}\n')).toEqual([]);
  });
});

describe('more checks', () => {
  it('asks for a time unit, not a count, after a data size (PARSE003)', async () => {
    const r = await compileFiles({ 'x.policy': H + 'default {\n  data-rate 10MB\n}\n' }, { checkOnly: true });
    expect(r.diagnostics.map((d) => [d.code, d.help])).toEqual([['PARSE003', 'write it per time unit, for example `10MB/min`']]);
  });

  it('treats every limit in `global` as global (VAL012 on a repeat)', async () => {
    expect(await codes('global {\n  rate 20/s\n  rate 10/s global\n}\n')).toEqual(['VAL012 x.policy:4:3']);
  });

  it('explains that a rule without a code does not match a success example', async () => {
    const r = await compileFiles({ 'x.policy': H + 'default {\n  on reply /queued/ {\n    classify other\n    example "250 2.0.0 queued"\n  }\n}\n' }, { checkOnly: true });
    expect(r.diagnostics.map((d) => [d.code, d.help])).toEqual([['VAL005', 'a rule without a reply code matches failures only (4xx, 5xx); add `2xx` to match a success']]);
  });

  it('refuses `expect bounce success` (TEST001)', async () => {
    expect(await codes('test "t" {\n  deliver to a@x.example\n  expect bounce success\n}\n')).toEqual(['TEST001 x.policy:4:17']);
  });

  it('gives a warmup `for domain` plan to the block route() picks for that domain', async () => {
    const text = 'domain *.example.com {\n  tls required\n}\ndomain a.example.com {\n  tls verify\n}\nwarmup w {\n  schedule 10/day\n  for domain a.example.com {\n    schedule 1/day\n  }\n}\n';
    const r = await compileFiles({ 'x.policy': H + text });
    expect(Object.keys(r.ir!.warmups['w']!.routes)).toEqual(['domain:a.example.com']);
  });
});

describe('retry decisions', () => {
  it('never retries a success or a bounce; a block retries on the curve; `retry after` obeys the attempt limits', async () => {
    const text =
      'default {\n  retry {\n    after 5m\n    then every 1h\n    attempts 3\n  }\n' +
      '  on reply 553 /BL21/ {\n    classify spam-related\n    disposition block\n    example "553 5.7.1 [BL21] blocked"\n  }\n' +
      '  on reply 550 /5\\.1\\.1/ {\n    bounce bad-mailbox\n    example "550 5.1.1 no such user"\n  }\n' +
      '  on reply 450 "busy" {\n    retry after 2m\n    example "450 4.2.1 mailbox busy"\n  }\n' +
      '  on reply 452 "full" {\n    classify quota-issues\n    retry after 1h attempts 2\n    example "452 4.2.2 mailbox full"\n  }\n}\n';
    const artifact = await loadArtifact(await compileFiles({ 'x.policy': H + text }));
    // A block keeps the recipient: it is retried on the route's curve, never given up on by its own reply.
    expect(artifact.retryDelay('default', 1, '553 5.7.1 [BL21] blocked')).toBe(300_000);
    expect(artifact.retryDelay('default', 1, '550 5.1.1 no such user')).toBeNull();
    expect(artifact.retryDelay('default', 1, '250 2.0.0 OK')).toBeNull();
    expect(artifact.retryDelay('default', 2, '450 4.2.1 mailbox busy')).toBe(120_000);
    expect(artifact.retryDelay('default', 3, '450 4.2.1 mailbox busy')).toBeNull();
    // `attempts 2`: one retry, then give up (the runtime bounces with the rule's category).
    expect(artifact.retryDelay('default', 1, '452 4.2.2 mailbox full')).toBe(3_600_000);
    expect(artifact.retryDelay('default', 2, '452 4.2.2 mailbox full')).toBeNull();
    expect(artifact.react('default', '452 4.2.2 mailbox full').category).toBe('quota-issues');
  });
});
