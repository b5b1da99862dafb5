/**
 * Loading: the input files and every file they `use`, parsed. File access goes through
 * an injected `SourceHost`, so the stage itself touches no disk and tests can feed it
 * files from memory.
 */
import path from 'node:path';
import { parse, type Diagnostic, type PolicyFile, type Use } from '../grammar/index.ts';

/** How the compiler reads files. Paths it passes are absolute. */
export interface SourceHost {
  /** The working directory that relative paths (and paths in diagnostics) are relative to. */
  cwd: string;
  /** The file's text, or undefined when there is no such file. */
  readFile(absolutePath: string): string | undefined;
}

/** A parsed file of the set. */
export interface LoadedFile {
  /** Path as shown to the user: relative to the working directory when inside it. */
  path: string;
  absolutePath: string;
  text: string;
  ast: PolicyFile;
  /** Each `use` of the file and the absolute path of the file it names, or null when missing. */
  uses: { use: Use; path: string | null }[];
  /** Given as input (named, or found under a named directory), not only pulled in by `use`. */
  input: boolean;
}

export interface SourceSet {
  /** The input files in the order given, then the files they use, in discovery order. */
  files: LoadedFile[];
  diagnostics: Diagnostic[];
}

/** Display path for an absolute path: relative to `cwd` when inside it. */
export function displayPath(cwd: string, absolutePath: string): string {
  const rel = path.relative(cwd, absolutePath);
  return rel && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel.split(path.sep).join('/') : absolutePath;
}

/** Where `use` points: `stdlib/…` in the shipped stdlib, `./…` and `../…` beside the file. */
export function resolveUse(usePath: string, fromAbsolute: string, stdlibDir: string): string {
  const withExt = usePath.endsWith('.policy') ? usePath : `${usePath}.policy`;
  if (withExt.startsWith('stdlib/')) return path.join(stdlibDir, withExt.slice('stdlib/'.length));
  return path.resolve(path.dirname(fromAbsolute), withExt);
}

/**
 * Parses `inputs` (absolute paths) and, transitively, what they use. A file named twice,
 * or both given and used, is loaded once.
 */
export function load(inputs: readonly string[], host: SourceHost, stdlibDir: string): SourceSet {
  const diagnostics: Diagnostic[] = [];
  const byPath = new Map<string, LoadedFile>();
  const files: LoadedFile[] = [];
  const queue = inputs.map((p) => path.resolve(host.cwd, p));

  const inputCount = queue.length;
  function add(absolutePath: string, text: string, input: boolean): LoadedFile {
    // Stdlib files outside the working directory get a stable name, so artifacts built
    // from an installed package do not embed where it happens to be installed.
    const inStdlib = absolutePath.startsWith(stdlibDir + path.sep);
    const shown = inStdlib && displayPath(host.cwd, absolutePath) === absolutePath ? `petrel:stdlib/${path.relative(stdlibDir, absolutePath).split(path.sep).join('/')}` : displayPath(host.cwd, absolutePath);
    const parsed = parse(text, shown);
    diagnostics.push(...parsed.diagnostics);
    const file: LoadedFile = { path: shown, absolutePath, text, ast: parsed.ast, uses: [], input };
    byPath.set(absolutePath, file);
    files.push(file);
    return file;
  }

  for (let i = 0; i < queue.length; i++) {
    const absolutePath = queue[i]!;
    if (byPath.has(absolutePath)) continue;
    const text = host.readFile(absolutePath);
    if (text === undefined) {
      // Inputs come from the CLI, which checks they exist; a missing one here is a race.
      diagnostics.push({ code: 'RES004', severity: 'error', message: `cannot read \`${displayPath(host.cwd, absolutePath)}\``, span: { file: displayPath(host.cwd, absolutePath), line: 1, column: 1, endLine: 1, endColumn: 1, offset: 0, endOffset: 0 } });
      continue;
    }
    const file = add(absolutePath, text, i < inputCount);
    for (const use of file.ast.uses) {
      const target = resolveUse(use.path, absolutePath, stdlibDir);
      const known = byPath.has(target) || queue.includes(target);
      const exists = known || host.readFile(target) !== undefined;
      if (!exists) {
        file.uses.push({ use, path: null });
        diagnostics.push({ code: 'RES004', severity: 'error', message: `\`use ${use.path}\`: no file \`${displayPath(host.cwd, target)}\``, span: use.span, help: use.path.startsWith('stdlib/') ? 'see docs/language.md for the stdlib files' : 'paths are relative to the file that has the `use`' });
        continue;
      }
      if (!known) queue.push(target);
      file.uses.push({ use, path: target });
    }
  }
  return { files, diagnostics };
}
