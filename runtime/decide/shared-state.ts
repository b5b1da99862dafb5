/**
 * The reaction state shared between nodes through Redis: backoffs, suspensions, disabled
 * sources, recovery ramps, block counts, trigger counts (`when N in T` counts the matches
 * of every node), operator pauses and the day's warmup counts.
 *
 * `policy-state.ts` stays pure and local; this layer sits around it. Each node keeps its
 * own `PolicyState`, and a sync merges it with one Redis hash (`{prefix}:state`, a field
 * per entry, e.g. `susp|source|yahoo|ip1`) — after every local change (debounced), on a
 * message from another node (pub/sub, `{prefix}:events`), and every second regardless:
 * a change on one node holds on every node within a second.
 *
 * Merging is by kind, so two nodes that change one entry at once both count:
 * - backoffs, suspensions, ramps: the one that ends later;
 * - trigger hits and block times: the union of their timestamps;
 * - disabled sources, pauses: present if either has it; removed (an operator's enable or
 *   resume, a trigger that fired) when one node removes what the others last saw;
 * - warmup counts: each node writes its own count, and each sends under the sum.
 *
 * Redis down: every node keeps reacting on its own state; the next sync after Redis
 * returns merges both ways. Times are wall-clock ms, so nodes need synchronised clocks
 * (NTP) for one node's `until` to mean the same on another.
 */
import { randomBytes } from 'node:crypto';
import type { RedisLink } from '../schedule/limiters-redis-connection.ts';
import { snapshotPolicyState, type PolicyState } from './policy-state.ts';

export interface SharedStateOptions {
  link: RedisLink;
  nodeId: string;
  state: PolicyState;
  /** Operator pauses (`queue:Q`, `source:S`, `tenant:T`). */
  paused: Set<string>;
  /** Messages sent by warming-up sources, per `source|route|day` (schedule/source-choice.ts). */
  warmupSent: Map<string, number>;
  /** Wall-clock ms. */
  clock: () => number;
  /** A change from another node was applied: the scheduler looks again, the state file is due. */
  changed: () => void;
  warn: (line: string) => void;
  /** The periodic resync (default 1000 ms). */
  resyncMs?: number;
}

export interface SharedState {
  /** Something changed here: it goes to Redis shortly (debounced). */
  localChange(): void;
  /** One sync now (pull, merge, push); false when Redis was not usable. */
  sync(): Promise<boolean>;
  close(): Promise<void>;
}

/** The most fields the shared hash may hold before a node refuses to read it whole. */
const MAX_FIELDS = 200_000;
const DEBOUNCE_MS = 20;

type Kind = 'trig' | 'back' | 'susp' | 'dis' | 'ramp' | 'block' | 'pause' | 'warm';
const MAPS = { trig: 'triggerHits', back: 'backoffs', susp: 'suspensions', dis: 'disabled', ramp: 'ramps', block: 'blocks' } as const satisfies Partial<Record<Kind, keyof PolicyState>>;

const kindOf = (field: string) => field.slice(0, field.indexOf('|')) as Kind;
const keyOf = (field: string) => field.slice(field.indexOf('|') + 1);

/** Two values of one field, merged (JSON in, JSON out). */
function merge(kind: Kind, local: string, remote: string): string {
  try {
    if (kind === 'trig' || kind === 'block') {
      const times = [...new Set([...(JSON.parse(local) as number[]), ...(JSON.parse(remote) as number[])])].sort((a, b) => a - b);
      return JSON.stringify(times);
    }
    if (kind === 'back' || kind === 'susp' || kind === 'ramp') {
      return (JSON.parse(remote) as { until: number }).until > (JSON.parse(local) as { until: number }).until ? remote : local;
    }
  } catch {
    return local;
  }
  return local;
}

/** Whether a value from Redis is usable here: JSON of the kind's shape, not ended. */
function usableValue(kind: Kind, json: string, now: number): boolean {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch {
    return false;
  }
  if (kind === 'trig' || kind === 'block') return Array.isArray(value) && value.every((t) => typeof t === 'number' && Number.isFinite(t));
  if (kind === 'pause') return true;
  if (typeof value !== 'object' || value === null) return false;
  if (kind === 'dis') return true;
  const until = (value as { until?: unknown }).until;
  return typeof until === 'number' && until > now;
}

