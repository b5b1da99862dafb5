import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { format } from '../../grammar/format.ts';
import { parse } from '../../grammar/index.ts';
import { layoutProblems, roundTrip, summary, withoutPositions } from './helpers.ts';

const SAMPLE = readFileSync(new URL('./fixtures/format-sample.policy', import.meta.url), 'utf8');

/** Lines joined into file text with the final newline. */
const lines = (...ls: string[]): string => ls.join('\n') + '\n';

/** Formats `text` and checks the invariants every formatted file must meet; returns the output. */
function fmt(text: string): string {
  const trip = roundTrip(text);
  expect(summary(trip.diagnostics)).toEqual([]);
  expect(withoutPositions(trip.after)).toEqual(withoutPositions(trip.before));
  expect(trip.twice).toBe(trip.formatted);
  expect(layoutProblems(trip.formatted)).toEqual([]);
  return trip.formatted;
}

describe('format: the sample policy', () => {
  const trip = roundTrip(SAMPLE, 'sample.policy');
  const out = trip.formatted;

  it('matches the golden file', async () => {
    await expect(out).toMatchFileSnapshot('./__snapshots__/format-sample.policy');
  });

  it('re-parses without diagnostics to the same AST, and formats to itself', () => {
    expect(summary(trip.diagnostics)).toEqual([]);
    expect(withoutPositions(trip.after)).toEqual(withoutPositions(trip.before));
    expect(trip.twice).toBe(out);
  });

  it('keeps every comment once, in order', () => {
    const texts = trip.before.comments.map((c) => c.text.trimEnd());
    expect(texts.length).toBeGreaterThan(10);
    expect(trip.after.comments.map((c) => c.text)).toEqual(texts);
    for (const text of texts) expect(out.split(text).length - 1).toBe(1);
  });

  it('has a tidy layout: two-space indentation per block, `{` and `}` in place, no stray blank lines', () => {
    expect(layoutProblems(out)).toEqual([]);
    expect(out).not.toContain('\t');
  });

  it('separates top-level definitions by exactly one blank line', () => {
    const afterTopLevelClose = [...out.matchAll(/^\}[^\n]*\n(.*)$/gm)].map((m) => m[1]);
    expect(afterTopLevelClose.length).toBeGreaterThan(10);
    for (const next of afterTopLevelClose) expect(['', '# the end of the file']).toContain(next);
    expect(out).not.toMatch(/\n\n\n/);
  });

  it('copies literals exactly as written', () => {
    for (const literal of [
      'rate 3600/h',
      'data-rate 10MB/min global',
      'retry after 90s',
      '/temporarily deferred/i, /TS0[1-4]/',
      'match domain yahoo.com, ymail.com, [*.]yahoo.co.uk',
      'address "2001:db8::1"',
      'exponential 4h x1.5 cap 12h',
      'jitter 10%',
      'warmup new_ip since 2026-11-20',
      'on reply 5.7.1, 5.7.x "blocked" phase rcpt, data when 3 in 10m {',
      'expect route provider:yahoo',
    ]) {
      expect(out).toContain(literal);
    }
  });
});

