/**
 * Pure helpers shared by the reference interpreter and every compiled artifact.
 *
 * `emit` bundles this file into each artifact with esbuild, so the artifact has no
 * runtime dependency on the compiler, and the interpreter imports it directly: the two
 * can only disagree where their specialised code (routing, rule dispatch) differs, which
 * is exactly what the conformance property test checks.
 *
 * INVARIANT: no imports except types, no module state, no I/O.
 */
import type { BounceCategory as Category, Disposition, EffectiveSettings, LimitScope, Reaction } from '../vocabulary/index.ts';
import type { IRLimits, IRMatcher, IRRetryCurve, IRRule, IRSettings, IRSource, IRTenant, IRWarmupPlan } from './ir.ts';

/** The parts of an SMTP reply that rules and fallbacks look at. */
export interface ParsedReply {
  /** The three-digit code (200–599), or 0 when the text does not start with one. */
  code: number;
  /** Enhanced status code (RFC 3463) parts, or null. */
  status: [number, number, number] | null;
  /** The whole reply as given. */
  text: string;
}

/** Reads the code and enhanced status code from the first line of a reply. */
export function parseReply(text: string): ParsedReply {
  const reply: ParsedReply = { code: 0, status: null, text };
  parseReplyInto(reply, [0, 0, 0], text);
  return reply;
}

const isDigit = (c: number) => c >= 48 && c <= 57;
/** ECMAScript white space and line terminators: what `\s` matches. */
function isSpace(c: number): boolean {
  return c === 32 || (c >= 9 && c <= 13) || c === 0xa0 || c === 0x1680 || (c >= 0x2000 && c <= 0x200a) || c === 0x2028 || c === 0x2029 || c === 0x202f || c === 0x205f || c === 0x3000 || c === 0xfeff;
}

/**
 * Reads a reply into `target` without allocating (the status array `scratch` is reused):
 * a code is three digits 2xx–5xx followed by a space, a hyphen or the end; an enhanced
 * status may follow after white space as `C.S.D` with C in 2, 4, 5 and S, D of one to
 * three digits, not followed by another digit or `.digit`.
 */
export function parseReplyInto(target: ParsedReply, scratch: [number, number, number], text: string): void {
  target.text = text;
  target.code = 0;
  target.status = null;
  const n = text.length;
  const c0 = n > 0 ? text.charCodeAt(0) : 0;
  if (n < 3 || c0 < 50 || c0 > 53 || !isDigit(text.charCodeAt(1)) || !isDigit(text.charCodeAt(2))) return;
  if (n > 3) {
    const sep = text.charCodeAt(3);
    if (sep !== 32 && sep !== 45) return;
  }
  target.code = (c0 - 48) * 100 + (text.charCodeAt(1) - 48) * 10 + (text.charCodeAt(2) - 48);
  let i = 4;
  while (i < n && isSpace(text.charCodeAt(i))) i++;
  const cls = i < n ? text.charCodeAt(i) - 48 : -1;
  if ((cls !== 2 && cls !== 4 && cls !== 5) || text.charCodeAt(i + 1) !== 46) return;
  i += 2;
  let subject = 0;
  let digits = 0;
  while (i < n && isDigit(text.charCodeAt(i))) {
    subject = subject * 10 + text.charCodeAt(i) - 48;
    i++;
    digits++;
  }
  if (digits < 1 || digits > 3 || text.charCodeAt(i) !== 46) return;
  i++;
  let detail = 0;
  digits = 0;
  while (i < n && isDigit(text.charCodeAt(i))) {
    detail = detail * 10 + text.charCodeAt(i) - 48;
    i++;
    digits++;
  }
  if (digits < 1 || digits > 3) return;
  if (text.charCodeAt(i) === 46 && isDigit(text.charCodeAt(i + 1))) return;
  scratch[0] = cls;
  scratch[1] = subject;
  scratch[2] = detail;
  target.status = scratch;
}

/** How a fallback classifies a reply's text: `categoryByText`, or an artifact's equivalent that skips regexes a scan ruled out. */
export type TextClassifier = (reply: ParsedReply) => Category;

