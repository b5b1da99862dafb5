/**
 * The SMTP client side of delivery: open a session to one MX host, send messages over it
 * (one transaction each, several recipients), and say for every recipient which reply
 * decided it and in which phase — what the policy's `react(route, reply, phase)` takes.
 * A delivery worker runs it; messages per connection and recipients per transaction are
 * the caller's to enforce.
 *
 * Built on nodemailer's `SMTPConnection` (EHLO/HELO, STARTTLS, PIPELINING, SIZE,
 * dot-stuffing, reply parsing). The TCP connection is opened here, so that the connect
 * timeout is a timeout for connecting alone (nodemailer's `connectionTimeout` also covers
 * the greeting and STARTTLS) and the source address is bound before nodemailer sees it.
 *
 * Replies are the server's text as received; a multi-line reply keeps every line, code
 * included, joined with "\n" (`"550-5.7.1 …\n550 5.7.1 …"`). When the server gave no reply
 * — the connection failed, timed out or dropped, or TLS could not be set up — the reply is
 * one of {@link LOCAL_REPLIES}, marked `synthesized: true`. Every synthesized reply starts
 * with a three-digit code and an enhanced status, so the policy classifies it like any other.
 *
 * TLS modes (the policy's `tls` setting):
 * - `opportunistic`: STARTTLS when the server offers it, without certificate verification.
 *   A refused STARTTLS continues in plain text; a failed handshake reconnects once without
 *   TLS (as Postfix does at `smtp_tls_security_level = may`), noted in `tlsFailure`.
 * - `required`: STARTTLS, without certificate verification; a server that does not offer
 *   it fails the session (`421 4.7.4`) and nothing is sent in plain text.
 * - `verify`: `required`, and the certificate must chain to a trusted CA and name the MX
 *   host (`mxHost`, else `host`); failures are `421 4.7.5`.
 * - `disabled`: never STARTTLS.
 *
 * DANE (`dane`, RFC 7672; outbound TLS policy, tls-policy.ts, decides when): STARTTLS is
 * mandatory as in `required`, and after the handshake the chain the server presented must
 * match a TLSA record (dane.ts); a mismatch ends the session before MAIL (`421 4.7.5`), never
 * a fall back to plain text. `TlsInfo.verified` says what authenticated a session.
 *
 * Nothing the network or the server does makes these functions throw: failures are
 * results. They throw only on a caller's mistake (bad options, overlapping `send` calls,
 * `send` after `close`) and on a local read error of the message stream.
 */
import net from 'node:net';
import { TLSSocket, type ConnectionOptions } from 'node:tls';
import type { Readable, Transform, TransformCallback } from 'node:stream';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import type { SMTPConnectionEnvelope, SMTPConnectionSendInfo, SMTPEnvelope } from 'nodemailer/lib/smtp-connection';
import { TLS_MODES, type Phase, type TlsMode } from '../abi.ts';
import { matchDane, type TlsaRecord } from './dane.ts';
import { isWireForm } from './wire-form.ts';

type SmtpError = SMTPConnection.SMTPError;

/**
 * The replies this client makes up when the server gave none. All are 4xx (retried)
 * except the three that no retry can fix: an invalid address and a message larger than the
 * server announced (`SIZE`). The texts follow RFC 3463: X.4.1 no answer from host (before
 * the TCP connection is up), X.4.2 bad connection (after), X.4.3 directory (DNS) failure,
 * X.7.4 security features not supported, X.7.5 cryptographic failure.
 */
