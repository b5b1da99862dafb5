/**
 * Required literals of a regex: text that every match must contain. `emit` feeds them to
 * one multi-literal scan per reply (`literalScanner` in `artifact-lib.ts`), so a rule's
 * regex runs only when the reply contains one of its literals. Conservative by
 * construction: when in doubt, no literal (the regex always runs).
 */

const PUNCTUATION_ESCAPES = new Set([...'[]\\^$.|?*+(){}/-']);
const QUANTIFIER = /^\{\d+(?:,\d*)?\}/;

/** Splits at top-level `|` (outside groups and classes). */
function alternatives(source: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < source.length; i++) {
    const c = source[i];
    if (c === '\\') i++;
    else if (c === '[') i = skipClass(source, i);
    else if (c === '(') depth++;
    else if (c === ')') depth--;
    else if (c === '|' && depth === 0) {
      out.push(source.slice(start, i));
      start = i + 1;
    }
  }
  out.push(source.slice(start));
  return out;
}

function skipClass(source: string, i: number): number {
  let j = i + 1;
  if (source[j] === '^') j++;
  if (source[j] === ']') j++;
  while (j < source.length && source[j] !== ']') j += source[j] === '\\' ? 2 : 1;
  return j;
}

function skipGroup(source: string, i: number): number {
  let depth = 0;
  for (let j = i; j < source.length; j++) {
    const c = source[j];
    if (c === '\\') j++;
    else if (c === '[') j = skipClass(source, j);
    else if (c === '(') depth++;
    else if (c === ')' && --depth === 0) return j;
  }
  return source.length;
}

/** Index of the last character of the escape sequence that starts at `i` (a backslash). */
function skipEscape(source: string, i: number): number {
  const next = source[i + 1];
  if (next === 'x') return i + 3;
  if (next === 'u') return source[i + 2] === '{' ? source.indexOf('}', i) : i + 5;
  if (next === 'c') return i + 2;
  if ((next === 'p' || next === 'P') && source[i + 2] === '{') return source.indexOf('}', i);
  if (next === 'k' && source[i + 2] === '<') return source.indexOf('>', i);
  if (next !== undefined && next >= '0' && next <= '9') {
    let j = i + 1;
    while (source[j + 1] !== undefined && source[j + 1]! >= '0' && source[j + 1]! <= '9') j++;
    return j;
  }
  return i + 1;
}

/**
 * The body of a group and whether every match of the enclosing alternative passes
 * through it, or undefined for a lookaround (what it sees is not consumed by the match,
 * and a negative one requires nothing).
 */
function groupBody(alt: string, open: number, close: number): string | undefined {
  let start = open + 1;
  if (alt[start] === '?') {
    if (alt[start + 1] === ':') start += 2;
    else if (alt[start + 1] === '<' && alt[start + 2] !== '=' && alt[start + 2] !== '!') start = alt.indexOf('>', start) + 1;
    else return undefined;
  }
  const q = alt[close + 1];
  // An optional group requires nothing.
  if (q === '?' || q === '*' || (q === '{' && /^\{0[,}]/.test(alt.slice(close + 1)))) return undefined;
  return alt.slice(start, close);
}

/** Literals one alternative must contain (one of them), or undefined when there is none. */
function requiredOfAlternative(alt: string): string[] | undefined {
  const candidates: string[][] = [];
  let run = '';
  const end = () => {
    if (run) candidates.push([run]);
    run = '';
  };
  for (let i = 0; i < alt.length; i++) {
    const c = alt[i]!;
    let literal: string | undefined;
    if (c === '\\') {
      const next = alt[i + 1];
      if (next !== undefined && PUNCTUATION_ESCAPES.has(next)) {
        literal = next;
        i++;
      } else {
        i = skipEscape(alt, i);
        if (i < 0) return undefined;
        end();
        continue;
      }
    } else if (c === '[') {
      i = skipClass(alt, i);
      end();
      continue;
    } else if (c === '(') {
      end();
      const close = skipGroup(alt, i);
      const body = groupBody(alt, i, close);
      const inner = body === undefined ? undefined : requiredOf(body);
      if (inner) candidates.push(inner);
      i = close;
      continue;
    } else if (c === '.' || c === '^' || c === '$' || c === ')' || c === '|') {
      end();
      continue;
    } else if (c === '?' || c === '*' || c === '+' || c === '{') {
      if (c === '{' && !QUANTIFIER.test(alt.slice(i))) {
        // Not a quantifier: a literal `{` (outside `u` mode). Conservatively, no literal.
        end();
        continue;
      }
      // A quantifier after a literal: `?`, `*` and `{0,…}` make it optional (drop it);
      // `+` and `{n,…}` keep one copy but end the run (what follows may repeat it).
      const optional = c === '?' || c === '*' || /^\{0[,}]/.test(alt.slice(i));
      if (optional) run = run.slice(0, -1);
      end();
      if (c === '{') i = alt.indexOf('}', i);
      if (alt[i + 1] === '?') i++;
      continue;
    } else literal = c;
    // A literal followed by an optional quantifier is handled at the quantifier.
    run += literal;
  }
  end();
  // The most selective candidate: the longest shortest literal, then the fewest literals.
  let best: string[] | undefined;
  const shortest = (set: string[]) => Math.min(...set.map((l) => l.length));
  for (const set of candidates) {
    if (!best || shortest(set) > shortest(best) || (shortest(set) === shortest(best) && set.length < best.length)) best = set;
  }
  return best;
}

/** Literals every match of `source` contains one of, or undefined. */
function requiredOf(source: string): string[] | undefined {
  const out: string[] = [];
  for (const alt of alternatives(source)) {
    const set = requiredOfAlternative(alt);
    if (!set) return undefined;
    out.push(...set);
  }
  return out;
}

/**
 * Literals such that every match of `/source/flags` contains at least one of them
 * (as written, or lowercased when `lowercase` is set), or undefined for no prefilter.
 * Literals are printable ASCII of at least three characters, so their lowercase form
 * is found in the lowercased text wherever the regex matches.
 */
export function requiredLiterals(source: string, flags: string): { literals: string[]; lowercase: boolean } | undefined {
  // `iu` folds some non-ASCII characters onto ASCII ones (ſ → s, K → k), and `v` has
  // another class syntax: no safe literal.
  if ((flags.includes('i') && flags.includes('u')) || flags.includes('v')) return undefined;
  const lowercase = flags.includes('i');
  const found = requiredOf(source);
  if (!found || found.some((lit) => lit.length < 3 || /[^\x20-\x7e]/.test(lit))) return undefined;
  const literals = found.map((lit) => (lowercase ? lit.toLowerCase() : lit));
  return { literals: [...new Set(literals)], lowercase };
}
