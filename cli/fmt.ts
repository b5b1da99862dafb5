/** `petrel fmt`: print, check or rewrite policy files in canonical layout. */
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { COMPILER_VERSION, displayPath, renderDiagnostics } from '../compiler/index.ts';
import { format, hasErrors, parse, withoutPositions } from '../grammar/index.ts';
import { EXIT, findPolicyFiles, parseCommandArgs, UsageError, type Io } from './common.ts';

export const FMT_HELP = `usage: petrel fmt [--check | --write] <paths…>

Format policy files canonically: two-space indentation, one statement per line, one blank
line between definitions, comments kept. Only layout changes: every value is kept as
written. Without an option the formatted text is printed to standard output.

options:
  --check     print the files that are not formatted; exit 3 if any
  --write     rewrite files that are not formatted, in place
  -h, --help  show this help

A file with syntax errors is reported and left untouched (exit 3).
exit codes: 0 ok, 1 internal error, 2 usage error, 3 unformatted files (--check) or syntax errors
`;

export async function fmtCommand(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parseCommandArgs(argv, { check: { type: 'boolean' }, write: { type: 'boolean' } });
  if (values.help) {
    io.out(FMT_HELP);
    return EXIT.ok;
  }
  if (values.check && values.write) throw new UsageError('`--check` and `--write` exclude each other');
  if (positionals.length === 0) throw new UsageError('name at least one policy file or directory');
  let status: number = EXIT.ok;
  for (const file of findPolicyFiles(positionals, io.cwd)) {
    const shown = displayPath(io.cwd, file);
    const text = readFileSync(file, 'utf8');
    const parsed = parse(text, shown);
    if (hasErrors(parsed.diagnostics)) {
      io.err(renderDiagnostics(parsed.diagnostics.filter((d) => d.severity === 'error'), 'human', { sources: new Map([[shown, text]]), toolVersion: COMPILER_VERSION }));
      status = EXIT.policy;
      continue;
    }
    const formatted = format(parsed.ast, text);
    // Like `opa fmt`: never accept output that does not read back as the same policy.
    const again = parse(formatted, shown);
    if (hasErrors(again.diagnostics) || JSON.stringify(withoutPositions(again.ast)) !== JSON.stringify(withoutPositions(parsed.ast))) {
      io.err(`petrel fmt: internal error: formatting \`${shown}\` would change its meaning; the file is left as it is\n`);
      return EXIT.internal;
    }
    if (values.check) {
      if (formatted !== text) {
        io.out(`${shown}\n`);
        status = EXIT.policy;
      }
    } else if (values.write) {
      if (formatted !== text) {
        // Write beside, then rename: a crash never leaves a half-written policy.
        const temp = path.join(path.dirname(file), `.${path.basename(file)}.fmt-${process.pid}`);
        writeFileSync(temp, formatted);
        renameSync(temp, file);
        io.err(`formatted ${shown}\n`);
      }
    } else io.out(formatted);
  }
  return status;
}
