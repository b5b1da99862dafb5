/**
 * Runs `test` blocks against a compiled artifact — the same module the runtime loads —
 * with the runtime's reaction state machine on a simulated clock.
 *
 * Semantics of the steps (docs/language.md, "Tests"):
 * - `deliver to ADDR [mx H, …] [source S] [tenant T]` picks the route and the queue.
 * - `reply "TEXT" [N times] [phase P]` asks `react` and applies the reaction, N times at
 *   the current instant; every non-success reply counts as a failed attempt.
 * - `wait D` moves the clock.
 * - `expect …` checks the last reaction, the queue's state now, retry delays, warmup
 *   limits or effective settings (under a backoff, its overrides apply).
 */
import { connectionWords, durationWords, rateWords, type Action, type EffectiveSettings, type LimitScope, type PolicyArtifact, type Reaction } from '../vocabulary/index.ts';
import { activeBackoff, activeSuspensions, applyReaction, createPolicyState, effectiveSettings, isDisabled, type ReplyContext } from '../runtime/decide/policy-state.ts';
import { fateOf, type Fate } from '../runtime/decide/reaction-fate.ts';
import type { IRExpectation, IRTest, Loc } from './ir.ts';

/** One failed expectation. */
export interface TestFailure {
  loc: Loc;
  /** The expectation as written, roughly: `backoff 30m`. */
  expectation: string;
  expected: string;
  actual: string;
}

export interface TestResult {
  name: string;
  loc: Loc;
  passed: boolean;
  failures: TestFailure[];
  /** Expectations checked. */
  checks: number;
}

/** The simulated clock starts here (a fixed instant keeps runs reproducible). */
const EPOCH = Date.UTC(2026, 0, 1);

/** Runs every test; never throws for a failing test. */
export function runTests(tests: readonly IRTest[], artifact: PolicyArtifact): TestResult[] {
  return tests.map((test) => runTest(test, artifact));
}

function runTest(test: IRTest, artifact: PolicyArtifact): TestResult {
  const state = createPolicyState();
  let now = EPOCH;
  let context: ReplyContext | undefined;
  let last: { reaction: Reaction; text: string; fired: readonly Action[] } | undefined;
  let failedAttempts = 0;
  const failures: TestFailure[] = [];
  let checks = 0;

  for (const step of test.steps) {
    switch (step.kind) {
      case 'deliver': {
        const domain = step.to.slice(step.to.lastIndexOf('@') + 1);
        context = { route: artifact.route(domain, step.mx.length ? step.mx : undefined), source: step.source ?? undefined, tenant: step.tenant ?? undefined };
        last = undefined;
        failedAttempts = 0;
        break;
      }
      case 'reply': {
        const ctx = context!;
        for (let i = 0; i < step.times; i++) {
          const reaction = artifact.react(ctx.route, step.text, step.phase ?? undefined);
          const applied = applyReaction(state, ctx, reaction, step.text, now);
          if (reaction.category !== 'success') failedAttempts++;
          last = { reaction, text: step.text, fired: applied.actions };
        }
        break;
      }
      case 'wait':
        now += step.seconds * 1000;
        break;
      case 'expect': {
        checks++;
        const failure = check(step.expectation, { artifact, state, context: context!, last, now, failedAttempts });
        if (failure) failures.push({ loc: step.loc, expectation: describe(step.expectation), ...failure });
        break;
      }
    }
  }
  return { name: test.name, loc: test.loc, passed: failures.length === 0, failures, checks };
}

interface Situation {
  artifact: PolicyArtifact;
  state: ReturnType<typeof createPolicyState>;
  context: ReplyContext;
  last: { reaction: Reaction; text: string; fired: readonly Action[] } | undefined;
  now: number;
  failedAttempts: number;
}

const duration = (seconds: number | null): string => (seconds === null ? 'none' : durationWords(seconds));

