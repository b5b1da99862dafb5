/**
 * The report as one self-contained HTML page: the summary tables, and uPlot charts (the
 * `uplot` package's minified build and stylesheet inlined, nothing fetched) of deliveries,
 * deferrals, blocks and bounces over time per provider, attempts per source, and each
 * warming-up source's ramp against what it sent. The report's data is embedded as JSON;
 * every text from the policy or the models is escaped.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { SimulationReport } from './report.ts';

const require = createRequire(import.meta.url);

/** uPlot's minified IIFE build and stylesheet, read once from the installed package. */
let uplot: { js: string; css: string } | undefined;
function uplotAssets(): { js: string; css: string } {
  uplot ??= { js: readFileSync(require.resolve('uplot/dist/uPlot.iife.min.js'), 'utf8'), css: readFileSync(require.resolve('uplot/dist/uPlot.min.css'), 'utf8') };
  return uplot;
}

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
/** JSON safe inside a <script> element (no `</script>`, no `<!--`). */
const scriptJson = (v: unknown) => JSON.stringify(v).replace(/</g, '\\u003c').replace(/\u2028/g, '\\u2028').replace(/\u2029/g, '\\u2029');

const rate = (n: number) => `${Math.round(n)}/h`;
const done = (s: number | null) => (s === null ? 'not finished' : s < 3600 ? `${(s / 60).toFixed(1)} min` : `${(s / 3600).toFixed(1)} h`);

function providerTable(r: SimulationReport): string {
  const rows = r.providers.flatMap((p) => [
    `<tr class="provider"><th>${escapeHtml(p.provider)}</th><td></td><td>${p.delivered}</td><td>${p.deferred}</td><td>${p.blocked}</td><td>${p.bounced}</td><td>${escapeHtml(Object.entries(p.bouncedByCategory).map(([k, v]) => `${k} ${v}`).join(', '))}</td><td>${done(p.timeToCompleteSeconds)}</td><td>${rate(p.peakPerHour)}</td><td>${rate(p.meanPerHour)}</td></tr>`,
    ...p.sources.map((s) => `<tr><td></td><td>${escapeHtml(s.source)}</td><td>${s.delivered}</td><td>${s.deferred}</td><td>${s.blocked}</td><td>${s.bounced}</td><td>${escapeHtml(Object.entries(s.bouncedByCategory).map(([k, v]) => `${k} ${v}`).join(', '))}</td><td></td><td>${rate(s.peakPerHour)}</td><td>${rate(s.meanPerHour)}</td></tr>`),
  ]);
  return `<table><thead><tr><th>provider</th><th>source</th><th>delivered</th><th>deferred</th><th>blocked</th><th>bounced</th><th>bounce categories</th><th>done in</th><th>peak</th><th>mean</th></tr></thead><tbody>${rows.join('')}</tbody></table>`;
}

function eventTable(r: SimulationReport): string {
  if (r.events.length === 0) return '<p>No backoff or suspension started.</p>';
  const rows = r.events.slice(0, 500).map((e) => `<tr><td>${escapeHtml(e.at)}</td><td>${e.kind}</td><td>${escapeHtml(e.target)}</td><td>${escapeHtml(e.queue)}</td><td>${escapeHtml(e.source ?? '')}</td><td>${escapeHtml(e.until)}</td><td><code>${escapeHtml(e.rule ?? 'built-in block suspension')}</code></td><td>${escapeHtml(e.reason)}</td></tr>`);
  const more = r.eventCount > rows.length ? `<p>${r.eventCount - rows.length} more not listed (--format json has up to 10 000).</p>` : '';
  return `<table><thead><tr><th>at</th><th>what</th><th>target</th><th>queue</th><th>source</th><th>until</th><th>rule</th><th>reply</th></tr></thead><tbody>${rows.join('')}</tbody></table>${more}`;
}

