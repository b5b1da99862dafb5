/**
 * Delivery worker threads: a piscina pool whose threads hold the SMTP client sessions, so
 * the TCP, TLS and SMTP work of delivery runs off the main event loop. The interface is
 * smtp-client.ts's: `pool.openSession(options)` gives the same `SessionResult`, and the
 * session it holds behaves as an `SmtpSession` (same results, same replies, same throws).
 *
 * One piscina task is one SMTP session, from connect to the end of the connection. The
 * task carries one end of a `MessageChannel`; over it the worker says whether the session
 * opened, then answers `send` requests (the message bytes move as a transferred
 * `ArrayBuffer`) until `close`. So a session lives in one thread for its whole life and can
 * be reused message after message, and a thread serves many sessions at once
 * (`sessionsPerThread`): everything it does is asynchronous I/O, so one slow MX holds only
 * its own sessions. Because the task lasts as long as the connection, piscina's own count
 * of a thread's tasks is its count of connections, and new sessions go to the least busy
 * thread.
 *
 * When a worker thread dies, every session it held ends as a lost connection: an open in
 * progress gives `421 4.4.2 connection lost` (phase `connect`), a send in progress or any
 * later send gives that reply for each recipient (phase `mail`), and `closed` turns true.
 * Nothing throws and nothing is left pending. piscina starts a replacement thread.
 *
 * Sessions must be closed (`close()`), as with smtp-client.ts: a session the server
 * dropped still holds a small object and a port in its worker until then.
 */
import type { Readable } from 'node:stream';
import { MessageChannel, type MessagePort, type Worker } from 'node:worker_threads';
import { Piscina } from 'piscina';
import type { SessionTask } from './delivery-worker.ts';
import { workerEntry } from './worker-file.ts';
import { LOCAL_REPLIES, SerialSession, type OutboundMessage, type SendResult, type SessionOptions, type SessionResult, type SmtpSession, type TlsInfo } from './smtp-client.ts';

export interface DeliveryPoolOptions {
  /** Worker threads, at least 1. Default 1. */
  threads?: number;
  /** Sessions one thread holds at once; `openSession` waits for a free one beyond that. Default 256. */
  sessionsPerThread?: number;
  /**
   * The worker entry. Default: `delivery-worker.ts` beside this file when running from
   * source (loaded with tsx), else `dist/delivery-worker.mjs` (worker-file.ts).
   */
  workerFile?: string;
}

export interface DeliveryPoolStats {
  threads: number;
  /** Sessions in the workers: being opened, or open and not yet closed. */
  sessions: number;
  /** `openSession` calls waiting for a thread with a free session slot. */
  queued: number;
  /** Sessions (being opened, or open and connected) that ended because their worker thread died. */
  lostToCrashes: number;
}

export interface DeliveryPool {
  /** As smtp-client.ts's `openSession`, in a worker thread. Throws a TypeError for invalid options. */
  openSession(options: SessionOptions): Promise<SessionResult>;
  /**
   * Resolves once every thread has loaded the worker code (tens to hundreds of ms), so
   * that the first deliveries do not wait for it; rejects if the threads cannot start.
   */
  ready(): Promise<void>;
  /**
   * Closes every open session (QUIT, after a send in progress), waiting at most
   * `graceMs` (default 5 s); then stops the threads, which ends whatever is left as a lost
   * connection. `openSession` throws afterwards.
   */
  close(graceMs?: number): Promise<void>;
  stats(): DeliveryPoolStats;
  /** The worker threads now running; for diagnostics and tests. */
  readonly threads: readonly Worker[];
}

/** What a worker says on a session's port. */
export type ToMain =
  | { op: 'opened'; info: SessionInfo }
  | { op: 'failed'; phase: 'connect' | 'ehlo'; reply: string; synthesized: boolean }
  | { op: 'invalid'; message: string }
  | { op: 'sent'; result: SendResult; messagesSent: number; transactions: number }
  | { op: 'send-failed'; name: string; message: string; code?: string }
  | { op: 'ended' }
  | { op: 'closed' };

/** What a worker thread says once, on piscina's channel, when it has loaded. */
export interface ThreadReady {
  op: 'delivery-thread-ready';
  threadId: number;
}

/** What the main thread says on a session's port. */
export type ToWorker = { op: 'send'; from: string; to: string[]; raw: ArrayBuffer; size?: number } | { op: 'close' };