function check(e: IRExpectation, s: Situation): { expected: string; actual: string } | undefined {
  const reaction = s.last?.reaction;
  const noReply = { expected: 'a reply before this expectation', actual: 'no reply yet' };
  switch (e.what) {
    case 'route': {
      return s.context.route === e.route ? undefined : { expected: e.route, actual: s.context.route };
    }
    case 'category':
      if (!reaction) return noReply;
      return reaction.category === e.category ? undefined : { expected: e.category, actual: reaction.category };
    case 'disposition':
      if (!reaction) return noReply;
      return reaction.disposition === e.disposition ? undefined : { expected: e.disposition, actual: String(reaction.disposition) };
    case 'bounce': {
      if (!reaction) return noReply;
      // What the runtime does with this recipient now (runtime/decide/reaction-fate.ts): a hard
      // failure bounces at once; a rule's `retry … attempts N` bounces at attempt N.
      const fate = fateNow(s);
      const bounced = fate.kind === 'bounced' && fate.category === e.category;
      const actual = fate.kind === 'bounced' ? `bounce as ${fate.category}` : `${reaction.disposition} as ${reaction.category}, kept`;
      return bounced ? undefined : { expected: `bounce as ${e.category}`, actual };
    }
    case 'backoff': {
      const b = activeBackoff(s.state, s.context, s.now);
      if (e.none) return b ? { expected: 'no backoff', actual: `backoff ${duration(b.durationSeconds)} until +${duration((b.until - s.now) / 1000)}` } : undefined;
      if (!b) return { expected: e.seconds === null ? 'a backoff' : `backoff ${duration(e.seconds)}`, actual: 'no backoff' };
      if (e.seconds !== null && b.durationSeconds !== e.seconds) return { expected: `backoff ${duration(e.seconds)}`, actual: `backoff ${duration(b.durationSeconds)}` };
      return undefined;
    }
    case 'suspend': {
      const active = activeSuspensions(s.state, s.context, s.now);
      if (e.none) return active.length ? { expected: 'no suspension', actual: active.map((x) => `${x.target} until +${duration((x.until - s.now) / 1000)}`).join(', ') } : undefined;
      const match = active.find((x) => e.target === null || x.target === e.target);
      const want = `suspend ${e.target ?? ''}${e.seconds !== null ? ' ' + duration(e.seconds) : ''}`.replace(/\s+/g, ' ').trim();
      if (!match) return { expected: want, actual: active.length ? active.map((x) => x.target).join(', ') : 'no suspension' };
      const length = (match.until - match.since) / 1000;
      if (e.seconds !== null && length !== e.seconds) return { expected: want, actual: `suspend ${match.target} ${duration(length)}` };
      return undefined;
    }
    case 'disable-source': {
      const disabled = isDisabled(s.state, s.context);
      return disabled === !e.none ? undefined : { expected: e.none ? 'source enabled' : 'source disabled', actual: disabled ? 'source disabled' : 'source enabled' };
    }
    case 'skip-mx': {
      if (!reaction) return noReply;
      // Only actions that took effect: a rule's `when N in T` may not have fired yet.
      const has = s.last!.fired.some((a) => a.type === 'skip-mx');
      return has === !e.none ? undefined : { expected: e.none ? 'no skip-mx' : 'skip-mx', actual: has ? 'skip-mx' : 'no skip-mx' };
    }
    case 'reroute': {
      if (!reaction) return noReply;
      const to = s.last!.fired.find((a) => a.type === 'reroute');
      return to && to.type === 'reroute' && to.pool === e.pool ? undefined : { expected: `reroute pool ${e.pool}`, actual: to && to.type === 'reroute' ? `reroute pool ${to.pool}` : 'no reroute' };
    }
    case 'retry': {
      const backoff = activeBackoff(s.state, s.context, s.now);
      const attempt = Math.max(1, s.failedAttempts);
      const ms = s.artifact.retryDelay(s.context.route, attempt, s.last?.text, backoff?.overrides.retry);
      const actual = ms === null ? 'never' : duration(ms / 1000);
      if (e.never) return ms === null ? undefined : { expected: 'never', actual };
      if (ms === null) return { expected: e.seconds === null ? 'a retry' : duration(e.seconds), actual };
      if (e.seconds !== null && ms !== e.seconds * 1000) return { expected: duration(e.seconds), actual };
      return undefined;
    }
    case 'warmup': {
      const limit = s.artifact.warmupLimit(e.ramp, s.context.route, e.day - 1);
      const actual = limit === Infinity ? 'unlimited' : String(limit);
      return actual === String(e.limit) ? undefined : { expected: String(e.limit), actual };
    }
    case 'setting':
      return checkSetting(e.key, e.value, effective(s));
  }
}

