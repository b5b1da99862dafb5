/**
 * The one Redis connection a node's shared parts use (the limiter store, the shared
 * reaction state, the cluster's versions and members), and whether it may be used now.
 *
 * Nothing waits on a dead Redis: commands are never queued while disconnected
 * (`enableOfflineQueue: false`) and each answers within `timeoutMs` or fails
 * (`commandTimeout`). After a failure the link counts as down for `coolMs`, so a hung
 * Redis costs one timeout per second, not one per admission; callers then use their
 * local fallback (docs/runtime.md, "Several nodes: Redis").
 *
 * Sentinel and Redis Cluster come through ioredis's own options. Every key carries one
 * hash tag (`{petrel}` by default), so the keys one script touches share a cluster slot.
 */
import { Cluster, Redis, type ClusterNode, type RedisOptions } from 'ioredis';

/** The `redis` section of the runtime config (runtime/config.schema.json). */
export interface RedisConfig {
  /** `redis://[user:password@]host:port[/db]` (or `rediss://`). */
  url?: string;
  /** Sentinel: the sentinels and the name of the monitored master. */
  sentinels?: { host: string; port: number }[];
  name?: string;
  /** Redis Cluster: some of its nodes. */
  cluster?: { host: string; port: number }[];
  /** Passed to ioredis as they are (password, tls, db, …): its own option names. */
  options?: Record<string, unknown>;
  /** The hash tag of every key (default `petrel`): nodes with the same prefix are one cluster. */
  prefix?: string;
  /** How long any Redis command may take before the node goes on without it (default 250 ms). */
  timeoutMs?: number;
}

/** A Redis connection with its health, shared by a node's parts. */
export interface RedisLink {
  readonly client: Redis | Cluster;
  /** `{prefix}:` — the start of every key. */
  readonly keyPrefix: string;
  readonly timeoutMs: number;
  /** Connected, and no command failed within the last `coolMs`. */
  usable(): boolean;
  /** A command failed (timeout, connection lost): go local for a while. */
  failed(error: Error): void;
  /** Becomes true after being false (Redis came back): reconcile. */
  onRecovered(listener: () => void): void;
  /** A second connection for SUBSCRIBE (a subscribed connection runs nothing else). */
  subscriber(): Redis | Cluster;
  close(): Promise<void>;
}

const DEFAULT_TIMEOUT_MS = 250;
/** How long the link stays down after a failure before commands are tried again. */
const COOL_MS = 1000;

function clientOptions(timeoutMs: number, extra: Record<string, unknown> | undefined): RedisOptions {
  return {
    ...(extra as RedisOptions),
    commandTimeout: timeoutMs,
    connectTimeout: Math.max(timeoutMs * 4, 1000),
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    // Reconnect for ever, at most a second apart: Redis coming back is noticed within a second.
    retryStrategy: (times: number) => Math.min(times * 100, 1000),
    lazyConnect: true,
  };
}

/** A new ioredis client for `config` (not connected yet). */
function newClient(config: RedisConfig, timeoutMs: number): Redis | Cluster {
  const options = clientOptions(timeoutMs, config.options);
  if (config.cluster && config.cluster.length > 0) {
    return new Cluster(config.cluster as ClusterNode[], { redisOptions: options, enableOfflineQueue: false, lazyConnect: true, clusterRetryStrategy: (times: number) => Math.min(times * 100, 1000) });
  }
  if (config.sentinels && config.sentinels.length > 0) return new Redis({ ...options, sentinels: config.sentinels, name: config.name ?? 'mymaster' });
  if (config.url) return new Redis(config.url, options);
  throw new RangeError('`redis` needs a `url`, `sentinels` (with `name`) or `cluster`');
}

/**
 * Opens the link and waits up to `waitMs` for Redis: a node whose Redis is down starts
 * anyway, on its local fallback, and joins when Redis answers.
 */
export async function openRedisLink(config: RedisConfig, options: { clock?: () => number; waitMs?: number; warn?: (line: string) => void } = {}): Promise<RedisLink> {
  const clock = options.clock ?? Date.now;
  const warn = options.warn ?? (() => undefined);
  const timeoutMs = config.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const prefix = config.prefix ?? 'petrel';
  if (!/^[\w.-]{1,64}$/.test(prefix)) throw new RangeError('`redis.prefix` takes 1 to 64 letters, digits, `_`, `.` or `-`');
  const client = newClient(config, timeoutMs);
  const subscribers: (Redis | Cluster)[] = [];
  const recovered: (() => void)[] = [];
  let failedAt = -Infinity;
  let wasUsable = false;
  let lastWarned = '';
  client.on('error', (e: Error) => {
    // ioredis reports every failed reconnect; one line per distinct reason is enough.
    if (e.message !== lastWarned) warn(`petrel: redis: ${e.message}`);
    lastWarned = e.message;
  });
  const usable = () => client.status === 'ready' && clock() - failedAt >= COOL_MS;
  const check = () => {
    const now = usable();
    if (now && !wasUsable) {
      lastWarned = '';
      for (const l of recovered) l();
    }
    wasUsable = now;
  };
  client.on('ready', () => setTimeout(check, 0));
  const poll = setInterval(check, 250);
  poll.unref();
  client.connect().catch(() => undefined);
  const waitEnd = clock() + (options.waitMs ?? 2000);
  while (client.status !== 'ready' && clock() < waitEnd) await new Promise((r) => setTimeout(r, 20));
  wasUsable = usable();
  if (!wasUsable) warn(`petrel: redis: not reachable yet; limits run on this node's share until it is`);
  return {
    client,
    keyPrefix: `{${prefix}}:`,
    timeoutMs,
    usable,
    failed(error) {
      if (usable()) warn(`petrel: redis: ${error.message}; going on locally`);
      failedAt = clock();
      wasUsable = false;
    },
    onRecovered: (listener) => void recovered.push(listener),
    subscriber() {
      const sub = newClient(config, timeoutMs);
      sub.on('error', () => undefined); // the command client reports the same outage
      // A subscriber may queue its SUBSCRIBE until connected: it re-subscribes on reconnect.
      (sub as Redis).options.enableOfflineQueue = true;
      sub.connect().catch(() => undefined);
      subscribers.push(sub);
      return sub;
    },
    async close() {
      clearInterval(poll);
      for (const c of [client, ...subscribers]) c.disconnect();
    },
  };
}
