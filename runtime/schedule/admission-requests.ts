/**
 * What an admission asks the limiters, made once per queue, source and tenant under one
 * settings object (limiters.ts: "build it once … keys made afresh cost more than the
 * acquisition"). A route's settings are one frozen object per version (the artifact
 * caches them), and `effectiveSettings` returns that same object unless a backoff or a
 * recovery ramp changes it — then a new object, and a new entry for as long as it lives.
 *
 * INVARIANT: an entry is keyed by the identity of the settings it was made from, so a
 * changed limit is never answered with an old request. Bounded: at most
 * {@link MAX_PATHS_PER_SETTINGS} paths per settings object (the long tail has a queue per
 * domain); past that the entries are dropped and made again.
 */
import type { EffectiveSettings } from '../abi.ts';
import { connectionRequest, messageRequests, type AcquireRequest, type LimiterPath } from './limiters.ts';

const MAX_PATHS_PER_SETTINGS = 10_000;

/** One path's requests: for a message on a new connection, and on an idle session that already holds its slot. */
export interface AdmissionRequest {
  withConnection(bytes: number): AcquireRequest;
  reusing(bytes: number): AcquireRequest;
}

export class AdmissionRequests {
  private readonly bySettings = new WeakMap<EffectiveSettings, Map<string, AdmissionRequest>>();

  /** The requests for queue `route`, `source` and `tenant` under `settings` (made on first use). */
  for(settings: EffectiveSettings, route: string, source: string, tenant: string | undefined): AdmissionRequest {
    let paths = this.bySettings.get(settings);
    if (!paths) this.bySettings.set(settings, (paths = new Map()));
    const key = `${route}\n${source}\n${tenant ?? ''}`;
    let request = paths.get(key);
    if (!request) {
      if (paths.size >= MAX_PATHS_PER_SETTINGS) paths.clear();
      paths.set(key, (request = made(settings, { route, source, ...(tenant ? { tenant } : {}) })));
    }
    return request;
  }
}

function made(settings: EffectiveSettings, path: LimiterPath): AdmissionRequest {
  const conn = connectionRequest(settings, path);
  const msg = messageRequests(settings, path);
  const plain = msg(0);
  // Without a data rate the message request does not depend on the size: both are made once.
  const sized = plain.rates.some((r) => r.key.startsWith('data-rate:'));
  const joined = (m: AcquireRequest): AcquireRequest => ({ rates: [...conn.rates, ...m.rates], concurrency: [...conn.concurrency, ...m.concurrency] });
  if (sized) return { withConnection: (bytes) => joined(msg(bytes)), reusing: msg };
  const both = joined(plain);
  return { withConnection: () => both, reusing: () => plain };
}
