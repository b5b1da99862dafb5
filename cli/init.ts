/**
 * `petrel init [DIR]`: a policy repository a deliverability team can push on day one —
 * policies/ with the shipped default (and the shipped providers asked for, copied so the
 * team owns them), a GitHub Actions workflow, a README, .gitignore and package.json.
 * INVARIANT: what it writes passes `check`, `test` and `fmt --check` unchanged
 * (test/cli/init.test.ts).
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { load, packageRoot, stdlibDir } from '../compiler/index.ts';
import { diskHost, EXIT, parseCommandArgs, UsageError, type Io } from './common.ts';
import { GITIGNORE, packageJson, readme, SAMPLE_CAMPAIGN, SCRIPTS, WORKFLOW } from './init-templates.ts';

export const INIT_HELP = `usage: petrel init [options] [DIR]

Create a policy repository in DIR (default: the current directory):
  policies/default.policy        the shipped default: settings and bounce rules for every
                                 destination, with its tests
  policies/<provider>.policy     the shipped providers asked for (and the files they use),
                                 copied: yours to edit
  .github/workflows/petrel.yml   CI: fmt --check, check and test as annotations, JUnit and
                                 SARIF reports; on a pull request, its diff and what it
                                 does to the sample campaign (diff --simulate) in the job
                                 summary
  simulation/campaign.json       the sample campaign CI simulates (docs/simulate.md)
  README.md, .gitignore, package.json (depending on this petrel version)
\`use stdlib/…\` reads the stdlib of the installed petrel package; it is not copied.

options:
  --providers <names>  shipped providers to copy, comma-separated (e.g. google,yahoo,microsoft)
  --all                copy every shipped provider
  --force              write into a DIR that is not empty (replacing the files above;
                       package.json is added to, never replaced)
  -h, --help           show this help

DIR counts as empty when it holds nothing but .git and what \`npm install petrel\` leaves
(node_modules/, package.json, package-lock.json).
exit codes: 0 created, 1 internal error, 2 usage error (unknown provider, DIR not empty)
`;

/** What may be in DIR before init without --force. */
const ALLOWED_BEFORE = new Set(['.git', 'node_modules', 'package.json', 'package-lock.json']);

export async function initCommand(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parseCommandArgs(argv, { providers: { type: 'string' }, all: { type: 'boolean' }, force: { type: 'boolean' } });
  if (values.help) {
    io.out(INIT_HELP);
    return EXIT.ok;
  }
  if (positionals.length > 1) throw new UsageError(`name one directory, not ${positionals.length}`);
  if (values.all && values.providers !== undefined) throw new UsageError('`--all` and `--providers` exclude each other');
  const dir = path.resolve(io.cwd, positionals[0] ?? '.');
  const catalog = shippedProviders();
  const chosen = values.all ? [...new Set(catalog.names.values())] : (values.providers ?? '').split(',').filter(Boolean).map((name) => providerFile(name.trim(), catalog));
  checkTarget(dir, values.force ?? false);

  const version = petrelVersion();
  const name = packageName(dir);
  const pkg = packageJsonText(dir, name, version);
  const files = new Map<string, string>([...policyFiles(chosen)].map(([file, text]) => [`policies/${file}`, text]));
  files.set('.github/workflows/petrel.yml', WORKFLOW);
  files.set('simulation/campaign.json', SAMPLE_CAMPAIGN);
  files.set('README.md', readme(name, chosen.map((f) => path.basename(f, '.policy'))));
  files.set('.gitignore', GITIGNORE);
  files.set('package.json', pkg);
  for (const [file, text] of files) {
    mkdirSync(path.dirname(path.join(dir, file)), { recursive: true });
    writeFileSync(path.join(dir, file), text);
  }
  io.out(`created a policy repository in ${dir}:\n${[...files.keys()].map((f) => `  ${f}\n`).join('')}next: npm install, then npx petrel check policies && npx petrel test policies\n`);
  return EXIT.ok;
}

/** The shipped policies directory (`policies/` of the running package). */
function shippedDir(): string {
  return path.join(packageRoot(), 'policies');
}

/** What `--providers` accepts, each → its shipped file: file base names and provider blocks (listed in errors), and domains they match. */
interface Catalog {
  names: Map<string, string>;
  domains: Map<string, string>;
}

