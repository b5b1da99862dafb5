/**
 * Lua for the Redis limiter store (limiters-redis.ts), which loads them with ioredis's
 * `defineCommand` (EVALSHA, EVAL on NOSCRIPT: one round trip). They implement the
 * algorithm of `MemoryLimiterStore`; test/runtime/cluster-limiters.test.ts runs them
 * against a real redis-server.
 *
 * Target: Redis 7 or later (scripts read `TIME`, which needs effects replication, the
 * default since 7.0).
 *
 * Layout, all keys under one prefix that carries one Redis Cluster hash tag, for example
 * `{petrel}:lim:` + a `limiterKey()` string: an acquisition touches keys of every scope in
 * one script, so they must share a slot. (`limiterKey` escapes `{` and `}` in names, so
 * the prefix's tag is the only one.)
 * - rate key (`connect-rate:…`, `message-rate:…`, `data-rate:…`): a hash; `tat` is the
 *   GCRA theoretical arrival time in ms (server clock), `count`, `per`, `burst` the limit
 *   of the latest acquisition (for snapshots). Expires when the TAT passes: an idle
 *   limiter is the same as a missing one.
 * - concurrency key (`connections:…`): a sorted set of lease ids scored by the time the
 *   lease expires. A node that dies holding leases stops renewing them and its slots come
 *   back after the lease TTL; the store renews its live leases (every TTL/3) with
 *   RENEW_SCRIPT, so the `LimiterStore` interface needs no renew of its own.
 * - the maxima hash (one key, e.g. `{petrel}:lim:max`): concurrency key → the max of its
 *   latest acquisition (for snapshots).
 *
 * Times use the Redis server's clock, so nodes whose clocks disagree still share one
 * timeline; `EPSILON` and the admission rule are those of `MemoryLimiterStore`.
 */

/**
 * Takes from every limiter or from none.
 *
 * KEYS: the rate keys (nRates of them), then the concurrency keys, then the maxima hash.
 * ARGV: nRates, lease id, lease TTL ms; then for each rate key: count, perSeconds, cost,
 * burst; then for each concurrency key: max.
 * Returns `{1}` when admitted; `{0, key, retryAfterMs}` when a rate limiter blocks;
 * `{0, key, -1}` when a concurrency limiter is full (retryAfterMs null).
 */
export const ACQUIRE_SCRIPT = `
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + tonumber(time[2]) / 1000
local EPSILON = 0.01
local nRates = tonumber(ARGV[1])
local nSlots = #KEYS - 1 - nRates
local maxima = KEYS[#KEYS]
local ttl = tonumber(ARGV[3])

local waitMs, blocker = 0, nil
local tats, intervals = {}, {}
for i = 1, nRates do
  local a = 3 + (i - 1) * 4
  local count, per, cost, burst = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
  local interval = per * 1000 / count
  local tat = tonumber(redis.call('HGET', KEYS[i], 'tat')) or now
  if tat < now then tat = now end
  local wait = tat - math.max(0, burst - cost) * interval - now
  if wait > EPSILON and wait > waitMs then waitMs, blocker = wait, i end
  tats[i], intervals[i] = tat, interval
end
if blocker then return {0, KEYS[blocker], math.ceil(waitMs - EPSILON)} end

local s = 3 + nRates * 4
for j = 1, nSlots do
  local key = KEYS[nRates + j]
  redis.call('ZREMRANGEBYSCORE', key, '-inf', string.format('%.3f', now))
  if redis.call('ZCARD', key) >= tonumber(ARGV[s + j]) then return {0, key, -1} end
end

for i = 1, nRates do
  local a = 3 + (i - 1) * 4
  local tat = tats[i] + tonumber(ARGV[a + 3]) * intervals[i]
  redis.call('HSET', KEYS[i], 'tat', string.format('%.3f', tat), 'count', ARGV[a + 1], 'per', ARGV[a + 2], 'burst', ARGV[a + 4])
  redis.call('PEXPIRE', KEYS[i], math.ceil(tat - now) + 1)
end
local expires = string.format('%.3f', now + ttl)
for j = 1, nSlots do
  local key = KEYS[nRates + j]
  redis.call('ZADD', key, expires, ARGV[2])
  redis.call('PEXPIRE', key, ttl)
  redis.call('HSET', maxima, key, ARGV[s + j])
end
return {1}
`;

/**
 * Gives a lease's slots back; releasing twice frees nothing the second time.
 *
 * KEYS: the lease's concurrency keys, then the maxima hash. ARGV: lease id.
 * Returns how many slots were freed (0 when already released or expired).
 */
export const RELEASE_SCRIPT = `
local maxima = KEYS[#KEYS]
local freed = 0
for j = 1, #KEYS - 1 do
  freed = freed + redis.call('ZREM', KEYS[j], ARGV[1])
  if redis.call('ZCARD', KEYS[j]) == 0 then redis.call('HDEL', maxima, KEYS[j]) end
end
return freed
`;

/**
 * Keeps a live lease from expiring. A slot whose lease already expired is not taken back
 * (someone else may hold it now).
 *
 * KEYS: the lease's concurrency keys. ARGV: lease id, lease TTL ms.
 * Returns how many of the keys the lease still holds; fewer than `#KEYS` means the lease
 * was lost and the store should say so.
 */
export const RENEW_SCRIPT = `
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + tonumber(time[2]) / 1000
local ttl = tonumber(ARGV[2])
local expires = string.format('%.3f', now + ttl)
local held = 0
for j = 1, #KEYS do
  local score = tonumber(redis.call('ZSCORE', KEYS[j], ARGV[1]))
  if score and score > now then
    redis.call('ZADD', KEYS[j], expires, ARGV[1])
    redis.call('PEXPIRE', KEYS[j], ttl)
    held = held + 1
  end
end
return held
`;

/**
 * Puts slots a node took on its own while Redis was away into Redis when it returns, so
 * the connections it still holds count against the shared maximum again. Never refuses:
 * the connections are open already (the shared count may exceed its maximum until they
 * close, which holds back new ones meanwhile).
 *
 * KEYS: the lease's concurrency keys, then the maxima hash. ARGV: lease id, lease TTL ms,
 * then the max of each key. Returns the number of keys.
 */
export const ADOPT_SCRIPT = `
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + tonumber(time[2]) / 1000
local ttl = tonumber(ARGV[2])
local expires = string.format('%.3f', now + ttl)
local maxima = KEYS[#KEYS]
for j = 1, #KEYS - 1 do
  redis.call('ZADD', KEYS[j], expires, ARGV[1])
  redis.call('PEXPIRE', KEYS[j], ttl)
  redis.call('HSET', maxima, KEYS[j], ARGV[2 + j])
end
return #KEYS - 1
`;
