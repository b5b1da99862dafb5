/**
 * The dashboard's per-minute counters: the runtime's totals (accepted, delivered, deferred,
 * bounced) and its queue depth, sampled every `everyMs` and kept for an hour, so the
 * overview can plot rates per minute without a metrics server.
 *
 * INVARIANT: at most `MAX_SAMPLES` samples are kept (the oldest go first); a rate is the
 * change of a total over the samples of the last minute, scaled to a minute.
 */
export interface Totals {
  accepted: number;
  delivered: number;
  deferred: number;
  bounced: number;
  queued: number;
}

/** One point of the chart: when (Unix seconds), the rates per minute, and the queue depth then. */
export interface HistoryPoint {
  t: number;
  accepted: number;
  delivered: number;
  deferred: number;
  bounced: number;
  queued: number;
}

const MAX_SAMPLES = 720;
const MINUTE_MS = 60_000;
const RATES = ['accepted', 'delivered', 'deferred', 'bounced'] as const;

export interface CounterHistory {
  /** Takes one sample now (the timer calls it; tests may too). */
  sample(): void;
  /** The points, oldest first. */
  points(): HistoryPoint[];
  stop(): void;
}

/** Samples `totals()` every `everyMs` (unref'd timer) from now until `stop()`. */
export function counterHistory(totals: () => Totals, clock: () => number = Date.now, everyMs = 5000): CounterHistory {
  const samples: { at: number; totals: Totals }[] = [];
  const sample = () => {
    samples.push({ at: clock(), totals: { ...totals() } });
    if (samples.length > MAX_SAMPLES) samples.shift();
  };
  sample();
  const timer = setInterval(sample, everyMs);
  timer.unref();
  const points = (): HistoryPoint[] => {
    let from = 0;
    return samples.slice(1).map((s, i) => {
      // The earliest sample within a minute before this one (index i + 1 in samples).
      while (from < i && s.at - samples[from]!.at > MINUTE_MS) from++;
      const base = samples[from]!;
      const span = Math.max(1, s.at - base.at);
      const point: HistoryPoint = { t: Math.round(s.at / 1000), queued: s.totals.queued, accepted: 0, delivered: 0, deferred: 0, bounced: 0 };
      for (const k of RATES) point[k] = Math.round(((s.totals[k] - base.totals[k]) * MINUTE_MS) / span);
      return point;
    });
  };
  return { sample, points, stop: () => clearInterval(timer) };
}