describe('format: layout', () => {
  it('puts one statement on each line and opens every block on its head line', () => {
    const text = 'policy p version 1\nprovider yahoo { match domain yahoo.com; rate 10/s;  tls   verify }\nretry short { after 1m }\n';
    expect(fmt(text)).toBe(
      lines('policy p version 1', '', 'provider yahoo {', '  match domain yahoo.com', '  rate 10/s', '  tls verify', '}', '', 'retry short {', '  after 1m', '}'),
    );
  });

  it('prints an empty block over two lines', () => {
    expect(fmt('policy p version 1\npool empty {}\n')).toBe(lines('policy p version 1', '', 'pool empty {', '}'));
  });

  it('keeps one blank line where a block had several, and none at its edges', () => {
    const text = 'policy p version 1\nglobal {\n\n  connections 5\n\n\n\n  rate 1/s\n  data-rate 1MB/s\n\n}\n';
    expect(fmt(text)).toBe(lines('policy p version 1', '', 'global {', '  connections 5', '', '  rate 1/s', '  data-rate 1MB/s', '}'));
  });

  it('separates top-level definitions by one blank line but lets `use` lines stay together', () => {
    const text = 'policy p version 1\nuse stdlib/retry\nuse "./common"\n\n\nuse ../x/y\nglobal { connections 1 }\nglobal { connections 2 }\n';
    expect(fmt(text)).toBe(
      lines('policy p version 1', '', 'use stdlib/retry', 'use "./common"', '', 'use ../x/y', '', 'global {', '  connections 1', '}', '', 'global {', '  connections 2', '}'),
    );
  });

  it('keeps statements in source order, whatever AST list they end up in', () => {
    const text = 'policy p version 1\nprovider y {\n  on reply 421 { retry }\n  rate 1/s\n  match domain y.com\n  rules common\n  tls verify\n}\n';
    const out = fmt(text);
    const order = ['on reply 421', 'rate 1/s', 'match domain', 'rules common', 'tls verify'].map((s) => out.indexOf(s));
    expect(order).toEqual([...order].sort((a, b) => a - b));
  });

  it('orders reply matchers: codes, statuses, texts, phase, when', () => {
    const text = 'policy p version 1\nrules r {\n  on reply when 2 in 5m /x/ phase rcpt "s", 5.7.1 421 {\n    retry\n  }\n}\n';
    expect(fmt(text)).toContain('  on reply 421 5.7.1 /x/, "s" phase rcpt when 2 in 5m {\n');
  });

  it('never respells a value: units, rates, case and quotes stay as written', () => {
    const text = lines(
      'policy p version 1',
      'provider Y { match domain [*.]Example.COM; rate 3600/h; connections 007 per source; expire 5400s',
      '  on reply 4xx 4.7.0 "it said \\"no\\"" /a\\/b/gi { retry after 1h30m; backoff 0.5h }',
      '}',
      'retry r { after 90s, 1.5m; exponential 2m x1.40 cap 1w; jitter 5.0% }',
      'warmup w { start 20/day grow x1.4 cap 1000/d }',
      'source s { address "192.0.2.1" }',
    );
    const out = fmt(text);
    for (const literal of ['[*.]Example.COM', '3600/h', '007', '5400s', '"it said \\"no\\""', '/a\\/b/gi', '1h30m', '0.5h', '90s, 1.5m', 'x1.40', '1w', '5.0%', '1000/d', '"192.0.2.1"']) {
      expect(out).toContain(literal);
    }
  });

  it('keeps `retry every` on one line and a `retry { … }` block as a block', () => {
    const out = fmt('policy p version 1\ndefault { retry every 30m }\nprovider a { retry { then every 30m } }\n');
    expect(out).toContain('default {\n  retry every 30m\n}');
    expect(out).toContain('provider a {\n  retry {\n    then every 30m\n  }\n}');
  });

  it('keeps a `backoff` block even when it is empty', () => {
    const out = fmt('policy p version 1\nrules r { on reply 421 { backoff 5m {}; backoff 1m } }\n');
    expect(out).toContain('    backoff 5m {\n    }\n    backoff 1m\n');
  });

  it('rebuilds the lines of a pool from the commas, and puts a continued list on one line', () => {
    const out = fmt('policy p version 1\npool p { a, b,\n c; d }\nretry r { after 1m,\n 2m }\n');
    expect(out).toContain('pool p {\n  a, b, c\n  d\n}');
    expect(out).toContain('retry r {\n  after 1m, 2m\n}');
  });

  it('prints optional words the canonical way', () => {
    const out = fmt(
      lines(
        'policy p version 1',
        'warmup w { start 1/day grow x2 }',
        'test "t" {',
        '  deliver to a@b.com tenant t source s mx Mx1.B.com, mx2.b.com.',
        '  reply "421 x" phase rcpt 1 times',
        '  reply "421 y" phase data 2 times',
        '  expect retry never',
        '  expect route provider : b',
        '}',
      ),
    );
    expect(out).toContain('start 1/day grow x2 daily\n');
    expect(out).toContain('deliver to a@b.com mx Mx1.B.com, mx2.b.com. source s tenant t\n');
    expect(out).toContain('reply "421 x" phase rcpt\n');
    expect(out).toContain('reply "421 y" 2 times phase data\n');
    expect(out).toContain('expect no retry\n');
    expect(out).toContain('expect route provider : b\n');
  });

  it('lays out a file with CRLF line ends like the same file with LF', () => {
    const text = 'policy p version 1 # crlf\n\nglobal {\n  connections 5 # five\n\n  rate 1/s\n}\n';
    expect(fmt(text.replaceAll('\n', '\r\n'))).toBe(fmt(text));
  });

  it('formats a file with nothing in it to nothing', () => {
    expect(format(parse('', 'empty.policy').ast, '')).toBe('');
    expect(format(parse('\n\n  \n', 'empty.policy').ast, '\n\n  \n')).toBe('');
  });
});