/** The page's script: one chart per provider, one of attempts per source, one per warmup ramp. */
const CHARTS_SCRIPT = `
(function () {
  var r = JSON.parse(document.getElementById('report').textContent);
  var t0 = Date.parse(r.start) / 1000, step = r.timeline.bucketSeconds;
  var colours = ['#1f77b4', '#ff7f0e', '#d62728', '#7f7f7f', '#2ca02c', '#9467bd', '#8c564b', '#e377c2', '#17becf', '#bcbd22'];
  function xs(n) { var a = []; for (var i = 0; i < n; i++) a.push(t0 + i * step); return a; }
  function pad(a, n) { var b = a.slice(); while (b.length < n) b.push(0); return b; }
  function chart(el, title, names, data, opts) {
    var div = document.createElement('div'); div.className = 'chart'; el.appendChild(div);
    var series = [{}].concat(names.map(function (n, i) { return { label: n, stroke: colours[i % colours.length], width: 1.5 }; }));
    new uPlot(Object.assign({ title: title, width: Math.min(1100, window.innerWidth - 40), height: 260, series: series, axes: [{}, { label: opts && opts.yLabel || 'per ' + Math.round(step / 60) + ' min' }] }, opts && opts.extra || {}), data, div);
  }
  var el = document.getElementById('charts');
  r.timeline.providers.forEach(function (p) {
    var n = Math.max(p.delivered.length, p.deferred.length, p.blocked.length, p.bounced.length, 1);
    chart(el, p.provider + ': delivered, deferred, blocked, bounced', ['delivered', 'deferred', 'blocked', 'bounced'], [xs(n), pad(p.delivered, n), pad(p.deferred, n), pad(p.blocked, n), pad(p.bounced, n)]);
  });
  if (r.timeline.sources.length) {
    var n = Math.max.apply(null, r.timeline.sources.map(function (s) { return s.attempts.length; }).concat([1]));
    var shown = r.timeline.sources.slice(0, 10);
    chart(el, 'attempts per source' + (r.timeline.sources.length > 10 ? ' (first 10 of ' + r.timeline.sources.length + ')' : ''), shown.map(function (s) { return s.source; }), [xs(n)].concat(shown.map(function (s) { return pad(s.attempts, n); })));
  }
  var w = document.getElementById('warmup');
  r.warmup.forEach(function (row) {
    var days = row.days.map(function (d) { return t0 + d.day * 86400; });
    if (days.length < 2) days.push(days[0] + 86400);
    var lim = row.days.map(function (d) { return d.limit; }), sent = row.days.map(function (d) { return d.sent; });
    if (lim.length < 2) { lim.push(null); sent.push(null); }
    chart(w, row.source + ' → ' + row.route + ': the warmup ramp against sends per day', ['ramp limit', 'sent'], [days, lim, sent], { yLabel: 'per day', extra: { series: [{}, { label: 'ramp limit', stroke: '#d62728', width: 2, dash: [6, 4] }, { label: 'sent', stroke: '#1f77b4', width: 2, points: { show: true } }] } });
  });
  document.body.setAttribute('data-rendered', String(document.querySelectorAll('canvas').length));
})();
`;

/** The page. */
export function htmlReport(r: SimulationReport): string {
  const { js, css } = uplotAssets();
  const title = `petrel simulate: ${r.campaign}`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<style>${css}
body { font: 14px/1.4 system-ui, sans-serif; margin: 20px; color: #222; }
table { border-collapse: collapse; margin: 8px 0 20px; font-size: 13px; }
th, td { border-bottom: 1px solid #ddd; padding: 3px 8px; text-align: right; }
th:first-child, td:first-child, td:nth-child(2), thead th { text-align: left; }
tr.provider th { text-align: left; }
.chart { margin: 12px 0 24px; }
.muted { color: #666; }
</style></head><body>
<h1>${escapeHtml(title)}</h1>
<p>${escapeHtml(`${r.policy.name} ${r.policy.version} (${r.policy.hash.slice(0, 12)})`)}, from ${escapeHtml(r.start)}: ${r.messages} messages, ${r.recipients} recipients — ${r.totals.delivered} delivered, ${r.totals.bounced} bounced, ${r.open} open${r.finished ? '' : ` at the horizon ${escapeHtml(r.horizon)}`}; ${r.totals.deferred} deferrals, ${r.totals.blocked} judged blocks.</p>
<p class="muted">${(r.simulatedSeconds / 3600).toFixed(1)} h simulated in ${r.wallSeconds.toFixed(1)} s (${Math.round(r.ratio)}× real time). A simulation runs the policy against models of the providers: see docs/simulate.md, “What a simulation cannot tell”.</p>
<h2>Per provider and source</h2>
${providerTable(r)}
<h2>Over time</h2>
<div id="charts"></div>
<h2>Warmup</h2>
<div id="warmup">${r.warmup.length ? '' : '<p>No warming-up source sent.</p>'}</div>
<h2>Backoffs and suspensions</h2>
${eventTable(r)}
${r.warnings.map((w) => `<p class="warning">warning: ${escapeHtml(w)}</p>`).join('')}
<script id="report" type="application/json">${scriptJson(r)}</script>
<script>${js.replace(/<\/script/gi, '<\\/script')}</script>
<script>${CHARTS_SCRIPT}</script>
</body></html>
`;
}
