/**
 * SMTP submission: the smtp-server that takes mail into the spool. EHLO, PIPELINING,
 * SIZE, 8BITMIME, SMTPUTF8; STARTTLS when a certificate is configured; AUTH PLAIN and
 * LOGIN against configured users (scrypt password hashes), only over TLS unless
 * `allowInsecureAuth`. Relaying is for authenticated users and client networks; everyone
 * else gets `550 5.7.1` at RCPT. A message is answered 250 only once `acceptMessage`
 * resolved (the spool made it durable).
 *
 * No client can crash it, stall it or make it hold unbounded memory: every socket error
 * ends one session; connections, recipients, message bytes (per session and in total),
 * idle time, session time and the DATA rate are bounded (submission-limits.ts); failed
 * AUTH is throttled and password checks are bounded (auth-throttle.ts).
 */
import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import { BlockList, isIP, type AddressInfo, type Socket } from 'node:net';
import { Counter, Gauge, Registry } from 'prom-client';
import { SMTPServer, type SMTPServerAuthentication, type SMTPServerDataStream, type SMTPServerSession } from 'smtp-server';
import { createAuthThrottle, type AuthThrottle, type AuthThrottleOptions } from './auth-throttle.ts';
import { installDataParser } from './data-parser.ts';
import { DkimBusy } from './dkim-signing.ts';
import { takeControlHeadersOfChunks, type ControlValues } from './headers.ts';
import { createInboundAuth, type InboundAuthOptions } from './inbound-auth.ts';
import type { ReceivedFrom } from './received.ts';
import { SubmissionRefused } from './screen.ts';
import { SpoolError } from '../spool/index.ts';
import { byteBudget, collectData, connectionGate, SUBMISSION_LIMIT_DEFAULTS, type ByteBudget, type ConnectionGate, type SubmissionLimits } from './submission-limits.ts';

/** A submission user: a name and a password hash made by {@link hashPassword}. */
export interface SubmissionUser {
  user: string;
  /** `scrypt$ln=14,r=8,p=1$SALT$HASH` (salt and hash in unpadded base64). */
  passwordHash: string;
}

/** Where to listen, who may relay or AUTH, and the limits (submission-limits.ts; defaults there). */
export interface SubmissionOptions extends Partial<SubmissionLimits> {
  host: string;
  port: number;
  /** Address prefixes allowed to relay without AUTH (default: loopback). */
  clientNetworks?: string[];
  /** PEM key and certificate: with them, STARTTLS is offered. */
  tls?: { key: string | Buffer; cert: string | Buffer };
  /** Users who may AUTH (PLAIN, LOGIN); without any, AUTH is not offered. */
  users?: SubmissionUser[];
  /** Allow AUTH on a connection without TLS (default false; for loopback tests). */
  allowInsecureAuth?: boolean;
  /** Failed-AUTH throttling and the bound on password checks at once (auth-throttle.ts). */
  auth?: AuthThrottleOptions;
  /** SPF, DKIM, DMARC and ARC on received mail (inbound-auth.ts); without it, none. */
  inbound?: InboundAuthOptions;
}

export const DEFAULT_CLIENT_NETWORKS = ['127.0.0.0/8', '::1/128'];

/**
 * Whether an address is in one of `networks`: CIDR blocks (`10.0.0.0/8`, `2001:db8::/32`)
 * or single addresses. An IPv4-mapped IPv6 address (`::ffff:10.1.2.3`, as a dual-stack
 * listener reports IPv4 clients) matches as the IPv4 address it maps. Throws on an entry
 * that is neither an address nor a CIDR block, naming it.
 */
export function networkMatcher(networks: readonly string[]): (address: string | undefined) => boolean {
  const list = new BlockList();
  for (const n of networks) {
    const [addr = '', bits, extra] = n.split('/');
    const family = isIP(addr);
    const max = family === 4 ? 32 : 128;
    if (family === 0 || extra !== undefined || (bits !== undefined && !(/^\d{1,3}$/.test(bits) && Number(bits) <= max))) throw new Error(`client network \`${n}\` is neither an address nor a CIDR block (like 10.0.0.0/8)`);
    const type = family === 4 ? 'ipv4' : 'ipv6';
    if (bits === undefined) list.addAddress(addr, type);
    else list.addSubnet(addr, Number(bits), type);
  }
  return (address) => {
    if (!address) return false;
    const a = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)?.[1] ?? address;
    const family = isIP(a);
    return family !== 0 && list.check(a, family === 4 ? 'ipv4' : 'ipv6');
  };
}

