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
  uses: ResolvedUse[];
  /** Given as input (named, or found under a named directory), not only pulled in by `use`. */
  input: boolean;
}

/** One `use` and the file it names. */
export interface ResolvedUse {
  use: Use;
  /** Absolute path of the file it names, or null when there is no such file. */
  path: string | null;
  /** For `use stdlib/…`: a copy in the set of input files (`set`), or Petrel's own (`packaged`). */
  stdlib?: 'set' | 'packaged';
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

/**
 * Input files that stand for a stdlib file: `<root>/stdlib/X.policy` answers `use stdlib/X`
 * (a vendored or edited copy), keyed by `X.policy`. The last `stdlib` directory of the path
 * counts, so `stdlib/sub/x.policy` answers `use stdlib/sub/x`.
 */
export type SetStdlib = Map<string, { root: string; absolutePath: string }[]>;

/** Indexes the input files that are copies of stdlib files (see `SetStdlib`). */
export function setStdlib(inputs: readonly string[]): SetStdlib {
  const out: SetStdlib = new Map();
  for (const absolutePath of inputs) {
    const parts = absolutePath.split(path.sep);
    const i = parts.lastIndexOf('stdlib');
    if (i < 0 || i >= parts.length - 1) continue;
    const name = parts.slice(i + 1).join('/');
    const list = out.get(name) ?? [];
    list.push({ root: parts.slice(0, i).join(path.sep) || path.sep, absolutePath });
    out.set(name, list);
  }
  return out;
}

/**
 * Where `use` points, and for `stdlib/…` whose copy: the set's own `stdlib/X.policy` when
 * the inputs hold one (of several, the one whose root directory is the nearest ancestor of
 * the using file, else the first given), otherwise the packaged stdlib. Other paths are
 * relative to the using file.
 */
export function resolveUse(usePath: string, fromAbsolute: string, stdlibDir: string, inSet: SetStdlib = new Map()): { path: string; stdlib?: 'set' | 'packaged' } {
  const withExt = usePath.endsWith('.policy') ? usePath : `${usePath}.policy`;
  if (!withExt.startsWith('stdlib/')) return { path: path.resolve(path.dirname(fromAbsolute), withExt) };
  const name = withExt.slice('stdlib/'.length);
  const copies = inSet.get(name);
  if (!copies) return { path: path.join(stdlibDir, name), stdlib: 'packaged' };
  const isAncestor = (root: string) => fromAbsolute.startsWith(root.endsWith(path.sep) ? root : root + path.sep);
  const nearest = copies.filter((c) => isAncestor(c.root)).sort((a, b) => b.root.length - a.root.length)[0];
  const chosen = nearest ?? copies[0]!;
  // The shipped repository checked as a set: its stdlib is the packaged one.
  return { path: chosen.absolutePath, stdlib: chosen.absolutePath === path.join(stdlibDir, name) ? 'packaged' : 'set' };
}

/**
 * Parses `inputs` (absolute paths) and, transitively, what they use. A file named twice,
 * or both given and used, is loaded once. `use stdlib/X` loads the inputs' own
 * `stdlib/X.policy` when they hold one, and then never the packaged file (`resolveUse`).
 */
export function load(inputs: readonly string[], host: SourceHost, stdlibDir: string): SourceSet {
  const diagnostics: Diagnostic[] = [];
  const byPath = new Map<string, LoadedFile>();
  const files: LoadedFile[] = [];
  const queue = inputs.map((p) => path.resolve(host.cwd, p));

  const inputCount = queue.length;
  const inSet = setStdlib(queue);
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
      const { path: target, stdlib } = resolveUse(use.path, absolutePath, stdlibDir, inSet);
      const known = byPath.has(target) || queue.includes(target);
      const exists = known || host.readFile(target) !== undefined;
      if (!exists) {
        file.uses.push({ use, path: null, ...(stdlib ? { stdlib } : {}) });
        diagnostics.push({ code: 'RES004', severity: 'error', message: `\`use ${use.path}\`: no file \`${displayPath(host.cwd, target)}\``, span: use.span, help: use.path.startsWith('stdlib/') ? 'see docs/language.md for the stdlib files' : 'paths are relative to the file that has the `use`' });
        continue;
      }
      if (!known) queue.push(target);
      file.uses.push({ use, path: target, ...(stdlib ? { stdlib } : {}) });
    }
  }
  return { files, diagnostics };
}

/** Where one `use stdlib/…` of the set went, for `petrel check --verbose`. */
export interface StdlibUse {
  /** The file with the `use`, and where in it (display path, 1-based). */
  file: string;
  line: number;
  column: number;
  /** The path as written (`stdlib/retry`). */
  use: string;
  /** The file it loaded (display path). */
  resolved: string;
  from: 'set' | 'packaged';
}

/** Every `use stdlib/…` of a loaded set that found its file, in file order. */
export function stdlibUses(set: SourceSet): StdlibUse[] {
  const shown = new Map(set.files.map((f) => [f.absolutePath, f.path]));
  return set.files.flatMap((f) =>
    f.uses.flatMap(({ use, path: target, stdlib }) => (target && stdlib ? [{ file: f.path, line: use.span.line, column: use.span.column, use: use.path, resolved: shown.get(target) ?? target, from: stdlib }] : [])),
  );
}
