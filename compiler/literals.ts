/**
 * Required literals of a regex: text that every match must contain. `emit` tests them
 * with `includes` before running the regex, so most rules are ruled out without regex
 * work. Conservative by construction: when in doubt, no literal (the regex decides).
 */

const PUNCTUATION_ESCAPES = new Set([...'[]\\^$.|?*+(){}/-']);

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

/** The longest literal run one alternative must contain, or '' when there is none. */
function longestRequired(alt: string): string {
  let best = '';
  let run = '';
  const end = () => {
    if (run.length > best.length) best = run;
    run = '';
  };
  for (let i = 0; i < alt.length; i++) {
    const c = alt[i]!;
    let literal: string | undefined;
    if (c === '\\') {
      const next = alt[i + 1];
      i++;
      if (next !== undefined && PUNCTUATION_ESCAPES.has(next)) literal = next;
      else {
        end();
        continue;
      }
    } else if (c === '[') {
      i = skipClass(alt, i);
      end();
      continue;
    } else if (c === '(') {
      i = skipGroup(alt, i);
      end();
      continue;
    } else if (c === '.' || c === '^' || c === '$' || c === ')' || c === '|') {
      end();
      continue;
    } else if (c === '?' || c === '*' || c === '+' || c === '{') {
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
  return best;
}

/**
 * Literals such that every match of `/source/flags` contains at least one of them
 * (as written, or lowercased when `lowercase` is set), or undefined for no prefilter.
 */
export function requiredLiterals(source: string, flags: string): { literals: string[]; lowercase: boolean } | undefined {
  // `iu` folds some non-ASCII characters onto ASCII ones (ſ → s, K → k): no safe literal.
  if (flags.includes('i') && flags.includes('u')) return undefined;
  const lowercase = flags.includes('i');
  const literals: string[] = [];
  for (const alt of alternatives(source)) {
    const lit = longestRequired(alt);
    if (lit.length < 3 || (lowercase && /[^\x20-\x7e]/.test(lit))) return undefined;
    literals.push(lowercase ? lit.toLowerCase() : lit);
  }
  return { literals: [...new Set(literals)], lowercase };
}