export const LOCAL_REPLIES = {
  /** TCP connect did not complete within `connectTimeoutMs`. */
  connectTimedOut: (ms: number) => `421 4.4.1 no answer from host (connect timed out after ${ms} ms)`,
  /** TCP connect failed: `connection refused`, or the errno (`EHOSTUNREACH`, `EADDRNOTAVAIL`, …). */
  connectFailed: (code: string) => `421 4.4.1 no answer from host (${code === 'ECONNREFUSED' ? 'connection refused' : code})`,
  /** The host name did not resolve (`ENOTFOUND`, `EAI_AGAIN`, …). */
  dnsFailed: (code: string) => `421 4.4.3 DNS lookup failed for host (${code})`,
  /** Connected, but no greeting within `greetingTimeoutMs`. */
  greetingTimedOut: (ms: number) => `421 4.4.2 no greeting from host within ${ms} ms`,
  /** The server went silent for `socketTimeoutMs` while a reply was due. */
  replyTimedOut: (ms: number) => `421 4.4.2 no reply from host within ${ms} ms`,
  /** The connection closed or reset without a reply; the errno in parentheses when there is one. */
  connectionLost: (code?: string) => `421 4.4.2 connection lost${code ? ` (${code})` : ''}`,
  /** `required` or `verify`, and the server's EHLO reply did not offer STARTTLS. */
  tlsNotOffered: '421 4.7.4 TLS required but not offered by host',
  /** `verify`, and the certificate failed verification (OpenSSL's or Node's code). */
  tlsUntrusted: (code: string) => `421 4.7.5 TLS certificate not trusted (${code})`,
  /** The TLS handshake after STARTTLS failed or did not finish. */
  tlsFailed: (detail: string) => `421 4.7.5 TLS handshake failed (${detail})`,
  /** The server's output could not be parsed as SMTP replies. */
  protocolError: (detail: string) => `421 4.5.0 protocol error (${detail})`,
  /** The message is larger than the server's announced `SIZE`; nothing was sent. */
  messageTooBig: '552 5.3.4 message size exceeds fixed maximum message size',
  /** The sender address cannot be written in a MAIL command (CR, LF, `<` or `>`). */
  badSender: '501 5.1.7 bad sender address syntax',
  /** The recipient address is empty or cannot be written in a RCPT command. */
  badRecipient: '501 5.1.3 bad recipient address syntax',
  /** The scheduler's, before any session: the domain's MX lookup failed (mx.ts `reason`), for good (no such domain, null MX) or for now. */
  mxFailed: (reason: string, permanent: boolean) => (permanent ? `550 5.1.2 ${reason}` : `451 4.4.3 ${reason}`),
  /** The scheduler's, before any session: the MX answer left no host to try. */
  noHost: '421 4.4.1 no answer from host',
  /** DANE: the certificate the MX presented matches none of its TLSA records. */
  daneMismatch: (host: string, reason: string) => `421 4.7.5 TLS certificate does not match the TLSA records of ${host} (${reason})`,
  /** Outbound TLS policy, before connecting: the MX host's TLSA lookup failed (RFC 7672 §2.2: the host is not used now). */
  tlsaLookupFailed: (reason: string) => `421 4.7.5 ${reason}`,
  /** MTA-STS `enforce`: the MX host is not one the recipient domain's policy lists (RFC 8461 §4.1). */
  mtaStsMxNotListed: (host: string, domain: string) => `421 4.7.5 MTA-STS: ${host} is not an MX host of the policy of ${domain}`,
} as const;

/** Where and how to open a session; the source and TLS mode come from the policy's settings. */
export interface SessionOptions {
  /** Where to connect: an IP address, or a host name (resolved with the system resolver). */
  host: string;
  port: number;
  /**
   * The MX host name `host` stands for: sent as SNI and, in `verify` mode, the name the
   * certificate must carry. Default: `host` when it is a name.
   */
  mxHost?: string;
  /** Source IP address to bind (the policy source's `address`); the host's address family follows it. */
  localAddress?: string;
  /** Our name in EHLO (the source's `ehlo`). */
  ehlo: string;
  tls: TlsMode;
  /** TCP connect, milliseconds. Default 30 s (Postfix `smtp_connect_timeout`). */
  connectTimeoutMs?: number;
  /** From connected to the 220 greeting, and for the TLS handshake. Default 5 min (RFC 5321 §4.5.3.2.1). */
  greetingTimeoutMs?: number;
  /** Silence while a reply is due. Default 10 min (RFC 5321 §4.5.3.2.6, the DATA termination wait). */
  socketTimeoutMs?: number;
  /** Extra `tls.connect` options, e.g. `ca` or `minVersion`. The mode decides `rejectUnauthorized`. */
  tlsOptions?: ConnectionOptions;
  /**
   * DANE: the usable TLSA records of the MX host `name` (RFC 7672). TLS is then mandatory
   * whatever `tls` says, and the certificate must match one of them.
   */
  dane?: { records: TlsaRecord[]; name: string };
  /** Why `verify` mode was asked, recorded as `TlsInfo.verified`: `mta-sts` (a policy), else `ca` (the policy's `tls verify`). */
  verifyReason?: 'mta-sts';
}

/** What `openSession` gives: an open session, or the reply that ended the attempt and its phase. */
export type SessionResult =
  | { ok: true; session: SmtpSession }
  | { ok: false; phase: Extract<Phase, 'connect' | 'ehlo'>; reply: string; synthesized: boolean };

