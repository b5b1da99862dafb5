/**
 * A simulation's result as a report: plain data (what `--format json` prints and the HTML
 * page plots), and the human text. Rates are per hour; times are ISO 8601 UTC.
 */
import type { Counts, PolicyEvent } from './tally.ts';
import { emptyCounts } from './tally.ts';
import type { SimulationResult } from './simulation.ts';

/** One provider × source, or one provider's total. */
export interface CountsRow extends Counts {
  /** Recipients delivered per hour: in the busiest timeline bucket, and from the first injection to the last settled. */
  peakPerHour: number;
  meanPerHour: number;
}

export interface ProviderRow extends CountsRow {
  provider: string;
  injected: number;
  /** From its first message injected to its last recipient settled; null while some are open at the end. */
  timeToCompleteSeconds: number | null;
  /**
   * From its first message injected until half its recipients had settled; null when fewer
   * did. Unlike the time to complete, not set by the tail of bounded retries (full mailboxes
   * tried for days): what a change of rate or concurrency moves.
   */
  timeToHalfSeconds: number | null;
  /** Periods the modelled provider started: deferrals and blocks of an IP. */
  providerDeferrals: number;
  providerBlocks: number;
  sources: (CountsRow & { source: string })[];
}

/** A report, format 1. */
export interface SimulationReport {
  format: 1;
  campaign: string;
  policy: { name: string; version: string; hash: string };
  start: string;
  horizon: string;
  finished: boolean;
  messages: number;
  recipients: number;
  open: number;
  simulatedSeconds: number;
  wallSeconds: number;
  /** Simulated time over wall time. */
  ratio: number;
  /** Virtual timers fired (latencies, retries, the scheduler's wake-ups). */
  timers: number;
  totals: Counts;
  providers: ProviderRow[];
  events: (Omit<PolicyEvent, 'at' | 'until'> & { at: string; until: string })[];
  /** Events started, including those past the kept list's end. */
  eventCount: number;
  warmup: SimulationResult['warmup'];
  timeline: {
    bucketSeconds: number;
    /** Bucket i starts at start + i × bucketSeconds. */
    providers: { provider: string; delivered: number[]; deferred: number[]; blocked: number[]; bounced: number[] }[];
    /** Attempts (any outcome) per bucket, by source. */
    sources: { source: string; attempts: number[] }[];
  };
  warnings: string[];
}

const iso = (ms: number) => new Date(ms).toISOString().replace('.000Z', 'Z');
const add = (into: Counts, c: Counts) => {
  into.delivered += c.delivered;
  into.deferred += c.deferred;
  into.blocked += c.blocked;
  into.bounced += c.bounced;
  for (const [k, v] of Object.entries(c.bouncedByCategory)) into.bouncedByCategory[k] = (into.bouncedByCategory[k] ?? 0) + v;
  for (const [k, v] of Object.entries(c.deferredByCategory)) into.deferredByCategory[k] = (into.deferredByCategory[k] ?? 0) + v;
};

/** Seconds from `first` until `share` of `injected` recipients had settled (`times` in order); null when fewer did. */
function timeToShare(times: readonly number[] | undefined, injected: number, share: number, first: number): number | null {
  const n = Math.ceil(share * injected);
  if (!times || n === 0 || times.length < n) return null;
  return (times[n - 1]! - first) / 1000;
}

export function buildReport(r: SimulationResult, meta: { campaign: string; policy: { name: string; version: string; hash: string } }): SimulationReport {
  const { tally } = r;
  const bucketHours = tally.bucketMs / 3_600_000;
  const totals = emptyCounts();
  const providers: ProviderRow[] = [];
  const names = [...new Set([...tally.injected.keys()])].sort();
  for (const provider of names) {
    const sum = emptyCounts();
    const sources: ProviderRow['sources'] = [];
    const first = tally.firstInjected.get(provider) ?? r.start;
    const last = tally.lastSettled.get(provider);
    const hours = last !== undefined && last > first ? (last - first) / 3_600_000 : 0;
    for (const [key, c] of [...tally.cells].sort(([a], [b]) => a.localeCompare(b))) {
      const [p, source] = key.split('|');
      if (p !== provider) continue;
      add(sum, c);
      sources.push({ source: source!, ...c, peakPerHour: Math.max(0, ...(tally.cellDelivered.get(key) ?? [])) / bucketHours, meanPerHour: hours > 0 ? c.delivered / hours : 0 });
    }
    add(totals, sum);
    const series = tally.providerSeries.get(provider);
    const injected = tally.injected.get(provider) ?? 0;
    const settled = tally.settled.get(provider) ?? 0;
    providers.push({
      provider,
      injected,
      ...sum,
      peakPerHour: Math.max(0, ...(series?.delivered ?? [])) / bucketHours,
      meanPerHour: hours > 0 ? sum.delivered / hours : 0,
      timeToCompleteSeconds: settled >= injected && last !== undefined ? (last - first) / 1000 : null,
      timeToHalfSeconds: timeToShare(tally.settleTimes.get(provider), injected, 0.5, first),
      providerDeferrals: r.providerSide.get(provider)?.deferrals ?? 0,
      providerBlocks: r.providerSide.get(provider)?.blocks ?? 0,
      sources,
    });
  }
  const simulatedSeconds = (r.end - r.start) / 1000;
  return {
    format: 1,
    campaign: meta.campaign,
    policy: meta.policy,
    start: iso(r.start),
    horizon: iso(r.horizon),
    finished: r.finished,
    messages: r.messages,
    recipients: r.recipients,
    open: r.open,
    simulatedSeconds,
    wallSeconds: r.wallMs / 1000,
    ratio: r.wallMs > 0 ? (simulatedSeconds * 1000) / r.wallMs : 0,
    timers: r.timers,
    totals,
    providers,
    events: tally.events.map((e) => ({ ...e, at: iso(e.at), until: iso(e.until) })),
    eventCount: tally.eventCount,
    warmup: r.warmup,
    timeline: {
      bucketSeconds: tally.bucketMs / 1000,
      providers: names.map((provider) => ({ provider, ...(tally.providerSeries.get(provider) ?? { delivered: [], deferred: [], blocked: [], bounced: [] }) })),
      sources: [...tally.sourceSeries].sort(([a], [b]) => a.localeCompare(b)).map(([source, attempts]) => ({ source, attempts })),
    },
    warnings: r.warnings,
  };
}

