/**
 * Tokens of the policy language.
 *
 * The order of `allTokens` matters: chevrotain tries patterns in order and takes the
 * first that matches (not the longest), so literals that start like other tokens come
 * first:
 *   1. trivia (white space, newlines, comments);
 *   2. strings and regex literals (they may contain anything);
 *   3. e-mail addresses, enhanced status codes (`5.x.1` would start a domain), then rate literals (`3600/h`, `10MB/min`) before numbers, so the
 *      `/` of a rate is never read as the start of a regex;
 *   4. domain names (`yahoo.com`, `*.yahoodns.net`, `[*.]gmail.com`, `163.com`) before
 *      numbers and identifiers: a domain has a dot and a last label that starts with a letter;
 *   5. paths (`stdlib/retry`), growth factors (`x1.4`), numbers with optional units;
 *   6. identifiers (`rate-limit` is one), then punctuation.
 *
 * There are no keyword tokens: a keyword is an identifier in a place that gives it a
 * meaning (`domain` starts a block at the top level, is a match target after `match` and a
 * warmup target after `for`), so `build-ast.ts` reads keywords by their text,
 * where it can also say which words that place allows.
 */
import { createToken, Lexer, type TokenType } from 'chevrotain';

const WhiteSpace = createToken({ name: 'WhiteSpace', pattern: /[ \t\r]+/, group: Lexer.SKIPPED });
/** Newlines end statements, like `;`. */
export const Newline = createToken({ name: 'Newline', pattern: /\n/, line_breaks: true });
/** `# …` to the end of the line; kept in a group so `fmt` can put comments back. */
const Comment = createToken({ name: 'Comment', pattern: /#[^\n]*/, group: 'comments' });

export const StringLit = createToken({ name: 'StringLit', pattern: /"(?:[^"\\\n]|\\.)*"/ });
/** A string with no closing quote on its line: one token, so the rest of the line is not read as code. */
export const UnterminatedString = createToken({ name: 'UnterminatedString', pattern: /"(?:[^"\\\n]|\\.)*/ });
/** `/…/flags`: a JavaScript regular expression on one line; `\/` escapes a slash. */
export const RegexLit = createToken({
  name: 'RegexLit',
  pattern: /\/(?![*/\s])(?:[^/\\\n[]|\\.|\[(?:[^\]\\\n]|\\.)*\])+\/[a-z]*/,
});

export const EmailLit = createToken({ name: 'EmailLit', pattern: /[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z][A-Za-z0-9-]*/ });
/** An enhanced status code or pattern: `5.7.1`, `4.7.x`, `5.x.1`. Before domains, which `5.x.1` would otherwise start. */
export const StatusLit = createToken({ name: 'StatusLit', pattern: /[245]\.(?:\d{1,3}|x)\.(?:\d{1,3}|x)(?![\w.])/ });
/** `3600/h`, `20/s`, `10MB/min`, `50/day`: a count or size over a time unit, one token. */
export const RateLit = createToken({ name: 'RateLit', pattern: /\d[\d.]*[A-Za-z]*\/[A-Za-z]+/ });
/** A domain or domain pattern: `yahoo.com`, `*.yahoodns.net`, `[*.]gmail.com`. */
export const DomainLit = createToken({
  name: 'DomainLit',
  pattern: /(?:\*\.|\[\*\.\])?(?:[A-Za-z0-9_-]+\.)+[A-Za-z][A-Za-z0-9-]*\.?/,
});
/** A `use` path with at least one slash: `stdlib/retry`, `./common`, `../shared/limits`. */
export const PathLit = createToken({ name: 'PathLit', pattern: /(?:\.\.?\/)+[\w.-]+(?:\/[\w.-]+)*|[A-Za-z_][\w-]*(?:\/[\w.-]+)+/ });
/** A growth factor: `x1.4`. */
export const FactorLit = createToken({ name: 'FactorLit', pattern: /x\d+(?:\.\d+)?(?![\w.])/ });
/**
 * A number with an optional unit or shape: `10`, `30m`, `2d`, `10MB`, `10%`, `4xx`,
 * `5.7.1`, `2026.11.2`, `192.0.2.10`, `2026-11-20`. What it means depends on where it
 * stands; the CST→AST step checks it (missing or wrong units are diagnostics there).
 */
export const NumberLit = createToken({ name: 'NumberLit', pattern: /\d[\w.%:-]*/ });

/** A name or a keyword: which one depends on where it stands (see the file comment). */
export const Identifier = createToken({ name: 'Identifier', pattern: /[A-Za-z_][A-Za-z0-9_-]*/ });

export const LCurly = createToken({ name: 'LCurly', pattern: /\{/ });
export const RCurly = createToken({ name: 'RCurly', pattern: /\}/ });
export const Semicolon = createToken({ name: 'Semicolon', pattern: /;/ });
export const Comma = createToken({ name: 'Comma', pattern: /,/ });
export const Colon = createToken({ name: 'Colon', pattern: /:/ });

/** All tokens in matching order (see the file comment for why this order). */
export const allTokens: TokenType[] = [
  WhiteSpace,
  Newline,
  Comment,
  StringLit,
  UnterminatedString,
  RegexLit,
  EmailLit,
  StatusLit,
  RateLit,
  DomainLit,
  PathLit,
  FactorLit,
  NumberLit,
  Identifier,
  LCurly,
  RCurly,
  Semicolon,
  Comma,
  Colon,
];

/** The one lexer instance (chevrotain lexers are stateless between `tokenize` calls). */
// Only `\n` ends a line: `\r` of a CRLF file is white space, so lines count the same in both.
export const policyLexer = new Lexer(allTokens, { ensureOptimizations: false, positionTracking: 'full', lineTerminatorsPattern: /\n/g, lineTerminatorCharacters: ['\n'] });
