/**
 * `petrel diff --simulate CAMPAIGN`: the same campaign, seed and models run through the
 * simulator for the base and then the head (simulate/), compared (simulate/compare.ts), and
 * the "Outcomes" section printed for a terminal or a pull-request comment.
 * The campaign and the models are read and checked as `petrel simulate` reads them.
 */
import path from 'node:path';
import type { ArtifactManifest, PolicyArtifact } from '../runtime/abi.ts';
import { buildReport, checkCampaign, compareOutcomes, formatDuration, formatRate, MODELS_DIR, outcomeSide, readCampaign, runSimulation, type Campaign, type FigureChange, type OutcomeDelta, type OutcomeSide, type ProviderBehaviour, type ProviderDelta } from '../simulate/index.ts';
import { parseSeed, readModels } from './simulate.ts';
import { capped, code, table } from './tables.ts';
import { UsageError } from './common.ts';

/** What `--simulate` runs: read and checked before anything is compiled. */
export interface SimulationPlan {
  /** The campaign file as given (errors name it so). */
  file: string;
  campaign: Campaign;
  behaviours: ReadonlyMap<string, ProviderBehaviour>;
  seed: number;
}

/** The `simulation` block of `--format json`, and what the renderers print. */
export interface OutcomeComparison {
  campaign: string;
  seed: number;
  base: OutcomeSide;
  head: OutcomeSide;
  delta: OutcomeDelta;
}

/** One compiled side, as cli/diff.ts builds it. */
export interface SimulatedSide {
  role: 'base' | 'head';
  artifact: PolicyArtifact;
  manifest: ArtifactManifest;
}

/**
 * Reads the campaign and the models of `--simulate`, `--model` and `--seed`: undefined
 * without `--simulate`, the problems (one line each, naming the file and the field) if
 * they are bad.
 */
export async function readSimulationPlan(values: { simulate?: string; model?: string; seed?: string }, cwd: string): Promise<SimulationPlan | { errors: string[] } | undefined> {
  if (values.simulate === undefined) {
    if (values.model !== undefined || values.seed !== undefined) throw new UsageError('`--model` and `--seed` go with `--simulate CAMPAIGN`');
    return undefined;
  }
  const seed = parseSeed(values.seed);
  const campaign = await readCampaign(path.resolve(cwd, values.simulate));
  const models = await readModels(values.model === undefined ? MODELS_DIR : path.resolve(cwd, values.model));
  const errors = [...(campaign.ok ? [] : campaign.errors), ...('errors' in models ? models.errors : [])];
  if (!campaign.ok || 'errors' in models) return { errors };
  return { file: values.simulate, campaign: campaign.campaign, behaviours: models.behaviours, seed };
}

/** What the campaign names that a side's policy lacks (a pool, a source's warmup), each line naming the side. */
export function checkPlan(plan: SimulationPlan, sides: readonly SimulatedSide[]): string[] {
  const models = [...plan.behaviours.keys()];
  return sides.flatMap((s) => checkCampaign(plan.campaign, plan.file, { models, topology: s.manifest.delivery ?? { sources: [], pools: {}, tenants: {} } }).map((e) => `${s.role}: ${e}`));
}

/** Runs the campaign on each side, one after the other (each within the simulator's limits), and compares. */
export async function simulateSides(plan: SimulationPlan, base: SimulatedSide, head: SimulatedSide): Promise<OutcomeComparison> {
  const name = plan.campaign.name ?? path.basename(plan.file);
  const run = async (side: SimulatedSide): Promise<OutcomeSide> => {
    const result = await runSimulation({ artifact: side.artifact, manifest: side.manifest, campaign: plan.campaign, behaviours: plan.behaviours, seed: plan.seed });
    const report = buildReport(result, { campaign: name, policy: { name: side.manifest.name, version: side.manifest.version, hash: side.manifest.hash } });
    return outcomeSide(report, (provider) => new Set((plan.behaviours.get(provider)?.domains ?? []).map((d) => side.artifact.route(d))));
  };
  // INVARIANT: only the small OutcomeSide of the base is kept while the head runs.
  const baseSide = await run(base);
  const headSide = await run(head);
  return { campaign: name, seed: plan.seed, base: baseSide, head: headSide, delta: compareOutcomes(baseSide, headSide) };
}

// --- Output ----------------------------------------------------------------------------------

const DURATION_FIGURES = new Set(['time to complete', 'time to 50 % settled']);
const RATE_FIGURES = new Set(['peak per hour']);

function value(figure: string, n: number | null): string {
  if (DURATION_FIGURES.has(figure)) return formatDuration(n);
  if (n === null) return '—';
  return RATE_FIGURES.has(figure) ? formatRate(n) : String(n);
}

