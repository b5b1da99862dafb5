/**
 * The space reserve: `DIR/reserve`, a file of real bytes that holds disk space for the
 * records that finish messages (outcomes) and move their retry times (deferrals), so
 * that marking a delivered recipient done never needs space the disk no longer has.
 *
 * The bytes are not zeros but one random block repeated: a file system that compresses
 * (btrfs, ZFS) would store zeros in next to nothing, and the reserve would hold no space.
 * Every fill is fdatasync'd, so the blocks are really allocated (ext4 allocates delayed
 * writes only then), and a release is fsync'd, so the freed blocks are usable at once
 * (ext4 reuses freed blocks only after its journal commits).
 *
 * INVARIANT: `bytes` never counts more than the file holds, durable.
 */
import { randomBytes } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { isNoSpace, type SpoolFs } from './io.ts';

const BLOCK = 64 * 1024;

/** The reserve of one spool; build one with `openReserve`. */
export interface SpaceReserve {
  /** The size it is kept at when there is room. */
  readonly target: number;
  /** Bytes it holds now, durable. */
  readonly bytes: number;
  /**
   * Writes the file up to `target`, durable; resolves whether it got there. A full disk
   * stops it where it is (what it wrote is kept); other errors reject.
   */
  fill(): Promise<boolean>;
  /** Gives every byte back to the file system (truncate and fsync). */
  release(): Promise<void>;
  close(): Promise<void>;
}

/** The reserve in `file`, `target` bytes, opened (created if needed) but not filled yet. */
export async function openReserve(fs: SpoolFs, file: string, target: number): Promise<SpaceReserve> {
  const handle: FileHandle = await fs.open(file, 'a+');
  let bytes = (await handle.stat()).size;
  const block = randomBytes(Math.min(BLOCK, Math.max(target, 1)));
  return {
    target,
    get bytes() {
      return bytes;
    },
    async fill() {
      // A file larger than target (the option was lowered) gives the excess back.
      if (bytes > target) {
        await handle.truncate(target);
        await handle.sync();
        bytes = target;
      }
      let written = bytes;
      try {
        while (written < target) {
          const { bytesWritten } = await handle.write(block, 0, Math.min(block.length, target - written), written);
          written += bytesWritten;
        }
      } catch (error) {
        if (!isNoSpace(error)) throw error;
      }
      await handle.datasync();
      // A short write before the error may have left a few bytes more; the file size is the truth.
      bytes = (await handle.stat()).size;
      return bytes >= target;
    },
    async release() {
      await handle.truncate(0);
      await handle.sync();
      bytes = 0;
    },
    close: () => handle.close(),
  };
}