/** What authenticated a session's TLS: nothing, a CA chain and name (the policy's `verify`, or MTA-STS), or DANE. */
export const TLS_VERIFIED = ['none', 'ca', 'mta-sts', 'dane-ee', 'dane-ta'] as const;
export type TlsVerified = (typeof TLS_VERIFIED)[number];

/** TLS in use on a session. */
export interface TlsInfo {
  /** e.g. `TLSv1.3`. */
  protocol: string | null;
  /** OpenSSL cipher name. */
  cipher: string | null;
  /** Whether the certificate verified (always true in `verify` mode; informative otherwise). */
  authorized: boolean;
  /** What authenticated the server, as its mode or DANE required: `none` when nothing was required. */
  verified: TlsVerified;
}

/** One message to send: one transaction. */
export interface OutboundMessage {
  /** Envelope sender; `''` for the null sender (`MAIL FROM:<>`). */
  from: string;
  /** Envelope recipients, at least one. */
  to: readonly string[];
  /**
   * The message, headers and body, CRLF line endings (bare LF and CR are sent as CRLF).
   * A buffer already in wire form (wire-form.ts) is written as it is, without nodemailer's
   * byte-by-byte encoder.
   * A stream is always consumed or destroyed, so pass a fresh one for each attempt.
   */
  raw: Buffer | Readable;
  /** Size in bytes for the SIZE extension; taken from the buffer when `raw` is one. */
  size?: number;
}

/** What became of one recipient. */
export interface RecipientResult {
  rcpt: string;
  /** True only when the server accepted the message for this recipient (2xx at end of data). */
  accepted: boolean;
  /** The reply that decided: RCPT's when refused there, else MAIL's, DATA's or end of data's. */
  reply: string;
  phase: Extract<Phase, 'mail' | 'rcpt' | 'data'>;
  /** True when `reply` is one of {@link LOCAL_REPLIES}, not the server's. */
  synthesized: boolean;
}

/** The outcome of one transaction. */
export interface SendResult {
  /** One entry per `to` address, in order. */
  perRecipient: RecipientResult[];
  /** The server's reply to the message itself (DATA refused, or end of data), when there was one. */
  messageReply?: string;
}

/** An open SMTP session: one connection, reused for message after message. */
export interface SmtpSession {
  /** Whether the connection runs over TLS. */
  readonly secure: boolean;
  readonly tls: TlsInfo | null;
  /**
   * In `opportunistic` mode, why TLS was abandoned: the synthesized reply of a failed
   * handshake, after which this session reconnected without TLS. Null otherwise.
   */
  readonly tlsFailure: string | null;
  readonly localAddress: string;
  readonly remoteAddress: string;
  /** Messages the server accepted (2xx at end of data) on this session. */
  readonly messagesSent: number;
  /** Transactions started (MAIL sent) on this session, accepted or not. */
  readonly transactions: number;
  /** True once the connection is gone (dropped, 421, timed out) or `close` was called. */
  readonly closed: boolean;
  /**
   * Resolves once the connection is gone, whoever ended it: the server (dropped, 421),
   * a timeout, or `close`. `closed` is true by then. Never rejects.
   */
  readonly ended: Promise<void>;
  /**
   * Sends one message as one transaction. Resolves for every outcome the server or the
   * network can cause; after a refused transaction the session is reset (RSET) for the next
   * message. One at a time: a second call before the first settles throws, as does a
   * call after `close`. A failing message stream rejects with its error and closes the
   * session (the connection is left mid-DATA).
   */
  send(message: OutboundMessage): Promise<SendResult>;
  /** Ends the session politely (QUIT), after any send in progress. Idempotent. */
  close(): Promise<void>;
}

interface ResolvedOptions extends Required<Omit<SessionOptions, 'mxHost' | 'localAddress' | 'tlsOptions' | 'dane' | 'verifyReason'>> {
  dane: SessionOptions['dane'];
  verifyReason: SessionOptions['verifyReason'];
  mxHost: string | undefined;
  localAddress: string | undefined;
  tlsOptions: ConnectionOptions;
}

/** Longest wait for the reply to QUIT before the connection is simply closed. */
const QUIT_TIMEOUT_MS = 5_000;

/**
 * Connects to an MX host and sets the SMTP session up: greeting, EHLO, STARTTLS as the
 * TLS mode asks. Never throws for a network or server failure (see {@link SessionResult});
 * throws a TypeError for invalid options.
 */
