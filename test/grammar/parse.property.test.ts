import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parse, type Diagnostic } from '../../grammar/index.ts';
import { anyText, validPolicyText } from './arbitraries.ts';
import { layoutProblems, roundTrip, summary, withoutPositions } from './helpers.ts';

/** Why a diagnostic is malformed for `text`, or undefined when it is well formed. */
function malformed(d: Diagnostic, text: string): string | undefined {
  const lines = text.split('\n');
  const lineCount = lines.length;
  const s = d.span;
  if (!/^PARSE\d{3}$|^VAL\d{3}$/.test(d.code)) return `unexpected code ${d.code}`;
  if (!(s.line >= 1 && s.column >= 1)) return `position ${s.line}:${s.column} before the start`;
  if (s.line > lineCount) return `line ${s.line} after the last line (${lineCount})`;
  if (s.column > lines[s.line - 1]!.length + 1) return `column ${s.column} after the end of line ${s.line}`;
  if (!(s.endLine >= s.line && s.endLine <= lineCount)) return `end line ${s.endLine} outside ${s.line}..${lineCount}`;
  if (!(0 <= s.offset && s.offset <= s.endOffset && s.endOffset <= text.length)) return `offsets ${s.offset}..${s.endOffset} outside 0..${text.length}`;
  if (d.message === '' || d.message.includes('\n')) return 'message is not one line';
  return undefined;
}

describe('parse: any input', () => {
  it('never throws, and every diagnostic has a registered code and a span inside the text', () => {
    fc.assert(
      fc.property(anyText, (text) => {
        const { ast, diagnostics } = parse(text, 'fuzz.policy');
        expect(ast.kind).toBe('file');
        for (const d of diagnostics) expect(malformed(d, text), `${d.code} ${d.message}`).toBeUndefined();
      }),
      { numRuns: 5000 },
    );
  });

  it('reads `5.x.1` as one enhanced status code, not as the domain `5.x.` and a number', () => {
    expect(summary(parse('policy p version 1\nrules r { on reply 5.x.1 { retry } }\n', 'x.policy').diagnostics)).toEqual([]);
  });

  it('reports an error for text that is not a policy', () => {
    expect(parse('{', 'x.policy').diagnostics.length).toBeGreaterThan(0);
    expect(parse('policy p version 1\n}', 'x.policy').diagnostics.map((d) => d.code)).toContain('PARSE002');
  });
});

describe('parse and format: valid policies', () => {
  it('parse with no diagnostics; `fmt` re-parses to the same AST, is idempotent and ignores CRLF', () => {
    fc.assert(
      fc.property(validPolicyText, (text) => {
        expect(summary(parse(text, 'gen.policy').diagnostics), text).toEqual([]);
        const trip = roundTrip(text, 'gen.policy');
        expect(summary(trip.diagnostics), trip.formatted).toEqual([]);
        expect(withoutPositions(trip.after)).toEqual(withoutPositions(trip.before));
        expect(trip.twice).toBe(trip.formatted);
        expect(layoutProblems(trip.formatted), trip.formatted).toEqual([]);
        // Line ends are layout too: the same policy with CRLF formats the same.
        expect(roundTrip(text.replaceAll('\n', '\r\n'), 'gen.policy').formatted).toBe(trip.formatted);
      }),
      { numRuns: 500 },
    );
  });
});

describe('line ends', () => {
  it('counts `\\r\\n` as one line break in spans', () => {
    const [d] = parse('policy p version 1\r\nfoo\r\n', 'crlf.policy').diagnostics;
    expect(d?.span.line).toBe(2);
  });
});
