/** `petrel build`: compile a policy set into a manifest and a bundled ES module. */
import path from 'node:path';
import { COMPILER_VERSION, compile, OUTPUT_FORMATS, renderDiagnostics, type OutputFormat } from '../compiler/index.ts';
import { writeSignature, writeArtifact } from '../runtime/policy/index.ts';
import { signingKey } from './policy-ops.ts';
import { defaultSetName, diskHost, EXIT, findPolicyFiles, parseCommandArgs, plural, UsageError, type Io } from './common.ts';

export const BUILD_HELP = `usage: petrel build [options] <paths…> --out DIR

Compile policy files into DIR/manifest.json, the ES module it names, and the module's
source map (MODULE.map, rule code → .policy lines). The same sources always give
byte-identical output.

options:
  --out <dir>       output directory (required; created if missing)
  --name <name>     the set's name in the manifest (default: the first path's base name)
  --format <human|json|github|sarif>  how to print problems (default: human)
  --sign <keyfile>  also write DIR/tests.json (the test blocks) and DIR/signature.json,
                    an Ed25519 signature (this private key, PEM; \`petrel keygen\`) over
                    the manifest, module, source map and tests, for
                    \`petrel deploy --artifact DIR\`
  -h, --help        show this help

exit codes: 0 built, 2 usage error, 3 policy errors (nothing written)
`;

export async function buildCommand(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parseCommandArgs(argv, { out: { type: 'string' }, name: { type: 'string' }, format: { type: 'string' }, sign: { type: 'string' } });
  if (values.help) {
    io.out(BUILD_HELP);
    return EXIT.ok;
  }
  if (!values.out) throw new UsageError('`--out DIR` is required');
  if (positionals.length === 0) throw new UsageError('name at least one policy file or directory');
  const format = (values.format ?? 'human') as OutputFormat;
  if (!OUTPUT_FORMATS.includes(format)) throw new UsageError(`unknown format \`${values.format}\`; use one of ${OUTPUT_FORMATS.join(', ')}`);
  const key = values.sign !== undefined ? signingKey(values.sign, io) : undefined;
  const inputs = findPolicyFiles(positionals, io.cwd);
  const result = await compile({ inputs, host: diskHost(io.cwd), name: values.name ?? defaultSetName(positionals, io.cwd) });
  const rendered = renderDiagnostics(result.diagnostics, format, { sources: result.sources, toolVersion: COMPILER_VERSION });
  if (format === 'human') io.err(rendered);
  else io.out(rendered);
  if (!result.artifact) return EXIT.policy;
  const out = path.resolve(io.cwd, values.out);
  await writeArtifact(out, result.artifact);
  if (key) await writeSignature(out, { ...result.artifact, tests: result.ir!.tests }, key);
  const m = result.artifact.manifest;
  io.err(`built ${m.name} ${m.version} (${m.hash.slice(0, 12)}) from ${plural(m.sources.length, 'file')} → ${path.relative(io.cwd, out) || '.'}/${m.module}\n`);
  return EXIT.ok;
}
