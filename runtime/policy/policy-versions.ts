/**
 * The policy versions a runtime has run, on disk: every version that went live is kept
 * (the last `keep` of them) so that a rollback loads exactly the module that ran before,
 * without compiling anything.
 *
 * ```
 * DIR/versions/HASH/     the artifact: manifest.json, the module and its source map
 * DIR/history.json       { "entries": [newest first: hash, name, version, commit, trigger,
 *                          activatedAt, replacedAt, …] }
 * ```
 *
 * Files are written to a temporary name and renamed, so a crash leaves either the old or
 * the new history, never half of one; a version directory is complete before its
 * manifest (written last) exists.
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { ArtifactManifest, PolicyArtifact } from '../abi.ts';
import { loadArtifact, writeArtifact, type ArtifactTexts } from './loader.ts';

/** Where a version came from. */
export interface VersionOrigin {
  /** What asked for it: `startup`, `watch`, `poll`, `post-receive`, `api`, `deploy`, `rollback`. */
  trigger: string;
  /** The git commit it was built from, when the policies come from git. */
  commit?: string;
  /** The commit's subject line and author, or who deployed it. */
  subject?: string;
  author?: string;
}

export interface VersionEntry extends VersionOrigin {
  hash: string;
  name: string;
  version: string;
  /** When it went live, and when another replaced it (ISO 8601). */
  activatedAt: string;
  replacedAt?: string;
}

export interface LoadedVersion {
  artifact: PolicyArtifact;
  manifest: ArtifactManifest;
}

export interface VersionStore {
  /** Writes an artifact (unless that version went live before: it is kept as it ran) and loads it: ABI check and self-test. Throws ArtifactError and leaves nothing behind. */
  install(texts: ArtifactTexts): Promise<LoadedVersion>;
  /** Loads a kept version (one in the history) by its hash; throws when there is none. */
  load(hash: string): Promise<LoadedVersion>;
  /** Records a version as the live one (it must have been installed), newest first. */
  activate(manifest: ArtifactManifest, origin: VersionOrigin, at: number): Promise<VersionEntry>;
  /** Live version first, then the previous ones. */
  history(): VersionEntry[];
}

export async function openVersionStore(dir: string, options: { keep?: number } = {}): Promise<VersionStore> {
  const keep = Math.max(2, options.keep ?? 10);
  const versionsDir = path.join(dir, 'versions');
  const historyFile = path.join(dir, 'history.json');
  await mkdir(versionsDir, { recursive: true });
  let entries: VersionEntry[] = [];
  if (existsSync(historyFile)) {
    try {
      entries = (JSON.parse(await readFile(historyFile, 'utf8')) as { entries: VersionEntry[] }).entries;
    } catch (e) {
      throw new Error(`cannot read ${historyFile}: ${(e as Error).message}`);
    }
  }
  const hashDir = (hash: string) => path.join(versionsDir, hash);

  const save = async () => {
    const tmp = `${historyFile}.tmp`;
    await writeFile(tmp, JSON.stringify({ entries }, null, 2) + '\n');
    await rename(tmp, historyFile);
    // Versions no entry names any more go; so do installed ones that never went live.
    const named = new Set(entries.map((e) => e.hash));
    for (const d of await readdir(versionsDir)) if (!named.has(d)) await rm(path.join(versionsDir, d), { recursive: true, force: true });
  };

  return {
    async install(texts) {
      const target = hashDir(texts.manifest.hash);
      // A version that went live before is on disk as it ran; anything else is written anew
      // (a directory left by a refused attempt may hold other texts under the same name).
      if (!entries.some((e) => e.hash === texts.manifest.hash) || !existsSync(path.join(target, 'manifest.json'))) {
        const tmp = `${target}.tmp-${process.pid}`;
        await rm(tmp, { recursive: true, force: true });
        try {
          await writeArtifact(tmp, texts);
        } catch (e) {
          await rm(tmp, { recursive: true, force: true });
          throw e;
        }
        await rm(target, { recursive: true, force: true });
        await rename(tmp, target);
      }
      try {
        return await loadArtifact(target);
      } catch (e) {
        if (!entries.some((x) => x.hash === texts.manifest.hash)) await rm(target, { recursive: true, force: true });
        throw e;
      }
    },
    async load(hash) {
      if (!entries.some((e) => e.hash === hash)) throw new Error(`no kept version \`${hash}\``);
      return loadArtifact(hashDir(hash));
    },
    async activate(manifest, origin, at) {
      const when = new Date(at).toISOString();
      if (entries[0] && entries[0].replacedAt === undefined) entries[0].replacedAt = when;
      const entry: VersionEntry = { hash: manifest.hash, name: manifest.name, version: manifest.version, ...origin, activatedAt: when };
      entries = [entry, ...entries].slice(0, keep);
      await save();
      return entry;
    },
    history: () => entries.map((e) => ({ ...e })),
  };
}
