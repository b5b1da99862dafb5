/**
 * The file operations the spool uses, as an injectable subset of `node:fs/promises` (tests
 * pass a wrapper that fails on purpose), and the loops around them that POSIX requires:
 * short writes and reads are continued, not taken for errors.
 */
import type * as fsPromises from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';

/** The subset of `node:fs/promises` the spool calls. */
export type SpoolFs = Pick<typeof fsPromises, 'open' | 'readdir' | 'mkdir' | 'readFile' | 'writeFile' | 'unlink' | 'symlink' | 'readlink' | 'statfs'>;

/** Writes every byte of `buffers` at `position`, continuing after short writes. */
export async function writeAll(handle: FileHandle, buffers: Buffer[], position: number): Promise<void> {
  let rest = buffers;
  while (rest.length > 0) {
    const { bytesWritten } = await handle.writev(rest, position);
    position += bytesWritten;
    let skip = bytesWritten;
    let i = 0;
    while (i < rest.length && skip >= rest[i]!.length) skip -= rest[i++]!.length;
    rest = rest.slice(i);
    if (skip > 0) rest[0] = rest[0]!.subarray(skip);
    if (bytesWritten === 0 && rest.length > 0) throw new Error('write made no progress');
  }
}

/** Fills `buf` from `position`; fails if the file ends first. */
export async function readAll(handle: FileHandle, buf: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < buf.length) {
    const { bytesRead } = await handle.read(buf, done, buf.length - done, position + done);
    if (bytesRead === 0) throw new Error(`file ends ${buf.length - done} bytes early`);
    done += bytesRead;
  }
}

/** fsync of a directory: makes the creation, renaming and removal of its entries durable. */
export async function syncDir(fs: SpoolFs, dir: string): Promise<void> {
  const handle = await fs.open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** The `code` of a Node system error, if it is one. */
export function errorCode(error: unknown): string | undefined {
  return typeof error === 'object' && error !== null && 'code' in error && typeof error.code === 'string' ? error.code : undefined;
}

/** Whether a failed file operation failed because the file system (or the user's quota) is full. */
export function isNoSpace(error: unknown): boolean {
  const code = errorCode(error);
  return code === 'ENOSPC' || code === 'EDQUOT';
}

/** Bytes an unprivileged process may still write on the file system that holds `dir`. */
export async function freeBytes(fs: SpoolFs, dir: string): Promise<number> {
  const s = await fs.statfs(dir);
  return s.bavail * s.bsize;
}
