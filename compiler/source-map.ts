/**
 * A minimal source map (v3) writer: line-level mappings from emitted JavaScript back to
 * `.policy` files, so a stack trace or a profiler inside an artifact points at the rule
 * that produced the code. esbuild chains it through bundling.
 */

const BASE64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

/** Base64 VLQ, as source maps encode numbers. */
export function vlq(value: number): string {
  let v = value < 0 ? (-value << 1) | 1 : value << 1;
  let out = '';
  do {
    let digit = v & 31;
    v >>>= 5;
    if (v > 0) digit |= 32;
    out += BASE64[digit];
  } while (v > 0);
  return out;
}

export class SourceMapBuilder {
  /** For each generated line (0-based): the source file index and 0-based line, or none. */
  private readonly lines: ({ source: number; line: number } | undefined)[] = [];
  private readonly sources: string[] = [];

  /** Maps generated line `generatedLine` (0-based) to `file`:`line` (1-based). */
  map(generatedLine: number, file: string, line: number): void {
    let source = this.sources.indexOf(file);
    if (source === -1) source = this.sources.push(file) - 1;
    this.lines[generatedLine] = { source, line: line - 1 };
  }

  /** The source map; `contents` gives each source's text for `sourcesContent`. */
  toJSON(contents: ReadonlyMap<string, string>): object {
    let previous = { source: 0, line: 0 };
    const segments: string[] = [];
    for (let i = 0; i < this.lines.length; i++) {
      const m = this.lines[i];
      if (!m) {
        segments.push('');
        continue;
      }
      // Fields: generated column, source index delta, original line delta, original column.
      segments.push(vlq(0) + vlq(m.source - previous.source) + vlq(m.line - previous.line) + vlq(0));
      previous = m;
    }
    // Sources as `policy:///path` URLs: the paths are relative to where the policies were
    // built, which a bundler must not re-resolve against its own directories.
    const url = (s: string) => (/^[a-z][a-z0-9+.-]*:/.test(s) ? s : `policy:///${s}`);
    return { version: 3, sources: this.sources.map(url), sourcesContent: this.sources.map((s) => contents.get(s) ?? null), names: [], mappings: segments.join(';') };
  }
}