export async function openSession(options: SessionOptions): Promise<SessionResult> {
  const o = resolveOptions(options);
  const first = await attempt(o, o.tls);
  if (first.ok || o.tls !== 'opportunistic' || !first.tlsHandshake) return first.result;
  const plain = await attempt(o, 'disabled');
  if (plain.ok) plain.session.noteTlsFailure(first.result.ok ? '' : first.result.reply);
  return plain.result;
}

function resolveOptions(options: SessionOptions): ResolvedOptions {
  if (!Number.isInteger(options.port) || options.port < 1 || options.port > 65535) throw new TypeError(`invalid port ${options.port}`);
  if (!/^[^\s<>]+$/.test(options.ehlo)) throw new TypeError(`invalid EHLO name ${JSON.stringify(options.ehlo)}`);
  if (options.localAddress !== undefined && !net.isIP(options.localAddress)) throw new TypeError(`local address ${JSON.stringify(options.localAddress)} is not an IP address`);
  if (!TLS_MODES.includes(options.tls)) throw new TypeError(`unknown TLS mode ${JSON.stringify(options.tls)}`);
  for (const key of ['connectTimeoutMs', 'greetingTimeoutMs', 'socketTimeoutMs'] as const) {
    const v = options[key];
    if (v !== undefined && !(Number.isFinite(v) && v > 0)) throw new TypeError(`${key} must be a positive number of milliseconds`);
  }
  return {
    host: options.host,
    port: options.port,
    mxHost: options.mxHost ?? (net.isIP(options.host) ? undefined : options.host),
    localAddress: options.localAddress,
    ehlo: options.ehlo,
    // DANE authenticates by TLSA, not by CA: mandatory TLS without PKIX verification.
    tls: options.dane ? 'required' : options.tls,
    dane: options.dane,
    verifyReason: options.verifyReason,
    connectTimeoutMs: options.connectTimeoutMs ?? 30_000,
    greetingTimeoutMs: options.greetingTimeoutMs ?? 300_000,
    socketTimeoutMs: options.socketTimeoutMs ?? 600_000,
    tlsOptions: options.tlsOptions ?? {},
  };
}

type Attempt =
  | { ok: true; session: Session; result: SessionResult }
  | { ok: false; tlsHandshake: boolean; result: SessionResult };

async function attempt(o: ResolvedOptions, mode: TlsMode): Promise<Attempt> {
  const tcp = await connectTcp(o);
  if (!tcp.ok) return { ok: false, tlsHandshake: false, result: { ok: false, phase: 'connect', reply: tcp.reply, synthesized: true } };
  return handshake(tcp.socket, o, mode);
}

function connectTcp(o: ResolvedOptions): Promise<{ ok: true; socket: net.Socket } | { ok: false; reply: string }> {
  return new Promise((resolve) => {
    let settled = false;
    const socket = net.connect({
      host: o.host,
      port: o.port,
      ...(o.localAddress ? { localAddress: o.localAddress, family: net.isIP(o.localAddress) } : {}),
    });
    const fail = (reply: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ ok: false, reply });
    };
    const timer = setTimeout(() => fail(LOCAL_REPLIES.connectTimedOut(o.connectTimeoutMs)), o.connectTimeoutMs);
    // Stays attached, a no-op once settled: nodemailer adds its own listener when it takes
    // the socket over, and an 'error' with no listener at all would crash the worker.
    socket.on('error', (err: NodeJS.ErrnoException) => {
      const code = err.code ?? 'ECONNECTION';
      fail(/^(getaddrinfo|query)/.test(err.syscall ?? '') ? LOCAL_REPLIES.dnsFailed(code) : LOCAL_REPLIES.connectFailed(code));
    });
    socket.once('connect', () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ ok: true, socket });
    });
  });
}