function shippedProviders(): Catalog {
  const files = readdirSync(shippedDir())
    .filter((f) => f.endsWith('.policy') && f !== 'default.policy')
    .sort()
    .map((f) => path.join(shippedDir(), f));
  const set = load(files, diskHost(shippedDir()), stdlibDir());
  const catalog: Catalog = { names: new Map(), domains: new Map() };
  for (const file of set.files.filter((f) => f.input)) {
    catalog.names.set(path.basename(file.absolutePath, '.policy'), file.absolutePath);
    for (const item of file.ast.items) {
      if (item.kind !== 'destination' || item.type !== 'provider') continue;
      catalog.names.set(item.name.text, file.absolutePath);
      for (const m of item.matches) if (m.on === 'domain') for (const p of m.patterns) catalog.domains.set(p.domain, file.absolutePath);
    }
  }
  return catalog;
}

function providerFile(name: string, catalog: Catalog): string {
  const file = catalog.names.get(name.toLowerCase()) ?? catalog.domains.get(name.toLowerCase());
  if (file) return file;
  const byFile = new Map<string, string[]>();
  for (const [n, f] of catalog.names) byFile.set(f, [...(byFile.get(f) ?? []), n]);
  const known = [...byFile.values()].map(([base, ...inside]) => (inside.some((n) => n !== base) ? `${base} (${inside.filter((n) => n !== base).join(', ')})` : base));
  throw new UsageError(`unknown provider \`${name}\`; the shipped ones are ${known.join(', ')}; a domain one matches (gmail.com) names it too`);
}

/**
 * The shipped default and `chosen` provider files with every shipped file they `use`
 * (`att` uses `./yahoo`), by file name, text verbatim (the shipped files are formatted).
 */
function policyFiles(chosen: readonly string[]): Map<string, string> {
  const set = load([path.join(shippedDir(), 'default.policy'), ...chosen], diskHost(shippedDir()), stdlibDir());
  const broken = set.diagnostics.find((d) => d.severity === 'error');
  if (broken) throw new Error(`shipped policy ${broken.span.file}:${broken.span.line}: ${broken.message}`);
  const out = new Map<string, string>();
  for (const f of set.files) if (path.dirname(f.absolutePath) === shippedDir()) out.set(path.basename(f.absolutePath), f.text);
  return out;
}

/** Refuses a DIR that is a file, or holds more than ALLOWED_BEFORE, unless `force`. */
function checkTarget(dir: string, force: boolean): void {
  if (!existsSync(dir)) return;
  if (!statSync(dir).isDirectory()) throw new UsageError(`\`${dir}\` is not a directory`);
  const extra = readdirSync(dir).filter((e) => !ALLOWED_BEFORE.has(e));
  if (extra.length > 0 && !force) throw new UsageError(`\`${dir}\` is not empty (${extra.slice(0, 5).join(', ')}${extra.length > 5 ? ', …' : ''}); use --force to write into it anyway`);
}

function petrelVersion(): string {
  return (JSON.parse(readFileSync(path.join(packageRoot(), 'package.json'), 'utf8')) as { version: string }).version;
}

/** An npm package name from the directory's name. */
function packageName(dir: string): string {
  return (
    path
      .basename(dir)
      .toLowerCase()
      .replace(/[^a-z0-9._-]+/g, '-')
      .replace(/^[._-]+/, '') || 'policies'
  );
}

/** A new package.json, or the existing one with petrel and the scripts added (nothing it has is replaced). */
function packageJsonText(dir: string, name: string, version: string): string {
  const file = path.join(dir, 'package.json');
  if (!existsSync(file)) return JSON.stringify(packageJson(name, version), null, 2) + '\n';
  let pkg: Record<string, Record<string, string> | unknown>;
  try {
    pkg = JSON.parse(readFileSync(file, 'utf8')) as typeof pkg;
  } catch (e) {
    throw new UsageError(`\`${file}\` is not JSON (${(e as Error).message}); fix or remove it`);
  }
  if (typeof pkg !== 'object' || pkg === null || Array.isArray(pkg)) throw new UsageError(`\`${file}\` does not hold a JSON object`);
  const deps = (pkg.dependencies ?? {}) as Record<string, string>;
  const devDeps = (pkg.devDependencies ?? {}) as Record<string, string>;
  if (!deps.petrel && !devDeps.petrel) pkg.dependencies = { ...deps, petrel: version };
  pkg.scripts = { ...SCRIPTS, ...((pkg.scripts ?? {}) as Record<string, string>) };
  return JSON.stringify(pkg, null, 2) + '\n';
}
