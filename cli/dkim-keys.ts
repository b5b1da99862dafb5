/**
 * `petrel run`'s DKIM keys: the config's `dkim` section and its key files, read at start
 * and again on SIGHUP and `POST /api/v1/dkim/reload`. A reload re-reads the config file's
 * `dkim` section only; all keys load or none, and a refused reload leaves the keys in use.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { closeSync, openSync, readSync } from 'node:fs';
import { createDkimSigning, loadDkimKeyring, MAX_KEY_FILE_BYTES, type DkimConfig, type DkimKeyring, type DkimKeyStatus, type DkimSigning } from '../runtime/intake/index.ts';
import type { HttpHelpers } from '../runtime/observe/index.ts';

/** What a reload did: the keys now in use, or why the old ones stay. */
export type DkimReloadOutcome = { result: 'reloaded'; trigger: string; keys: DkimKeyStatus[] } | { result: 'refused'; trigger: string; error: string };

export interface DkimKeys {
  /** For `startRuntime({ dkim })`. */
  signing: DkimSigning;
  reload(trigger: string): DkimReloadOutcome;
  /** `POST /api/v1/dkim/reload`, for `startRuntime({ httpRoutes })`. */
  httpRoutes(req: IncomingMessage, res: ServerResponse, helpers: HttpHelpers): boolean;
  /** Stops listening for SIGHUP. */
  close(): void;
}

/** At most `max` bytes of `file` and one more (so a larger file is seen as larger): a key path naming /dev/zero must not fill memory. */
function readBounded(file: string, max: number): Buffer {
  const fd = openSync(file, 'r');
  try {
    const buf = Buffer.alloc(max + 1);
    let n = 0;
    for (let got = -1; got !== 0 && n < buf.length; n += got) got = readSync(fd, buf, n, buf.length - n, null);
    return buf.subarray(0, n);
  } finally {
    closeSync(fd);
  }
}

/** The keys of `config` (none when undefined), key paths resolved by `at`; throws DkimConfigError naming the bad key. */
export function loadConfiguredKeys(config: DkimConfig | undefined, at: (file: string) => string): DkimKeyring {
  return loadDkimKeyring(config ?? { keys: [] }, (file) => readBounded(at(file), MAX_KEY_FILE_BYTES));
}

/**
 * Signs with `initial`, and reloads from `reread()` (the config file's `dkim` section now)
 * on SIGHUP and on the API; `log` gets one line per reload, never a key.
 */
export function startDkimKeys(initial: DkimKeyring, reread: () => DkimConfig | undefined, at: (file: string) => string, log: (line: string) => void): DkimKeys {
  const signing = createDkimSigning(initial, Date.now());
  function reload(trigger: string): DkimReloadOutcome {
    try {
      signing.replace(loadConfiguredKeys(reread(), at), Date.now());
    } catch (e) {
      const error = (e as Error).message;
      log(`petrel: dkim reload (${trigger}) refused, the keys in use stay: ${error}`);
      return { result: 'refused', trigger, error };
    }
    const { keys } = signing.status();
    log(`petrel: dkim reload (${trigger}): ${keys.length} key${keys.length === 1 ? '' : 's'} (${keys.map((k) => `${k.selector}._domainkey.${k.domain}`).join(', ') || 'signing off'})`);
    return { result: 'reloaded', trigger, keys };
  }
  const onHangup = () => void reload('SIGHUP');
  process.on('SIGHUP', onHangup);
  return {
    signing,
    reload,
    httpRoutes(req, res, { send, admit, readJson }) {
      if ((req.url ?? '').split('?')[0] !== '/api/v1/dkim/reload') return false;
      if (req.method !== 'POST') send(res, 405, { error: 'use POST' });
      else if (admit(req, res, 'write')) {
        // The body says nothing; it is read so a POST is JSON as everywhere (no form posts).
        void readJson(req, res, 1024).then((body) => {
          if (body === undefined) return;
          const outcome = reload('api');
          send(res, outcome.result === 'refused' ? 422 : 200, outcome);
        });
      }
      return true;
    },
    close: () => void process.off('SIGHUP', onHangup),
  };
}
