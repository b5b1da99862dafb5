/**
 * One process per spool directory: two runtimes draining one spool would deliver every
 * message twice. The lock is a symbolic link whose target names its holder (`PID.TOKEN`);
 * creating it is atomic (`symlink` fails if the lock exists), and a lock whose process is
 * gone — the normal state after kill -9 — is taken over. A short link lives in its inode
 * (ext4, xfs, tmpfs): taking the lock needs no data block, so a spool opens on a full
 * disk. A regular lock file (written by earlier versions: JSON `{ pid, token }`) is read
 * too.
 *
 * A pid lock cannot see a holder on another machine (a spool on shared storage); the
 * spool is meant for local disk.
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { SpoolError } from './errors.ts';
import { errorCode, isNoSpace, type SpoolFs } from './io.ts';

/** A held lock. */
export interface SpoolLock {
  release(): Promise<void>;
}

interface LockFile {
  pid: number;
  token: string;
}

function lockedError(dir: string, holder: number): SpoolError {
  return new SpoolError(
    'locked',
    holder === process.pid
      ? `spool \`${dir}\` is already open in this process; close it before opening it again`
      : `spool \`${dir}\` is in use by process ${holder}; stop that process or use another directory`,
  );
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return errorCode(error) === 'EPERM';
  }
}

async function readLock(fs: SpoolFs, file: string): Promise<LockFile | undefined> {
  let target: string;
  try {
    target = await fs.readlink(file);
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return undefined;
    if (errorCode(error) === 'EINVAL') return readLockFile(fs, file);
    return { pid: 0, token: '' };
  }
  const match = /^(\d{1,10})\.([0-9a-f]{1,64})$/.exec(target);
  return match ? { pid: Number(match[1]), token: match[2]! } : { pid: 0, token: '' };
}

/** A lock written as a file (earlier versions). */
async function readLockFile(fs: SpoolFs, file: string): Promise<LockFile | undefined> {
  try {
    const parsed: unknown = JSON.parse(await fs.readFile(file, 'utf8'));
    if (typeof parsed === 'object' && parsed !== null && 'pid' in parsed && 'token' in parsed && Number.isInteger(parsed.pid) && typeof parsed.token === 'string') {
      return { pid: parsed.pid as number, token: parsed.token };
    }
    return { pid: 0, token: '' };
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return undefined;
    // A half-written or unreadable lock can only come from a crash while creating it.
    return { pid: 0, token: '' };
  }
}

async function unlinkIfPresent(fs: SpoolFs, file: string): Promise<void> {
  try {
    await fs.unlink(file);
  } catch (error) {
    if (errorCode(error) !== 'ENOENT') throw error;
  }
}

/** Takes `dir/lock`, or throws a `locked` `SpoolError` when a live process holds it. */
export async function acquireLock(fs: SpoolFs, dir: string): Promise<SpoolLock> {
  const file = path.join(dir, 'lock');
  const token = randomBytes(8).toString('hex');
  for (let attempt = 0; ; attempt++) {
    try {
      await fs.symlink(`${process.pid}.${token}`, file);
      break;
    } catch (error) {
      if (isNoSpace(error)) throw new SpoolError('no-space', `cannot lock spool \`${dir}\`: its file system is full (no inode left); free some space`, { cause: error });
      if (errorCode(error) !== 'EEXIST' || attempt >= 3) throw error;
    }
    const holder = await readLock(fs, file);
    if (holder && holder.pid > 0 && isAlive(holder.pid)) throw lockedError(dir, holder.pid);
    // Stale: its process is gone. Two starters racing here both unlink; only one creates it.
    await unlinkIfPresent(fs, file);
  }
  // Temporary files of earlier versions' starters that died between writing and linking.
  for (const name of await fs.readdir(dir)) {
    const match = /^lock\.(\d+)\.[0-9a-f]+\.tmp$/.exec(name);
    if (match && !isAlive(Number(match[1]))) await unlinkIfPresent(fs, path.join(dir, name));
  }
  return {
    async release() {
      const holder = await readLock(fs, file);
      if (holder?.token === token) await unlinkIfPresent(fs, file);
    },
  };
}
