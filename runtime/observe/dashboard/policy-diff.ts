/**
 * The diff between two kept policy versions, for the dashboard's policy page.
 *
 * The runtime cannot compile (it imports nothing from compiler/ or grammar/), so it cannot
 * compute what `petrel diff` does, the effective change per destination from the IR. What
 * it has is the version store (policy/policy-versions.ts: DIR/versions/HASH/ holds every
 * version that went live, as it ran): each artifact's manifest names its source files with
 * their SHA-256, and its source map carries the text of every .policy file that rule code
 * came from (`sourcesContent`, under `policy:///PATH`). So the diff is per source file:
 * added, removed, changed or the same by hash, and for a changed file whose texts both
 * artifacts kept, a line diff of the two texts (the `diff` package's structured patch).
 * A file that contributed no code (a file of retry curves only) has no text in the map:
 * its change is reported by hash alone, and `petrel diff` on the sources says more.
 *
 * INVARIANT: a text is shown only when its SHA-256 equals the manifest's for that path; a
 * hash names a directory only when it is 64 hex digits, so a request never names a path.
 */
import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { structuredPatch } from 'diff';

/** One hunk of a line diff: lines start with ' ', '-' or '+'. */
export interface DiffHunk {
  oldStart: number;
  oldLines: number;
  newStart: number;
  newLines: number;
  lines: string[];
}

/** What happened to one source file between the two versions. */
export interface FileDiff {
  path: string;
  change: 'added' | 'removed' | 'changed' | 'same';
  /** The line diff, when the file changed and both texts are kept. */
  hunks?: DiffHunk[];
  /** Why a changed file has no line diff. */
  note?: string;
}

export interface PolicyDiff {
  from: { hash: string; name: string; version: string };
  to: { hash: string; name: string; version: string };
  files: FileDiff[];
}

/** What a request did wrong (400) or named that is not kept (404). */
export class PolicyDiffError extends Error {
  constructor(
    readonly status: 400 | 404,
    message: string,
  ) {
    super(message);
  }
}

const HASH = /^[0-9a-f]{64}$/;
/** A source map larger than this is not read (the largest policy sets make a few megabytes). */
const MAX_MAP_BYTES = 64 * 1024 * 1024;
/** Lines of diff per file at most; past it the rest is summarised. */
const MAX_DIFF_LINES = 5000;

interface KeptVersion {
  hash: string;
  name: string;
  version: string;
  /** Source path → its SHA-256, as the manifest lists them. */
  sources: Map<string, string>;
  /** Source path → its text, for the files whose text the source map holds and whose hash matches. */
  texts: Map<string, string>;
}

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

/** Reads kept version `hash` from the version store at `dir`. */
async function keptVersion(dir: string, hash: string): Promise<KeptVersion> {
  if (!HASH.test(hash)) throw new PolicyDiffError(400, `\`${hash.slice(0, 80)}\` is not a version hash (64 hex digits)`);
  const at = path.join(dir, 'versions', hash);
  let manifest: { name: string; version: string; module: string; sources: { path: string; sha256: string }[] };
  try {
    manifest = JSON.parse(await readFile(path.join(at, 'manifest.json'), 'utf8'));
  } catch {
    throw new PolicyDiffError(404, `version \`${hash.slice(0, 12)}\` is not kept (only the versions in the history are)`);
  }
  const sources = new Map(manifest.sources.map((s) => [s.path, s.sha256]));
  const texts = new Map<string, string>();
  const mapFile = path.join(at, `${path.basename(manifest.module)}.map`);
  const size = await stat(mapFile).then((s) => s.size, () => 0);
  if (size > 0 && size <= MAX_MAP_BYTES) {
    let map: { sources?: unknown; sourcesContent?: unknown } = {};
    try {
      map = JSON.parse(await readFile(mapFile, 'utf8'));
    } catch {
      // An unreadable map keeps no texts: every changed file is reported by hash alone.
    }
    const contents = Array.isArray(map.sourcesContent) ? (map.sourcesContent as unknown[]) : [];
    (Array.isArray(map.sources) ? (map.sources as unknown[]) : []).forEach((url, i) => {
      if (typeof url !== 'string') return;
      const file = url.startsWith('policy:///') ? url.slice('policy:///'.length) : url;
      const text = contents[i];
      if (typeof text === 'string' && sources.get(file) === sha256(text)) texts.set(file, text);
    });
  }
  return { hash, name: manifest.name, version: manifest.version, sources, texts };
}

/** The per-file diff from kept version `from` to kept version `to` in the version store at `dir`. */
export async function policyDiff(dir: string, from: string, to: string): Promise<PolicyDiff> {
  const [a, b] = await Promise.all([keptVersion(dir, from), keptVersion(dir, to)]);
  const paths = [...new Set([...a.sources.keys(), ...b.sources.keys()])].sort();
  const files = paths.map((file): FileDiff => {
    const before = a.sources.get(file);
    const after = b.sources.get(file);
    const [oldText, newText] = [a.texts.get(file), b.texts.get(file)];
    if (before === undefined) return { path: file, change: 'added', ...linesOf(undefined, newText, newText !== undefined) };
    if (after === undefined) return { path: file, change: 'removed', ...linesOf(oldText, undefined, oldText !== undefined) };
    if (before === after) return { path: file, change: 'same' };
    return { path: file, change: 'changed', ...linesOf(oldText, newText, oldText !== undefined && newText !== undefined) };
  });
  const who = (v: KeptVersion) => ({ hash: v.hash, name: v.name, version: v.version });
  return { from: who(a), to: who(b), files };
}

const NOT_KEPT = "the artifacts do not keep this file's text (no rule code came from it): compare the sources with `petrel diff`";

/** The hunks from `before` to `after` (the empty text for the side an added or removed file lacks), or a note when a needed text is not kept. */
function linesOf(before: string | undefined, after: string | undefined, kept: boolean): Pick<FileDiff, 'hunks' | 'note'> {
  if (!kept) return { note: NOT_KEPT };
  return { hunks: bounded(structuredPatch('a', 'b', before ?? '', after ?? '', '', '', { context: 3 }).hunks) };
}

/** The hunks, cut after MAX_DIFF_LINES lines in all. */
function bounded(hunks: DiffHunk[]): DiffHunk[] {
  let left = MAX_DIFF_LINES;
  const kept: DiffHunk[] = [];
  for (const h of hunks) {
    if (left <= 0) break;
    const lines = h.lines.slice(0, left);
    left -= lines.length;
    kept.push({ oldStart: h.oldStart, oldLines: h.oldLines, newStart: h.newStart, newLines: h.newLines, lines: left <= 0 ? [...lines, `… the diff is cut at ${MAX_DIFF_LINES} lines`] : lines });
  }
  return kept;
}
