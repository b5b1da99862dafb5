/**
 * Message ids: 22 characters of Crockford base32 — 10 of milliseconds since the epoch, 4 of
 * a per-millisecond counter, 8 random — so ids sort by the time they were made (in one
 * process, strictly in order) and two nodes practically never collide (40 random bits per
 * millisecond and counter value).
 */
import { randomBytes } from 'node:crypto';

const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
const COUNTER_LIMIT = 32 ** 4;

function base32(value: number, width: number): string {
  let out = '';
  for (let i = 0; i < width; i++) {
    out = ALPHABET[value % 32]! + out;
    value = Math.floor(value / 32);
  }
  return out;
}

function randomChars(bytes: Buffer): string {
  // 5 bytes = 40 bits = 8 characters.
  let out = '';
  let bits = 0;
  let acc = 0;
  for (const byte of bytes) {
    acc = (acc << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      out += ALPHABET[(acc >> bits) & 31];
    }
    acc &= (1 << bits) - 1;
  }
  return out;
}

/** Random bytes drawn 4 KB at a time and handed out in slices: one call into OpenSSL for 819 ids, not one each. */
function pooledRandomBytes(): (size: number) => Buffer {
  let pool = Buffer.alloc(0);
  let used = 0;
  return (size) => {
    if (used + size > pool.length) {
      pool = randomBytes(Math.max(4096, size));
      used = 0;
    }
    used += size;
    return pool.subarray(used - size, used);
  };
}

/**
 * Makes an id generator. Its state (the last millisecond and the counter) lives in the
 * closure; a clock that goes backwards does not break the order, the last time is kept.
 */
export function createIdGenerator(clock: () => number = Date.now, random: (size: number) => Buffer = pooledRandomBytes()): () => string {
  let lastMs = 0;
  let counter = 0;
  return () => {
    const now = Math.floor(clock());
    if (now > lastMs) {
      lastMs = now;
      counter = 0;
    } else if (++counter >= COUNTER_LIMIT) {
      lastMs += 1;
      counter = 0;
    }
    return base32(lastMs, 10) + base32(counter, 4) + randomChars(random(5));
  };
}