/** The fixed facts of an open session. */
export interface SessionInfo {
  tls: TlsInfo | null;
  tlsFailure: string | null;
  localAddress: string;
  remoteAddress: string;
}

export function createDeliveryPool(options: DeliveryPoolOptions = {}): DeliveryPool {
  const threads = options.threads ?? 1;
  const perThread = options.sessionsPerThread ?? 256;
  if (!Number.isInteger(threads) || threads < 1) throw new TypeError(`threads must be a positive integer, not ${threads}`);
  if (!Number.isInteger(perThread) || perThread < 1) throw new TypeError(`sessionsPerThread must be a positive integer, not ${perThread}`);
  const entry = options.workerFile ? { url: options.workerFile, execArgv: options.workerFile.endsWith('.ts') ? ['--import', 'tsx'] : [] } : workerEntry(new URL('./delivery-worker.ts', import.meta.url));
  const workerFile = String(entry.url);
  const piscina = new Piscina<SessionTask, void>({
    filename: workerFile,
    minThreads: threads,
    maxThreads: threads,
    idleTimeout: Infinity,
    concurrentTasksPerWorker: perThread,
    // piscina's default ('sync') parks an idle thread in Atomics.wait, which would stop
    // the event loop of a thread whose sessions are waiting for the network.
    atomics: 'disabled',
    execArgv: entry.execArgv,
  });
  const loaded = new Set<number>();
  let threadError: Error | undefined;
  /** Callers of `ready()`, told about every thread that loads or fails. */
  const readyWaiters = new Set<() => void>();
  const onLoaded = () => readyWaiters.forEach((check) => check());
  piscina.on('message', (m: ThreadReady) => {
    if (m?.op !== 'delivery-thread-ready') return;
    loaded.add(m.threadId);
    onLoaded();
  });
  // piscina reports a thread's uncaught error here when no task was running on it (a
  // worker file that does not load, at start); with a listener it does not crash the process.
  piscina.on('error', (e: Error) => {
    threadError ??= e;
    onLoaded();
  });
  const open = new Set<PooledSession>();
  let opening = 0;
  let lostToCrashes = 0;
  let closed = false;

  async function openSession(sessionOptions: SessionOptions): Promise<SessionResult> {
    if (closed) throw new Error('openSession: the delivery pool is closed');
    try {
      structuredClone(sessionOptions);
    } catch (e) {
      throw new TypeError(`session options cannot be passed to a worker thread: ${(e as Error).message}`);
    }
    const { port1, port2 } = new MessageChannel();
    opening++;
    let session: PooledSession | undefined;
    let answered = false;
    const countLost = () => {
      if (!closed) lostToCrashes++;
    };
    try {
      return await new Promise<SessionResult>((resolve, reject) => {
        const lost = () => {
          if (session) return session.workerGone();
          if (answered) return;
          answered = true;
          countLost();
          port1.close();
          resolve({ ok: false, phase: 'connect', reply: LOCAL_REPLIES.connectionLost(), synthesized: true });
        };
        port1.on('message', (m: ToMain) => {
          if (session) return session.receive(m);
          answered = true;
          if (m.op === 'opened') {
            session = new PooledSession(port1, m.info, () => open.delete(session!), countLost);
            open.add(session);
            resolve({ ok: true, session });
          } else if (m.op === 'failed') resolve({ ok: false, phase: m.phase, reply: m.reply, synthesized: m.synthesized });
          else if (m.op === 'invalid') reject(new TypeError(m.message));
        });
        // The worker's end closes when the session is over; before an answer, only if the thread died.
        port1.on('close', lost);
        piscina.run({ options: sessionOptions, port: port2 }, { transferList: [port2] }).catch(lost);
      });
    } finally {
      opening--;
    }
  }

  return {
    openSession,
    ready() {
      return new Promise<void>((resolve, reject) => {
        const check = () => {
          if (threadError) reject(new Error(`delivery worker thread failed: ${threadError.message}`));
          else if (piscina.threads.every((t) => loaded.has(t.threadId))) resolve();
          else return;
          clearTimeout(timer);
          readyWaiters.delete(check);
        };
        const timer = setTimeout(() => {
          readyWaiters.delete(check);
          reject(new Error(`delivery worker threads did not start within 30 s (${workerFile})`));
        }, 30_000);
        readyWaiters.add(check);
        check();
      });
    },
    async close(graceMs = 5_000) {
      if (closed) return;
      closed = true;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([Promise.all([...open].map((s) => s.close())), new Promise((resolve) => (timer = setTimeout(resolve, graceMs)))]);
      clearTimeout(timer);
      await piscina.destroy();
    },
    stats: () => ({ threads: piscina.threads.length, sessions: opening + open.size, queued: piscina.queueSize, lostToCrashes }),
    get threads() {
      return piscina.threads;
    },
  };
}

