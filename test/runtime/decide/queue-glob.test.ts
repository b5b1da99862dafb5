/** The recipient pattern of queue filters (decide/queue-ops.ts `globMatch`): what it matches, and no backtracking blow-up. */
import { describe, expect, it } from 'vitest';
import { globMatch } from '../../../runtime/decide/index.ts';

describe('globMatch', () => {
  it('matches * and ? case-insensitively, everything else literally', () => {
    expect(globMatch('*@gmail.com', 'Bob@GMAIL.com')).toBe(true);
    expect(globMatch('*@gmail.com', 'bob@gmail.co')).toBe(false);
    expect(globMatch('user?@x.example', 'user7@x.example')).toBe(true);
    expect(globMatch('user?@x.example', 'user77@x.example')).toBe(false);
    expect(globMatch('a.b+c@(x)', 'a.b+c@(x)')).toBe(true);
    expect(globMatch('a.b@x', 'aXb@x')).toBe(false);
    expect(globMatch('**', '')).toBe(true);
    expect(globMatch('*a*b*', 'xxaxxbxx')).toBe(true);
  });

  it('takes bounded time on a pattern of many stars that fails at the end', () => {
    const started = performance.now();
    expect(globMatch(`${'*a'.repeat(120)}*b`, 'a'.repeat(320))).toBe(false);
    // A backtracking regex for this pattern would not finish; this is ~100k steps.
    expect(performance.now() - started).toBeLessThan(1000);
  });
});
