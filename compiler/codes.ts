/**
 * The registry of diagnostic codes. Every diagnostic any stage emits uses one of these
 * codes; each has a fixture under `test/fixtures/diagnostics/` that triggers it and a
 * line in `docs/language.md`. SARIF output lists these as its rules.
 */
import type { Severity } from '../grammar/diagnostic.ts';

/** What the registry knows about one code. */
export interface CodeInfo {
  /** Short kebab-case name, used as the SARIF rule name. */
  name: string;
  severity: Severity;
  /** One sentence for documentation and SARIF `shortDescription`. */
  summary: string;
}

export const CODES = {
  // Lexing and parsing (grammar/)
  PARSE001: { name: 'unexpected-character', severity: 'error', summary: 'A character that cannot start any token, or an unterminated string or regex literal.' },
  PARSE002: { name: 'syntax-error', severity: 'error', summary: 'The tokens do not form a valid construct: something is missing, misplaced or extra.' },
  PARSE003: { name: 'missing-unit', severity: 'error', summary: 'A number that needs an explicit unit (time, size or rate) has none.' },
  PARSE004: { name: 'wrong-unit', severity: 'error', summary: 'A number carries a unit that does not fit where it is used.' },
  PARSE005: { name: 'invalid-value', severity: 'error', summary: 'A literal is malformed: a number, date, address, version, reply code or enhanced status code.' },
  PARSE006: { name: 'missing-header', severity: 'error', summary: 'A policy file must start with `policy NAME version VERSION`.' },
  // Resolution (compiler/resolve.ts)
  RES001: { name: 'unknown-name', severity: 'error', summary: 'A name refers to nothing defined in this file or the files it uses.' },
  RES002: { name: 'duplicate-definition', severity: 'error', summary: 'Two definitions of the same kind share one name, or a second `default`/`global` block.' },
  RES003: { name: 'import-cycle', severity: 'error', summary: '`use` statements, or rule sets that include each other, form a cycle.' },
  RES004: { name: 'import-not-found', severity: 'error', summary: 'A `use` names a file that does not exist.' },
  RES005: { name: 'not-imported', severity: 'error', summary: 'A name is defined in a file that this file does not `use`.' },
  // Validation (compiler/validate.ts)
  VAL001: { name: 'impossible-value', severity: 'error', summary: 'A limit, count, duration or factor is zero, negative or out of range.' },
  VAL002: { name: 'expire-before-retry', severity: 'error', summary: 'Messages would expire before their first retry.' },
  VAL003: { name: 'invalid-regex', severity: 'error', summary: 'A regular expression does not compile.' },
  VAL004: { name: 'redos-regex', severity: 'error', summary: 'A regular expression can backtrack catastrophically on some reply text (ReDoS).' },
  VAL005: { name: 'example-not-matched', severity: 'error', summary: 'A reply rule does not match one of its own `example` replies.' },
  VAL006: { name: 'shadowed-rule', severity: 'error', summary: 'Every example of a reply rule is already caught by an earlier rule, so it can never fire.' },
  VAL007: { name: 'rule-without-example', severity: 'warning', summary: 'A reply rule has no `example` reply, so nothing proves it matches what it is meant to.' },
  VAL008: { name: 'domain-claimed-twice', severity: 'error', summary: 'Two providers (or two domain blocks) claim the same domain or MX pattern.' },
  VAL009: { name: 'provider-matches-nothing', severity: 'error', summary: 'A provider has no `match` statement, so no domain can ever route to it.' },
  VAL010: { name: 'warmup-goes-down', severity: 'error', summary: 'A warmup schedule lowers the daily limit from one day to the next.' },
  VAL011: { name: 'misplaced-setting', severity: 'error', summary: 'A setting or scope is not allowed in this kind of block.' },
  VAL012: { name: 'duplicate-setting', severity: 'error', summary: 'One block sets the same thing twice.' },
  VAL013: { name: 'invalid-example', severity: 'error', summary: 'An `example` is not an SMTP reply (three-digit code first), or contradicts the rule (a bounce on a 2xx reply).' },
  VAL014: { name: 'conflicting-limits', severity: 'warning', summary: 'A narrower limit is looser than the wider one that contains it, so it can never bind.' },
  VAL015: { name: 'value-too-large', severity: 'error', summary: 'A duration, count, rate, size, factor or percentage is larger than the language allows (a year, 2^31 − 1, 1e9 per time unit, 1 TB per time unit, x100, 100%).' },
  VAL016: { name: 'bounce-in-block', severity: 'error', summary: 'A rule both bounces and states `disposition block`: a block keeps the recipient queued, a bounce fails it.' },
  // Tests inside policy files (compiler/validate.ts now, `petrel test` later)
  TEST001: { name: 'test-unknown-name', severity: 'error', summary: 'A `test` block names a source, tenant, route, category or ramp that does not exist.' },
  TEST002: { name: 'test-incomplete', severity: 'error', summary: 'A `test` block lacks a `deliver` line or has nothing to `expect`.' },
} as const satisfies Record<string, CodeInfo>;

/** Every registered diagnostic code. */
export type DiagnosticCode = keyof typeof CODES;

/** Registry entry for `code`; throws on an unregistered code (a broken invariant, not user error). */
export function codeInfo(code: string): CodeInfo {
  const info = (CODES as Record<string, CodeInfo>)[code];
  if (!info) throw new Error(`unregistered diagnostic code ${code}`);
  return info;
}