// scrypt cost: 2^14 × 8 × 128 B = 16 MiB and some tens of milliseconds per check, OWASP's
// minimum for scrypt. The parameters are written into every hash, so they can grow later.
const SCRYPT = { ln: 14, r: 8, p: 1, keylen: 32 };
const HASH_FORM = /^scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})\$([A-Za-z0-9+/]{16,})\$([A-Za-z0-9+/]{43})$/;

function derive(password: string, salt: Buffer, p: { ln: number; r: number; p: number }): Promise<Buffer> {
  const N = 2 ** p.ln;
  return new Promise((resolve, reject) =>
    scrypt(password, salt, SCRYPT.keylen, { N, r: p.r, p: p.p, maxmem: 256 * N * p.r + 1024 * 1024 }, (e, key) => (e ? reject(e) : resolve(key))),
  );
}

/** A password hash for `smtp.users` (`petrel hash-password` prints one). */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await derive(password, salt, SCRYPT);
  const b64 = (b: Buffer) => b.toString('base64').replace(/=+$/, '');
  return `scrypt$ln=${SCRYPT.ln},r=${SCRYPT.r},p=${SCRYPT.p}$${b64(salt)}$${b64(key)}`;
}

/** Whether `hash` is in the form {@link hashPassword} makes (with parameters within sane bounds). */
export function isPasswordHash(hash: string): boolean {
  const m = HASH_FORM.exec(hash);
  return m !== null && Number(m[1]) >= 10 && Number(m[1]) <= 20 && Number(m[2]) >= 1 && Number(m[3]) >= 1;
}

/** Checks `password` against a hash from {@link hashPassword}, in constant time. */
export async function verifyPassword(password: string, hash: string): Promise<boolean> {
  const m = HASH_FORM.exec(hash);
  if (!m || !isPasswordHash(hash)) return false;
  const expected = Buffer.from(m[5]!, 'base64');
  const key = await derive(password, Buffer.from(m[4]!, 'base64'), { ln: Number(m[1]), r: Number(m[2]), p: Number(m[3]) });
  return key.length === expected.length && timingSafeEqual(key, expected);
}

const fail = (code: number, text: string) => Object.assign(new Error(text), { responseCode: code });

/** Spools a message and resolves with its id once durable; `from` is for the `Received:` header. */
export type AcceptMessage = (envelope: { from: string; to: string[] }, message: readonly Buffer[], values: ControlValues, from: ReceivedFrom) => Promise<string>;

/** What the submission server needs from the runtime. */
export interface SubmissionHooks {
  acceptMessage: AcceptMessage;
  /** Recipients taken here from any client, without AUTH or a client network (feedback report addresses). */
  isLocalRecipient?: (address: string) => boolean;
  /** The runtime is shutting down: new connections get `421`. */
  isStopping: () => boolean;
  /** Where the submission counters go (`petrel_smtp_*`); a private one without. */
  registry?: Registry;
}

/** The submission server: `listen` resolves with the port; `close` is the bounded shutdown. */
export interface SubmissionServer {
  listen(): Promise<number>;
  /**
   * Stops listening and closes every connection with `421 4.3.2`: at once those between
   * transactions, after at most `graceMs` those sending a message. Resolves once every
   * message it was handing to the spool is settled, so nothing acknowledged is lost.
   */
  close(graceMs: number): Promise<void>;
}

/** One connection's own state, by smtp-server's session id. */
interface SessionState {
  authFailures: number;
  /** Whether the client's address is in a client network (decided once: it does not change). */
  clientNetwork: boolean;
  /** Sending or spooling a message: closing now would lose the client's reply. */
  busy: boolean;
  /** Past `maxSessionMs`: closed once its message (if any) is answered. */
  expired: boolean;
  timer: NodeJS.Timeout;
}

/** `ESMTP`, `ESMTPS`, `ESMTPA`, `ESMTPSA` (RFC 3848), from the session as it is now. */
const protocolOf = (s: SMTPServerSession) => `${s.openingCommand === 'HELO' ? '' : 'E'}SMTP${s.secure ? 'S' : ''}${s.user ? 'A' : ''}`;

/**
 * The submission server, not yet listening. Throws on options that would make AUTH
 * unsafe (users without TLS and without `allowInsecureAuth`, a malformed password hash)
 * or on limits that contradict each other.
 */
