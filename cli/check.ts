/** `petrel check`: every check the compiler has, reported in the format CI wants. */
import { COMPILER_VERSION, compile, load, OUTPUT_FORMATS, renderDiagnostics, stdlibDir, stdlibUses, type OutputFormat, type StdlibUse } from '../compiler/index.ts';
import { defaultSetName, diskHost, EXIT, findPolicyFiles, parseCommandArgs, plural, UsageError, type Io } from './common.ts';

export const CHECK_HELP = `usage: petrel check [options] <paths…>

Parse, resolve and validate policy files. A directory means every .policy file under it;
files they \`use\` are checked too. \`use stdlib/X\` means the set's own stdlib/X.policy
when the paths given hold one (a copy you own), otherwise the stdlib packaged with Petrel.

options:
  --format <human|json|github|sarif>  output format (default: human)
  --deny-warnings                     exit 3 on warnings as well as errors
  -v, --verbose                       also say which file each \`use stdlib/…\` loaded (with
                                      --format json: {"diagnostics": […], "stdlib": […]})
  -h, --help                          show this help

exit codes: 0 no errors, 2 usage error, 3 policy errors (or warnings with --deny-warnings)
`;

export async function check(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parseCommandArgs(argv, { format: { type: 'string' }, 'deny-warnings': { type: 'boolean' }, verbose: { type: 'boolean', short: 'v' } });
  if (values.help) {
    io.out(CHECK_HELP);
    return EXIT.ok;
  }
  const format = (values.format ?? 'human') as OutputFormat;
  if (!OUTPUT_FORMATS.includes(format)) throw new UsageError(`unknown format \`${values.format}\`; use one of ${OUTPUT_FORMATS.join(', ')}`);
  if (positionals.length === 0) throw new UsageError('name at least one policy file or directory');
  const inputs = findPolicyFiles(positionals, io.cwd);
  const host = diskHost(io.cwd);
  const result = await compile({ inputs, host, name: defaultSetName(positionals, io.cwd), checkOnly: true });
  // The same loader compile ran, over the same (cached) host: it reports what compile loaded.
  const uses = values.verbose ? stdlibUses(load(inputs, host, stdlibDir())) : undefined;
  const rendered = renderDiagnostics(result.diagnostics, format, { sources: result.sources, toolVersion: COMPILER_VERSION });
  const errors = result.diagnostics.filter((d) => d.severity === 'error').length;
  const warnings = result.diagnostics.length - errors;
  if (format === 'json') {
    io.out(uses ? `${JSON.stringify({ diagnostics: JSON.parse(rendered), stdlib: uses }, null, 2)}\n` : rendered);
  } else if (format === 'human') {
    if (uses) io.err(uses.map(describeUse).join(''));
    io.err(rendered);
    if (result.omitted > 0) io.err(`… and ${plural(result.omitted, 'more problem', 'more problems')} not shown; fix these first and run again\n`);
    if (result.diagnostics.length === 0) io.err(`checked ${plural(result.sources.size, 'file')}: no problems\n`);
  } else {
    if (uses) io.err(uses.map(describeUse).join(''));
    io.out(rendered);
  }
  return errors > 0 || (values['deny-warnings'] && warnings > 0) ? EXIT.policy : EXIT.ok;
}

/** One line of `--verbose`: `policies/a.policy:3:1: use stdlib/retry → stdlib/retry.policy (the set's own copy)`. */
function describeUse(u: StdlibUse): string {
  return `${u.file}:${u.line}:${u.column}: use ${u.use} → ${u.resolved} (${u.from === 'set' ? "the set's own copy" : 'packaged with Petrel'})\n`;
}
