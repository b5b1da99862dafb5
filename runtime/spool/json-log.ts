/**
 * A small durable log of JSON lines, for state beside the spool that changes a line at a
 * time (the suppression list, the webhook outbox): `append` resolves once its lines are
 * written and fdatasync'd — appends in one turn of the event loop share one sync — and
 * `rewrite` replaces the file with the lines given (temp file, fsync, rename, directory
 * fsync), for compaction. Opening replays every line to `replay`; a torn last line (a
 * crash mid-write, never acknowledged) is cut off the file.
 */
import { closeSync, existsSync, fdatasyncSync, fsyncSync, openSync, readFileSync, renameSync, truncateSync, writeSync } from 'node:fs';
import path from 'node:path';

export interface JsonLog<T> {
  /** Resolves once durable. */
  append(lines: readonly T[]): Promise<void>;
  /** Replaces the whole file with `lines` (synchronously). */
  rewrite(lines: readonly T[]): void;
  /** Lines in the file now. */
  readonly lines: number;
  /** Writes what is waiting and closes. */
  close(): void;
}

export function openJsonLog<T>(file: string, replay: (line: T) => void, afterWrite?: () => void): JsonLog<T> {
  let lines = 0;
  if (existsSync(file)) {
    const content = readFileSync(file, 'utf8');
    // A torn tail (no final newline) is cut off, or the next append would join it.
    const whole = content.slice(0, content.lastIndexOf('\n') + 1);
    if (whole.length < content.length) truncateSync(file, Buffer.byteLength(whole));
    for (const text of whole.split('\n')) {
      if (text === '') continue;
      let line: T;
      try {
        line = JSON.parse(text) as T;
      } catch {
        continue;
      }
      lines++;
      replay(line);
    }
  }
  let fd = openSync(file, 'a');
  let batch: { text: string[]; done: (() => void)[]; failed: ((e: Error) => void)[] } | undefined;
  function flush(): void {
    const b = batch;
    batch = undefined;
    if (!b) return;
    try {
      writeSync(fd, b.text.join(''));
      fdatasyncSync(fd);
      lines += b.text.length;
    } catch (e) {
      for (const f of b.failed) f(e as Error);
      return;
    }
    for (const f of b.done) f();
    afterWrite?.();
  }
  const log: JsonLog<T> = {
    append(list) {
      return new Promise((resolve, reject) => {
        if (!batch) {
          batch = { text: [], done: [], failed: [] };
          setImmediate(flush);
        }
        batch.text.push(...list.map((l) => JSON.stringify(l) + '\n'));
        batch.done.push(resolve);
        batch.failed.push(reject);
      });
    },
    rewrite(all) {
      const tmp = `${file}.tmp`;
      const out = openSync(tmp, 'w');
      for (let i = 0; i < all.length; i += 10_000) writeSync(out, all.slice(i, i + 10_000).map((l) => JSON.stringify(l) + '\n').join(''));
      fsyncSync(out);
      closeSync(out);
      renameSync(tmp, file);
      const d = openSync(path.dirname(file), 'r');
      fsyncSync(d);
      closeSync(d);
      closeSync(fd);
      fd = openSync(file, 'a');
      lines = all.length;
    },
    get lines() {
      return lines;
    },
    close() {
      flush();
      closeSync(fd);
    },
  };
  return log;
}
