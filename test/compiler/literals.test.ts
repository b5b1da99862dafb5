import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { requiredLiterals } from '../../compiler/literals.ts';

describe('requiredLiterals', () => {
  it('finds the literal every match must contain', () => {
    expect(requiredLiterals('\\[TS0[12]\\]', '')).toEqual({ literals: ['[TS0'], lowercase: false });
    expect(requiredLiterals('spam|blocked', 'i')).toEqual({ literals: ['spam', 'blocked'], lowercase: true });
    expect(requiredLiterals('rate limit(ed)? exceeded', 'i')).toEqual({ literals: ['rate limit'], lowercase: true });
    expect(requiredLiterals('mailboxe?s full', '')).toEqual({ literals: ['mailbox'], lowercase: false });
    expect(requiredLiterals('^4\\d\\d ', '')).toBeUndefined();
    expect(requiredLiterals('a|bcd', '')).toBeUndefined();
    expect(requiredLiterals('spam', 'iu')).toBeUndefined();
    expect(requiredLiterals('x{0,3}yzw', '')).toEqual({ literals: ['yzw'], lowercase: false });
    expect(requiredLiterals('ab+cde', '')).toEqual({ literals: ['cde'], lowercase: false });
  });

  it('never rules out a text the regex matches', () => {
    const atom = fc.constantFrom('a', 'b', 'c', 'ab', 'abc', '\\.', '\\[', '.', '\\d', '[ab]', '(ab|c)', '(?:bc)', ' ', 'A');
    const quant = fc.constantFrom('', '', '', '?', '*', '+', '{0,2}', '{1,2}', '+?');
    const pattern = fc.array(fc.tuple(atom, quant).map(([a, q]) => a + q), { minLength: 1, maxLength: 6 }).map((parts) => parts.join(''));
    const source = fc.oneof(pattern, fc.tuple(pattern, pattern).map(([a, b]) => `${a}|${b}`));
    fc.assert(
      fc.property(source, fc.constantFrom('', 'i'), fc.string({ unit: fc.constantFrom('a', 'b', 'c', 'A', 'B', '.', '[', ' ', '1'), maxLength: 14 }), (src, flags, text) => {
        const re = new RegExp(src, flags);
        const req = requiredLiterals(src, flags);
        if (!req || !re.test(text)) return;
        const hay = req.lowercase ? text.toLowerCase() : text;
        expect(req.literals.some((l) => hay.includes(l)), `${src}/${flags} on ${JSON.stringify(text)}: ${JSON.stringify(req)}`).toBe(true);
      }),
      { numRuns: 20_000 },
    );
  });
});
