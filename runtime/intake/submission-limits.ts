/**
 * The bounds SMTP submission holds any client to: connections in total and per client,
 * message size while it streams, DATA bytes held in memory over all sessions, recipients
 * per transaction, idle time, session time and the data rate during DATA. Each piece is
 * plain state with no sockets in it; submission-smtp.ts wires them to smtp-server.
 */
import type { Readable } from 'node:stream';
import { clientKey, type AuthThrottleOptions } from './auth-throttle.ts';

/** Operator-settable limits; docs/runtime.md has the table of what happens past each. */
export interface SubmissionLimits {
  /** Largest message (SIZE); bytes past it are read and dropped, the answer is `552 5.3.4`. */
  maxMessageBytes: number;
  /** DATA bytes held in memory over all sessions; a message that would go past it is dropped, `452 4.3.1`. */
  maxBufferedBytes: number;
  /** Recipients per transaction; past it `452 4.5.3`. */
  maxRecipients: number;
  /** Open connections in total; past it `421 4.7.0` and close. */
  maxConnections: number;
  /** Open connections from one client (an IPv4 address or an IPv6 /64); past it `421 4.7.0` and close. */
  maxConnectionsPerIp: number;
  /** A client that owes a command (or DATA bytes) this long is closed with `421` (smtp-server's socketTimeout). */
  idleTimeoutMs: number;
  /** A session is closed with `421 4.4.2` this long after it connected (after the message in hand, if any). */
  maxSessionMs: number;
  /** During DATA, fewer bytes than this per second over a `dataRateWindowMs` window close the session with `421 4.4.2`. */
  minDataBytesPerSecond: number;
  dataRateWindowMs: number;
}

/**
 * Defaults. 1000 recipients: RFC 5321 §4.5.3.1.8 requires at least 100 and has clients
 * retry the rest after a `452`; 1000 is Postfix's `smtpd_recipient_limit`, so a client
 * tuned for Postfix is not cut short, and it bounds one RCPT list to a few hundred KB.
 */
export const SUBMISSION_LIMIT_DEFAULTS: SubmissionLimits = {
  maxMessageBytes: 50 * 1024 * 1024,
  maxBufferedBytes: 256 * 1024 * 1024,
  maxRecipients: 1000,
  maxConnections: 500,
  maxConnectionsPerIp: 50,
  idleTimeoutMs: 60_000,
  maxSessionMs: 600_000,
  minDataBytesPerSecond: 1024,
  dataRateWindowMs: 30_000,
};

/** Counts open connections per session id, in total and per client; says which bound a new one would pass. */
export function connectionGate(limits: Pick<SubmissionLimits, 'maxConnections' | 'maxConnectionsPerIp'>) {
  const clientOf = new Map<string, string>();
  const perClient = new Map<string, number>();
  return {
    /** Counts session `id` from `address` in, unless a bound is reached: then says which and counts nothing. */
    admit(id: string, address: string): 'connections' | 'connections-per-ip' | undefined {
      const key = clientKey(address);
      if (clientOf.size >= limits.maxConnections) return 'connections';
      if ((perClient.get(key) ?? 0) >= limits.maxConnectionsPerIp) return 'connections-per-ip';
      clientOf.set(id, key);
      perClient.set(key, (perClient.get(key) ?? 0) + 1);
      return undefined;
    },
    /** Counts session `id` out (nothing if it was never admitted). */
    leave(id: string): void {
      const key = clientOf.get(id);
      if (key === undefined) return;
      clientOf.delete(id);
      const n = perClient.get(key)! - 1;
      if (n === 0) perClient.delete(key);
      else perClient.set(key, n);
    },
    open: () => clientOf.size,
  };
}
export type ConnectionGate = ReturnType<typeof connectionGate>;

/** DATA bytes held in memory over all sessions, at most `max`. */
export function byteBudget(max: number) {
  let held = 0;
  return {
    /** Takes `n` bytes if they fit; false (and nothing taken) if not. */
    take(n: number): boolean {
      if (held + n > max) return false;
      held += n;
      return true;
    },
    give(n: number): void {
      held -= n;
    },
    held: () => held,
  };
}
export type ByteBudget = ReturnType<typeof byteBudget>;

/** How a DATA stream ended: complete, or why its bytes were not kept. */
export type Collected =
  | { outcome: 'complete'; chunks: Buffer[]; bytes: number }
  | { outcome: 'too-big' | 'no-memory'; bytes: number }
  | { outcome: 'too-slow' | 'aborted'; bytes: number };

/**
 * Reads one message's DATA stream to its end, keeping its chunks while it stays within
 * `maxMessageBytes` and `budget`; past either, it drops what it kept, gives the bytes back
 * and reads on to the end without keeping anything, so a session never holds more than
 * the limit. Reports `too-slow` (and calls `onSlow`, which should close the session) when
 * a window of `dataRateWindowMs` brought fewer than `minDataBytesPerSecond` per second.
 * The bytes it resolves with are held in `budget` until the caller gives them back.
 */