export function createSubmissionServer(options: SubmissionOptions & { name: string }, hooks: SubmissionHooks): SubmissionServer {
  const limits: SubmissionLimits = { ...SUBMISSION_LIMIT_DEFAULTS, ...definedOnly(options) };
  if (limits.maxBufferedBytes < limits.maxMessageBytes) throw new Error(`submission: maxBufferedBytes (${limits.maxBufferedBytes}) is less than maxMessageBytes (${limits.maxMessageBytes})`);
  const fromClientNetwork = networkMatcher(options.clientNetworks ?? DEFAULT_CLIENT_NETWORKS);
  const users = new Map((options.users ?? []).map((u) => [u.user, u.passwordHash]));
  const allowInsecureAuth = options.allowInsecureAuth ?? false;
  for (const [user, hash] of users) if (!isPasswordHash(hash)) throw new Error(`submission user \`${user}\`: password hash is not in the form scrypt$ln=N,r=R,p=P$SALT$HASH`);
  if (users.size > 0 && !options.tls && !allowInsecureAuth) throw new Error('submission users need TLS (a key and certificate) or allowInsecureAuth');
  // Checked for unknown users too, so the answer takes as long as for a known one.
  const decoy = `scrypt$ln=${SCRYPT.ln},r=${SCRYPT.r},p=${SCRYPT.p}$${'A'.repeat(22)}$${'A'.repeat(43)}`;
  const disabledCommands = [...(options.tls ? [] : ['STARTTLS']), ...(users.size > 0 ? [] : ['AUTH'])];
  // DATA is parsed with native searches instead of smtp-server's loop over every byte.
  installDataParser();
  const gate = connectionGate(limits);
  const budget = byteBudget(limits.maxBufferedBytes);
  const throttle = createAuthThrottle(options.auth);
  const inbound = options.inbound ? createInboundAuth(options.inbound, options.name) : undefined;
  const metrics = submissionMetrics(hooks.registry ?? new Registry(), { gate, budget, throttle });
  const sessions = new Map<string, SessionState>();
  /** Whether the session's client is in a client network: as decided at connect, or asked anew. */
  const inClientNetwork = (session: SMTPServerSession) => sessions.get(session.id)?.clientNetwork ?? fromClientNetwork(session.remoteAddress);
  const checksInbound = (session: SMTPServerSession) => inbound !== undefined && (options.inbound!.checkClientNetworks === true || !inClientNetwork(session));
  const spooling = new Set<Promise<unknown>>();
  let closing: { drained: () => void } | undefined;

  /** Answers `code text` on session `id` (if still open) and closes it. */
  const closeSession = (id: string, code: number, text: string) => {
    for (const c of server.connections) {
      if (c.id !== id) continue;
      c.send(code, text);
      c.close();
    }
  };
  /** After a message's reply: a session due to close (expired, shutting down) closes now. */
  const settled = (id: string) => {
    const state = sessions.get(id);
    if (!state) return;
    state.busy = false;
    if (closing) closeSession(id, 421, '4.3.2 Shutting down, try again later');
    else if (state.expired) closeSession(id, 421, '4.4.2 Session time limit reached, closing');
    checkDrained();
  };
  const checkDrained = () => {
    if (closing && ![...sessions.values()].some((s) => s.busy)) closing.drained();
  };

  const server: SMTPServer = new SMTPServer({
    name: options.name,
    banner: 'Petrel',
    authOptional: true,
    authMethods: ['PLAIN', 'LOGIN'],
    allowInsecureAuth,
    disabledCommands,
    ...(options.tls ? { key: options.tls.key, cert: options.tls.cert } : {}),
    size: limits.maxMessageBytes,
    socketTimeout: limits.idleTimeoutMs,
    logger: false,
    onConnect(session, callback) {
      if (hooks.isStopping() || closing) return callback(fail(421, '4.3.2 Shutting down, try again later'));
      const over = gate.admit(session.id, session.remoteAddress);
      if (over) {
        metrics.refused.inc({ reason: over });
        return callback(fail(421, over === 'connections' ? '4.7.0 Too many connections, try again later' : '4.7.0 Too many connections from your address, try again later'));
      }
      const timer = setTimeout(() => {
        const state = sessions.get(session.id);
        if (!state) return;
        state.expired = true;
        metrics.refused.inc({ reason: 'session-time' });
        if (!state.busy) closeSession(session.id, 421, '4.4.2 Session time limit reached, closing');
      }, limits.maxSessionMs);
      timer.unref();
      sessions.set(session.id, { authFailures: 0, clientNetwork: fromClientNetwork(session.remoteAddress), busy: false, expired: false, timer });
      callback();
    },
    onClose(session) {
      gate.leave(session.id);
      const state = sessions.get(session.id);
      if (state) clearTimeout(state.timer);
      sessions.delete(session.id);
      checkDrained();
    },
    onAuth(auth: SMTPServerAuthentication, session: SMTPServerSession, callback) {
      // smtp-server already refuses AUTH before STARTTLS (538) when STARTTLS is offered;
      // this holds the line even if it were not.
      if (!session.secure && !allowInsecureAuth) return callback(fail(538, '5.7.11 Encryption required for requested authentication mechanism'));
      if (auth.method !== 'PLAIN' && auth.method !== 'LOGIN') return callback(fail(504, '5.5.4 Unrecognized authentication type'));
      void checkAuth(auth, session).then(
        (user) => callback(null, { user }),
        (e: Error) => callback(e),
      );
    },
    onRcptTo(address, session: SMTPServerSession, callback) {
      if (session.envelope.rcptTo.length >= limits.maxRecipients) {
        metrics.refused.inc({ reason: 'recipients' });
        return callback(fail(452, '4.5.3 Too many recipients'));
      }
      // smtp-server sets `user` to false (not undefined) after STARTTLS: test truthiness.
      if (!session.user && !inClientNetwork(session) && !hooks.isLocalRecipient?.(address.address)) return callback(fail(550, '5.7.1 Relaying denied'));
      callback();
    },
    onData: receive,
  });
  // Every socket error of a client (a reset, a broken pipe) ends that session only.
  server.on('error', () => metrics.clientErrors.inc());
  // A last bound below smtp-server's: connections past it are dropped unanswered.
  server.server.maxConnections = limits.maxConnections + 64;
  const sockets = new Set<Socket>();
  server.server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });

  /**
   * One message's DATA: read within the limits, spooled, answered. The session is busy
   * (not closed by the session time limit or shutdown) until the answer is sent.
   */
  function receive(stream: SMTPServerDataStream, session: SMTPServerSession, callback: (err?: Error | null, message?: string) => void): void {
    const state = sessions.get(session.id);
    if (state) state.busy = true;
    const reply = (err: Error | null, message?: string) => {
      callback(err, message);
      settled(session.id);
    };
    const slow = () => {
      metrics.refused.inc({ reason: 'data-rate' });
      closeSession(session.id, 421, '4.4.2 Data rate too low, closing');
    };
    void collectData(stream, limits, budget, slow).then((got) => {
      if (got.outcome === 'too-big' || got.outcome === 'no-memory') metrics.refused.inc({ reason: got.outcome === 'too-big' ? 'message-size' : 'memory' });
      if (got.outcome === 'too-big') return reply(fail(552, '5.3.4 Message too big'));
      if (got.outcome === 'no-memory') return reply(fail(452, '4.3.1 Insufficient system resources, try again later'));
      if (got.outcome !== 'complete') return reply(fail(421, '4.4.2 Connection closed during DATA'));
      const spooled = spool(session, got.chunks).finally(() => budget.give(got.bytes));
      spooling.add(spooled);
      void spooled
        .then(
          (id) => reply(null, `2.0.0 queued as ${id}`),
          (e: unknown) => {
            if (e instanceof SubmissionRefused) return reply(fail(e.responseCode, e.message));
            // Backpressure, not a fault: the signing threads have a full queue.
            if (e instanceof DkimBusy) {
              metrics.refused.inc({ reason: 'signing-busy' });
              return reply(fail(451, '4.3.0 Busy, try again later'));
            }
            const full = e instanceof SpoolError && e.code === 'no-space';
            metrics.refused.inc({ reason: full ? 'spool-full' : 'spool-error' });
            // The spool's text names paths and internals: it stays here, not with the client.
            reply(full ? fail(452, '4.3.1 Insufficient system storage') : fail(451, '4.3.0 Temporary local problem, try again later'));
          },
        )
        .finally(() => spooling.delete(spooled));
    });
  }

  /** The message, control headers taken and checked (when inbound checks apply), handed to the spool as the chunks it came in. */
  async function spool(session: SMTPServerSession, chunks: Buffer[]): Promise<string> {
    const { values, message } = takeControlHeadersOfChunks(chunks);
    const envelope = { from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '', to: session.envelope.rcptTo.map((r) => r.address) };
    const from: ReceivedFrom = { helo: session.hostNameAppearsAs || undefined, address: session.remoteAddress, hostname: session.clientHostname || undefined, protocol: protocolOf(session) };
    const checked = checksInbound(session) ? await inbound!(message, { ip: session.remoteAddress, helo: from.helo, mailFrom: envelope.from }) : message;
    return hooks.acceptMessage(envelope, checked, values, from);
  }

  /** Checks a password under the throttle; resolves with the user, or rejects with the SMTP answer. */
  async function checkAuth(auth: SMTPServerAuthentication, session: SMTPServerSession): Promise<string> {
    const admitted = await throttle.admit(session.remoteAddress);
    if (!admitted.ok) {
      metrics.refused.inc({ reason: admitted.reason === 'locked' ? 'auth-locked' : 'auth-busy' });
      await slowDown(session, false);
      throw fail(454, admitted.reason === 'locked' ? '4.7.0 Too many failed authentications, try again later' : '4.7.0 Temporary authentication failure, try again later');
    }
    const hash = users.get(auth.username ?? '');
    let ok: boolean;
    try {
      ok = await verifyPassword(auth.password ?? '', hash ?? decoy);
    } catch {
      throw fail(454, '4.7.0 Temporary authentication failure');
    } finally {
      admitted.release();
    }
    if (ok && hash) return auth.username!;
    metrics.authFailures.inc();
    await slowDown(session, true);
    throw fail(535, '5.7.8 Authentication credentials invalid');
  }

  /** After a failed or refused AUTH: waits the throttle's delay, and has the session closed after the answer if it says so. */
  async function slowDown(session: SMTPServerSession, checked: boolean): Promise<void> {
    const state = sessions.get(session.id);
    const failures = state ? ++state.authFailures : 1;
    const verdict = throttle.failed(session.remoteAddress, failures, checked);
    if (verdict.lockedOut) metrics.authLockouts.inc();
    await new Promise((r) => setTimeout(r, verdict.delayMs));
    if (verdict.disconnect) setImmediate(() => closeSession(session.id, 421, '4.7.0 Too many failed authentications, closing'));
  }

  return {
    listen: () =>
      new Promise((resolve, reject) => {
        server.server.once('error', reject);
        server.listen(options.port, options.host, () => {
          server.server.off('error', reject);
          resolve((server.server.address() as AddressInfo).port);
        });
      }),
    async close(graceMs) {
      const drained = new Promise<void>((resolve) => (closing = { drained: resolve }));
      const listenerClosed = new Promise<void>((resolve) => server.server.close(() => resolve()));
      for (const [id, state] of sessions) if (!state.busy) closeSession(id, 421, '4.3.2 Shutting down, try again later');
      if ([...sessions.values()].some((s) => s.busy)) {
        const grace = new Promise<void>((r) => setTimeout(r, graceMs).unref());
        await Promise.race([drained, grace]);
      }
      for (const id of sessions.keys()) closeSession(id, 421, '4.3.2 Shutting down, try again later');
      await Promise.allSettled([...spooling]);
      // Clients that do not close their side after the 421 are not waited for beyond a second.
      await Promise.race([listenerClosed, new Promise((r) => setTimeout(r, 1000).unref())]);
      for (const socket of sockets) socket.destroy();
    },
  };
}

