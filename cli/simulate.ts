/**
 * `petrel simulate`: compile the policies, load the artifact, and run a campaign through
 * the runtime's scheduling core on a virtual clock against provider models
 * (simulate/simulation.ts); print the report for a terminal, a program (JSON) or a
 * browser (one self-contained HTML page).
 */
import { readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { COMPILER_VERSION, compile, renderDiagnostics } from '../compiler/index.ts';
import { importArtifactText } from '../runtime/policy/index.ts';
import { behaviourOf, checkCampaign, LONG_TAIL_MODEL, MODELS_DIR, readCampaign, readModel, runSimulation, buildReport, humanReport, htmlReport, type ProviderBehaviour } from '../simulate/index.ts';
import { defaultSetName, diskHost, EXIT, findPolicyFiles, parseCommandArgs, UsageError, type Io } from './common.ts';

export const SIMULATE_HELP = `usage: petrel simulate [options] <paths…> --campaign FILE

Compile the policy files and run a campaign through the delivery runtime's own scheduling
core (source choice, limiters, reply rules, backoffs, suspensions, retries, warmup) on a
virtual clock, against models of the receiving providers. Prints, per provider and source:
delivered, deferred, blocked, bounced by category, time to complete, peak and mean rates;
the backoffs and suspensions with the rules that started them; and a timeline.

options:
  --campaign <file>          the campaign (JSON; format in docs/simulate.md), required
  --model <dir>              provider models (*.json) to use instead of the shipped ones
  --format <human|json|html> output format (default: human); html is one page with charts
  --out <file>               write the report there instead of to standard output
  --seed <n>                 seed of the retry jitter (default 1): the same seed, the same run
  -h, --help                 show this help

exit codes: 0 simulated, 2 usage error or a bad campaign or model, 3 policy errors
`;

const FORMATS = ['human', 'json', 'html'] as const;
type Format = (typeof FORMATS)[number];

export async function simulateCommand(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parseCommandArgs(argv, { campaign: { type: 'string' }, model: { type: 'string' }, format: { type: 'string' }, out: { type: 'string' }, seed: { type: 'string' } });
  if (values.help) {
    io.out(SIMULATE_HELP);
    return EXIT.ok;
  }
  if (!values.campaign) throw new UsageError('`--campaign FILE` is required');
  if (positionals.length === 0) throw new UsageError('name at least one policy file or directory');
  const format = (values.format ?? 'human') as Format;
  if (!FORMATS.includes(format)) throw new UsageError(`unknown format \`${values.format}\`; use one of ${FORMATS.join(', ')}`);
  const seed = parseSeed(values.seed);

  const campaignFile = path.resolve(io.cwd, values.campaign);
  const campaign = await readCampaign(campaignFile);
  if (!campaign.ok) return problems(io, campaign.errors);
  const models = await readModels(values.model === undefined ? MODELS_DIR : path.resolve(io.cwd, values.model));
  if ('errors' in models) return problems(io, models.errors);

  const inputs = findPolicyFiles(positionals, io.cwd);
  const result = await compile({ inputs, host: diskHost(io.cwd), name: defaultSetName(positionals, io.cwd) });
  if (!result.artifact) {
    io.err(renderDiagnostics(result.diagnostics, 'human', { sources: result.sources, toolVersion: COMPILER_VERSION }));
    return EXIT.policy;
  }
  const { manifest } = result.artifact;
  const topology = manifest.delivery ?? { sources: [], pools: {}, tenants: {} };
  const errors = checkCampaign(campaign.campaign, values.campaign, { models: [...models.behaviours.keys()], topology });
  if (errors.length > 0) return problems(io, errors);

  const run = await runSimulation({ artifact: await importArtifactText(result.artifact), manifest, campaign: campaign.campaign, behaviours: models.behaviours, seed });
  const report = buildReport(run, { campaign: campaign.campaign.name ?? path.basename(values.campaign), policy: { name: manifest.name, version: manifest.version, hash: manifest.hash } });
  const text = format === 'json' ? `${JSON.stringify(report, null, 2)}\n` : format === 'html' ? htmlReport(report) : humanReport(report);
  if (values.out) {
    writeFileSync(path.resolve(io.cwd, values.out), text);
    io.err(`wrote ${values.out}: ${report.totals.delivered} delivered, ${report.totals.bounced} bounced, ${report.open} open; ${(report.simulatedSeconds / 3600).toFixed(1)} h simulated in ${report.wallSeconds.toFixed(1)} s (${Math.round(report.ratio)}× real time)\n`);
  } else io.out(text);
  return EXIT.ok;
}

/** `--seed`'s value: 1 when absent; a usage error unless a whole number from 0 to 2³²−1. */
export function parseSeed(text: string | undefined): number {
  const seed = text === undefined ? 1 : Number(text);
  if (!Number.isSafeInteger(seed) || seed < 0 || seed > 0xffffffff) throw new UsageError(`--seed \`${text}\` must be a whole number from 0 to 4294967295`);
  return seed;
}

function problems(io: Io, errors: string[]): number {
  io.err(`${errors.map((e) => `petrel simulate: ${e}`).join('\n')}\n`);
  return EXIT.usage;
}

/** At most this many model files are read from a directory. */
const MAX_MODELS = 200;

/** Every model in `dir` at time scale 1, by name; a domain-less mix needs `long-tail`. */
export async function readModels(dir: string): Promise<{ behaviours: Map<string, ProviderBehaviour> } | { errors: string[] }> {
  let files: string[];
  try {
    files = readdirSync(dir).filter((f) => f.endsWith('.json') && !f.endsWith('.schema.json')).sort();
  } catch (e) {
    return { errors: [`--model \`${dir}\`: cannot read the directory: ${(e as Error).message}`] };
  }
  if (files.length === 0) return { errors: [`--model \`${dir}\` holds no model (*.json)`] };
  if (files.length > MAX_MODELS) return { errors: [`--model \`${dir}\` holds ${files.length} models, more than the ${MAX_MODELS} read`] };
  const behaviours = new Map<string, ProviderBehaviour>();
  const errors: string[] = [];
  for (const f of files) {
    const m = await readModel(path.join(dir, f));
    if (!m.ok) errors.push(...m.errors);
    else behaviours.set(m.model.name, behaviourOf(m.model));
  }
  if (errors.length === 0 && !behaviours.has(LONG_TAIL_MODEL)) errors.push(`--model \`${dir}\` has no \`${LONG_TAIL_MODEL}\` model, which takes every domain no other model lists`);
  return errors.length > 0 ? { errors } : { behaviours };
}