export function collectData(stream: Readable, limits: SubmissionLimits, budget: ByteBudget, onSlow: () => void): Promise<Collected> {
  return new Promise((resolve) => {
    let chunks: Buffer[] | undefined = [];
    let held = 0;
    let bytes = 0;
    let over: 'too-big' | 'no-memory' | undefined;
    let windowStart = 0;
    const drop = (why: 'too-big' | 'no-memory') => {
      over ??= why;
      chunks = undefined;
      budget.give(held);
      held = 0;
    };
    const rate = setInterval(() => {
      if ((bytes - windowStart) * 1000 >= limits.minDataBytesPerSecond * limits.dataRateWindowMs) return void (windowStart = bytes);
      finish({ outcome: 'too-slow', bytes });
      onSlow();
    }, limits.dataRateWindowMs);
    let done = false;
    const finish = (result: Collected) => {
      if (done) return;
      done = true;
      clearInterval(rate);
      if (result.outcome !== 'complete') drop(over ?? 'too-big');
      resolve(result);
    };
    stream.on('data', (c: Buffer) => {
      bytes += c.length;
      if (!chunks) return;
      if (bytes > limits.maxMessageBytes) return drop('too-big');
      if (!budget.take(c.length)) return drop('no-memory');
      held += c.length;
      chunks.push(c);
    });
    stream.on('end', () => finish(over ? { outcome: over, bytes } : { outcome: 'complete', chunks: chunks!, bytes }));
    // The client went away mid-message: smtp-server destroys the stream with an error.
    stream.on('error', () => finish({ outcome: 'aborted', bytes }));
    stream.on('close', () => finish({ outcome: 'aborted', bytes }));
  });
}

/** The limit keys of the `smtp` section of runtime/config.schema.json (times in seconds). */
export interface SmtpLimitsConfig {
  maxMessageBytes?: number;
  maxBufferedBytes?: number;
  maxRecipients?: number;
  maxConnections?: number;
  maxConnectionsPerIp?: number;
  idleTimeoutSeconds?: number;
  maxSessionSeconds?: number;
  minDataRateBytesPerSecond?: number;
  dataRateWindowSeconds?: number;
  auth?: {
    failureDelaySeconds?: number;
    maxFailuresPerConnection?: number;
    maxFailuresPerIp?: number;
    failureWindowSeconds?: number;
    lockoutSeconds?: number;
    maxConcurrentChecks?: number;
    maxQueuedChecks?: number;
  };
}

/**
 * The submission limits a config's `smtp` section sets (only those it sets). Throws,
 * naming the keys, when they contradict each other.
 */
export function smtpLimitsFromConfig(c: SmtpLimitsConfig): Partial<SubmissionLimits> & { auth?: AuthThrottleOptions } {
  const ms = (s: number | undefined) => (s === undefined ? undefined : Math.round(s * 1000));
  const a = c.auth ?? {};
  const picked = {
    maxMessageBytes: c.maxMessageBytes,
    maxBufferedBytes: c.maxBufferedBytes,
    maxRecipients: c.maxRecipients,
    maxConnections: c.maxConnections,
    maxConnectionsPerIp: c.maxConnectionsPerIp,
    idleTimeoutMs: ms(c.idleTimeoutSeconds),
    maxSessionMs: ms(c.maxSessionSeconds),
    minDataBytesPerSecond: c.minDataRateBytesPerSecond,
    dataRateWindowMs: ms(c.dataRateWindowSeconds),
  };
  const auth = { failureDelayMs: ms(a.failureDelaySeconds), maxFailuresPerConnection: a.maxFailuresPerConnection, maxFailuresPerIp: a.maxFailuresPerIp, failureWindowMs: ms(a.failureWindowSeconds), lockoutMs: ms(a.lockoutSeconds), maxConcurrentChecks: a.maxConcurrentChecks, maxQueuedChecks: a.maxQueuedChecks };
  const limits: Partial<SubmissionLimits> = Object.fromEntries(Object.entries(picked).filter(([, v]) => v !== undefined));
  const authSet: AuthThrottleOptions = Object.fromEntries(Object.entries(auth).filter(([, v]) => v !== undefined));
  const message = limits.maxMessageBytes ?? SUBMISSION_LIMIT_DEFAULTS.maxMessageBytes;
  const buffered = limits.maxBufferedBytes ?? SUBMISSION_LIMIT_DEFAULTS.maxBufferedBytes;
  if (buffered < message) throw new Error(`\`smtp.maxBufferedBytes\` (${buffered}) must be at least \`smtp.maxMessageBytes\` (${message})`);
  const total = limits.maxConnections ?? SUBMISSION_LIMIT_DEFAULTS.maxConnections;
  if ((limits.maxConnectionsPerIp ?? SUBMISSION_LIMIT_DEFAULTS.maxConnectionsPerIp) > total) throw new Error(`\`smtp.maxConnectionsPerIp\` must be at most \`smtp.maxConnections\` (${total})`);
  return { ...limits, ...(Object.keys(authSet).length > 0 ? { auth: authSet } : {}) };
}
