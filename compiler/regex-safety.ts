/**
 * ReDoS checking for reply-rule regexes (VAL004).
 *
 * A full analysis (recheck) costs milliseconds to a tenth of a second per pattern, which
 * would dominate compiling thousands of rules. Most reply patterns are literals with
 * classes and at most one unbounded repetition; those can be shown safe by reading the
 * pattern, and only the rest go to recheck.
 *
 * What counts as unsafe: exponential backtracking, or polynomial of degree 3 or more.
 * Degree 2 is what any unanchored `a.*b` has; the runtime caps reply text before
 * matching (see docs/language.md, VAL004), which bounds it.
 */
import { createRequire } from 'node:module';

/** recheck takes a third of a second to load: load it only when a pattern needs it. */
let recheck: typeof import('recheck') | undefined;
const checkSync: typeof import('recheck').checkSync = (...args) => {
  recheck ??= createRequire(import.meta.url)('recheck') as typeof import('recheck');
  return recheck.checkSync(...args);
};

export interface RegexVerdict {
  safe: boolean;
  /** `exponential`, `polynomial degree N`, `timeout`, or `screened` / `safe` when safe. */
  kind: string;
  /** A short, escaped text that makes it backtrack. */
  attack?: string;
}

/** Verdicts by `flags/source`: recheck is deterministic for a fixed seed, so results can be kept. */
const verdicts = new Map<string, RegexVerdict>();

/** The highest polynomial degree accepted. */
export const MAX_POLYNOMIAL_DEGREE = 2;

/**
 * Reads a pattern's structure without running it: whether a group carries an unbounded
 * quantifier (`(…)*`, `(…)+`, `(…){n,}`), and how many unbounded quantifiers there are.
 */
export function screen(source: string): { quantifiedGroup: boolean; unbounded: number } {
  let quantifiedGroup = false;
  let unbounded = 0;
  let previous = '';
  for (let i = 0; i < source.length; i++) {
    const c = source[i]!;
    if (c === '\\') {
      i++;
      previous = 'atom';
      continue;
    }
    if (c === '[') {
      // Skip the class; `]` right after `[` or `[^` is literal.
      let j = i + 1;
      if (source[j] === '^') j++;
      if (source[j] === ']') j++;
      while (j < source.length && source[j] !== ']') j += source[j] === '\\' ? 2 : 1;
      i = j;
      previous = 'atom';
      continue;
    }
    const bounded = c === '{' ? /^\{\d+(,\d+)?\}/.exec(source.slice(i)) : null;
    const open = c === '{' ? /^\{\d+,\}/.exec(source.slice(i)) : null;
    if (c === '*' || c === '+' || open) {
      unbounded++;
      if (previous === 'group') quantifiedGroup = true;
      if (open) i += open[0].length - 1;
      previous = 'quantifier';
      continue;
    }
    if (bounded) {
      i += bounded[0].length - 1;
      previous = 'quantifier';
      continue;
    }
    previous = c === ')' ? 'group' : c === '?' ? 'quantifier' : 'atom';
  }
  return { quantifiedGroup, unbounded };
}

/** Whether matching `source` can backtrack catastrophically. */
export function checkRegex(source: string, flags: string): RegexVerdict {
  const key = `${flags}/${source}`;
  const known = verdicts.get(key);
  if (known) return known;
  const s = screen(source);
  if (!s.quantifiedGroup && s.unbounded <= 1) {
    const verdict = { safe: true, kind: 'screened' };
    verdicts.set(key, verdict);
    return verdict;
  }
  const result = checkSync(source, flags, { timeout: 10_000, randomSeed: 0 });
  let verdict: RegexVerdict;
  if (result.status === 'vulnerable') {
    const c = result.complexity;
    const tooSlow = c.type === 'exponential' || c.degree > MAX_POLYNOMIAL_DEGREE;
    // Attack strings hold control characters; show them escaped, and short.
    const attack = result.attack?.string ? JSON.stringify(result.attack.string.length > 24 ? result.attack.string.slice(0, 24) + '…' : result.attack.string) : undefined;
    verdict = { safe: !tooSlow, kind: c.type === 'exponential' ? 'exponential' : `polynomial degree ${c.degree}`, ...(attack ? { attack } : {}) };
  } else if (result.status === 'unknown' && result.error.kind === 'timeout') {
    // Not remembered: a loaded machine must not turn an unproven pattern into a passing one.
    return { safe: false, kind: 'timeout' };
  } else verdict = { safe: true, kind: result.status };
  verdicts.set(key, verdict);
  return verdict;
}
