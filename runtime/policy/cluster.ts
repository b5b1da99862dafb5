/**
 * One policy version on every node: the cluster's members and its live version, in Redis.
 *
 * - Members: every node writes a heartbeat each second (`{prefix}:nodes`, a field per
 *   node: its policy version and hash, and a version it could not load); a node not heard
 *   from for `deadAfterMs` is not live. The number of live nodes is each node's divisor
 *   of every connection limit, and of every rate while Redis is down
 *   (schedule/limiters-redis.ts), so the last count is kept when Redis goes away.
 * - The live version: when a version goes live on a node by a reload, a push, a deploy or a
 *   rollback (policy-control.ts `onLive`), that node writes its hash
 *   (`{prefix}:policy:live`) and its texts (`{prefix}:policy:texts:HASH`) and says so on
 *   `{prefix}:events`. Every other node loads it through the same checks as a deploy (ABI,
 *   self-test, and the signature of an upload where deploy keys are configured) — from its
 *   own version store when it ran that version before — and makes it live. A node that
 *   cannot says so loudly (log, status, its heartbeat) and keeps its version.
 * - A node that starts joins the cluster's live version; the first node publishes its own.
 */
import type { KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import type { ArtifactManifest } from '../abi.ts';
import type { RedisLink } from '../schedule/limiters-redis-connection.ts';
import { verifyUpload } from './artifact-signature.ts';
import type { ArtifactTexts } from './loader.ts';
import type { PolicyControl, ReloadOutcome } from './policy-control.ts';
import type { VersionEntry, VersionOrigin } from './policy-versions.ts';

export interface ClusterOptions {
  link: RedisLink;
  nodeId: string;
  log: (line: string) => void;
  /** Wall-clock ms (heartbeats compare times written by other nodes). */
  clock?: () => number;
  heartbeatMs?: number;
  deadAfterMs?: number;
  /** When set, a version from another node must carry an upload signature by one of these keys. */
  deployKeys?: readonly KeyObject[];
  /** The version store's directory (policy-versions.ts): the texts of a kept version are read from `versions/HASH`. */
  artifactDir: string;
}

/** One member as `/api/v1/status` shows it. */
export interface ClusterNode {
  node: string;
  host: string;
  pid: number;
  policy: { name: string; version: string; hash: string };
  /** Milliseconds since its last heartbeat. */
  seenAgoMs: number;
  live: boolean;
  /** The cluster's version it could not load, and why. */
  cannotLoad?: { hash: string; reason: string };
}

export interface ClusterStatus {
  node: string;
  redis: 'up' | 'down';
  liveNodes: number;
  /** The version the cluster runs (the last one made live anywhere), if known. */
  live: { hash: string; name: string; version: string; by: string } | null;
  nodes: ClusterNode[];
  /** Live nodes run more than one version. */
  skew: boolean;
}

export interface PolicyCluster {
  /** Live nodes last seen (this one included; at least 1). */
  liveNodes(): number;
  status(): ClusterStatus;
  /** For `createPolicyControl({ onLive })`: a version went live here; tell the others. */
  onLive(entry: VersionEntry, texts: ArtifactTexts | undefined, upload?: { tests: readonly unknown[]; signature: string }): void;
  /** Joins: heartbeats, follows the cluster's version. */
  start(deps: { control: PolicyControl; current: () => ArtifactManifest }): Promise<void>;
  close(): Promise<void>;
}

interface LiveRecord {
  hash: string;
  name: string;
  version: string;
  origin: VersionOrigin;
  by: string;
  at: number;
}

interface TextsRecord {
  texts: ArtifactTexts;
  upload?: { tests: readonly unknown[]; signature: string };
}

interface Heartbeat {
  node: string;
  host: string;
  pid: number;
  policy: { name: string; version: string; hash: string };
  at: number;
  cannotLoad?: { hash: string; reason: string };
}

/** Texts of published versions expire after this long (a node that was away longer loads from its own store or not at all). */
const TEXTS_TTL_S = 30 * 86_400;
/** Heartbeats older than this are removed from the members' hash. */
const FORGET_MS = 60_000;
/** The most members read. */
const MAX_NODES = 1000;
/** How long a version that failed to load here waits before it is tried again. */
const RETRY_MS = 30_000;

export function createPolicyCluster(options: ClusterOptions): PolicyCluster {
  const { link, nodeId, log } = options;
  const clock = options.clock ?? Date.now;
  const heartbeatMs = options.heartbeatMs ?? 1000;
  const deadAfterMs = options.deadAfterMs ?? 5000;
  const redis = link.client;
  const keys = { nodes: `${link.keyPrefix}nodes`, live: `${link.keyPrefix}policy:live`, texts: (hash: string) => `${link.keyPrefix}policy:texts:${hash}`, events: `${link.keyPrefix}events` };
  let members: Heartbeat[] = [];
  let liveNodes = 1;
  let live: LiveRecord | null = null;
  let cannotLoad: { hash: string; reason: string; at: number } | undefined;
  let deps: { control: PolicyControl; current: () => ArtifactManifest } | undefined;
  let timer: NodeJS.Timeout | undefined;
  let following: Promise<void> = Promise.resolve();

  const me = (): Heartbeat => {
    const m = deps!.current();
    return { node: nodeId, host: hostname(), pid: process.pid, policy: { name: m.name, version: m.version, hash: m.hash }, at: clock(), ...(cannotLoad ? { cannotLoad: { hash: cannotLoad.hash, reason: cannotLoad.reason } } : {}) };
  };

  async function heartbeat(): Promise<void> {
    if (!link.usable() || !deps) return;
    try {
      await redis.hset(keys.nodes, nodeId, JSON.stringify(me()));
      const all = await redis.hgetall(keys.nodes);
      const now = clock();
      const read: Heartbeat[] = [];
      for (const [node, json] of Object.entries(all).slice(0, MAX_NODES)) {
        try {
          const h = JSON.parse(json) as Heartbeat;
          if (now - h.at > FORGET_MS) await redis.hdel(keys.nodes, node);
          else read.push(h);
        } catch {
          await redis.hdel(keys.nodes, node);
        }
      }
      members = read;
      liveNodes = Math.max(1, read.filter((h) => now - h.at <= deadAfterMs).length);
      await follow();
    } catch (e) {
      link.failed(e as Error);
    }
  }

  /** Reads the cluster's live version and makes it live here when it differs. */
  function follow(): Promise<void> {
    following = following.then(followOnce, (e: Error) => log(`petrel: cluster: ${e.message}`));
    return following;
  }

  async function followOnce(): Promise<void> {
    if (!deps || !link.usable()) return;
    const json = await redis.get(keys.live);
    live = json ? (JSON.parse(json) as LiveRecord) : null;
    // None (the first node, or a Redis that lost its data): this node's version is the cluster's, unless another's is first.
    if (!live) await claimLive();
    if (!live || live.hash === deps.current().hash) {
      cannotLoad = undefined;
      return;
    }
    if (cannotLoad?.hash === live.hash && clock() - cannotLoad.at < RETRY_MS) return;
    const outcome = await load(live);
    if (outcome.result === 'refused') {
      const reason = `${outcome.refusal.stage}: ${outcome.refusal.report.trim().split('\n')[0]!.slice(0, 300)}`;
      if (cannotLoad?.hash !== live.hash) log(`petrel: CLUSTER VERSION SKEW: the cluster runs policy ${live.hash.slice(0, 12)} (made live by ${live.by}); this node cannot load it (${reason}) and keeps ${deps.current().hash.slice(0, 12)}`);
      cannotLoad = { hash: live.hash, reason, at: clock() };
      await redis.hset(keys.nodes, nodeId, JSON.stringify(me()));
    } else {
      cannotLoad = undefined;
    }
  }

  /** A kept version loads from this node's store; another from its texts in Redis. */
  async function load(record: LiveRecord): Promise<ReloadOutcome> {
    const control = deps!.control;
    const origin: VersionOrigin = { ...record.origin, trigger: 'cluster', author: record.origin.author ?? record.by };
    if (control.describe().previous.some((e) => e.hash === record.hash) && !options.deployKeys?.length) return control.rollback(record.hash, 'cluster');
    const json = await redis.get(keys.texts(record.hash));
    const published = json ? (JSON.parse(json) as TextsRecord) : undefined;
    if (!published) {
      const missing = `the texts of ${record.hash.slice(0, 12)} are not in redis`;
      return { result: 'refused', refusal: { at: new Date(clock()).toISOString(), trigger: 'cluster', stage: 'source', report: missing, problems: [] }, hash: deps!.current().hash, ms: 0 };
    }
    const keysNeeded = options.deployKeys ?? [];
    return control.adopt(published.texts, origin, async () => {
      if (keysNeeded.length === 0) return;
      if (!published.upload || !verifyUpload({ ...published.texts, tests: published.upload.tests }, published.upload.signature, keysNeeded)) {
        throw new Error('it is not signed by a configured deploy key (this node has deploy keys, so every version must be)');
      }
    });
  }

  async function publish(entry: VersionEntry, texts: ArtifactTexts | undefined, upload?: { tests: readonly unknown[]; signature: string }): Promise<void> {
    if (!link.usable()) {
      log(`petrel: cluster: redis is down; policy ${entry.hash.slice(0, 12)} is live on this node only until it is made live again`);
      return;
    }
    const { trigger, commit, subject, author } = entry;
    const record: LiveRecord = { hash: entry.hash, name: entry.name, version: entry.version, origin: { trigger, ...(commit ? { commit } : {}), ...(subject ? { subject } : {}), ...(author ? { author } : {}) }, by: nodeId, at: clock() };
    try {
      const tx = redis.multi();
      const published = texts ?? (await keptTexts(entry.hash));
      if (published) tx.set(keys.texts(entry.hash), JSON.stringify({ texts: published, ...(upload ? { upload } : {}) } satisfies TextsRecord), 'EX', TEXTS_TTL_S);
      else tx.expire(keys.texts(entry.hash), TEXTS_TTL_S);
      tx.set(keys.live, JSON.stringify(record));
      tx.publish(keys.events, JSON.stringify({ kind: 'policy', node: nodeId }));
      await tx.exec();
      live = record;
    } catch (e) {
      link.failed(e as Error);
      log(`petrel: cluster: cannot publish policy ${entry.hash.slice(0, 12)}: ${(e as Error).message}`);
    }
  }

  return {
    liveNodes: () => liveNodes,
    status() {
      const now = clock();
      const nodes = members.map((h) => ({ node: h.node, host: h.host, pid: h.pid, policy: h.policy, seenAgoMs: Math.max(0, now - h.at), live: now - h.at <= deadAfterMs, ...(h.cannotLoad ? { cannotLoad: h.cannotLoad } : {}) })).sort((a, b) => (a.node < b.node ? -1 : 1));
      const versions = new Set(nodes.filter((n) => n.live).map((n) => n.policy.hash));
      return { node: nodeId, redis: link.usable() ? 'up' : 'down', liveNodes, live: live ? { hash: live.hash, name: live.name, version: live.version, by: live.by } : null, nodes, skew: versions.size > 1 };
    },
    onLive(entry, texts, upload) {
      // A version this node took from the cluster is the cluster's already.
      if (entry.trigger === 'cluster') return;
      void publish(entry, texts, upload);
    },
    async start(d) {
      deps = d;
      if (link.usable()) {
        try {
          if ((await redis.get(keys.live)) === null) await claimLive();
        } catch (e) {
          link.failed(e as Error);
        }
      }
      await heartbeat();
      const sub = link.subscriber();
      sub.on('message', (_c: string, message: string) => {
        if (message.includes('"kind":"policy"') && !message.includes(`"node":${JSON.stringify(nodeId)}`)) void follow();
      });
      void sub.subscribe(keys.events).catch(() => undefined);
      timer = setInterval(() => void heartbeat(), heartbeatMs);
      timer.unref();
    },
    async close() {
      clearInterval(timer);
      await following;
      if (link.usable()) await redis.hdel(keys.nodes, nodeId).catch(() => undefined);
    },
  };

  /** Makes this node's version the cluster's when there is none (SET NX: of nodes starting at once, one wins; the others follow it). */
  async function claimLive(): Promise<void> {
    const m = deps!.current();
    const texts = await keptTexts(m.hash);
    if (texts) await redis.set(keys.texts(m.hash), JSON.stringify({ texts } satisfies TextsRecord), 'EX', TEXTS_TTL_S, 'NX');
    const first: LiveRecord = { hash: m.hash, name: m.name, version: m.version, origin: { trigger: 'startup' }, by: nodeId, at: clock() };
    if ((await redis.set(keys.live, JSON.stringify(first), 'NX')) === 'OK') live = first;
  }

  /** The texts of a version kept in this node's store (the inverse of loader.ts `writeArtifact`), if it is there. */
  async function keptTexts(hash: string): Promise<ArtifactTexts | undefined> {
    const dir = path.join(options.artifactDir, 'versions', hash);
    try {
      const manifest = JSON.parse(await readFile(path.join(dir, 'manifest.json'), 'utf8')) as ArtifactManifest;
      const moduleFile = path.basename(manifest.module);
      return { manifest, moduleFile, module: await readFile(path.join(dir, moduleFile), 'utf8'), sourceMap: await readFile(path.join(dir, `${moduleFile}.map`), 'utf8') };
    } catch (e) {
      log(`petrel: cluster: cannot read the texts of policy ${hash.slice(0, 12)}: ${(e as Error).message}`);
      return undefined;
    }
  }
}