function handshake(socket: net.Socket, o: ResolvedOptions, mode: TlsMode): Promise<Attempt> {
  const servername = o.mxHost !== undefined && !net.isIP(o.mxHost) ? o.mxHost : undefined;
  const conn = new SMTPConnection({
    connection: socket,
    host: o.host,
    port: o.port,
    // Port 465 would otherwise mean implicit TLS to nodemailer.
    secure: false,
    ...(servername ? { servername } : {}),
    name: o.ehlo,
    ignoreTLS: mode === 'disabled',
    opportunisticTLS: mode === 'opportunistic',
    tls: { ...o.tlsOptions, ...(servername ? { servername } : {}), rejectUnauthorized: mode === 'verify' },
    greetingTimeout: o.greetingTimeoutMs,
    // With a connected socket nodemailer's connection timeout bounds the greeting, EHLO and
    // STARTTLS together; the greeting and each reply have their own, shorter, bounds.
    connectionTimeout: o.greetingTimeoutMs + o.socketTimeoutMs,
    socketTimeout: o.socketTimeoutMs,
    logger: false,
  });
  const localAddress = socket.localAddress ?? '';
  const remoteAddress = socket.remoteAddress ?? '';
  return new Promise((resolve) => {
    let settled = false;
    const fail = (err: SmtpError) => {
      if (settled) return;
      settled = true;
      const failure = describeFailure(err, conn, o);
      const phase = err.command === 'EHLO' || err.command === 'HELO' || err.command === 'STARTTLS' || conn.upgrading || startsWith220(conn.lastServerResponse) ? 'ehlo' : 'connect';
      conn.close();
      resolve({ ok: false, tlsHandshake: failure.tlsHandshake, result: { ok: false, phase, reply: failure.reply, synthesized: failure.synthesized } });
    };
    // nodemailer reports most setup failures only as 'error' events, and emits 'error' later
    // for failures of an idle session too: without a listener either would crash the worker.
    conn.on('error', fail);
    conn.once('end', () => fail(Object.assign(new Error('connection closed'), { code: 'ECONNECTION' })));
    conn.connect((err) => {
      if (err) return fail(err);
      if (settled) return;
      if ((mode === 'required' || mode === 'verify') && !conn.secure) {
        settled = true;
        void quit(conn, Math.min(QUIT_TIMEOUT_MS, o.socketTimeoutMs)).then(() => resolve({ ok: false, tlsHandshake: false, result: { ok: false, phase: 'ehlo', reply: LOCAL_REPLIES.tlsNotOffered, synthesized: true } }));
        return;
      }
      settled = true;
      const dane = o.dane ? matchDane(peerChain(conn._socket), o.dane.records, o.dane.name, Date.now()) : undefined;
      if (dane && !dane.verified) {
        const reply = LOCAL_REPLIES.daneMismatch(o.dane!.name, dane.reason);
        void quit(conn, Math.min(QUIT_TIMEOUT_MS, o.socketTimeoutMs)).then(() => resolve({ ok: false, tlsHandshake: false, result: { ok: false, phase: 'ehlo', reply, synthesized: true } }));
        return;
      }
      const verified: TlsVerified = dane?.verified ?? (mode === 'verify' ? (o.verifyReason ?? 'ca') : 'none');
      const session = new Session(conn, o, { localAddress, remoteAddress }, verified);
      resolve({ ok: true, session, result: { ok: true, session } });
    });
  });
}

/** The certificates the server presented, DER, leaf first (at most 16). */
function peerChain(socket: unknown): Buffer[] {
  if (!(socket instanceof TLSSocket)) return [];
  const chain: Buffer[] = [];
  for (let c = socket.getPeerCertificate(true); c?.raw && chain.length < 16; c = c.issuerCertificate) {
    if (chain.length > 0 && c.raw.equals(chain[chain.length - 1]!)) break; // a self-signed root is its own issuer
    chain.push(c.raw);
  }
  return chain;
}

function startsWith220(reply: string | false): boolean {
  return typeof reply === 'string' && reply.startsWith('220');
}

const CERTIFICATE_ERROR = /CERT|^UNABLE_TO_|^INVALID_CA$|HOSTNAME_MISMATCH/;

/** The reply for a nodemailer error: the server's, else a synthesized one. */
function describeFailure(err: SmtpError, conn: SMTPConnection, o: ResolvedOptions): { reply: string; synthesized: boolean; tlsHandshake: boolean } {
  if (err.response) return { reply: err.response, synthesized: false, tlsHandshake: false };
  const code = err.originalCode ?? (err.code && /^E[A-Z_]+$/.test(err.code) && !NODEMAILER_CODES.has(err.code) ? err.code : undefined);
  if (err.timeoutType === 'UPGRADE_TIMEOUT' || conn.upgrading) {
    const detail = err.timeoutType === 'UPGRADE_TIMEOUT' ? `no answer within ${o.greetingTimeoutMs} ms` : (code ?? oneLine(err.message));
    const reply = code && CERTIFICATE_ERROR.test(code) ? LOCAL_REPLIES.tlsUntrusted(code) : LOCAL_REPLIES.tlsFailed(detail);
    return { reply, synthesized: true, tlsHandshake: true };
  }
  const synthesized = (reply: string) => ({ reply, synthesized: true, tlsHandshake: false });
  switch (err.timeoutType) {
    case 'GREETING_TIMEOUT':
      return synthesized(LOCAL_REPLIES.greetingTimedOut(o.greetingTimeoutMs));
    case 'SOCKET_TIMEOUT':
      return synthesized(LOCAL_REPLIES.replyTimedOut(o.socketTimeoutMs));
    case 'CONNECT_TIMEOUT':
      return synthesized(LOCAL_REPLIES.connectTimedOut(o.connectTimeoutMs));
  }
  if (err.code === 'EPROTOCOL') return synthesized(LOCAL_REPLIES.protocolError(oneLine(err.message)));
  return synthesized(LOCAL_REPLIES.connectionLost(code));
}