/** The category of a reply that no rule classified: by enhanced status code, then by text. */
export function fallbackCategory(reply: ParsedReply, byText: TextClassifier = categoryByText): Category | 'success' {
  const cls = reply.code ? Math.floor(reply.code / 100) : 0;
  if (cls === 2 || cls === 3) return 'success';
  if (reply.status) {
    if (reply.status[1] === 7) {
      // X.7.x covers spam blocks, relay denials and plain policy alike: the text decides.
      const category = byText(reply);
      return category === 'spam-related' || category === 'relaying-issues' || category === 'virus-related' ? category : 'policy-related';
    }
    if (reply.status[1] === 4 && reply.status[2] === 1) {
      // X.4.1 "no answer from host" cannot describe a host that answered: Exchange Online
      // uses it for unknown recipients and relaying, so the text decides first.
      const category = byText(reply);
      return category === 'other' ? 'no-answer-from-host' : category;
    }
    const byStatus = categoryByStatus(reply.status[1], reply.status[2]);
    if (byStatus !== 'other') return byStatus;
  }
  return byText(reply);
}

/**
 * RFC 3463 subject and detail → PowerMTA category (stdlib rules refine this by text).
 */
function categoryByStatus(subject: number, detail: number): Category {
  switch (subject) {
    case 1:
      if (detail === 2 || detail === 10) return 'bad-domain';
      if (detail === 7 || detail === 8) return 'invalid-sender';
      if (detail === 6) return 'inactive-mailbox';
      return 'bad-mailbox';
    case 2:
      if (detail === 1) return 'inactive-mailbox';
      if (detail === 2) return 'quota-issues';
      if (detail === 3) return 'content-related';
      return 'other';
    case 3:
      if (detail === 1) return 'quota-issues';
      if (detail === 4) return 'content-related';
      return 'other';
    case 4:
      if (detail === 1) return 'no-answer-from-host';
      if (detail === 2) return 'bad-connection';
      if (detail === 3 || detail === 4 || detail === 6) return 'routing-errors';
      if (detail === 7) return 'message-expired';
      return 'other';
    case 5:
      return 'protocol-errors';
    case 6:
      return 'content-related';
    case 7:
      return 'policy-related';
    default:
      return 'other';
  }
}

/**
 * Text patterns of the fallback classification, in order: the first that matches decides.
 * They follow PowerMTA's default `bounce-category-patterns` (the nouns `user`, `mailbox`,
 * `recipient`, `rcpt`, `local part`, `address`, `account`, `mail drop`, `addressee` with a
 * state; inactive before bad mailbox; `not our customer`, `badrcptto`, `have a … account`;
 * `relay`; `denied`, `prohibit`, `rejected`, `refused`, `not allowed`, `banned` as
 * policy), so categories agree with what PowerMTA users already see, and this project's
 * conventions (greylisting and too many invalid recipients are policy, a refused sender is
 * invalid-sender). Quantifiers between words are bounded: these run at delivery time.
 */
