/**
 * What an operator does to queued mail (`petrel queue`, the queue API): list and show
 * messages, retry now, delete, bounce. Each is carried out through the spool's public
 * operations and logged in accounting:
 *
 * - retry now: a deferral with `nextAttemptAt` = now for every open recipient (durable;
 *   counted as an attempt, as PowerMTA's `retry` does), the message's work due at once and
 *   the scheduler woken. Record `t`, dsnDiag `petrel;retry now by operator`.
 * - delete: every open recipient finished as `bounced` in the spool, no DSN. Record `b`,
 *   bounceCat `other`, dsnStatus `5.0.0`, dsnDiag `petrel;deleted by operator`.
 * - bounce: the same, and a DSN to the sender (bounce-loop.ts). dsnDiag
 *   `petrel;bounced by operator`.
 *
 * A delivery in flight for the message finishes and is judged as usual; the spool leaves
 * recipients already finished as they are.
 */
import type { AccountedOutcome, AccountingRecord } from '../observe/index.ts';
import { outcomeRecord } from '../observe/index.ts';
import type { LivePolicy, Work } from '../schedule/index.ts';
import { candidates, domainOf } from '../schedule/index.ts';
import type { Spool, SpooledMessage } from '../spool/index.ts';
import type { BounceLoop } from './bounce-loop.ts';
import { splitHeader } from '../intake/index.ts';

/** Which messages an operation applies to; every given field must match. */
export interface QueueFilter {
  /** The route (`artifact.route`) of one of its open recipients' domains. */
  route?: string;
  /** A recipient domain (lower case). */
  domain?: string;
  /** A source the message may go out from (its pool's, or any source without one). */
  source?: string;
  tenant?: string;
  /** Received at least this many seconds ago. */
  olderThanSeconds?: number;
  /** A recipient matching this glob (`*` any run, `?` one character; case-insensitive). */
  rcpt?: string;
  /** Exactly these queue ids. */
  ids?: readonly string[];
}

/** One queued message as listed. */
export interface QueuedMessage {
  id: string;
  from: string;
  tenant: string;
  campaign: string;
  pool: string;
  receivedAt: number;
  size: number;
  recipients: { rcpt: string; attempts: number; nextAttemptAt: number | null; queue: string | null }[];
}

export interface QueueOpsDeps {
  spool: Pick<Spool, 'pending' | 'get' | 'read' | 'recordOutcome' | 'recordDeferral'>;
  policy(): LivePolicy;
  /** The scheduler's work (items are mutable: `notBefore`), and its wake-up. */
  work(): readonly Work[];
  wake(): void;
  account(record: AccountingRecord): void;
  loop: BounceLoop;
  clock(): number;
}

export interface QueueOps {
  list(filter: QueueFilter, offset: number, limit: number): { total: number; messages: QueuedMessage[] };
  show(id: string): QueuedMessage | undefined;
  /** Each resolves with the ids it acted on, once durable. */
  retry(filter: QueueFilter): Promise<string[]>;
  delete(filter: QueueFilter): Promise<string[]>;
  bounce(filter: QueueFilter): Promise<string[]>;
}

/**
 * Whether `text` matches `glob` (`*` any run, `?` one character, the rest literal;
 * case-insensitive). Not a regex: a pattern of many `*` would backtrack exponentially
 * there; this walks both strings once, going back only to the last `*` (O(text × glob)).
 */
export function globMatch(glob: string, text: string): boolean {
  const g = glob.toLowerCase();
  const t = text.toLowerCase();
  let gi = 0;
  let ti = 0;
  let star = -1;
  let resume = 0;
  while (ti < t.length) {
    if (gi < g.length && (g[gi] === '?' || (g[gi] !== '*' && g[gi] === t[ti]))) (gi++, ti++);
    else if (gi < g.length && g[gi] === '*') (star = gi++, (resume = ti));
    else if (star !== -1) (gi = star + 1, (ti = ++resume));
    else return false;
  }
  while (gi < g.length && g[gi] === '*') gi++;
  return gi === g.length;
}