/** nodemailer's own error codes, which say which step failed rather than what the network did. */
const NODEMAILER_CODES = new Set(['ECONNECTION', 'ETIMEDOUT', 'ESOCKET', 'EDNS', 'ETLS', 'EPROTOCOL', 'EENVELOPE', 'EMESSAGE', 'ESTREAM']);

function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}

/** QUIT, then close; resolves once the connection is closed, within `QUIT_TIMEOUT_MS` (or the socket timeout, if shorter). */
function quit(conn: SMTPConnection, timeoutMs = QUIT_TIMEOUT_MS): Promise<void> {
  if (conn.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => conn.close(), timeoutMs);
    conn.once('end', () => {
      clearTimeout(timer);
      resolve();
    });
    conn.quit();
  });
}

/** nodemailer records the RCPT outcomes on the envelope object it is given. */
type TrackedEnvelope = SMTPEnvelope & Partial<Pick<SMTPConnectionEnvelope, 'accepted' | 'rejected' | 'rejectedErrors'>>;

/**
 * What every `SmtpSession` does alike, whether it runs here or in a delivery worker thread
 * (delivery-pool.ts): one transaction at a time, none after `close`, and `close` only
 * once the send in progress has settled; `closed`, `ended` and the counters.
 */
export abstract class SerialSession {
  #inFlight: Promise<SendResult> | null = null;
  #closing: Promise<void> | null = null;
  #ended = false;
  #markEnded!: () => void;
  readonly ended: Promise<void>;
  abstract readonly tls: TlsInfo | null;
  protected sentCount = 0;
  protected transactionCount = 0;

  constructor() {
    this.ended = new Promise((resolve) => {
      this.#markEnded = () => {
        this.#ended = true;
        resolve();
      };
    });
  }

  /** Carries out one send, after `send`'s checks. */
  protected abstract transaction(message: OutboundMessage): Promise<SendResult>;
  /** Ends the session; called once, with no send in progress. */
  protected abstract shutdown(): Promise<void>;

  /** Records that the connection is gone. */
  protected connectionEnded(): void {
    this.#markEnded();
  }
  protected get connectionGone(): boolean {
    return this.#ended;
  }
  /** Whether `close` has been called. */
  protected get closeRequested(): boolean {
    return this.#closing !== null;
  }
  get secure(): boolean {
    return this.tls !== null;
  }
  get messagesSent(): number {
    return this.sentCount;
  }
  get transactions(): number {
    return this.transactionCount;
  }
  get closed(): boolean {
    return this.#ended || this.#closing !== null;
  }

  async send(message: OutboundMessage): Promise<SendResult> {
    if (this.#inFlight) throw new Error('send: a transaction is already in progress on this session');
    if (this.#closing) throw new Error('send: the session was closed');
    if (message.to.length === 0) throw new RangeError('send: a message needs at least one recipient');
    const transaction = this.transaction(message);
    this.#inFlight = transaction;
    try {
      return await transaction;
    } finally {
      this.#inFlight = null;
    }
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      // A send in progress finishes first: nodemailer drops the callback of a send it is
      // closed under, which would leave that send unsettled.
      await this.#inFlight?.catch(() => undefined);
      await this.shutdown();
    })();
    return this.#closing;
  }
}

class Session extends SerialSession implements SmtpSession {
  readonly #conn: SMTPConnection;
  readonly #options: ResolvedOptions;
  #tlsFailure: string | null = null;
  /** The send in progress has a body in wire form: it skips nodemailer's encoder. */
  #wire = false;
  readonly tls: TlsInfo | null;
  readonly localAddress: string;
  readonly remoteAddress: string;