/** At most this many policy events are listed in human output (JSON and HTML have every kept one). */
export const MAX_HUMAN_EVENTS = 30;

const duration = (s: number | null) => (s === null ? 'not finished' : s < 3600 ? `${(s / 60).toFixed(1)} min` : `${(s / 3600).toFixed(1)} h`);
const rate = (n: number) => `${Math.round(n)}/h`;
/** How the report writes a time to complete (null: not finished) and a rate per hour; `petrel diff --simulate` writes them the same way. */
export { duration as formatDuration, rate as formatRate };
const categories = (byCategory: Record<string, number>) =>
  Object.entries(byCategory)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');

/** The report for a terminal. */
export function humanReport(r: SimulationReport): string {
  const lines: string[] = [];
  lines.push(`simulated ${r.campaign} under ${r.policy.name} ${r.policy.version} (${r.policy.hash.slice(0, 12)}) from ${r.start}`);
  lines.push(`${r.messages} messages, ${r.recipients} recipients: ${r.totals.delivered} delivered, ${r.totals.bounced} bounced, ${r.open} open${r.finished ? '' : ` at the horizon ${r.horizon}`}; ${r.totals.deferred} deferrals (${r.totals.blocked} judged blocks)`);
  lines.push('');
  for (const p of r.providers) {
    lines.push(`${p.provider}: ${p.injected} recipients, ${p.delivered} delivered, ${p.deferred} deferred${p.deferred ? ` (${categories(p.deferredByCategory)}; ${p.blocked} judged blocks)` : ''}, ${p.bounced} bounced${p.bounced ? ` (${categories(p.bouncedByCategory)})` : ''}; done in ${duration(p.timeToCompleteSeconds)}; peak ${rate(p.peakPerHour)}, mean ${rate(p.meanPerHour)}; the provider deferred an IP ${p.providerDeferrals} times, blocked one ${p.providerBlocks}`);
    for (const s of p.sources) lines.push(`  ${s.source.padEnd(16)} ${s.delivered} delivered, ${s.deferred} deferred (${s.blocked} blocked), ${s.bounced} bounced${s.bounced ? ` (${categories(s.bouncedByCategory)})` : ''}, mean ${rate(s.meanPerHour)}`);
  }
  if (r.warmup.length > 0) {
    lines.push('', 'warmup (sent / the ramp\'s limit, per day from the start):');
    for (const w of r.warmup) lines.push(`  ${w.source} → ${w.route}: ${w.days.map((d) => `day ${d.day} ${d.sent}/${d.limit}`).join(', ')}`);
  }
  lines.push('', `backoffs and suspensions: ${r.eventCount}`);
  for (const e of r.events.slice(0, MAX_HUMAN_EVENTS)) lines.push(`  ${e.at} ${e.kind} ${e.target} ${e.queue}${e.source ? ` ${e.source}` : ''} until ${e.until} by ${e.rule ?? 'the built-in block suspension'}: ${e.reason}`);
  if (r.events.length > MAX_HUMAN_EVENTS) lines.push(`  … ${r.eventCount - MAX_HUMAN_EVENTS} more (--format json lists them)`);
  lines.push('', 'timeline (per provider, delivered / deferred / blocked / bounced):');
  lines.push(...timelineLines(r));
  for (const w of r.warnings) lines.push(`warning: ${w}`);
  lines.push('', `${duration(r.simulatedSeconds)} simulated in ${r.wallSeconds.toFixed(1)} s of wall time: ${Math.round(r.ratio)}× real time`);
  return `${lines.join('\n')}\n`;
}

/** At most this many timeline rows in human output: buckets are merged to fit. */
const HUMAN_TIMELINE_ROWS = 24;

function timelineLines(r: SimulationReport): string[] {
  const length = Math.max(0, ...r.timeline.providers.map((p) => p.delivered.length + p.deferred.length));
  if (length === 0) return ['  (nothing happened)'];
  const per = Math.max(1, Math.ceil(length / HUMAN_TIMELINE_ROWS));
  const sum = (a: number[], i: number) => a.slice(i, i + per).reduce((s, v) => s + v, 0);
  const out: string[] = [];
  for (let i = 0; i < length; i += per) {
    const at = new Date(Date.parse(r.start) + i * r.timeline.bucketSeconds * 1000).toISOString().slice(0, 16).replace('T', ' ');
    const cells = r.timeline.providers.map((p) => `${p.provider} ${sum(p.delivered, i)}/${sum(p.deferred, i)}/${sum(p.blocked, i)}/${sum(p.bounced, i)}`);
    out.push(`  ${at}  ${cells.join('  ')}`);
  }
  return out;
}
