/**
 * `petrel diff`: what a policy change does, per destination — two directories, or two git
 * refs — compiled both, compared by compiler/diff.ts, printed for a terminal, a
 * pull-request comment (markdown) or a program (JSON); with `--simulate`, followed by what
 * the change does to a campaign (cli/diff-simulate.ts).
 */
import { statSync } from 'node:fs';
import path from 'node:path';
import { COMPILER_VERSION, compile, listPolicyFiles, renderDiagnostics } from '../compiler/index.ts';
import { diffPolicies, type DefinitionDiff, type FieldChange, type PolicyDiff, type RouteDiff } from '../compiler/diff.ts';
import { exportCommit, importArtifactText, resolveRef } from '../runtime/policy/index.ts';
import { diskHost, EXIT, findPolicyFiles, parseCommandArgs, plural, UsageError, type Io } from './common.ts';
import { checkPlan, outcomesHuman, outcomesMarkdown, readSimulationPlan, simulateSides } from './diff-simulate.ts';
import { capped, code, table } from './tables.ts';

export const DIFF_HELP = `usage: petrel diff [options] <base> <head>
       petrel diff --git [REPO] <base-ref> <head-ref> [options]

Compile two versions of a policy set and show the effective change, per destination:
limits, retry curve, expiry, TLS, reply rules added, removed, changed or moved, and the
example replies of the route's rules that now get a different reaction; which domains and
MX rollups moved route; warmup ramps, sources, pools, tenants, named retry curves and
global limits. What changes no behaviour (comments, layout, \`3600/h\` → \`60/min\`, a
rule on another line) is not listed.

<base> and <head> are directories (every .policy file below them) or .policy files.
With --git they are refs (branch, tag, commit) of the repository REPO (default: the
current directory); each commit's tree is exported into a temporary directory, and the
repository's work tree and index are not touched.

options:
  --git                         compare two refs of a git repository
  --path <path>                 compile only this file or directory of each side
                                (relative to the side; repeat for several; default: all)
  --format <human|markdown|json> output format (default: human); markdown is for a
                                pull-request comment or a GitHub job summary
  --simulate <campaign>         also run the campaign (JSON, read from the current
                                directory; docs/simulate.md) through the simulator on each
                                side, with the same seed and models, and append
                                "Outcomes": per provider and in total, delivered,
                                deferred, blocked, bounced by category, open, time to
                                complete, peak rate, backoffs and suspensions — base,
                                head and the change — flagging a provider that no longer
                                finishes, is slower, or gets more blocks or bounces
  --model <dir>                 with --simulate: provider models instead of the shipped ones
  --seed <n>                    with --simulate: seed of the retry jitter (default 1)
  -h, --help                    show this help

exit codes: 0 no effective change, 1 changes: in the policies, or with --simulate in the
outcomes (as diff(1)), 2 usage error, 3 errors in the inputs: policy errors on either
side (printed, naming the side), or a campaign or models that cannot be run (printed,
naming the file)
`;

const FORMATS = ['human', 'markdown', 'json'] as const;
type Format = (typeof FORMATS)[number];

/** Exit code when the sides differ (diff(1)'s; the CLI's 1 otherwise means an internal error). */
export const EXIT_CHANGED = 1;

export { MAX_ROWS } from './tables.ts';

/** One side to compile: where its files are, and what to call it. */
interface Side {
  role: 'base' | 'head';
  label: string;
  root: string;
  inputs: string[];
}

export async function diffCommand(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parseCommandArgs(argv, { git: { type: 'boolean' }, path: { type: 'string', multiple: true }, format: { type: 'string' }, simulate: { type: 'string' }, model: { type: 'string' }, seed: { type: 'string' } });
  if (values.help) {
    io.out(DIFF_HELP);
    return EXIT.ok;
  }
  const format = (values.format ?? 'human') as Format;
  if (!FORMATS.includes(format)) throw new UsageError(`unknown format \`${values.format}\`; use one of ${FORMATS.join(', ')}`);
  const paths = values.path ?? [];
  for (const p of paths) {
    if (path.isAbsolute(p) || path.normalize(p).split(path.sep)[0] === '..') throw new UsageError(`--path \`${p}\` must be relative to each side, and inside it`);
  }
  const plan = await readSimulationPlan(values, io.cwd);
  if (plan && 'errors' in plan) return inputErrors(io, plan.errors);
  const disposers: (() => Promise<void>)[] = [];
  try {
    const [base, head] = values.git ? await gitSides(positionals, paths, io.cwd, disposers) : directorySides(positionals, paths, io.cwd);
    const compiled = [];
    for (const side of [base, head]) {
      const built = await build(side, io);
      if (!built) return EXIT.policy;
      compiled.push(built);
    }
    const [b, h] = [compiled[0]!, compiled[1]!];
    const diff = diffPolicies(b, h);
    if (!plan) {
      io.out({ human, markdown, json: (d: PolicyDiff) => `${JSON.stringify(d, null, 2)}\n` }[format](diff));
      return diff.changed ? EXIT_CHANGED : EXIT.ok;
    }
    const errors = checkPlan(plan, [b, h]);
    if (errors.length > 0) return inputErrors(io, errors);
    const simulation = await simulateSides(plan, b, h);
    io.out({ human: () => `${human(diff)}\n${outcomesHuman(simulation)}`, markdown: () => `${markdown(diff)}${outcomesMarkdown(simulation)}`, json: () => `${JSON.stringify({ ...diff, simulation }, null, 2)}\n` }[format]());
    return diff.changed || simulation.delta.changed ? EXIT_CHANGED : EXIT.ok;
  } finally {
    for (const dispose of disposers) await dispose();
  }
}