/** The fate of the recipient of the last reply, as the runtime decides it (no expiry: tests keep no message age). */
function fateNow(s: Situation): Fate {
  const backoff = activeBackoff(s.state, s.context, s.now);
  const retryDelayMs = s.artifact.retryDelay(s.context.route, Math.max(1, s.failedAttempts), s.last!.text, backoff?.overrides.retry);
  const sourceStopped = activeSuspensions(s.state, s.context, s.now).length > 0 || isDisabled(s.state, s.context);
  return fateOf({ reaction: s.last!.reaction, fired: s.last!.fired, accepted: false, now: s.now, retryDelayMs, expiresAt: Infinity, jitter: 1, sourceStopped, canReroute: true, canSkipMx: true });
}

function effective(s: Situation): EffectiveSettings {
  const base = s.artifact.settings(s.context.route, s.context.source, s.context.tenant);
  return effectiveSettings(s.state, s.context, base, s.now);
}

function checkSetting(key: string, value: unknown, settings: EffectiveSettings): { expected: string; actual: string } | undefined {
  const show = (v: unknown) => JSON.stringify(v);
  switch (key) {
    case 'connections': {
      const want = value as { max: number; scope: string };
      const got = settings.connections.find((c) => c.scope === want.scope);
      return got && got.max === want.max ? undefined : { expected: showSetting(want), actual: got ? showSetting(got) : 'no such limit' };
    }
    case 'connect-rate':
    case 'rate':
    case 'data-rate': {
      const want = value as { count: number; perSeconds: number; scope: string };
      const list = key === 'rate' ? settings.messageRate : key === 'connect-rate' ? settings.connectRate : settings.dataRate;
      const got = list.find((r) => r.scope === want.scope);
      // Compare as rates: 3600/h equals 1/s.
      const same = got !== undefined && got.count * want.perSeconds === want.count * got.perSeconds;
      return same ? undefined : { expected: showSetting(want), actual: got ? showSetting(got) : 'no such limit' };
    }
    case 'messages-per-connection':
      return settings.messagesPerConnection === value ? undefined : { expected: show(value), actual: show(settings.messagesPerConnection) };
    case 'recipients-per-transaction':
      return settings.recipientsPerTransaction === value ? undefined : { expected: show(value), actual: show(settings.recipientsPerTransaction) };
    case 'tls':
      return settings.tls === value ? undefined : { expected: show(value), actual: show(settings.tls) };
    case 'retry':
      return settings.retry === value ? undefined : { expected: show(value), actual: show(settings.retry) };
    case 'expire':
      return settings.expireSeconds === value ? undefined : { expected: duration(value as number), actual: duration(settings.expireSeconds) };
  }
  return { expected: key, actual: 'unknown setting' };
}

function describe(e: IRExpectation): string {
  switch (e.what) {
    case 'route':
      return `route ${e.route}`;
    case 'category':
    case 'bounce':
      return `${e.what} ${e.category}`;
    case 'disposition':
      return `disposition ${e.disposition}`;
    case 'backoff':
      return e.none ? 'no backoff' : `backoff${e.seconds !== null ? ' ' + duration(e.seconds) : ''}`;
    case 'suspend':
      return e.none ? 'no suspend' : `suspend ${e.target ?? ''}${e.seconds !== null ? ' ' + duration(e.seconds) : ''}`.trim();
    case 'disable-source':
      return e.none ? 'no disable source' : 'disable source';
    case 'skip-mx':
      return e.none ? 'no skip-mx' : 'skip-mx';
    case 'reroute':
      return `reroute pool ${e.pool}`;
    case 'retry':
      return e.never ? 'retry never' : `retry${e.seconds !== null ? ' ' + duration(e.seconds) : ''}`;
    case 'warmup':
      return `warmup ${e.ramp} day ${e.day} limit ${e.limit}`;
    case 'setting':
      return `${e.key} ${showSetting(e.value)}`;
  }
}

/** A setting's value as a policy would write it: `600/h per source`, `10 per source`, `required`. */
function showSetting(value: unknown): string {
  if (value === null || typeof value !== 'object') return String(value);
  const v = value as { count?: number; perSeconds?: number; max?: number; scope?: LimitScope };
  const scope = v.scope ?? 'destination';
  if (v.max !== undefined) return connectionWords({ max: v.max, scope });
  if (v.count !== undefined && v.perSeconds !== undefined) return rateWords({ count: v.count, perSeconds: v.perSeconds, scope });
  return JSON.stringify(value);
}
