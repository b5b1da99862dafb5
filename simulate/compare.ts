/**
 * Two simulations of one campaign, compared: each side's outcome figures per provider (a
 * model) and in total, the change of each, and the changes that matter flagged — what
 * `petrel diff --simulate` prints. Pure data from two reports (report.ts).
 */
import type { SimulationReport } from './report.ts';
import type { Counts } from './tally.ts';

/** One side's outcome for a provider, or in total. */
export interface OutcomeFigures {
  recipients: number;
  delivered: number;
  /** Deferred attempts, and of them those the policy judged a `block`. */
  deferred: number;
  blocked: number;
  bounced: number;
  bouncedByCategory: Record<string, number>;
  /** Recipients neither delivered nor bounced when the run ended (at the horizon). */
  open: number;
  /** A provider's: from its first message injected to its last recipient settled; the total's: from the campaign's start. Null: not finished. */
  timeToCompleteSeconds: number | null;
  /** A provider's: from its first message injected until half its recipients settled (report.ts); null for the total, or when fewer settled. */
  timeToHalfSeconds: number | null;
  /** Deliveries per hour in the busiest timeline bucket. */
  peakPerHour: number;
  /** Backoffs and suspensions the policy started on the routes the provider's domains take (kept events only, see `eventsCounted`). */
  backoffs: number;
  suspensions: number;
}

/** One side of the comparison. */
export interface OutcomeSide {
  policy: SimulationReport['policy'];
  finished: boolean;
  simulatedSeconds: number;
  wallSeconds: number;
  /** Backoff and suspension events counted (the report keeps at most 10 000) and started. */
  eventsCounted: number;
  eventCount: number;
  total: OutcomeFigures;
  providers: ({ provider: string } & OutcomeFigures)[];
  warnings: string[];
}

/** What a change can be flagged as: the ones a reviewer must not miss. */
export type OutcomeFlag = 'no longer finishes' | 'slower' | 'more blocks' | 'more bounces';

/** One figure that changed: its values and the change, absolute and in per cent of the base (null where undefined). */
export interface FigureChange {
  figure: string;
  base: number | null;
  head: number | null;
  change: number | null;
  percent: number | null;
}

/** The changes of one provider, or of the total; `changes` is empty when it is unchanged. */
export interface ProviderDelta {
  provider: string;
  changes: FigureChange[];
  flags: OutcomeFlag[];
}

export interface OutcomeDelta {
  /** Whether any provider or the total changed. */
  changed: boolean;
  total: ProviderDelta;
  /** Every provider of either side, sorted, unchanged ones with no changes. */
  providers: ProviderDelta[];
}

/** Times and rates closer than this (a fraction of the base) are not listed as changes: the timeline's buckets quantise them. */
export const TIME_TOLERANCE = 0.01;
/** A provider that takes this much longer (a fraction of the base) is flagged `slower`. */
export const SLOWER_BY = 0.1;
/** More blocks or bounces are flagged when they grow from none, or by more than this fraction of the provider's recipients. */
export const MORE_BY = 0.01;

const TOTAL = 'total';

/** The figures of one report, with each provider's policy events counted on `routesOf(provider)`. */
export function outcomeSide(report: SimulationReport, routesOf: (provider: string) => ReadonlySet<string>): OutcomeSide {
  const events = (routes: ReadonlySet<string> | undefined) => ({
    backoffs: report.events.filter((e) => e.kind === 'backoff' && (!routes || routes.has(e.queue))).length,
    suspensions: report.events.filter((e) => e.kind === 'suspension' && (!routes || routes.has(e.queue))).length,
  });
  const providers = report.providers.map((p) => ({
    provider: p.provider,
    ...counts(p, p.injected, p.injected - p.delivered - p.bounced),
    timeToCompleteSeconds: p.timeToCompleteSeconds,
    timeToHalfSeconds: p.timeToHalfSeconds,
    peakPerHour: p.peakPerHour,
    ...events(routesOf(p.provider)),
  }));
  return {
    policy: report.policy,
    finished: report.finished,
    simulatedSeconds: report.simulatedSeconds,
    wallSeconds: report.wallSeconds,
    eventsCounted: report.events.length,
    eventCount: report.eventCount,
    total: { ...counts(report.totals, report.recipients, report.open), timeToCompleteSeconds: report.finished ? report.simulatedSeconds : null, timeToHalfSeconds: null, peakPerHour: totalPeak(report), ...events(undefined) },
    providers,
    warnings: report.warnings,
  };
}

