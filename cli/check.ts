/** `petrel check`: every check the compiler has, reported in the format CI wants. */
import { COMPILER_VERSION, compile, OUTPUT_FORMATS, renderDiagnostics, type OutputFormat } from '../compiler/index.ts';
import { defaultSetName, diskHost, EXIT, findPolicyFiles, parseCommandArgs, UsageError, type Io } from './common.ts';

export const CHECK_HELP = `usage: petrel check [options] <paths…>

Parse, resolve and validate policy files. A directory means every .policy file under it;
files they \`use\` are checked too.

options:
  --format <human|json|github|sarif>  output format (default: human)
  --deny-warnings                     exit 3 on warnings as well as errors
  -h, --help                          show this help

exit codes: 0 no errors, 2 usage error, 3 policy errors (or warnings with --deny-warnings)
`;

export async function check(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parseCommandArgs(argv, { format: { type: 'string' }, 'deny-warnings': { type: 'boolean' } });
  if (values.help) {
    io.out(CHECK_HELP);
    return EXIT.ok;
  }
  const format = (values.format ?? 'human') as OutputFormat;
  if (!OUTPUT_FORMATS.includes(format)) throw new UsageError(`unknown format \`${values.format}\`; use one of ${OUTPUT_FORMATS.join(', ')}`);
  if (positionals.length === 0) throw new UsageError('name at least one policy file or directory');
  const inputs = findPolicyFiles(positionals, io.cwd);
  const result = await compile({ inputs, host: diskHost(io.cwd), name: defaultSetName(positionals, io.cwd), checkOnly: true });
  const rendered = renderDiagnostics(result.diagnostics, format, { sources: result.sources, toolVersion: COMPILER_VERSION });
  const errors = result.diagnostics.filter((d) => d.severity === 'error').length;
  const warnings = result.diagnostics.length - errors;
  if (format === 'human') {
    io.err(rendered);
    if (result.omitted > 0) io.err(`… and ${result.omitted} more problems not shown; fix these first and run again\n`);
    if (result.diagnostics.length === 0) io.err(`checked ${result.sources.size} files: no problems\n`);
  } else io.out(rendered);
  return errors > 0 || (values['deny-warnings'] && warnings > 0) ? EXIT.policy : EXIT.ok;
}
