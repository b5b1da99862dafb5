import { describe, expect, it } from 'vitest';
import { checkRegex, screen } from '../../compiler/regex-safety.ts';

describe('regex safety', () => {
  it('reads the structure of a pattern without running it', () => {
    expect(screen('\\[TS0[12]\\]')).toEqual({ quantifiedGroup: false, unbounded: 0 });
    expect(screen('user.*unknown')).toEqual({ quantifiedGroup: false, unbounded: 1 });
    expect(screen('(a+)+$')).toEqual({ quantifiedGroup: true, unbounded: 2 });
    expect(screen('rate limit(ed)? exceeded')).toEqual({ quantifiedGroup: false, unbounded: 0 });
    expect(screen('[)*+]\\)+x{2,}')).toEqual({ quantifiedGroup: false, unbounded: 2 });
    expect(screen('(?:ab){3}(?:cd){2,}')).toEqual({ quantifiedGroup: true, unbounded: 1 });
  });

  it('passes literal patterns and a single unbounded repetition without a full analysis', () => {
    expect(checkRegex('\\[TSS?04\\]', 'i')).toEqual({ safe: true, kind: 'screened' });
    expect(checkRegex('user.*unknown', 'i')).toEqual({ safe: true, kind: 'screened' });
  });

  it('rejects exponential and high-degree polynomial backtracking, accepts quadratic', () => {
    expect(checkRegex('^(a+)+$', '')).toMatchObject({ safe: false, kind: 'exponential' });
    expect(checkRegex('(x|x)*y', '')).toMatchObject({ safe: false, kind: 'exponential' });
    expect(checkRegex('.*a.*b.*c', '')).toMatchObject({ safe: false, kind: expect.stringMatching(/^polynomial degree [3-9]/) });
    expect(checkRegex('\\s+\\d+\\s+', '')).toMatchObject({ safe: true, kind: 'polynomial degree 2' });
    expect(checkRegex('(spam|junk)+ detected', 'i')).toMatchObject({ safe: true });
  });
});
