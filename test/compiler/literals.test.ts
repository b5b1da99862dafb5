import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { literalScanner } from '../../compiler/artifact-lib.ts';
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

  it('takes the alternatives of a required group when they say more than the runs around it', () => {
    expect(requiredLiterals('\\[(?:TSS0[45]|IPTS04)\\]', '')).toEqual({ literals: ['TSS0', 'IPTS04'], lowercase: false });
    expect(requiredLiterals('\\bIP (?:is )?(?:blocked|banned)\\b', 'i')).toEqual({ literals: ['blocked', 'banned'], lowercase: true });
    // An optional group, a lookaround or a negative lookahead requires nothing.
    expect(requiredLiterals('ab(?:cdef)?', '')).toBeUndefined();
    expect(requiredLiterals('ab(?=cdef)', '')).toBeUndefined();
    expect(requiredLiterals('(?<!spam )virus', 'i')).toEqual({ literals: ['virus'], lowercase: true });
  });

  it('reads escapes whole, so their digits are not taken for literals', () => {
    expect(requiredLiterals('\\x41bc', '')).toBeUndefined();
    expect(requiredLiterals('\\u0041bcd', '')).toEqual({ literals: ['bcd'], lowercase: false });
    expect(requiredLiterals('(a)\\1234', '')).toBeUndefined();
    expect(requiredLiterals('a{b', '')).toBeUndefined();
  });

  it('never rules out a text the regex matches', () => {
    const atom = fc.constantFrom('a', 'b', 'c', 'ab', 'abc', '\\.', '\\[', '.', '\\d', '[ab]', '(ab|c)', '(?:bc)', ' ', 'A', '(?:abc|bca)', '(?:a(?:bc|cb)|ccc)', '(?=ab)', '(?!ab)', '(?<=a)', '(?<!b)', '\\x41', '\\x62', '\\u0061', '\\b', '(?<n>ab)', '\\k<n>', '\\1', '{', 'c{', '\\cA');
    const quant = fc.constantFrom('', '', '', '?', '*', '+', '{0,2}', '{1,2}', '+?', '{2}');
    const pattern = fc.array(fc.tuple(atom, quant).map(([a, q]) => a + q), { minLength: 1, maxLength: 6 }).map((parts) => parts.join(''));
    const source = fc.oneof(pattern, fc.tuple(pattern, pattern).map(([a, b]) => `${a}|${b}`));
    fc.assert(
      fc.property(source, fc.constantFrom('', 'i'), fc.string({ unit: fc.constantFrom('a', 'b', 'c', 'A', 'B', '.', '[', ' ', '1', '{', '\u0001'), maxLength: 14 }), (src, flags, text) => {
        let re: RegExp;
        try {
          re = new RegExp(src, flags);
        } catch {
          return; // not a regex the compiler would accept
        }
        const req = requiredLiterals(src, flags);
        if (!req || !re.test(text)) return;
        const hay = req.lowercase ? text.toLowerCase() : text;
        expect(req.literals.some((l) => hay.includes(l)), `${src}/${flags} on ${JSON.stringify(text)}: ${JSON.stringify(req)}`).toBe(true);
      }),
      { numRuns: 20_000 },
    );
  });
});

describe('literalScanner', () => {
  it('marks every group whose literal the lowercased text contains', () => {
    // Letters around the ones that fold to ASCII in toLowerCase (İ → i̇, K → k), other
    // scripts, digits and punctuation, long literals (the scanner reads a prefix).
    const unit = fc.constantFrom('a', 'b', 'k', 'i', 'A', 'K', 'I', 'İ', 'K', 'é', 'É', 'ſ', 'Σ', '1', '2', '.', '[', ' ', '-', '#');
    const literal = fc.string({ unit, minLength: 1, maxLength: 12 }).map((s) => s.toLowerCase());
    fc.assert(
      fc.property(fc.array(literal, { minLength: 1, maxLength: 12 }), fc.array(fc.string({ unit, maxLength: 30 }), { minLength: 1, maxLength: 4 }), (literals, texts) => {
        const scanner = literalScanner(
          literals.map((l, g) => [l, g]),
          literals.length,
        );
        for (const text of texts) {
          scanner.scan(text);
          const lower = text.toLowerCase();
          literals.forEach((l, g) => {
            if (lower.includes(l)) expect(scanner.seen[g], `${JSON.stringify(l)} in ${JSON.stringify(text)}`).toBe(scanner.stamp);
          });
        }
      }),
      { numRuns: 3000 },
    );
  });

  it('finds a literal of every regex that matches (requiredLiterals then the scan)', () => {
    const word = fc.constantFrom('spam', 'blocked', 'rate limit', 'user unknown', 'TS04', 'mailbox', 'quota');
    const atom = fc.oneof(word, word.map((w) => `(?:${w}|${w.toUpperCase()} ?x)`), fc.constantFrom('\\d', '\\s', '[a-z]', '.', ' '));
    const source = fc.array(atom, { minLength: 1, maxLength: 4 }).map((a) => a.join(''));
    const text = fc.array(fc.oneof(word, word.map((w) => w.toUpperCase()), fc.constantFrom(' ', '1', 'x', 'é', 'İ', 'K')), { maxLength: 8 }).map((a) => a.join(''));
    fc.assert(
      fc.property(fc.array(source, { minLength: 1, maxLength: 5 }), fc.constantFrom('', 'i'), text, (sources, flags, reply) => {
        const literals: [string, number][] = [];
        const groups = sources.map((src, g) => {
          const req = requiredLiterals(src, flags);
          for (const l of req?.literals ?? []) literals.push([l.toLowerCase(), g]);
          return req !== undefined;
        });
        const scanner = literalScanner(literals, sources.length);
        scanner.scan(reply);
        sources.forEach((src, g) => {
          if (groups[g] && new RegExp(src, flags).test(reply)) expect(scanner.seen[g], `/${src}/${flags} on ${JSON.stringify(reply)}`).toBe(scanner.stamp);
        });
      }),
      { numRuns: 3000 },
    );
  });
});