/** `options` without its undefined fields (so they do not override the defaults). */
function definedOnly(options: SubmissionOptions): Partial<SubmissionLimits> {
  const keys = Object.keys(SUBMISSION_LIMIT_DEFAULTS) as (keyof SubmissionLimits)[];
  return Object.fromEntries(keys.filter((k) => options[k] !== undefined).map((k) => [k, options[k]]));
}

/** The `petrel_smtp_*` counters and gauges. */
function submissionMetrics(registry: Registry, state: { gate: ConnectionGate; budget: ByteBudget; throttle: AuthThrottle }) {
  new Gauge({ name: 'petrel_smtp_connections', help: 'SMTP submission connections open', registers: [registry], collect() { this.set(state.gate.open()); } });
  new Gauge({ name: 'petrel_smtp_buffered_bytes', help: 'Message bytes held in memory by SMTP submission sessions', registers: [registry], collect() { this.set(state.budget.held()); } });
  new Gauge({ name: 'petrel_smtp_auth_locked_clients', help: 'Clients (IPv4 addresses, IPv6 /64s) whose AUTH is locked out now', registers: [registry], collect() { this.set(state.throttle.lockedOut()); } });
  return {
    refused: new Counter({ name: 'petrel_smtp_refused_total', help: 'SMTP submission refusals and forced closes, by the limit that caused them', labelNames: ['reason'], registers: [registry] }),
    authFailures: new Counter({ name: 'petrel_smtp_auth_failures_total', help: 'Failed SMTP AUTH attempts (wrong password or unknown user)', registers: [registry] }),
    authLockouts: new Counter({ name: 'petrel_smtp_auth_lockouts_total', help: 'Clients locked out of SMTP AUTH after too many failures', registers: [registry] }),
    clientErrors: new Counter({ name: 'petrel_smtp_client_errors_total', help: 'SMTP submission connections ended by a socket error (reset, broken pipe)', registers: [registry] }),
  };
}
