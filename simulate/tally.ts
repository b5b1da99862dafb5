/**
 * What a simulation counts, as outcomes happen: per provider and source, delivered,
 * deferred (and how many of those the policy judged a block), bounced by category; when
 * each provider's first message came and its last recipient was settled; a timeline of
 * fixed-size buckets; and the backoffs and suspensions the policy state started, with the
 * rules that started them. Only counters and arrays of counts: nothing per recipient.
 */
import type { PolicyState } from '../runtime/decide/index.ts';
import type { AccountedOutcome } from '../runtime/observe/index.ts';
import { ruleAt } from '../runtime/observe/index.ts';

/** Counts for one provider × source, or summed. */
export interface Counts {
  delivered: number;
  /** Deferrals (each attempt refused for now, `t` and `tq` records). */
  deferred: number;
  /** Of the deferrals, those the policy judged a `block` (a reputation block: the source stopped there). */
  blocked: number;
  bounced: number;
  bouncedByCategory: Record<string, number>;
  /** Deferrals by the category the policy gave their reply. */
  deferredByCategory: Record<string, number>;
}

/** A backoff or suspension the policy state started. */
export interface PolicyEvent {
  kind: 'backoff' | 'suspension';
  /** `destination`, `source` or `tenant` for a suspension; `queue` for a backoff. */
  target: string;
  queue: string;
  source: string | null;
  at: number;
  until: number;
  /** `file:line` of the rule, or null for the built-in block suspension. */
  rule: string | null;
  reason: string;
}

/** Per-bucket counts of one provider (or, `sent` only, one source). */
export interface Series {
  delivered: number[];
  deferred: number[];
  blocked: number[];
  bounced: number[];
}

export const emptyCounts = (): Counts => ({ delivered: 0, deferred: 0, blocked: 0, bounced: 0, bouncedByCategory: {}, deferredByCategory: {} });
const emptySeries = (): Series => ({ delivered: [], deferred: [], blocked: [], bounced: [] });

/** At most this many policy events are kept (the count goes on). */
export const MAX_EVENTS = 10_000;

export class Tally {
  /** By `provider|source`. */
  readonly cells = new Map<string, Counts>();
  readonly providerSeries = new Map<string, Series>();
  /** Deliveries per bucket, by `provider|source`. */
  readonly cellDelivered = new Map<string, number[]>();
  /** Attempts (any outcome) per bucket, by source. */
  readonly sourceSeries = new Map<string, number[]>();
  readonly firstInjected = new Map<string, number>();
  readonly lastSettled = new Map<string, number>();
  /** When each recipient settled (delivered or bounced), per provider, in time order: for the time to settle half. */
  readonly settleTimes = new Map<string, number[]>();
  /** Recipients injected and settled (delivered or bounced), per provider. */
  readonly injected = new Map<string, number>();
  readonly settled = new Map<string, number>();
  readonly events: PolicyEvent[] = [];
  eventCount = 0;
  private readonly seen = new Set<string>();

  constructor(
    readonly start: number,
    readonly bucketMs: number,
  ) {}

  /** `n` recipients for `provider` entered the spool at `at`. */
  inject(provider: string, n: number, at: number): void {
    if (!this.firstInjected.has(provider)) this.firstInjected.set(provider, at);
    this.injected.set(provider, (this.injected.get(provider) ?? 0) + n);
  }

  /** Counts one outcome the judge recorded. */
  outcome(provider: string, o: AccountedOutcome): void {
    const key = `${provider}|${o.source}`;
    let c = this.cells.get(key);
    if (!c) this.cells.set(key, (c = emptyCounts()));
    let series = this.providerSeries.get(provider);
    if (!series) this.providerSeries.set(provider, (series = emptySeries()));
    let sent = this.sourceSeries.get(o.source);
    if (!sent) this.sourceSeries.set(o.source, (sent = []));
    const b = Math.max(0, Math.floor((o.at - this.start) / this.bucketMs));
    bump(sent, b);
    if (o.type === 'd' || o.type === 'b') {
      this.lastSettled.set(provider, o.at);
      this.settled.set(provider, (this.settled.get(provider) ?? 0) + 1);
      let times = this.settleTimes.get(provider);
      if (!times) this.settleTimes.set(provider, (times = []));
      times.push(o.at);
    }
    if (o.type === 'd') {
      c.delivered++;
      bump(series.delivered, b);
      let delivered = this.cellDelivered.get(key);
      if (!delivered) this.cellDelivered.set(key, (delivered = []));
      bump(delivered, b);
    } else if (o.type === 'b') {
      c.bounced++;
      const category = o.reaction?.category ?? 'other';
      c.bouncedByCategory[category] = (c.bouncedByCategory[category] ?? 0) + 1;
      bump(series.bounced, b);
    } else {
      c.deferred++;
      const category = o.reaction?.category ?? 'other';
      c.deferredByCategory[category] = (c.deferredByCategory[category] ?? 0) + 1;
      bump(series.deferred, b);
      if (o.reaction?.disposition === 'block') {
        c.blocked++;
        bump(series.blocked, b);
      }
    }
  }

  /** Notes the backoffs and suspensions in `state` not seen before (call after a reaction that may start one). */
  policyEvents(state: PolicyState): void {
    for (const [key, b] of state.backoffs) this.note(`b|${key}|${b.since}`, () => ({ kind: 'backoff', target: 'queue', ...queueSource(key, 0), at: b.since, until: b.until, rule: ruleAt(b.rule), reason: b.reason }));
    for (const [key, s] of state.suspensions) this.note(`s|${key}|${s.since}`, () => ({ kind: 'suspension', target: s.target, ...queueSource(key, 1), at: s.since, until: s.until, rule: ruleAt(s.rule), reason: s.reason }));
  }

  private note(id: string, make: () => PolicyEvent): void {
    if (this.seen.has(id)) return;
    this.seen.add(id);
    this.eventCount++;
    if (this.events.length < MAX_EVENTS) this.events.push(make());
  }
}

/** A state key's queue and source: `route|source` (from field `first`), `destination|route`, `tenant|route|tenant`. */
function queueSource(key: string, first: number): { queue: string; source: string | null } {
  const parts = key.split('|');
  const target = first === 1 ? parts[0] : 'source';
  return { queue: parts[first] ?? '', source: target === 'source' ? (parts[first + 1] ?? null) : null };
}

function bump(series: number[], bucket: number): void {
  while (series.length <= bucket) series.push(0);
  series[bucket]!++;
}
