/**
 * Validation: the checks that need a resolved program but not effective settings.
 * Impossible values, misplaced and duplicate settings, regexes that do not compile or
 * can backtrack catastrophically, rules that miss their own examples or are shadowed,
 * providers that claim one domain or match nothing, warmups that go down.
 */
import type { Action, Destination, Diagnostic, ReplyRule, RuleSetRef, Setting, Span, WarmupPlan } from '../grammar/index.ts';
import { PHASES } from '../vocabulary/index.ts';
import { matcherMatches, matcherRegexes, parseReply } from './artifact-lib.ts';
import { expandRules, toIRMatcher } from './lower.ts';
import { checkRegex } from './regex-safety.ts';
import type { Program } from './resolve.ts';

/** Regex flags a rule may use: `g` and `y` make `test` stateful, so they are refused. */
const ALLOWED_FLAGS = new Set(['i', 'm', 's', 'u']);


/** Runs every check; returns diagnostics only. */
export function validate(program: Program): Diagnostic[] {
  const diagnostics: Diagnostic[] = [];
  const error = (code: string, message: string, span: Span, help?: string, labels?: Diagnostic['labels']) =>
    diagnostics.push({ code, severity: 'error', message, span, ...(help ? { help } : {}), ...(labels ? { labels } : {}) });

  const positive = (value: number, what: string, span: Span) => {
    if (!(value > 0)) error('VAL001', `${what} must be more than zero`, span);
  };

  function checkSettings(settings: Setting[], block: 'destination' | 'global' | 'source' | 'tenant' | 'backoff', blockName: string): void {
    const seen = new Map<string, Setting>();
    for (const s of settings) {
      // In destination and backoff blocks no scope means `per destination`: the same limiter.
      const isLimit = s.kind === 'connections' || s.kind === 'connect-rate' || s.kind === 'rate' || s.kind === 'data-rate';
      const written = isLimit ? s.scope : undefined;
      // …and in a `global` block every limit is global, written so or not.
      const scope = block === 'global' && isLimit ? 'global' : (written ?? (isLimit && (block === 'destination' || block === 'backoff') ? 'destination' : ''));
      const key = `${s.kind}/${scope}`;
      const prior = seen.get(key);
      if (prior) error('VAL012', `\`${s.kind}\`${scope && scope !== 'global' ? ` per ${scope}` : ''} is set twice in ${blockName}`, s.span, undefined, [{ span: prior.span, message: 'first set here' }]);
      else seen.set(key, s);
      if ('scope' in s && s.scope && s.scopeSpan) {
        const allowed = block === 'destination' || block === 'backoff' ? s.scope !== 'global' : block === 'global' ? s.scope === 'global' : false;
        if (!allowed) {
          const help =
            block === 'global' ? 'limits in `global` apply to all traffic; remove the scope'
            : block === 'source' || block === 'tenant' ? `limits in a ${block} block apply to that ${block} across all destinations; remove the scope`
            : 'a global limit belongs in a `global { … }` block';
          error('VAL011', `scope \`${s.scope === 'global' ? 'global' : `per ${s.scope}`}\` is not allowed in ${blockName}`, s.scopeSpan, help);
        }
      }
      switch (s.kind) {
        case 'connections':
        case 'messages-per-connection':
        case 'recipients-per-transaction':
          positive(s.value.value, `\`${s.kind}\``, s.value.span);
          break;
        case 'connect-rate':
        case 'rate':
        case 'data-rate':
          positive(s.value.count, `\`${s.kind}\``, s.value.span);
          break;
        case 'expire':
          positive(s.value.seconds, '`expire`', s.value.span);
          break;
        case 'retry':
          if (!('text' in s.curve)) checkCurve(s.curve);
          break;
      }
    }
    // VAL014: a per-source limit looser than the whole destination's, stated in the same block.
    for (const kind of ['connections', 'connect-rate', 'rate', 'data-rate'] as const) {
      const wide = settings.find((s) => s.kind === kind && (s.scope === undefined || s.scope === 'destination'));
      const narrow = settings.find((s) => s.kind === kind && s.scope === 'source');
      if (!wide || !narrow) continue;
      const per = (s: Setting) => (s.kind === 'connections' ? s.value.value : s.kind === 'rate' || s.kind === 'connect-rate' || s.kind === 'data-rate' ? s.value.count / s.value.perSeconds : 0);
      if (per(narrow) > per(wide)) {
        diagnostics.push({ code: 'VAL014', severity: 'warning', message: `\`${kind}\` per source is higher than for the whole destination, so it never binds`, span: narrow.span, labels: [{ span: wide.span, message: 'the destination-wide limit' }], help: 'lower the per-source limit or raise the destination-wide one' });
      }
    }
  }

  function checkCurve(curve: import('../grammar/index.ts').RetryCurveBody): void {
    for (const step of curve.steps) positive(step.seconds, 'a retry delay', step.span);
    if (curve.repeat) positive(curve.repeat.seconds, 'the repeat delay', curve.repeat.span);
    if (curve.exponential) {
      positive(curve.exponential.initial.seconds, 'the first exponential delay', curve.exponential.initial.span);
      if (!(curve.exponential.factor.value > 1)) error('VAL001', 'an exponential factor must be more than 1', curve.exponential.factor.span);
      if (curve.exponential.cap && curve.exponential.cap.seconds < curve.exponential.initial.seconds) error('VAL001', 'the cap is shorter than the first exponential delay', curve.exponential.cap.span);
    }
    if (curve.repeat && curve.exponential) error('VAL012', 'a retry curve has either `then every` or `exponential`, not both', curve.exponential.span);
    if (curve.jitter && !(curve.jitter.value >= 0 && curve.jitter.value < 1)) error('VAL001', '`jitter` must be less than 100%', curve.jitter.span);
    if (curve.attempts) positive(curve.attempts.value, '`attempts`', curve.attempts.span);
    if (curve.expire) {
      positive(curve.expire.seconds, '`expire`', curve.expire.span);
      const first = curve.steps[0]?.seconds ?? curve.repeat?.seconds ?? curve.exponential?.initial.seconds;
      if (first !== undefined && curve.expire.seconds <= first) {
        error('VAL002', `the curve expires after ${curve.expire.seconds}s, before its first retry at ${first}s`, curve.expire.span, 'raise `expire` or shorten the first delay');
      }
    }
    if (!curve.steps.length && !curve.repeat && !curve.exponential) error('VAL001', 'a retry curve needs `after`, `then every` or `exponential`', curve.span);
  }

  function checkRegexes(rule: ReplyRule): boolean {
    let ok = true;
    for (const t of rule.matcher.texts) {
      if (t.kind !== 'regex') continue;
      const bad = [...t.flags].find((f) => !ALLOWED_FLAGS.has(f));
      if (bad) {
        error('VAL003', `regex flag \`${bad}\` is not allowed`, t.span, 'use only `i`, `m`, `s` and `u`');
        ok = false;
        continue;
      }
      try {
        new RegExp(t.source, t.flags);
      } catch (e) {
        // V8 says "Invalid regular expression: /(TS01/: Unterminated group"; keep the pattern as written.
        const reason = (e as Error).message.split(': ').pop() ?? 'invalid';
        error('VAL003', `invalid regex \`/${t.source}/${t.flags}\`: ${reason[0]!.toLowerCase()}${reason.slice(1)}`, t.span);
        ok = false;
        continue;
      }
      const verdict = checkRegex(t.source, t.flags);
      if (verdict.kind === 'timeout') {
        error('VAL004', 'could not prove in time that this regex cannot backtrack catastrophically', t.span, 'simplify it: fewer nested or overlapping repetitions');
        ok = false;
      } else if (!verdict.safe) {
        error('VAL004', `regex can backtrack catastrophically (${verdict.kind} time)${verdict.attack ? ` on text like ${verdict.attack}` : ''}`, t.span, 'remove nested or overlapping repetition such as `(a+)+`, `(a|a)*` or `.*x.*y.*`');
        ok = false;
      }
    }
    return ok;
  }

  /** Examples, shadowing and contradictions for one block's own rules, in order. */
  /** A rule's compiled matcher, or undefined when one of its regexes is invalid (reported elsewhere). */
  const compiled = (rule: ReplyRule): { matcher: ReturnType<typeof toIRMatcher>; regexes: RegExp[] } | undefined => {
    try {
      const matcher = toIRMatcher(rule.matcher);
      return { matcher, regexes: matcherRegexes(matcher) };
    } catch {
      return undefined;
    }
  };

  function checkRules(list: (ReplyRule | RuleSetRef)[]): void {
    const earlier: { rule: ReplyRule; matcher: ReturnType<typeof toIRMatcher>; regexes: RegExp[] }[] = [];
    for (const item of list) {
      if (item.kind !== 'rule') {
        // Rules included from a set come first at this point: they can shadow the block's later rules.
        for (const rule of expandRules([item], program)) {
          const c = compiled(rule);
          if (c) earlier.push({ rule, ...c });
        }
        continue;
      }
      const rule = item;
      for (const a of rule.actions) {
        if (a.kind === 'backoff') {
          positive(a.duration.seconds, 'the backoff duration', a.duration.span);
          checkSettings(a.overrides, 'backoff', 'a backoff block');
        }
        if (a.kind === 'suspend') positive(a.duration.seconds, 'the suspension', a.duration.span);
        if (a.kind === 'retry' && a.after) positive(a.after.seconds, 'the retry delay', a.after.span);
        if (a.kind === 'retry' && a.attempts) positive(a.attempts.value, 'the number of attempts', a.attempts.span);
        if (a.kind === 'recover') positive(a.duration.seconds, 'the recovery period', a.duration.span);
      }
      // A block keeps the recipient queued and stops the source (docs/language.md, "What a
      // reaction does"); a bounce fails the recipient. One rule cannot mean both.
      const bounce = rule.actions.find((a): a is Extract<Action, { kind: 'bounce' }> => a.kind === 'bounce');
      if (bounce && rule.disposition?.value === 'block') {
        error('VAL016', 'a rule cannot both `bounce` and state `disposition block`: a block keeps the recipient queued', bounce.span, `to keep the mail and stop this source, write \`classify ${bounce.category.text}\` instead of \`bounce\`; to fail the recipient, drop \`disposition block\``, [{ span: rule.disposition.span, message: 'the disposition is stated here' }]);
      }
      if (rule.trigger) {
        positive(rule.trigger.count.value, 'the trigger count', rule.trigger.count.span);
        positive(rule.trigger.within.seconds, 'the trigger window', rule.trigger.within.span);
      }
      if (!checkRegexes(rule)) continue;
      const matcher = toIRMatcher(rule.matcher);
      const regexes = matcherRegexes(matcher);
      if (rule.examples.length === 0) {
        diagnostics.push({ code: 'VAL007', severity: 'warning', message: 'reply rule has no `example`', span: rule.headSpan, help: 'add `example "…"` with a reply this rule is for, quoted from the provider' });
      }
      const shadowedBy: (ReplyRule | undefined)[] = [];
      for (const example of rule.examples) {
        const reply = parseReply(example.text);
        if (!reply.code) {
          error('VAL013', '`example` is not an SMTP reply: it must start with a three-digit code', example.span, 'quote the whole reply, for example `"550 5.1.1 <a@example.com>: user unknown"`');
          continue;
        }
        if (reply.code < 400 && rule.actions.some((a) => a.kind === 'bounce')) {
          error('VAL013', `rule bounces on a ${String(reply.code)} reply, which is not a failure`, example.span);
        }
        const phase = example.phase ?? rule.matcher.phases[0];
        if (!matcherMatches(matcher, reply, phase, regexes)) {
          error('VAL005', 'rule does not match its own example', example.span, explainMiss(rule, reply, phase));
          continue;
        }
        // The phases this example stands for: its own, else the rule's, else every phase.
        const phases = example.phase ? [example.phase] : rule.matcher.phases.length ? rule.matcher.phases : PHASES;
        const by = earlier.find((e) => phases.every((p) => matcherMatches(e.matcher, reply, p, e.regexes)));
        shadowedBy.push(by?.rule);
      }
      if (rule.examples.length > 0 && shadowedBy.length === rule.examples.length && shadowedBy.every((r) => r !== undefined)) {
        error('VAL006', 'rule can never fire: an earlier rule catches every one of its examples', rule.headSpan, 'move this rule above the earlier one, or narrow the earlier rule', [{ span: shadowedBy[0]!.headSpan, message: 'this earlier rule matches first' }]);
      }
      earlier.push({ rule, matcher, regexes });
    }
  }

  const providerClaims = new Map<string, { provider: string; span: Span }>();
  const claim = (key: string, label: string, provider: string, span: Span) => {
    const prior = providerClaims.get(key);
    if (prior && prior.provider !== provider) {
      error('VAL008', `${label} is claimed by providers \`${prior.provider}\` and \`${provider}\``, span, 'a domain or MX pattern may belong to one provider only; remove it from one of them', [{ span: prior.span, message: `claimed by \`${prior.provider}\` here` }]);
    } else if (!prior) providerClaims.set(key, { provider, span });
  };

  const destinations: Destination[] = [
    ...(program.default ? [program.default.node] : []),
    ...[...program.providers.values()].map((d) => d.node),
    ...[...program.domainBlocks.values()].map((d) => d.node),
  ];
  for (const dest of destinations) {
    const blockName = dest.type === 'default' ? 'the `default` block' : `${dest.type} \`${dest.name.text}\``;
    checkSettings(dest.settings, 'destination', blockName);
    checkRules(dest.rules);
    if (dest.type !== 'provider') {
      for (const m of dest.matches) error('VAL011', `\`match\` is only allowed in a \`provider\` block`, m.span, dest.type === 'domain' ? 'a `domain` block is already for the domains in its head' : 'the default applies to every domain no provider or domain block claims');
      continue;
    }
    if (dest.matches.length === 0) error('VAL009', `provider \`${dest.name.text}\` has no \`match\`, so it can never be chosen`, dest.name.span, 'add `match domain example.com` or `match mx *.mx.example.net`');
    for (const m of dest.matches) {
      for (const p of m.patterns) {
        // `[*.]x` claims `x` and its subdomains; `*.x` only the subdomains; `x` only itself.
        if (p.kind !== 'subdomains') claim(`${m.on}:=${p.domain}`, `\`${p.domain}\``, dest.name.text, p.span);
        if (p.kind !== 'exact') claim(`${m.on}:*.${p.domain}`, `\`*.${p.domain}\``, dest.name.text, p.span);
      }
    }
  }
  for (const { node } of program.ruleSets.values()) checkRules(node.rules);
  if (program.global) checkSettings(program.global.node.settings, 'global', 'the `global` block');
  for (const { node } of program.sources.values()) checkSettings(node.settings, 'source', `source \`${node.name.text}\``);
  for (const { node } of program.tenants.values()) checkSettings(node.settings, 'tenant', `tenant \`${node.name.text}\``);
  for (const { node } of program.retryCurves.values()) checkCurve(node.body);
  for (const { node } of program.warmups.values()) {
    if (node.plan) checkPlan(node.plan);
    for (const o of node.overrides) if (o.plan) checkPlan(o.plan);
    if (!node.plan && node.overrides.length === 0) error('VAL001', `warmup ramp \`${node.name.text}\` has no \`schedule\` or \`start\``, node.name.span);
  }

  function checkPlan(plan: WarmupPlan): void {
    if (plan.kind === 'schedule') {
      let prev: { perDay: number; span: Span } | undefined;
      plan.steps.forEach((step, i) => {
        positive(step.count, 'a warmup limit', step.span);
        const perDay = (step.count * 86400) / step.perSeconds;
        if (prev && perDay < prev.perDay) {
          error('VAL010', `warmup goes down on day ${i + 1}: ${Math.floor(perDay)}/day after ${Math.floor(prev.perDay)}/day`, step.span, 'a ramp only rises; repeat the previous value to hold it', [{ span: prev.span, message: 'the previous day' }]);
        }
        prev = { perDay, span: step.span };
      });
    } else {
      positive(plan.start.count, 'the starting limit', plan.start.span);
      if (!(plan.factor.value >= 1)) error('VAL010', `warmup growth \`x${plan.factor.value}\` would lower the limit every day`, plan.factor.span, 'use a factor of at least `x1`');
      if (plan.cap && plan.cap.count * plan.start.perSeconds < plan.start.count * plan.cap.perSeconds) error('VAL010', 'the cap is below the starting limit', plan.cap.span);
    }
  }

  return diagnostics;
}