/** A campaign or models that cannot be run: every problem, one line each; exit 3 like policy errors (2 is the command line's). */
function inputErrors(io: Io, errors: string[]): number {
  io.err(`${errors.map((e) => `petrel diff: ${e}`).join('\n')}\n`);
  return EXIT.policy;
}

// --- Sides -----------------------------------------------------------------------------------

function directorySides(positionals: string[], paths: string[], cwd: string): [Side, Side] {
  if (positionals.length !== 2) throw new UsageError(`name two directories or files, <base> and <head> (got ${positionals.length})`);
  const side = (role: Side['role'], given: string): Side => {
    const abs = path.resolve(cwd, given);
    let isDirectory: boolean;
    try {
      isDirectory = statSync(abs).isDirectory();
    } catch {
      throw new UsageError(`${role}: no such file or directory: \`${given}\``);
    }
    if (!isDirectory && paths.length) throw new UsageError(`--path narrows directories and refs; ${role} \`${given}\` is a file`);
    const root = isDirectory ? abs : path.dirname(abs);
    return { role, label: given, root, inputs: sideInputs(role, given, root, isDirectory ? paths : [abs]) };
  };
  return [side('base', positionals[0]!), side('head', positionals[1]!)];
}

/** The side's .policy files: under `paths` (relative to `root`), or all of them. */
function sideInputs(role: Side['role'], label: string, root: string, paths: string[]): string[] {
  let inputs: string[];
  try {
    inputs = paths.length ? findPolicyFiles(paths, root) : listPolicyFiles(root);
  } catch (e) {
    throw new UsageError(`${role} \`${label}\`: ${(e as Error).message}`);
  }
  if (inputs.length === 0) throw new UsageError(`${role} \`${label}\` holds no .policy files${paths.length ? ` under ${paths.map((p) => `\`${p}\``).join(', ')}` : ''}`);
  return inputs;
}

async function gitSides(positionals: string[], paths: string[], cwd: string, disposers: (() => Promise<void>)[]): Promise<[Side, Side]> {
  if (positionals.length !== 2 && positionals.length !== 3) throw new UsageError(`with --git, name [REPO] <base-ref> <head-ref> (got ${positionals.length} arguments)`);
  const repo = path.resolve(cwd, positionals.length === 3 ? positionals[0]! : '.');
  const refs = positionals.slice(-2);
  const sides: Side[] = [];
  for (const [i, role] of (['base', 'head'] as const).entries()) {
    const ref = refs[i]!;
    let commit: string;
    try {
      commit = await resolveRef(repo, ref);
    } catch (e) {
      throw new UsageError(`${role}: \`${ref}\` is not a commit of \`${repo}\`: ${(e as Error).message}`);
    }
    if (!commit) throw new UsageError(`${role}: \`${ref}\` is not a commit of \`${repo}\``);
    let exported: Awaited<ReturnType<typeof exportCommit>>;
    try {
      exported = await exportCommit(repo, commit);
    } catch (e) {
      // Not an internal error: exit 1 would read as "changes".
      throw new UsageError(`${role}: cannot export \`${ref}\` from \`${repo}\`: ${(e as Error).message}`);
    }
    disposers.push(exported.dispose);
    const label = `${ref} (${commit.slice(0, 12)})`;
    sides.push({ role, label, root: exported.dir, inputs: sideInputs(role, label, exported.dir, paths) });
  }
  return [sides[0]!, sides[1]!];
}

/** Compiles and loads one side; on policy errors prints them, naming the side, and returns undefined. */
async function build(side: Side, io: Io) {
  const result = await compile({ inputs: side.inputs, host: diskHost(side.root), name: side.label });
  if (!result.artifact) {
    const rendered = renderDiagnostics(result.diagnostics, 'human', { sources: result.sources, toolVersion: COMPILER_VERSION });
    io.err(`petrel diff: the ${side.role} (\`${side.label}\`) has policy errors; nothing compared\n${rendered}`);
    return undefined;
  }
  return { role: side.role, ir: result.ir!, artifact: await importArtifactText(result.artifact), manifest: result.artifact.manifest };
}

// --- Output ----------------------------------------------------------------------------------

function summary(d: PolicyDiff): string {
  if (!d.changed) return 'no effective change';
  const parts = [
    d.routes.length ? `${plural(d.routes.length, 'destination')} changed` : '',
    d.routing.length ? plural(d.routing.length, 'routing change') : '',
    d.definitions.length ? `${plural(d.definitions.length, 'definition')} changed` : '',
  ];
  return parts.filter(Boolean).join(', ');
}