  constructor(conn: SMTPConnection, options: ResolvedOptions, addresses: { localAddress: string; remoteAddress: string }, verified: TlsVerified) {
    super();
    this.#conn = conn;
    this.#options = options;
    this.localAddress = addresses.localAddress;
    this.remoteAddress = addresses.remoteAddress;
    conn.once('end', () => this.connectionEnded());
    passWireForm(conn, () => this.#wire);
    const socket = conn._socket;
    this.tls =
      conn.secure && socket instanceof TLSSocket
        ? { protocol: socket.getProtocol(), cipher: socket.getCipher()?.name ?? null, authorized: socket.authorized, verified }
        : null;
  }

  get tlsFailure(): string | null {
    return this.#tlsFailure;
  }

  /** @internal Set by `openSession` when this session is the plain-text retry of a failed handshake. */
  noteTlsFailure(reply: string): void {
    this.#tlsFailure = reply;
  }

  protected async transaction(message: OutboundMessage): Promise<SendResult> {
    const results: (RecipientResult | undefined)[] = message.to.map((rcpt) =>
      rcpt.trim() === '' || /[\r\n<>]/.test(rcpt) ? { rcpt, accepted: false, reply: LOCAL_REPLIES.badRecipient, phase: 'rcpt', synthesized: true } : undefined,
    );
    const pending = message.to.flatMap((rcpt, i) => (results[i] ? [] : [{ rcpt, i }]));
    const settleAll = (result: Omit<RecipientResult, 'rcpt'>) => {
      for (const { rcpt, i } of pending) results[i] = { rcpt, ...result };
      release(message.raw);
      return { perRecipient: results as RecipientResult[] };
    };
    if (/[\r\n<>]/.test(message.from)) return settleAll({ accepted: false, reply: LOCAL_REPLIES.badSender, phase: 'mail', synthesized: true });
    if (pending.length === 0) {
      release(message.raw);
      return { perRecipient: results as RecipientResult[] };
    }
    if (this.connectionGone) return settleAll({ accepted: false, reply: LOCAL_REPLIES.connectionLost(), phase: 'mail', synthesized: true });

    const size = message.size ?? (Buffer.isBuffer(message.raw) ? message.raw.length : undefined);
    const envelope: TrackedEnvelope = { from: message.from, to: pending.map((p) => p.rcpt.trim()), ...(size ? { size } : {}) };
    const { err, info } = await this.#sendOnce(envelope, message.raw);

    if (err && (err.code === 'ESTREAM' || (err.command === 'API' && err.code !== 'ECONNECTION'))) {
      // A local failure (the message stream broke, or nodemailer refused its input): the
      // connection may be stuck mid-DATA, and the server said nothing the policy should see.
      this.#conn.close();
      throw err;
    }
    const tooBig = err?.code === 'EMESSAGE' && err.command === 'MAIL FROM' && !err.response;
    if (!(err?.command === 'API' || tooBig)) this.transactionCount++;
    if (tooBig) return settleAll({ accepted: false, reply: LOCAL_REPLIES.messageTooBig, phase: 'mail', synthesized: true });

    const outcome = transactionOutcome(pending.map((p) => p.rcpt), envelope, err, info, err ? describeFailure(err, this.#conn, this.#options) : null);
    pending.forEach(({ i }, k) => (results[i] = outcome.perRecipient[k]));
    if (!err) this.sentCount++;
    else if (!this.#conn.destroyed && err.responseCode !== 421) await this.#reset();
    return { perRecipient: results as RecipientResult[], ...(outcome.messageReply !== undefined ? { messageReply: outcome.messageReply } : {}) };
  }

  /** nodemailer's send, made sure to settle: its callback is lost if the connection ends in a way it does not expect. */
  #sendOnce(envelope: TrackedEnvelope, raw: Buffer | Readable): Promise<{ err: SmtpError | null; info: SMTPConnectionSendInfo | null }> {
    return new Promise((resolve) => {
      let settled = false;
      const settle = (err: SmtpError | null, info: SMTPConnectionSendInfo | null) => {
        if (settled) return;
        settled = true;
        this.#conn.removeListener('end', onEnd);
        resolve({ err, info });
      };
      // On a failure nodemailer ends the connection first and calls back right after, in the
      // same tick: wait a turn before deciding the callback is not coming.
      const onEnd = () => setImmediate(() => settle(Object.assign(new Error('connection closed'), { code: 'ECONNECTION', command: 'CONN' }), null));
      this.#conn.once('end', onEnd);
      this.#wire = Buffer.isBuffer(raw) && isWireForm(raw);
      this.#conn.send(envelope, raw, (err, info) => settle(err, err ? null : info));
    });
  }

  /** RSET after a refused transaction, so the next MAIL starts clean; a failed RSET closes the session. */
  #reset(): Promise<void> {
    return new Promise((resolve) => {
      const onEnd = () => resolve();
      this.#conn.once('end', onEnd);
      this.#conn.reset((err) => {
        this.#conn.removeListener('end', onEnd);
        if (err) this.#conn.close();
        resolve();
      });
    });
  }

