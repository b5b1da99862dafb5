/** The allocation-free reply parser agrees with the regular expression that defines it. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseReply } from '../../compiler/artifact-lib.ts';

const DEFINITION = /^([2-5]\d\d)(?:[ -]|$)(?:\s*([245])\.(\d{1,3})\.(\d{1,3})(?!\.?\d))?/;

function byDefinition(text: string) {
  const m = DEFINITION.exec(text);
  if (!m) return { code: 0, status: null, text };
  return { code: Number(m[1]), status: m[2] ? [Number(m[2]), Number(m[3]), Number(m[4])] : null, text };
}

const replyish = fc
  .array(fc.constantFrom('5', '4', '2', '1', '0', '9', '.', ' ', '-', '\t', '\n', '\u00a0', '\u2003', 'x', 'a'), { maxLength: 16 })
  .map((chars) => chars.join(''));

describe('parseReply', () => {
  it('reads code and enhanced status exactly as the defining regex does', () => {
    fc.assert(
      fc.property(fc.oneof(replyish, fc.string(), fc.constantFrom('550 5.1.1 x', '550-5.1.10 y', '421 4.7.0', '250', '2500 ok', '550 5.1.1234', '550 5.1.1.2', '550 5.1.1.x', '550\t\u00a04.2.2 z')), (text) => {
        expect(parseReply(text)).toEqual(byDefinition(text));
      }),
      { numRuns: 20_000 },
    );
  });
});