const counts = (c: Counts, recipients: number, open: number) => ({ recipients, delivered: c.delivered, deferred: c.deferred, blocked: c.blocked, bounced: c.bounced, bouncedByCategory: { ...c.bouncedByCategory }, open });

/** Deliveries per hour in the busiest bucket, all providers together. */
function totalPeak(r: SimulationReport): number {
  const sums: number[] = [];
  for (const p of r.timeline.providers) p.delivered.forEach((n, i) => (sums[i] = (sums[i] ?? 0) + n));
  return Math.max(0, ...sums.map((n) => n ?? 0)) / (r.timeline.bucketSeconds / 3600);
}

/** The change from `base` to `head` (the same campaign, seed and models). */
export function compareOutcomes(base: OutcomeSide, head: OutcomeSide): OutcomeDelta {
  const names = [...new Set([...base.providers, ...head.providers].map((p) => p.provider))].sort();
  const find = (side: OutcomeSide, name: string) => side.providers.find((p) => p.provider === name);
  const providers = names.map((name) => providerDelta(name, find(base, name), find(head, name)));
  const total = providerDelta(TOTAL, base.total, head.total);
  return { changed: total.changes.length > 0 || providers.some((p) => p.changes.length > 0), total, providers };
}

const COUNTS = ['recipients', 'delivered', 'deferred', 'blocked', 'bounced', 'open', 'backoffs', 'suspensions'] as const;

function providerDelta(provider: string, base: OutcomeFigures | undefined, head: OutcomeFigures | undefined): ProviderDelta {
  const changes: FigureChange[] = [];
  const push = (figure: string, b: number | null, h: number | null) => changes.push({ figure, base: b, head: h, change: b !== null && h !== null ? h - b : null, percent: b !== null && h !== null && b !== 0 ? ((h - b) / b) * 100 : null });
  for (const figure of COUNTS) {
    const b = base?.[figure] ?? 0;
    const h = head?.[figure] ?? 0;
    if (b !== h) push(figure, b, h);
  }
  const categories = [...new Set([...Object.keys(base?.bouncedByCategory ?? {}), ...Object.keys(head?.bouncedByCategory ?? {})])].sort();
  for (const c of categories) {
    const b = base?.bouncedByCategory[c] ?? 0;
    const h = head?.bouncedByCategory[c] ?? 0;
    if (b !== h) push(`bounced ${c}`, b, h);
  }
  // A time is a change past the tolerance, or when one side has it and the other not (not finished).
  const times = [['time to complete', 'timeToCompleteSeconds'], ['time to 50 % settled', 'timeToHalfSeconds']] as const;
  for (const [figure, key] of times) {
    const b = base?.[key] ?? null;
    const h = head?.[key] ?? null;
    if ((b === null) !== (h === null) || (b !== null && h !== null && beyondTolerance(b, h))) push(figure, b, h);
  }
  if (beyondTolerance(base?.peakPerHour ?? 0, head?.peakPerHour ?? 0)) push('peak per hour', base?.peakPerHour ?? 0, head?.peakPerHour ?? 0);
  return { provider, changes, flags: base && head ? flags(base, head) : [] };
}

const beyondTolerance = (b: number, h: number) => Math.abs(h - b) > TIME_TOLERANCE * Math.max(Math.abs(b), Math.abs(h));

function flags(base: OutcomeFigures, head: OutcomeFigures): OutcomeFlag[] {
  const out: OutcomeFlag[] = [];
  const grew = (b: number, h: number) => h > b && (b === 0 || h - b > MORE_BY * base.recipients);
  if (base.timeToCompleteSeconds !== null && head.timeToCompleteSeconds === null) out.push('no longer finishes');
  // Slower: the whole campaign, or its bulk — the time to complete alone is set by the tail
  // of bounded retries (full mailboxes tried for days), which a change of rate does not move.
  const grewTime = (b: number | null, h: number | null) => b !== null && h !== null && h > b * (1 + SLOWER_BY);
  if (grewTime(base.timeToCompleteSeconds, head.timeToCompleteSeconds) || grewTime(base.timeToHalfSeconds, head.timeToHalfSeconds)) out.push('slower');
  if (grew(base.blocked, head.blocked)) out.push('more blocks');
  if (grew(base.bounced, head.bounced)) out.push('more bounces');
  return out;
}
