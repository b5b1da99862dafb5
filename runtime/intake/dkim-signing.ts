/**
 * The runtime's DKIM signer: the live keyring, swapped atomically on reload, signing each
 * accepted message once — in a small pool of worker threads (piscina, dkim-worker.ts), so
 * the RSA and Ed25519 operations and mailauth's parsing and body hash (a third of the
 * main thread's time at 4 KB and at 100 KB, docs/performance.md) run off the main thread
 * that holds SMTP intake, the spool and the scheduler.
 *
 * One pool per keyring: its threads get the keys once, as KeyObjects, when they start
 * (piscina's `workerData`), and never change them. A message is signed whole by the
 * keyring current when its `sign` began (its task goes to that keyring's pool), so no
 * message is ever signed with a mix of two sets; `replace` starts the new keyring's pool
 * at once and stops the old one when its last message is signed.
 *
 * Bounded: at most `maxQueue` messages wait for a signing thread; beyond that `sign`
 * rejects at once with {@link DkimBusy}, which intake answers with `451 4.3.0` (SMTP) or
 * 503 (HTTP): the client retries, nothing is dropped. Signing in a thread changes nothing
 * in the order of acceptance: the caller (runtime.ts `acceptMessage`) spools the message
 * with its signature and only then is it acknowledged.
 */
import { Piscina } from 'piscina';
// The file helper alone: deliver/index.ts would import observe/, which imports intake/ (a cycle at load).
import { workerEntry } from '../deliver/worker-file.ts';
import { signMessage, type DkimAlgorithm, type DkimKeyring } from './dkim.ts';
import type { SignAnswer, SignTask, SigningThreadReady } from './dkim-worker.ts';
import { SlabPool } from './shared-slabs.ts';

/** What status shows of a key: never the key. */
export interface DkimKeyStatus {
  domain: string;
  selector: string;
  tenant: string | null;
  algorithm: DkimAlgorithm;
  bits: number | null;
  fingerprint: string;
}

export interface DkimStatus {
  keys: DkimKeyStatus[];
  fallbackDomain: string | null;
  /** When the keys in use were loaded (ISO 8601). */
  loadedAt: string;
  /** Messages signed with their From domain's (or a parent's) keys, with the fallback's, and not at all. */
  signed: number;
  signedFallback: number;
  unsigned: number;
  /** Messages refused (4xx) because the signing queue was full. */
  busy: number;
  /** Threads that sign (0: the main thread signs) and messages waiting for one now. */
  threads: number;
  queued: number;
}

/** Signs accepted messages with the live keys; `replace` swaps them atomically. */
export interface DkimSigning {
  /**
   * The fields to prepend to `message`, or undefined when no key signs it. Rejects with
   * {@link DkimBusy} when the signing queue is full.
   */
  sign(message: readonly Buffer[], tenant: string | undefined, at: number): Promise<Buffer | undefined>;
  /** Makes `ring` the keys in use: a message being signed finishes with the keys it started with. */
  replace(ring: DkimKeyring, at: number): void;
  status(): DkimStatus;
  /** Resolves once the signing threads have loaded; rejects when they cannot start. */
  ready(): Promise<void>;
  /** Stops the threads once every message being signed is signed; `sign` throws afterwards. */
  close(): Promise<void>;
}

export interface DkimSigningOptions {
  /** Threads that sign (default 2); 0 signs on the calling thread. */
  threads?: number;
  /** Messages that may wait for a signing thread (default 256); more are refused with {@link DkimBusy}. */
  maxQueue?: number;
  /** The worker entry (default: dkim-worker.ts beside this file, or dist/dkim-worker.mjs bundled). */
  workerFile?: string;
}

/** The signing queue is full: answer the client with a temporary failure. */
export class DkimBusy extends Error {}

/** A keyring and the pool that signs with it. */
interface KeyGeneration {
  ring: DkimKeyring;
  loadedAt: number;
  pool: SigningPool | undefined;
  /** Messages being signed with this keyring now. */
  signing: number;
  /** No longer current: its pool stops once `signing` is 0. */
  retired: boolean;
}