  protected shutdown(): Promise<void> {
    return quit(this.#conn, Math.min(QUIT_TIMEOUT_MS, this.#options.socketTimeoutMs));
  }
}

/** What nodemailer's DATA encoder (its `DataStream`, internal) has that the pass-through keeps up to date. */
interface DataStreamInternals extends Transform {
  inByteCount: number;
  outByteCount: number;
  lastByte: number | false;
}

/**
 * Lets a send skip nodemailer's DATA encoder, which looks at every byte in JavaScript, for
 * a body already in wire form (wire-form.ts): while `wire()` says so, the DATA stream
 * nodemailer creates passes the chunks through unchanged, and its own flush still writes
 * the terminator after the last byte. With a nodemailer that has no `_createSendStream`
 * (an internal, pinned by the exact version in package.json), nothing changes: every body
 * is encoded by nodemailer as before.
 */
function passWireForm(conn: SMTPConnection, wire: () => boolean): void {
  const internals = conn as unknown as { _createSendStream?: (callback: unknown) => DataStreamInternals };
  const create = internals._createSendStream;
  if (typeof create !== 'function') return;
  internals._createSendStream = function (this: unknown, callback: unknown) {
    const stream = create.call(this, callback);
    if (wire()) stream._transform = passThrough;
    return stream;
  };
}

function passThrough(this: DataStreamInternals, chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
  if (chunk.length > 0) {
    this.inByteCount += chunk.length;
    this.outByteCount += chunk.length;
    this.lastByte = chunk[chunk.length - 1]!;
    this.push(chunk);
  }
  done();
}

function release(raw: Buffer | Readable): void {
  if (!Buffer.isBuffer(raw)) raw.destroy();
}

/**
 * Per-recipient results from what nodemailer recorded: `envelope.accepted` and
 * `envelope.rejectedErrors` (one per RCPT reply, in order), and the error that ended the
 * transaction, whose `command` says where: `MAIL FROM`, `RCPT TO` (every recipient
 * refused), `DATA` (the DATA command or the end of data), or `CONN` (the connection).
 */
function transactionOutcome(
  to: string[],
  envelope: TrackedEnvelope,
  err: SmtpError | null,
  info: SMTPConnectionSendInfo | null,
  failure: { reply: string; synthesized: boolean } | null,
): SendResult {
  const replies = new Map<string, { accepted: boolean; reply: string }[]>();
  const record = (address: string, entry: { accepted: boolean; reply: string }) => {
    const list = replies.get(address) ?? [];
    list.push(entry);
    replies.set(address, list);
  };
  for (const e of envelope.rejectedErrors ?? []) if (e.recipient !== undefined) record(e.recipient, { accepted: false, reply: e.response ?? '' });
  for (const address of envelope.accepted ?? []) record(address, { accepted: true, reply: '' });
  const answers = to.map((rcpt) => replies.get(rcpt.trim())?.shift());

  if (!err && info) {
    return {
      perRecipient: to.map((rcpt, k) => {
        const a = answers[k];
        return a && !a.accepted
          ? { rcpt, accepted: false, reply: a.reply, phase: 'rcpt', synthesized: false }
          : { rcpt, accepted: true, reply: info.response, phase: 'data', synthesized: false };
      }),
      messageReply: info.response,
    };
  }
  const { reply, synthesized } = failure ?? { reply: LOCAL_REPLIES.connectionLost(), synthesized: true };
  const where = err?.command;
  const unanswered = answers.some((a) => a === undefined);
  const anyAnswered = answers.some((a) => a !== undefined);
  return {
    perRecipient: to.map((rcpt, k): RecipientResult => {
      const a = answers[k];
      if (where === 'MAIL FROM') return { rcpt, accepted: false, reply, phase: 'mail', synthesized };
      if (a && !a.accepted) return { rcpt, accepted: false, reply: a.reply, phase: 'rcpt', synthesized: false };
      if (a) return { rcpt, accepted: false, reply, phase: unanswered ? 'rcpt' : 'data', synthesized };
      return { rcpt, accepted: false, reply, phase: anyAnswered ? 'rcpt' : 'mail', synthesized };
    }),
    ...(where === 'DATA' && !synthesized ? { messageReply: reply } : {}),
  };
}