export function startSharedState(options: SharedStateOptions): SharedState {
  const { link, state, paused, warmupSent, clock, nodeId } = options;
  const redis = link.client;
  const hashKey = `${link.keyPrefix}state`;
  const channel = `${link.keyPrefix}events`;
  /** A random name Redis holds while its data lives: a Redis that lost its data (restarted without persistence) has another. */
  const epochKey = `${link.keyPrefix}state:epoch`;
  let epoch: string | null = null;
  const ownWarm = `warm|${nodeId}|`;
  /** What Redis held at the last sync, this node's warmup fields and others' left out. */
  let synced = new Map<string, string>();
  /** Other nodes' warmup counts: key → node → count. */
  let othersWarm = new Map<string, number>();
  let running: Promise<boolean> | undefined;
  let again = false;
  let debounce: NodeJS.Timeout | undefined;
  let closed = false;
  /**
   * This node's fields as of the end of its last sync. A local change that leaves them the
   * same (a delivery judged without any reaction, the common case) needs no sync: other
   * nodes' changes arrive by pub/sub and the periodic resync anyway.
   */
  let lastSynced = '';

  /** This node's state as fields (what has ended left out). */
  function localFields(): Map<string, string> {
    const fields = new Map<string, string>();
    const snap = snapshotPolicyState(state, clock());
    const lists: [Kind, [string, unknown][]][] = [['trig', snap.triggerHits], ['back', snap.backoffs], ['susp', snap.suspensions], ['dis', snap.disabled], ['ramp', snap.ramps ?? []], ['block', snap.blocks ?? []]];
    for (const [kind, entries] of lists) for (const [key, value] of entries) fields.set(`${kind}|${key}`, JSON.stringify(value));
    for (const p of paused) fields.set(`pause|${p}`, '1');
    return fields;
  }

  /** This node's fields, state and warmup counts, as one string to compare. */
  function fingerprint(): string {
    return JSON.stringify([...localFields(), ...ownWarmFields()]);
  }

  /** This node's own warmup counts (what it sent), as fields. */
  function ownWarmFields(): Map<string, string> {
    const fields = new Map<string, string>();
    for (const [key, total] of warmupSent) {
      const own = total - (othersWarm.get(key) ?? 0);
      if (own > 0) fields.set(`${ownWarm}${key}`, String(own));
    }
    return fields;
  }

  /** Makes the local state hold `fields` where it differs from `before`; true if anything changed. */
  function apply(before: Map<string, string>, fields: Map<string, string>): boolean {
    let changed = false;
    for (const [field, json] of fields) {
      if (before.get(field) === json) continue;
      changed = true;
      const kind = kindOf(field);
      if (kind === 'pause') paused.add(keyOf(field));
      else if (kind !== 'warm') (state[MAPS[kind]] as Map<string, unknown>).set(keyOf(field), JSON.parse(json));
    }
    for (const field of before.keys()) {
      if (fields.has(field)) continue;
      changed = true;
      const kind = kindOf(field);
      if (kind === 'pause') paused.delete(keyOf(field));
      else if (kind !== 'warm') (state[MAPS[kind]] as Map<string, unknown>).delete(keyOf(field));
    }
    return changed;
  }

  /** Sets every warmup count to this node's own plus the others' latest. */
  function applyWarm(nextOthers: Map<string, number>): boolean {
    let changed = false;
    for (const key of new Set([...othersWarm.keys(), ...nextOthers.keys()])) {
      const own = (warmupSent.get(key) ?? 0) - (othersWarm.get(key) ?? 0);
      const total = own + (nextOthers.get(key) ?? 0);
      if (total !== (warmupSent.get(key) ?? 0)) changed = true;
      if (total > 0) warmupSent.set(key, total);
      else warmupSent.delete(key);
    }
    othersWarm = nextOthers;
    return changed;
  }

  async function syncOnce(): Promise<boolean> {
    if (!link.usable()) return false;
    const now = clock();
    try {
      const size = await redis.hlen(hashKey);
      if (size > MAX_FIELDS) {
        options.warn(`petrel: shared state: ${hashKey} holds ${size} fields, more than ${MAX_FIELDS}; not read (reactions stay local)`);
        return false;
      }
      await redis.set(epochKey, randomBytes(8).toString('hex'), 'NX');
      const [[, current], [, all]] = (await redis.multi().get(epochKey).hgetall(hashKey).exec()) as [[null, string | null], [null, Record<string, string>]];
      // Redis lost what it held: nothing was removed by another node, everything here is to be written again.
      if (current !== epoch) synced = new Map();
      epoch = current;
      const remote = new Map(Object.entries(all));
      const local = localFields();
      const merged = new Map(local);
      const nextOthers = new Map<string, number>();
      for (const [field, json] of remote) {
        const kind = kindOf(field);
        if (kind === 'warm') {
          if (!field.startsWith(ownWarm)) {
            const key = keyOf(keyOf(field));
            const n = Number(json);
            if (Number.isSafeInteger(n) && n > 0) nextOthers.set(key, (nextOthers.get(key) ?? 0) + n);
          }
          continue;
        }
        // Unchanged in Redis since the last sync: what this node holds now is newer.
        if (synced.get(field) === json || !usableValue(kind, json, now)) continue;
        const mine = local.get(field);
        merged.set(field, mine === undefined ? json : merge(kind, mine, json));
      }
      // Removed from Redis by another node since the last sync, and not changed here since.
      for (const [field, json] of synced) if (!remote.has(field) && local.get(field) === json) merged.delete(field);
      const stateChanged = apply(local, merged);
      const changedHere = applyWarm(nextOthers) || stateChanged;
      const desired = new Map([...merged, ...ownWarmFields()]);
      const writes: string[] = [];
      const deletes: string[] = [];
      for (const [field, json] of desired) if (remote.get(field) !== json) writes.push(field, json);
      // Every field but another node's warmup count is this node's to remove.
      for (const field of remote.keys()) if (!desired.has(field) && !(kindOf(field) === 'warm' && !field.startsWith(ownWarm))) deletes.push(field);
      if (writes.length > 0 || deletes.length > 0) {
        const tx = redis.multi();
        if (writes.length > 0) tx.hset(hashKey, ...writes);
        if (deletes.length > 0) tx.hdel(hashKey, ...deletes);
        tx.publish(channel, JSON.stringify({ kind: 'state', node: nodeId }));
        await tx.exec();
      }
      synced = merged;
      lastSynced = fingerprint();
      if (changedHere) options.changed();
      return true;
    } catch (e) {
      link.failed(e as Error);
      return false;
    }
  }

  /** One sync at a time; a request during one runs once more after it. */
  function sync(): Promise<boolean> {
    if (running) {
      again = true;
      return running;
    }
    running = (async () => {
      let ok = false;
      do {
        again = false;
        ok = await syncOnce();
      } while (again && !closed);
      running = undefined;
      return ok;
    })();
    return running;
  }

  const subscriber = link.subscriber();
  subscriber.on('message', (_channel: string, message: string) => {
    if (!message.includes(`"node":${JSON.stringify(nodeId)}`) && message.includes('"kind":"state"')) void sync();
  });
  void subscriber.subscribe(channel).catch(() => undefined);
  const timer = setInterval(() => void sync(), options.resyncMs ?? 1000);
  timer.unref();
  link.onRecovered(() => void sync());

  return {
    localChange() {
      if (debounce) return;
      debounce = setTimeout(() => {
        debounce = undefined;
        if (fingerprint() !== lastSynced) void sync();
      }, DEBOUNCE_MS);
    },
    sync,
    async close() {
      closed = true;
      clearInterval(timer);
      clearTimeout(debounce);
      await running;
      await syncOnce();
    },
  };
}