/** The main thread's stand-in for a session held by a worker. */
class PooledSession extends SerialSession implements SmtpSession {
  readonly tls: TlsInfo | null;
  readonly tlsFailure: string | null;
  readonly localAddress: string;
  readonly remoteAddress: string;
  readonly #port: MessagePort;
  readonly #onClosed: () => void;
  readonly #onLost: () => void;
  /** The worker's end of the port is gone: nothing more will be answered. */
  #gone = false;
  #awaiting: { resolve: (r: SendResult) => void; reject: (e: Error) => void; to: readonly string[] } | null = null;
  #goneWaiters: (() => void)[] = [];

  constructor(port: MessagePort, info: SessionInfo, onClosed: () => void, onLost: () => void) {
    super();
    this.#port = port;
    this.#onClosed = onClosed;
    this.#onLost = onLost;
    this.tls = info.tls;
    this.tlsFailure = info.tlsFailure;
    this.localAddress = info.localAddress;
    this.remoteAddress = info.remoteAddress;
  }

  /** A message from the worker about this session. */
  receive(m: ToMain): void {
    if (m.op === 'ended') this.connectionEnded();
    else if (m.op === 'sent') {
      this.sentCount = m.messagesSent;
      this.transactionCount = m.transactions;
      this.#settle()?.resolve(m.result);
    } else if (m.op === 'send-failed') this.#settle()?.reject(Object.assign(new Error(m.message), { name: m.name }, m.code !== undefined ? { code: m.code } : {}));
    else if (m.op === 'closed') this.workerGone();
  }

  /** The worker's side is gone, after `closed` or because its thread died. */
  workerGone(): void {
    if (this.#gone) return;
    this.#gone = true;
    if (!this.closeRequested && !this.connectionGone) this.#onLost();
    this.connectionEnded();
    this.#port.close();
    this.#onClosed();
    const pending = this.#settle();
    pending?.resolve(connectionLost(pending.to));
    for (const w of this.#goneWaiters.splice(0)) w();
  }

  #settle() {
    const a = this.#awaiting;
    this.#awaiting = null;
    return a;
  }

  protected async transaction(message: OutboundMessage): Promise<SendResult> {
    let raw: Buffer;
    try {
      raw = Buffer.isBuffer(message.raw) ? message.raw : await readAll(message.raw);
    } catch (e) {
      // As in-process: a failing message stream rejects with its error and ends the session.
      void this.close();
      throw e;
    }
    if (this.#gone) return connectionLost(message.to);
    // A copy of exactly the message: the caller's buffer stays usable (it is sent again to
    // the next MX or in the next batch), and may be a slice of a larger, shared one.
    const bytes = new Uint8Array(raw.length);
    bytes.set(raw);
    return new Promise<SendResult>((resolve, reject) => {
      this.#awaiting = { resolve, reject, to: message.to };
      const request: ToWorker = { op: 'send', from: message.from, to: [...message.to], raw: bytes.buffer, ...(message.size !== undefined ? { size: message.size } : {}) };
      this.#port.postMessage(request, [bytes.buffer]);
    });
  }

  protected async shutdown(): Promise<void> {
    if (this.#gone) return;
    await new Promise<void>((resolve) => {
      this.#goneWaiters.push(resolve);
      this.#port.postMessage({ op: 'close' } satisfies ToWorker);
    });
  }
}

/** What a send gets when the worker holding its session is gone. */
function connectionLost(to: readonly string[]): SendResult {
  return { perRecipient: to.map((rcpt) => ({ rcpt, accepted: false, reply: LOCAL_REPLIES.connectionLost(), phase: 'mail', synthesized: true })) };
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer));
  return Buffer.concat(chunks);
}
