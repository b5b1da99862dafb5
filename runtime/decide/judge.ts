/**
 * Judging one recipient's reply: the artifact's reaction is applied to the policy state
 * (queue and source), `fateOf` (reaction-fate.ts, shared with `petrel test`) says what
 * happens to the recipient, and the judge carries it out — the outcome or the deferral
 * made durable in the spool, an accounting record, and deferred work back in the queue.
 */
import type { Phase, Reaction } from '../abi.ts';
import type { AccountedOutcome } from '../observe/index.ts';
import type { LivePolicy, Source, Time, Work } from '../schedule/index.ts';
import { poolSources, queueOf, domainOf } from '../schedule/index.ts';
import type { Spool, SpooledMessage } from '../spool/index.ts';
import { activeBackoff, activeSuspensions, applyReaction, isDisabled, type PolicyState, type ReplyContext } from './policy-state.ts';
import { fateOf } from './reaction-fate.ts';

/** One reply to judge: for whom, on which path, and how the delivery got there. */
export interface Verdict {
  policy: LivePolicy;
  message: SpooledMessage;
  rcpt: string;
  route: string;
  source: Source;
  reply: string;
  phase: Phase;
  /** Whether the server accepted this recipient (a 2xx at its last phase). */
  accepted: boolean;
  mxHost: string;
  /** The artifact's reaction to this reply on this route, when the caller already asked (react is pure: asking again gives the same). */
  reaction?: Reaction;
  /** The work item it came from, how many MX hosts there were and which one answered (`host:port`): for reroute and skip-mx. */
  via?: { item?: Work; hostCount?: number; at?: string };
  /** The session's TLS, for accounting: null in plain text, absent when no session opened. */
  tls?: AccountedOutcome['tls'];
}

export interface JudgeDeps {
  time: Time;
  state: PolicyState;
  spool: Pick<Spool, 'get' | 'recordOutcome' | 'recordDeferral'>;
  /** Counted outcomes, for the status API. */
  counters: { delivered: number; deferred: number; bounced: number };
  /** Writes an outcome's accounting record and metrics. */
  record(message: SpooledMessage, outcome: AccountedOutcome, route: string): void;
  /** Called before an outcome is written to the spool, and awaited (the bounce loop: events, DSN, suppression); never rejects. */
  settling?: ((message: SpooledMessage, outcome: AccountedOutcome) => Promise<void>) | undefined;
  /** Puts deferred recipients back as work. */
  requeue(work: Work): void;
  /** The policy state changed (the state file is due). */
  changed(): void;
}

/** Whether this source may not send on this queue now (suspended there, or disabled). */
export function sourceStopped(state: PolicyState, context: ReplyContext, now: number): boolean {
  return activeSuspensions(state, context, now).length > 0 || isDisabled(state, context);
}

export function createJudge(deps: JudgeDeps): (v: Verdict) => Promise<void> {
  const { time, state, spool, counters } = deps;
  return async function judge(v: Verdict): Promise<void> {
    const { artifact } = v.policy;
    const { message: m, rcpt, route, source, reply, phase, accepted } = v;
    const via = v.via ?? {};
    const now = time.now();
    const domain = domainOf(rcpt);
    const reaction = v.reaction ?? artifact.react(route, reply, phase);
    const context = { route: queueOf(route, domain), source: source.name, tenant: m.tenant };
    const applied = applyReaction(state, context, reaction, reply, now);
    deps.changed();
    const settings = artifact.settings(route, source.name, m.tenant);
    const attempt = (m.recipients.find((r) => r.rcpt === rcpt)?.attempts ?? 0) + 1;
    const reroute = applied.actions.find((a) => a.type === 'reroute');
    const avoid = via.at && phase !== 'connect' ? [...(via.item?.avoid ?? []), via.at] : [];
    const fate = fateOf({
      reaction,
      fired: applied.actions,
      accepted,
      now,
      retryDelayMs: accepted ? null : artifact.retryDelay(route, attempt, reply, activeBackoff(state, context, now)?.overrides.retry),
      expiresAt: m.receivedAt + settings.expireSeconds * 1000,
      jitter: 1 + (time.random() * 2 - 1) * settings.retryJitter,
      sourceStopped: sourceStopped(state, context, time.now()),
      canReroute: reroute !== undefined && !poolSources(v.policy, reroute.pool).some((s) => s.name === source.name),
      canSkipMx: avoid.length > 0 && avoid.length < (via.hostCount ?? 0),
    });
    const outcome = (type: AccountedOutcome['type'], r: Reaction | undefined): AccountedOutcome => ({ type, rcpt, queue: context.route, source: source.name, reply, reaction: r, mxHost: v.mxHost, policyVersion: v.policy.manifest.hash, at: time.now(), ...(v.tls !== undefined ? { tls: v.tls } : {}) });
    // No reply from the host for this recipient (connection, greeting, EHLO, TLS): a deferral
    // is the queue's, not the recipient's — PowerMTA's queue-level `tq` record.
    const o = fate.kind === 'delivered' ? outcome('d', reaction) : fate.kind === 'bounced' ? outcome('b', { ...reaction, category: fate.category }) : outcome(phase === 'connect' || phase === 'ehlo' ? 'tq' : 't', reaction);
    // INVARIANT: what must follow this outcome (its webhook event, a DSN) is durable before
    // the outcome is: a crash between the two repeats the outcome, never loses what follows.
    await deps.settling?.(m, o);
    if (fate.kind === 'delivered') {
      await spool.recordOutcome(m.id, rcpt, 'delivered');
      counters.delivered++;
      deps.record(m, o, route);
      return;
    }
    if (fate.kind === 'bounced') {
      await spool.recordOutcome(m.id, rcpt, fate.why === 'expired' ? 'expired' : 'bounced');
      counters.bounced++;
      deps.record(m, o, route);
      return;
    }
    await spool.recordDeferral(m.id, rcpt, fate.at);
    counters.deferred++;
    deps.record(m, o, route);
    if (!spool.get(m.id)) return;
    const pool = fate.via && 'pool' in fate.via ? fate.via.pool : via.item?.pool;
    // Still in its queue until it is routed again when due (status counts it there).
    deps.requeue({ id: m.id, domain, rcpts: [rcpt], notBefore: fate.at, queue: context.route, ...(pool !== undefined ? { pool } : {}), ...(fate.via && 'skipMx' in fate.via ? { avoid } : {}) });
  };
}