export function createDkimSigning(initial: DkimKeyring, at: number, options: DkimSigningOptions = {}): DkimSigning {
  const threads = options.threads ?? 2;
  const maxQueue = options.maxQueue ?? 256;
  if (!Number.isInteger(threads) || threads < 0) throw new TypeError(`dkim signing threads must be a non-negative integer, not ${threads}`);
  if (!Number.isInteger(maxQueue) || maxQueue < 1) throw new TypeError(`dkim maxQueue must be a positive integer, not ${maxQueue}`);
  const pools = new Set<SigningPool>();
  const generation = (ring: DkimKeyring, loadedAt: number): KeyGeneration => {
    // Without keys nothing is parsed and no thread runs: signing off costs nothing.
    const pool = threads > 0 && ring.keys.length > 0 ? startPool(ring, threads, maxQueue, options.workerFile) : undefined;
    if (pool) pools.add(pool);
    return { ring, loadedAt, pool, signing: 0, retired: false };
  };
  const retire = (gen: KeyGeneration) => {
    gen.retired = true;
    if (gen.signing > 0 || !gen.pool) return;
    const pool = gen.pool;
    void pool.close().finally(() => pools.delete(pool));
  };
  let current = generation(initial, at);
  let closed = false;
  const counts = { signed: 0, signedFallback: 0, unsigned: 0, busy: 0 };

  async function signWith(gen: KeyGeneration, message: readonly Buffer[], tenant: string | undefined, signAt: number): Promise<SignAnswer> {
    if (gen.pool) return gen.pool.sign(message, tenant, signAt);
    const signature = await signMessage(gen.ring, message, tenant, new Date(signAt));
    return signature ? { fields: signature.fields.toString('latin1'), domain: signature.choice.domain, fallback: signature.choice.fallback } : null;
  }

  return {
    async sign(message, tenant, signAt) {
      if (closed) throw new Error('dkim: signing is closed');
      // INVARIANT: one generation signs the whole message, whatever `replace` does meanwhile.
      const gen = current;
      if (gen.ring.keys.length === 0) {
        counts.unsigned++;
        return undefined;
      }
      gen.signing++;
      try {
        const answer = await signWith(gen, message, tenant, signAt);
        if (!answer) counts.unsigned++;
        else if (answer.fallback) counts.signedFallback++;
        else counts.signed++;
        return answer ? Buffer.from(answer.fields, 'latin1') : undefined;
      } catch (e) {
        if (e instanceof DkimBusy) counts.busy++;
        throw e;
      } finally {
        gen.signing--;
        if (gen.retired) retire(gen);
      }
    },
    replace(ring, nextAt) {
      if (closed) return;
      const old = current;
      current = generation(ring, nextAt);
      retire(old);
    },
    status: () => ({
      keys: current.ring.keys.map((k) => ({ domain: k.domain, selector: k.selector, tenant: k.tenant ?? null, algorithm: k.algorithm, bits: k.bits ?? null, fingerprint: k.fingerprint })),
      fallbackDomain: current.ring.fallbackDomain ?? null,
      loadedAt: new Date(current.loadedAt).toISOString(),
      ...counts,
      threads: current.pool ? threads : 0,
      queued: [...pools].reduce((n, p) => n + p.queued(), 0),
    }),
    ready: () => current.pool?.ready() ?? Promise.resolve(),
    async close() {
      if (closed) return;
      closed = true;
      retire(current);
      // Each pool stops once its messages are signed (no pool starts after this): wait for all.
      await Promise.allSettled([...pools].map((p) => p.closed));
    },
  };
}

/** A keyring's signing threads. */
interface SigningPool {
  sign(message: readonly Buffer[], tenant: string | undefined, signAt: number): Promise<SignAnswer>;
  queued(): number;
  ready(): Promise<void>;
  /** Stops the threads (every message given to it is signed first: the caller waits for that). */
  close(): Promise<void>;
  /** Settles once `close` has stopped the threads. */
  readonly closed: Promise<void>;
}

/** At most this many bytes of idle slabs are kept per pool for the copies to the threads. */
const SLAB_BYTES = 64 * 1024 * 1024;

/** A thread has this long to load its code (it loads mailauth) before `ready` rejects. */
const READY_TIMEOUT_MS = 30_000;

function startPool(ring: DkimKeyring, threads: number, maxQueue: number, workerFile: string | undefined): SigningPool {
  const entry = workerFile ? { url: workerFile, execArgv: workerFile.endsWith('.ts') ? ['--import', 'tsx'] : [] } : workerEntry(new URL('./dkim-worker.ts', import.meta.url));
  const piscina = new Piscina<SignTask, SignAnswer>({
    filename: String(entry.url),
    execArgv: entry.execArgv,
    workerData: { ring },
    minThreads: threads,
    maxThreads: threads,
    idleTimeout: Infinity,
    maxQueue,
    // A signing task awaits mailauth's stream: the thread's event loop must run while idle too.
    atomics: 'disabled',
  });
  const loaded = new Set<number>();
  let failed: Error | undefined;
  const waiters = new Set<() => void>();
  piscina.on('message', (m: SigningThreadReady) => {
    if (m?.op !== 'dkim-thread-ready') return;
    loaded.add(m.threadId);
    waiters.forEach((w) => w());
  });
  // A thread that fails to load reports here (with a listener, it does not end the process).
  piscina.on('error', (e: Error) => {
    failed ??= e;
    waiters.forEach((w) => w());
  });
  const slabs = new SlabPool(SLAB_BYTES);
  let stop: Promise<void> | undefined;
  let stopped!: () => void;
  const closed = new Promise<void>((r) => (stopped = r));
  return {
    async sign(message, tenant, signAt) {
      if (piscina.queueSize >= maxQueue) throw new DkimBusy(`dkim: ${piscina.queueSize} messages are waiting to be signed; try again later`);
      // One copy, into a slab shared with the thread (slabs are reused: shared-slabs.ts);
      // the caller keeps its chunks for the spool.
      const length = message.reduce((n, c) => n + c.length, 0);
      const slab = slabs.take(length);
      const bytes = Buffer.from(slab, 0, length);
      let offset = 0;
      for (const chunk of message) offset += chunk.copy(bytes, offset);
      let answer: SignAnswer;
      try {
        answer = await piscina.run({ message: slab, length, tenant, signAt });
      } catch (e) {
        if ((e as Error).message === 'Task queue is at limit') throw new DkimBusy(`dkim: ${maxQueue} messages are waiting to be signed; try again later`);
        throw new Error(`dkim: a signing thread failed: ${(e as Error).message}`);
      }
      slabs.give(slab);
      return answer;
    },
    queued: () => piscina.queueSize,
    ready: () =>
      new Promise<void>((resolve, reject) => {
        const check = () => {
          if (failed) reject(new Error(`dkim signing threads failed to start: ${failed.message}`));
          else if (loaded.size >= threads) resolve();
          else return;
          clearTimeout(timer);
          waiters.delete(check);
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`dkim signing threads did not start within ${READY_TIMEOUT_MS / 1000} s (${String(entry.url)})`));
        }, READY_TIMEOUT_MS);
        waiters.add(check);
        check();
      }),
    close() {
      stop ??= piscina.destroy().finally(stopped);
      return stop;
    },
    closed,
  };
}