export function createQueueOps(deps: QueueOpsDeps): QueueOps {
  function matcher(f: QueueFilter): (m: SpooledMessage) => boolean {
    const rcpt = f.rcpt;
    const ids = f.ids ? new Set(f.ids) : undefined;
    const p = deps.policy();
    const now = deps.clock();
    return (m) =>
      (ids === undefined || ids.has(m.id)) &&
      (f.tenant === undefined || (m.tenant ?? '') === f.tenant) &&
      (f.olderThanSeconds === undefined || now - m.receivedAt >= f.olderThanSeconds * 1000) &&
      (f.domain === undefined || m.recipients.some((r) => domainOf(r.rcpt) === f.domain!.toLowerCase())) &&
      (f.route === undefined || m.recipients.some((r) => p.artifact.route(domainOf(r.rcpt)) === f.route)) &&
      (rcpt === undefined || m.recipients.some((r) => globMatch(rcpt, r.rcpt))) &&
      (f.source === undefined || candidates(p, m).some((s) => s.name === f.source));
  }
  const matching = (f: QueueFilter) => {
    if (f.ids) return f.ids.flatMap((id) => deps.spool.get(id) ?? []).filter(matcher(f));
    return deps.spool.pending().filter(matcher(f));
  };
  function describe(m: SpooledMessage): QueuedMessage {
    const queues = new Map(deps.work().filter((w) => w.id === m.id).flatMap((w) => w.rcpts.map((r) => [r, w.queue ?? null] as const)));
    return {
      id: m.id,
      from: m.envelope.from,
      tenant: m.tenant ?? '',
      campaign: m.campaign ?? '',
      pool: m.pool ?? '',
      receivedAt: m.receivedAt,
      size: m.size,
      recipients: m.recipients.map((r) => ({ rcpt: r.rcpt, attempts: r.attempts, nextAttemptAt: r.nextAttemptAt ?? null, queue: queues.get(r.rcpt) ?? null })),
    };
  }
  /** The accounting record of an operator's action on one recipient. */
  function account(m: SpooledMessage, rcpt: string, type: 'b' | 't', what: string): void {
    const o: AccountedOutcome = { type, rcpt, queue: '', source: '', reply: '', reaction: undefined, mxHost: '', policyVersion: deps.policy().manifest.hash, at: deps.clock() };
    const rec = outcomeRecord(m, o);
    deps.account({ ...rec, dsnStatus: type === 'b' ? '5.0.0' : '4.0.0', dsnDiag: `petrel;${what} by operator`, bounceCat: type === 'b' ? 'other' : '' });
  }
  async function finish(filter: QueueFilter, what: 'deleted' | 'bounced'): Promise<string[]> {
    const done: string[] = [];
    for (const m of matching(filter)) {
      const rcpts = m.recipients.map((r) => r.rcpt);
      // The headers for a DSN while the message is still in the spool.
      const headers = what === 'bounced' ? await deps.spool.read(m.id).then((raw) => splitHeader(raw).head, () => undefined) : undefined;
      // The DSN is durable before the outcome: a crash between them sends it twice, never not at all.
      if (what === 'bounced') await deps.loop.operatorBounce(m, rcpts, headers);
      await deps.spool.recordOutcome(m.id, rcpts, 'bounced');
      for (const r of rcpts) account(m, r, 'b', what);
      done.push(m.id);
    }
    return done;
  }
  return {
    list(filter, offset, limit) {
      const all = matching(filter);
      return { total: all.length, messages: all.slice(offset, offset + limit).map(describe) };
    },
    show(id) {
      const m = deps.spool.get(id);
      return m ? describe(m) : undefined;
    },
    async retry(filter) {
      const now = deps.clock();
      const done: string[] = [];
      for (const m of matching(filter)) {
        await deps.spool.recordDeferral(m.id, m.recipients.map((r) => r.rcpt), now);
        for (const r of m.recipients) account(m, r.rcpt, 't', 'retry now');
        for (const w of deps.work()) if (w.id === m.id) w.notBefore = Math.min(w.notBefore, now);
        done.push(m.id);
      }
      deps.wake();
      return done;
    },
    delete: (filter) => finish(filter, 'deleted'),
    bounce: (filter) => finish(filter, 'bounced'),
  };
}
