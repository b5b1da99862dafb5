import { describe, expect, it } from 'vitest';
import { isoTime, printable } from '../../../runtime/observe/text.ts';

describe('printable', () => {
  it('escapes line breaks, tabs and backslashes by name', () => {
    expect(printable('550 a\r\nd,x\ty\\z')).toBe('550 a\\r\\nd,x\\ty\\\\z');
  });

  it('escapes other C0, DEL, C1 and the Unicode line separators', () => {
    expect(printable('a\x00b\x1bc\x7fd\x85e\u2028f\u2029')).toBe('a\\x00b\\x1bc\\x7fd\\x85e\\u2028f\\u2029');
  });

  it('leaves printable text alone, non-ASCII included', () => {
    expect(printable('250 2.0.0 OK: queued as ÄÖ 日本')).toBe('250 2.0.0 OK: queued as ÄÖ 日本');
  });

  it('never leaves a character that ends or splits a line, for any code unit', () => {
    let all = '';
    for (let c = 0; c < 0x3000; c++) all += String.fromCharCode(c);
    expect(printable(all)).not.toMatch(/[\x00-\x1f\x7f-\x9f\u2028\u2029]/);
  });

  it('cuts to the byte bound at a character boundary, never inside an escape, ending in …', () => {
    expect(printable('abcdef', 6)).toBe('abcdef');
    expect(printable('abcdefg', 6)).toBe('abc…');
    expect(Buffer.byteLength(printable('é'.repeat(100), 10))).toBeLessThanOrEqual(10);
    expect(printable('é'.repeat(100), 10)).toBe('ééé…');
    // `\x01` is four bytes: it is kept whole or left out.
    expect(printable('ab\r\x01c', 8)).toBe('ab\\r…');
    expect(printable('x'.repeat(5_000_000), 1000)).toHaveLength(997 + 1);
  });
});

describe('isoTime', () => {
  it('formats times a Date holds as toISOString does', () => {
    expect(isoTime(Date.UTC(2026, 10, 29, 23, 43, 39))).toBe('2026-11-29T23:43:39.000Z');
  });

  it('clamps times a Date cannot hold instead of throwing', () => {
    expect(isoTime(8.64e24)).toBe('+275760-09-13T00:00:00.000Z');
    expect(isoTime(Infinity)).toBe('+275760-09-13T00:00:00.000Z');
    expect(isoTime(-Infinity)).toBe('-271821-04-20T00:00:00.000Z');
    expect(isoTime(NaN)).toBe('1970-01-01T00:00:00.000Z');
  });
});