export const TEXT_CATEGORIES: readonly (readonly [RegExp, Category])[] = [
  [/virus|malware|infected/i, 'virus-related'],
  [/gr[ae]y-?list/i, 'policy-related'],
  [/spam|blocklist|blacklist|block list|black list|spamhaus|junk|\b(?:RBL|DNSBL)\b|reputation|unsolicited|\bUCE\b|realtime blackhole|open (?:relay|proxy)|\bblocked\b/i, 'spam-related'],
  [/too many (?:bad|invalid|unknown|illegal|unavailable|non-?existent) (?:users?|mailboxes|recipients?|rcpts?|addresses|addressees)/i, 'policy-related'],
  [/quota|mailbox (?:is )?full|insufficient (?:storage|space)|over ?quota|\bstorage\b/i, 'quota-issues'],
  [/sender (?:e-?mail )?(?:address )?(?:rejected|invalid|denied|unknown)|invalid sender|domain of sender/i, 'invalid-sender'],
  [/\b(?:user|mailbox|recipient|rcpt|local part|address|account|mail drop|addressee)(?: \S+){0,2}? (?:is |has been |was )?(?:currently |temporarily |permanently )?(?:disabled|expired|inactive|deactivated|suspended|locked|closed|frozen|not activated)\b|no longer (?:active|in use)/i, 'inactive-mailbox'],
  [/(?:no such|bad|invalid|unknown|illegal|unavailable|non-?existent) (?:local )?(?:user|mailbox|recipient|rcpt|local[- ]part|address|account|mail ?drop|addressee|e-?mail address)|\b(?:user|mailbox|recipient|rcpt|local[- ]part|address|account|mail ?drop|addressee)\b[^\n]{0,80}?\b(?:unknown|not found|not known|not (?:a )?valid|not here|not exists?|does not exist|doesn't exist|no such|invalid|illegal|unavailable)|not our customer|badrcptto|no longer (?:valid|available)|have an? \S+ account|no mailbox here/i, 'bad-mailbox'],
  [/(?:domain|host)\b[^\n]{0,80}?\b(?:not found|does not exist|unknown)|domain (?:retired|bad|invalid|illegal|unavailable|no longer in use)|no mx|unrouteable|unroutable/i, 'bad-domain'],
  [/\brelay(?:ing)?\b(?!=)/i, 'relaying-issues'],
  [/inactive|disabled|suspended|deactivated/i, 'inactive-mailbox'],
  [/timed? ?out|connection (?:refused|reset|dropped|closed)|lost connection/i, 'bad-connection'],
  [/expired|too long in queue/i, 'message-expired'],
  [/spf|dkim|dmarc|authenticat/i, 'policy-related'],
  [/message (?:size|too (?:big|large))|content|attachment/i, 'content-related'],
  [/policy|rate limit|too many|deferred|temporarily (?:rejected|deferred)|try again later|throttl|denied|prohibit|rejected|refused|not allowed|banned|suspicious activity/i, 'policy-related'],
  [/syntax|command not recognized|unrecognized command|protocol|bad sequence/i, 'protocol-errors'],
];

/** The fallback category of a reply by its text alone. */
export function categoryByText(reply: ParsedReply): Category {
  for (const [pattern, category] of TEXT_CATEGORIES) if (pattern.test(reply.text)) return category;
  return 'other';
}

/** Disposition when no rule states one: 5xx hard, everything else that failed soft; `null` for success. */
export function fallbackDisposition(reply: ParsedReply): Disposition | null {
  const cls = reply.code ? Math.floor(reply.code / 100) : 0;
  if (cls === 2 || cls === 3) return null;
  return cls === 5 ? 'hard' : 'soft';
}

/**
 * Whether a rule's matcher matches a reply in a phase (`undefined` phase: phase conditions
 * are ignored). A matcher without codes matches failures only (4xx, 5xx, or no code).
 */
export function matcherMatches(matcher: IRMatcher, reply: ParsedReply, phase: string | undefined, regexes: readonly RegExp[]): boolean {
  // A rule that names no code is about failures: it never matches a 2xx or 3xx reply.
  if (matcher.codes.length === 0 && reply.code >= 200 && reply.code < 400) return false;
  if (phase !== undefined && matcher.phases.length > 0 && !(matcher.phases as string[]).includes(phase)) return false;
  if (matcher.codes.length > 0 && !matcher.codes.some((prefix) => reply.code !== 0 && String(reply.code).startsWith(prefix))) return false;
  if (matcher.statuses.length > 0) {
    const status = reply.status;
    if (!status) return false;
    if (!matcher.statuses.some(([c, s, d]) => c === status[0] && (s === null || s === status[1]) && (d === null || d === status[2]))) return false;
  }
  if (matcher.texts.length > 0) {
    let regexIndex = 0;
    let any = false;
    for (const t of matcher.texts) {
      if (t.kind === 'regex') {
        if (regexes[regexIndex++]!.test(reply.text)) any = true;
      } else if (reply.text.toLowerCase().includes(t.text.toLowerCase())) any = true;
    }
    if (!any) return false;
  }
  return true;
}

/** The compiled regexes of a matcher's text matchers, in order (for `matcherMatches`). */
export function matcherRegexes(matcher: IRMatcher): RegExp[] {
  return matcher.texts.flatMap((t) => (t.kind === 'regex' ? [new RegExp(t.source, t.flags)] : []));
}

/**
 * The delay before retry number `attempt` (1-based: the retry after the first failed
 * attempt is 1), in milliseconds, or `null` to give up: no step left, the attempt limit
 * reached, or the delays so far already pass `expireSeconds` (the route's expiry).
 */
export function curveDelay(curve: IRRetryCurve, attempt: number, expireSeconds: number | null = curve.expireSeconds): number | null {
  if (!Number.isInteger(attempt) || attempt < 1) return null;
  if (curve.attempts !== null && attempt >= curve.attempts) return null;
  let total = 0;
  let delay = 0;
  for (let n = 1; n <= attempt; n++) {
    const d = stepSeconds(curve, n);
    if (d === null) return null;
    delay = d;
    total += d;
    if (expireSeconds !== null && total > expireSeconds) return null;
    // Past the explicit steps a repeat curve is linear: skip ahead instead of looping.
    if (n > curve.steps.length && curve.repeat !== null && n < attempt) {
      const remaining = attempt - n;
      total += remaining * curve.repeat;
      if (expireSeconds !== null && total > expireSeconds) return null;
      return curve.repeat * 1000;
    }
    if (n > curve.steps.length && curve.exponential !== null && curve.exponential.capSeconds !== null && d >= curve.exponential.capSeconds && n < attempt) {
      const remaining = attempt - n;
      total += remaining * d;
      if (expireSeconds !== null && total > expireSeconds) return null;
      return d * 1000;
    }
  }
  return delay * 1000;
}

function stepSeconds(curve: IRRetryCurve, n: number): number | null {
  if (n <= curve.steps.length) return curve.steps[n - 1]!;
  if (curve.repeat !== null) return curve.repeat;
  const e = curve.exponential;
  if (e !== null) {
    const k = n - curve.steps.length - 1;
    const raw = e.initialSeconds * Math.pow(e.factor, k);
    return e.capSeconds !== null ? Math.min(raw, e.capSeconds) : raw;
  }
  return null;
}

/** Messages a plan allows on day `ageDays` (0 = the first day), or Infinity once the ramp is complete. */
export function planLimit(plan: IRWarmupPlan, ageDays: number): number {
  if (!Number.isFinite(ageDays) || ageDays < 0) return plan.kind === 'schedule' ? (plan.perDay[0] ?? Infinity) : Math.floor(plan.startPerDay);
  const day = Math.floor(ageDays);
  if (plan.kind === 'schedule') return day < plan.perDay.length ? plan.perDay[day]! : Infinity;
  const value = Math.floor(plan.startPerDay * Math.pow(plan.factor, day));
  if (plan.capPerDay !== null && value >= plan.capPerDay) return Infinity;
  return Number.isFinite(value) ? value : Infinity;
}

/** A domain pattern as routing sees it (the IR's, without `loc`). */
export interface RoutePattern {
  kind: 'exact' | 'subdomains' | 'self-and-subdomains';
  domain: string;
}

/** Lowercase, without a final dot: the form every routing table uses. */
export function normalizeDomain(domain: string): string {
  const lower = domain.toLowerCase();
  return lower.endsWith('.') ? lower.slice(0, -1) : lower;
}

/**
 * How specific a pattern's match on `domain` is, or -1 for no match. An exact match
 * beats any wildcard; among wildcards the longer suffix wins.
 */
export function patternSpecificity(pattern: RoutePattern, domain: string): number {
  const p = pattern.domain;
  if (pattern.kind !== 'subdomains' && domain === p) return Number.MAX_SAFE_INTEGER;
  if (pattern.kind !== 'exact' && domain.length > p.length && domain.endsWith(p) && domain[domain.length - p.length - 1] === '.') return p.length;
  return -1;
}

/** The parts of the IR that `composeSettings` reads (the emitted module embeds just these). */
export interface SettingsTables {
  global: IRLimits;
  sources: Record<string, IRSource>;
  tenants: Record<string, IRTenant>;
  warmups: Record<string, { overflowPool: string | null }>;
  retryCurves: Record<string, { jitter: number }>;
}

const stripLoc = <T extends { loc?: unknown }>(list: readonly T[]): Omit<T, 'loc'>[] =>
  list.map(({ loc: _loc, ...rest }) => rest as Omit<T, 'loc'>);

/**
 * Effective settings of a route for a source and tenant: the route's merged settings
 * plus the global limits and the source's and tenant's own limits. Limit lists are
 * ordered widest first: global, source, tenant, destination, destination/source,
 * destination/tenant.
 */
export function composeSettings(routeId: string, base: IRSettings, tables: SettingsTables, sourceName?: string, tenantName?: string): EffectiveSettings {
  const source = sourceName !== undefined ? tables.sources[sourceName] : undefined;
  const tenant = tenantName !== undefined ? tables.tenants[tenantName] : undefined;
  const parts: IRLimits[] = [tables.global];
  if (source) parts.push(source.limits);
  if (tenant) parts.push(tenant.limits);
  // `LIMIT_SCOPES`' order, spelled out: this file imports only types (it is bundled into every artifact).
  const order: Record<LimitScope, number> = { global: 0, source: 1, tenant: 2, destination: 3, 'destination/source': 4, 'destination/tenant': 5 };
  const join = <T extends { scope: LimitScope; loc?: unknown }>(pick: (l: IRLimits) => T[], own: T[]) =>
    stripLoc([...parts.flatMap(pick), ...own].sort((a, b) => order[a.scope]! - order[b.scope]!));
  return {
    route: routeId,
    connections: join((l) => l.connections, base.connections),
    connectRate: join((l) => l.connectRate, base.connectRate),
    messageRate: join((l) => l.messageRate, base.messageRate),
    dataRate: join((l) => l.dataRate, base.dataRate),
    messagesPerConnection: base.messagesPerConnection,
    recipientsPerTransaction: base.recipientsPerTransaction,
    tls: base.tls,
    retry: base.retry,
    retryJitter: tables.retryCurves[base.retry]?.jitter ?? 0,
    expireSeconds: base.expireSeconds,
    source: source
      ? {
          name: source.name,
          address: source.address,
          ehlo: source.ehlo,
          warmup: source.warmup ? { ramp: source.warmup.ramp, since: source.warmup.since, overflowPool: tables.warmups[source.warmup.ramp]?.overflowPool ?? null } : null,
        }
      : null,
    tenant: tenant ? { name: tenant.name, pool: tenant.pool } : null,
  } as EffectiveSettings;
}

/** The reaction a matching rule gives to a reply (fallbacks fill what the rule leaves open). */
export function ruleReaction(rule: IRRule, reply: ParsedReply, byText?: TextClassifier): Reaction {
  const reaction: Reaction = {
    category: rule.category ?? fallbackCategory(reply, byText),
    disposition: rule.disposition ?? fallbackDisposition(reply),
    actions: rule.actions as Reaction['actions'],
    rule: { file: rule.loc.file, line: rule.loc.line },
  };
  if (rule.trigger) reaction.trigger = { count: rule.trigger.count, withinSeconds: rule.trigger.withinSeconds, id: rule.id };
  return reaction;
}

/** The reaction when no rule matches. */
export function fallbackReaction(reply: ParsedReply, byText?: TextClassifier): Reaction {
  return { category: fallbackCategory(reply, byText), disposition: fallbackDisposition(reply), actions: [] };
}

/**
 * `retryDelay` given the route's reaction to the reply (if any): a success or a bounce
 * (stated, or a hard failure) never retries; a rule's `retry after T` wins while the
 * curve's attempt limit allows; otherwise the curve decides, capped by the route's expiry.
 */
export function retryDelayFor(reaction: Reaction | undefined, curve: IRRetryCurve | undefined, attempt: number, expireSeconds: number): number | null {
  if (reaction) {
    if (reaction.category === 'success' || reaction.disposition === 'hard') return null;
    for (const a of reaction.actions) if (a.type === 'bounce') return null;
    for (const a of reaction.actions) {
      if (a.type !== 'retry') continue;
      if (a.attempts !== undefined && attempt >= a.attempts) return null;
      if (a.afterSeconds !== null) {
        if (!Number.isInteger(attempt) || attempt < 1 || (curve && curve.attempts !== null && attempt >= curve.attempts)) return null;
        return a.afterSeconds * 1000;
      }
    }
  }
  if (!curve) return null;
  return curveDelay(curve, attempt, expireSeconds);
}

/**
 * Which of many literals a text may contain, in one pass: `scan(text)` marks
 * `seen[g] = stamp` for the group `g` of every literal that `text.toLowerCase()` contains
 * (and, rarely, of one it does not), so after a scan `seen[g] !== stamp` proves that no
 * literal of group `g` occurs. A prefilter: a hit still needs the exact test.
 */
export interface LiteralScanner {
  readonly seen: Int32Array;
  stamp: number;
  scan(text: string): void;
}

/** Characters of a literal the scanner looks at: a prefix is enough for a prefilter, and keeps the table small. */
const SCAN_PREFIX = 8;
/** Alphabet size: a transition row is 32 entries, so the rows the scan visits most stay in the CPU cache. */
const SCAN_CLASSES = 32;

/**
 * The scan's alphabet: class 0 for characters no literal contains, letters by their
 * lowercase, all digits as one class, and other characters hashed onto the last classes.
 * Merging characters only adds hits, never loses one.
 */
function scanClass(c: number, used: ReadonlySet<number>): number {
  if (c >= 65 && c <= 90) c += 32;
  if (!used.has(c)) return 0;
  if (c >= 97 && c <= 122) return c - 96;
  if (c >= 48 && c <= 57) return 27;
  if (c === 32) return 28;
  return 29 + (c % 3);
}

/**
 * An Aho–Corasick automaton over the first characters of lowercase `literals` (each
 * `[text, group]`), as a dense transition table over a 32-class alphabet. ASCII texts
 * (nearly every SMTP reply) are lowercased on the fly; others are scanned as
 * `toLowerCase()` gives them.
 */
export function literalScanner(literals: readonly (readonly [string, number])[], groups: number): LiteralScanner {
  const keys = literals.map(([text, group]) => [text.slice(0, SCAN_PREFIX), group] as const);
  const used = new Set<number>();
  for (const [text] of keys) for (let i = 0; i < text.length; i++) used.add(text.charCodeAt(i));
  const ascii = new Int32Array(128);
  for (let c = 0; c < 128; c++) ascii[c] = scanClass(c, used);
  // The trie, then failure links breadth first, then the dense table.
  const children: Map<number, number>[] = [new Map()];
  const own: number[][] = [[]];
  for (const [text, group] of keys) {
    let s = 0;
    for (let i = 0; i < text.length; i++) {
      const k = scanClass(text.charCodeAt(i), used);
      let next = children[s]!.get(k);
      if (next === undefined) {
        next = children.length;
        children.push(new Map());
        own.push([]);
        children[s]!.set(k, next);
      }
      s = next;
    }
    own[s]!.push(group);
  }
  const states = children.length;
  const width = SCAN_CLASSES;
  const delta = new Int32Array(states * width);
  const fail = new Int32Array(states);
  const outputs: number[][] = own.map((o) => [...o]);
  const queue: number[] = [];
  for (const [k, next] of children[0]!) {
    delta[k] = next;
    queue.push(next);
  }
  for (let q = 0; q < queue.length; q++) {
    const s = queue[q]!;
    outputs[s] = [...new Set([...outputs[s]!, ...outputs[fail[s]!]!])];
    for (let k = 0; k < width; k++) {
      const next = children[s]!.get(k);
      if (next === undefined) delta[s * width + k] = delta[fail[s]! * width + k]!;
      else {
        fail[next] = delta[fail[s]! * width + k]!;
        delta[s * width + k] = next;
        queue.push(next);
      }
    }
  }
  // Entries hold the next state premultiplied by the width, complemented (negative) when
  // that state ends a literal, so the scan loop does one load and one sign test per character.
  const offsets = new Int32Array(states + 1);
  for (let s = 0; s < states; s++) offsets[s + 1] = offsets[s]! + outputs[s]!.length;
  const found = Int32Array.from(outputs.flat());
  for (let i = 0; i < delta.length; i++) {
    const t = delta[i]!;
    delta[i] = outputs[t]!.length > 0 ? ~(t * width) : t * width;
  }
  const seen = new Int32Array(groups);
  const mark = (s: number, stamp: number) => {
    const state = s / width;
    for (let j = offsets[state]!; j < offsets[state + 1]!; j++) seen[found[j]!] = stamp;
  };
  // `lowered`: the text is already `toLowerCase()`d, so non-ASCII characters are read as
  // they are; otherwise the first one restarts the scan on the lowercased text.
  const run = (text: string, stamp: number, lowered: boolean): void => {
    let s = 0;
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      let k: number;
      if (c < 128) k = ascii[c]!;
      else if (lowered) k = scanClass(c, used);
      else return run(text.toLowerCase(), stamp, true);
      const t = delta[s + k]!;
      if (t >= 0) s = t;
      else mark((s = ~t), stamp);
    }
  };
  const scanner: LiteralScanner = {
    seen,
    stamp: 0,
    scan(text: string): void {
      if (scanner.stamp === 0x7fffffff) {
        seen.fill(0);
        scanner.stamp = 0;
      }
      run(text, ++scanner.stamp, false);
    },
  };
  return scanner;
}