/** Says which part of the matcher failed, for VAL005's help. */
function explainMiss(rule: ReplyRule, reply: ReturnType<typeof parseReply>, phase: string | undefined): string {
  const m = rule.matcher;
  if (m.codes.length === 0 && reply.code >= 200 && reply.code < 400) return 'a rule without a reply code matches failures only (4xx, 5xx); add `2xx` to match a success';
  if (phase && m.phases.length && !(m.phases as string[]).includes(phase)) return `the example is for phase \`${phase}\`, the rule for ${m.phases.map((p) => `\`${p}\``).join(', ')}`;
  if (m.codes.length && !m.codes.some((c) => String(reply.code).startsWith(c.prefix))) return `the example's code \`${String(reply.code)}\` is not ${m.codes.map((c) => `\`${c.prefix.padEnd(3, 'x')}\``).join(' or ')}`;
  if (m.statuses.length) {
    if (!reply.status) return 'the example has no enhanced status code, but the rule requires one';
    const text = reply.status.join('.');
    if (!m.statuses.some((s) => s.parts.every((p, i) => p === null || p === reply.status![i]))) return `the example's status \`${text}\` is not ${m.statuses.map((s) => `\`${s.text}\``).join(' or ')}`;
  }
  return 'the example does not match the rule\'s text pattern';
}
