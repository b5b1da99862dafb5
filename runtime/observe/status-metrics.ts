/**
 * The status as Prometheus gauges: what waits and why, the same answer `GET
 * /api/v1/status` gives (status.ts), read at each scrape. Labels name only what is in force
 * now (a disabled source, a suspension, a backoff, a ramp under way, a warming-up source's
 * routes today), so their number is bounded by the state itself, and a series ends when
 * what it shows ends.
 */
import { Gauge, type Registry } from 'prom-client';
import type { RuntimeStatus } from './status.ts';

/** How long one computed status serves the gauges of one scrape (they are collected one after another). */
const REUSE_MS = 250;

const seconds = (iso: string) => Date.parse(iso) / 1000;

/** Registers the status gauges on `registry`; each scrape reads `status()` (once for all of them). */
export function registerStatusMetrics(registry: Registry, status: () => RuntimeStatus): void {
  let last: { at: number; status: RuntimeStatus } | undefined;
  const read = () => {
    const at = performance.now();
    if (!last || at - last.at > REUSE_MS) last = { at, status: status() };
    return last.status;
  };
  /** A gauge whose series are exactly `rows(status)` at each scrape. */
  const gauge = <L extends string>(name: string, help: string, labelNames: readonly L[], rows: (s: RuntimeStatus) => [Record<L, string>, number][]) =>
    new Gauge({
      name,
      help,
      labelNames,
      registers: [registry],
      collect() {
        this.reset();
        for (const [labels, value] of rows(read())) this.set(labels, value);
      },
    });

  new Gauge({ name: 'petrel_queued_recipients', help: 'Recipients waiting for a delivery, not in flight (the status API\'s queued: the sum of its queues)', registers: [registry], collect() { this.set(read().queued); } });
  gauge('petrel_source_disabled', 'Sources disabled on a queue (queue * = every route) until an operator enables them (value 1)', ['queue', 'source'], (s) => s.disabled.map((d) => [{ queue: d.queue, source: d.source }, 1]));
  gauge('petrel_suspended_until_seconds', 'Suspensions in force: when each ends (Unix time); who is the source or tenant, empty for a whole destination', ['queue', 'target', 'who'], (s) => s.suspensions.map((x) => [{ queue: x.queue, target: x.target, who: x.who ?? '' }, seconds(x.until)]));
  gauge('petrel_backoff_until_seconds', 'Backoffs in force on one source of one queue: when each ends (Unix time)', ['queue', 'source'], (s) => s.backoffs.map((b) => [{ queue: b.queue, source: b.source }, seconds(b.until)]));
  gauge('petrel_ramp_share', 'Recovery ramps under way: the share of the normal limits allowed now (0.1, 0.25, 0.5, 0.75)', ['queue', 'target', 'who'], (s) => s.ramps.filter((r) => r.share < 1).map((r) => [{ queue: r.queue, target: r.target, who: r.who ?? '' }, r.share]));
  gauge('petrel_warmup_sent_today', 'Messages a warming-up source sent to a route today (UTC)', ['source', 'route'], (s) => s.warmup.flatMap((w) => w.routes.map((r) => [{ source: w.source, route: r.route }, r.sentToday] as [Record<'source' | 'route', string>, number])));
  gauge('petrel_warmup_limit_today', 'What a warming-up source may send to a route today (its ramp\'s limit for the day); at it, the source is capped there', ['source', 'route'], (s) => s.warmup.flatMap((w) => w.routes.map((r) => [{ source: w.source, route: r.route }, r.limitToday] as [Record<'source' | 'route', string>, number])));
}