const arrow = (f: FieldChange) => `${f.before ?? '—'} → ${f.after ?? '—'}`;
const at = (loc: { file: string; line: number } | null) => (loc ? `${loc.file}:${loc.line}` : '');
const position = (p: { before: number | null; after: number | null }) => (p.before !== null && p.after !== null && p.before !== p.after ? `#${p.before} → #${p.after}` : `#${p.after ?? p.before}`);

function human(d: PolicyDiff): string {
  const lines = [`base ${d.base.name} (${d.base.version}), head ${d.head.name} (${d.head.version})`, ''];
  const fields = (list: FieldChange[], indent: string) => {
    const width = Math.max(0, ...list.map((f) => f.field.length));
    const { shown, more } = capped(list);
    for (const f of shown) lines.push(`${indent}${f.field.padEnd(width)}  ${arrow(f)}`);
    if (more) lines.push(`${indent}${more}`);
  };
  for (const r of d.routes) {
    lines.push(`${r.route}  ${r.status}  ${at(r.loc)}`);
    fields(r.settings, '  ');
    const rules = capped(r.rules);
    if (r.rules.length) lines.push('  reply rules:');
    for (const rule of rules.shown) {
      lines.push(`    ${rule.status} ${position(rule.position)}  ${rule.rule}  ${at(rule.loc)}`);
      fields(rule.fields, '      ');
    }
    if (rules.more) lines.push(`    ${rules.more}`);
    const reactions = capped(r.reactions);
    if (r.reactions.length) lines.push('  example replies that now get a different reaction:');
    for (const x of reactions.shown) {
      lines.push(`    ${JSON.stringify(x.reply)}${x.phase ? ` phase ${x.phase}` : ''}`, `      before: ${x.before}`, `      after:  ${x.after}`);
    }
    if (reactions.more) lines.push(`    ${reactions.more}`);
    lines.push('');
  }
  if (d.routing.length) {
    lines.push('routing:');
    const { shown, more } = capped(d.routing);
    const width = Math.max(...shown.map((c) => c.pattern.length + c.kind.length + 1));
    for (const c of shown) lines.push(`  ${`${c.kind} ${c.pattern}`.padEnd(width)}  ${c.before} → ${c.after}`);
    if (more) lines.push(`  ${more}`);
    lines.push('');
  }
  for (const def of d.definitions) {
    lines.push(`${def.kind} ${def.name}  ${def.status}  ${at(def.loc)}`);
    fields(def.fields, '  ');
    lines.push('');
  }
  lines.push(summary(d));
  return `${lines.join('\n')}\n`;
}

function fieldTable(list: FieldChange[], first: string): string[] {
  const { shown, more } = capped(list);
  return table([first, 'before', 'after'], shown.map((f) => [f.field, code(f.before), code(f.after)]), more);
}

function markdownRoute(r: RouteDiff): string[] {
  const out = [`### ${code(r.route)} ${r.status}`, '', `<sub>${at(r.loc)}</sub>`, ''];
  if (r.settings.length) out.push(...fieldTable(r.settings, 'setting'));
  if (r.rules.length) {
    const rows = r.rules.flatMap((rule) => {
      const head = [code(rule.rule), `${rule.status} ${position(rule.position)}`];
      return rule.fields.length ? rule.fields.map((f) => [...head, f.field, code(f.before), code(f.after)]) : [[...head, '', '', '']];
    });
    const { shown, more } = capped(rows);
    out.push('**Reply rules**', '', ...table(['rule', 'change', 'field', 'before', 'after'], [...shown], more));
  }
  if (r.reactions.length) {
    const { shown, more } = capped(r.reactions);
    out.push('**Example replies that now get a different reaction**', '', ...table(['reply', 'before', 'after'], shown.map((x) => [code(x.reply + (x.phase ? ` (phase ${x.phase})` : '')), code(x.before), code(x.after)]), more));
  }
  return out;
}

function markdownDefinition(def: DefinitionDiff): string[] {
  return [`### ${def.kind} ${code(def.name)} ${def.status}`, '', ...(def.loc ? [`<sub>${at(def.loc)}</sub>`, ''] : []), ...fieldTable(def.fields, 'field')];
}

function markdown(d: PolicyDiff): string {
  const out = [`## petrel diff: ${summary(d)}`, '', `base ${code(d.base.name)} (${d.base.version}) → head ${code(d.head.name)} (${d.head.version})`, ''];
  for (const r of d.routes) out.push(...markdownRoute(r));
  if (d.routing.length) {
    const { shown, more } = capped(d.routing);
    out.push('### Routing', '', ...table(['match', 'pattern', 'before', 'after'], shown.map((c) => [c.kind, code(c.pattern), code(c.before), code(c.after)]), more));
  }
  for (const def of d.definitions) out.push(...markdownDefinition(def));
  return `${out.join('\n')}\n`;
}