/** `+25.0 min (+100%)`, `-1766/h (-50%)`, `+3`; `—` where a side did not finish. */
function change(c: FigureChange): string {
  if (c.change === null) return '—';
  const sign = c.change > 0 ? '+' : c.change < 0 ? '-' : '';
  const percent = c.percent === null ? '' : ` (${c.percent > 0 ? '+' : ''}${Math.abs(c.percent) >= 10 ? Math.round(c.percent) : c.percent.toFixed(1)}%)`;
  return `${sign}${value(c.figure, Math.abs(c.change))}${percent}`;
}

function headline(d: OutcomeDelta): string {
  if (!d.changed) return 'no change in outcomes';
  const changed = d.providers.filter((p) => p.changes.length > 0);
  const flagged = [...changed, d.total].filter((p) => p.flags.length > 0);
  const what = changed.length ? `${changed.length} provider${changed.length === 1 ? '' : 's'} changed` : 'the total changed';
  return `${what}${flagged.length ? `; flagged: ${flagged.map((p) => `${p.provider} ${p.flags.join(', ')}`).join('; ')}` : ''}`;
}

function sideLine(role: string, s: OutcomeSide): string {
  const t = s.total;
  return `${role}: ${t.recipients} recipients, ${t.delivered} delivered, ${t.bounced} bounced, ${t.open} open; ${s.finished ? `finished in ${formatDuration(s.simulatedSeconds)}` : `not finished in ${formatDuration(s.simulatedSeconds)}`} of simulated time (${s.wallSeconds.toFixed(1)} s of wall time)`;
}

/** Notes under the section: warnings of either side, and events past the report's list. */
function notes(c: OutcomeComparison): string[] {
  const out: string[] = [];
  for (const [role, s] of [['base', c.base], ['head', c.head]] as const) {
    for (const w of s.warnings) out.push(`${role}: warning: ${w}`);
    if (s.eventCount > s.eventsCounted) out.push(`${role}: backoffs and suspensions count the first ${s.eventsCounted} of ${s.eventCount} events`);
  }
  return out;
}

/** Changed providers (flagged ones first, each group by name), then the total (when it changed), then the unchanged ones by name. */
function sections(d: OutcomeDelta): { changed: ProviderDelta[]; unchanged: string[] } {
  const changed = d.providers.filter((p) => p.changes.length > 0);
  return { changed: [...changed.filter((p) => p.flags.length > 0), ...changed.filter((p) => p.flags.length === 0), ...(d.total.changes.length > 0 ? [d.total] : [])], unchanged: d.providers.filter((p) => p.changes.length === 0).map((p) => p.provider) };
}

/** The section for a terminal. */
export function outcomesHuman(c: OutcomeComparison): string {
  const lines = [`outcomes of campaign \`${c.campaign}\` (seed ${c.seed}): ${headline(c.delta)}`, `  ${sideLine('base', c.base)}`, `  ${sideLine('head', c.head)}`, ''];
  const { changed, unchanged } = sections(c.delta);
  for (const p of changed) {
    lines.push(`${p.provider}${p.flags.length ? `  [${p.flags.join(', ')}]` : ''}`);
    const { shown, more } = capped(p.changes);
    const cells = shown.map((x) => [x.figure, `${value(x.figure, x.base)} → ${value(x.figure, x.head)}`, change(x)] as const);
    const widths = [0, 1].map((i) => Math.max(...cells.map((c) => c[i]!.length)));
    for (const [figure, values, delta] of cells) lines.push(`  ${figure.padEnd(widths[0]!)}  ${values.padEnd(widths[1]!)}  ${delta}`);
    if (more) lines.push(`  ${more}`);
  }
  if (unchanged.length) lines.push(`unchanged: ${unchanged.join(', ')}`);
  lines.push(...notes(c));
  return `${lines.join('\n')}\n`;
}

/** The section for a pull-request comment: one table, a row per changed figure. */
export function outcomesMarkdown(c: OutcomeComparison): string {
  const out = [`## Outcomes: ${headline(c.delta)}`, '', `Campaign ${code(c.campaign)}, seed ${c.seed}, simulated on each side.`, '', `- ${sideLine('base', c.base)}`, `- ${sideLine('head', c.head)}`, ''];
  const { changed, unchanged } = sections(c.delta);
  if (changed.length) {
    const label = (p: ProviderDelta) => `${p === c.delta.total ? '**total**' : code(p.provider)}${p.flags.length ? ` ⚠️ ${p.flags.join(', ')}` : ''}`;
    const rows = changed.flatMap((p) => p.changes.map((x, i) => [i === 0 ? label(p) : '', x.figure, value(x.figure, x.base), value(x.figure, x.head), change(x)]));
    const { shown, more } = capped(rows);
    out.push(...table(['provider', 'figure', 'base', 'head', 'change'], [...shown], more));
  }
  if (unchanged.length) out.push(`Unchanged: ${unchanged.map((n) => code(n)).join(', ')}.`, '');
  const extra = notes(c);
  if (extra.length) out.push(...extra.map((n) => `- ${n}`), '');
  return `${out.join('\n')}\n`;
}