describe('format: comments', () => {
  it('puts an own-line comment before the statement after it, at its indentation', () => {
    const text = '# file\npolicy p version 1\nglobal {\n# about the limit\n        connections 5\n}\n';
    expect(fmt(text)).toBe(lines('# file', 'policy p version 1', '', 'global {', '  # about the limit', '  connections 5', '}'));
  });

  it('keeps a trailing comment at the end of its line, one space before `#`', () => {
    const text = 'policy p version 1     # header\nglobal {\n  connections 5      # five\n}   # closed\n';
    expect(fmt(text)).toBe(lines('policy p version 1 # header', '', 'global {', '  connections 5 # five', '} # closed'));
  });

  it('keeps a comment after `{` on the head line', () => {
    const text = 'policy p version 1\nglobal {   # all traffic\n  connections 5\n}\nwarmup w { for domain a.com {  # none yet\n} }\n';
    const out = fmt(text);
    expect(out).toContain('global { # all traffic\n  connections 5\n}');
    expect(out).toContain('  for domain a.com { # none yet\n  }');
  });

  it('keeps comments at the end of a block before its `}`, and at the end of the file', () => {
    const text = 'policy p version 1\nglobal {\n  connections 5\n\n  # later: rate\n}\n# bye\n\n# really\n';
    expect(fmt(text)).toBe(lines('policy p version 1', '', 'global {', '  connections 5', '', '  # later: rate', '}', '# bye', '', '# really'));
  });

  it('keeps comments in an empty block', () => {
    expect(fmt('policy p version 1\npool p {\n    # nothing yet\n}\n')).toBe(lines('policy p version 1', '', 'pool p {', '  # nothing yet', '}'));
  });

  it('moves a comment from inside a statement continued over lines to just before it', () => {
    const text = 'policy p version 1\nprovider y {\n  rate 1/s\n  match domain a.com,   # first\n     # second\n               b.com    # third\n}\n';
    expect(fmt(text)).toBe(lines('policy p version 1', '', 'provider y {', '  rate 1/s', '  # first', '  # second', '  match domain a.com, b.com # third', '}'));
  });

  it('strips white space after a comment but keeps its text', () => {
    const out = fmt('policy p version 1 #  spaced  \t\r\n');
    expect(out).toBe('policy p version 1 #  spaced\n');
  });

  it('keeps comments that contain braces, quotes and commas in place', () => {
    const text = 'policy p version 1\npool p {\n  a, # b, c }\n  d # "{"\n}\n';
    expect(fmt(text)).toBe(lines('policy p version 1', '', 'pool p {', '  # b, c }', '  a, d # "{"', '}'));
  });
});
