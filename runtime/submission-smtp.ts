/**
 * SMTP submission: the smtp-server that takes mail into the spool. EHLO, PIPELINING,
 * SIZE, 8BITMIME, SMTPUTF8; STARTTLS when a certificate is configured; AUTH PLAIN and
 * LOGIN against configured users (scrypt password hashes), only over TLS unless
 * `allowInsecureAuth`. Relaying is for authenticated users and client networks; everyone
 * else gets `550 5.7.1` at RCPT. A message is answered 250 only once `acceptMessage`
 * resolved (the spool made it durable).
 */
import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import { BlockList, isIP } from 'node:net';
import { SMTPServer, type SMTPServerAuthentication, type SMTPServerDataStream, type SMTPServerSession } from 'smtp-server';
import { takeControlHeaders, type ControlValues } from './headers.ts';

/** A submission user: a name and a password hash made by {@link hashPassword}. */
export interface SubmissionUser {
  user: string;
  /** `scrypt$ln=14,r=8,p=1$SALT$HASH` (salt and hash in unpadded base64). */
  passwordHash: string;
}

export interface SubmissionOptions {
  host: string;
  port: number;
  /** SIZE limit (default 50 MiB). */
  maxMessageBytes?: number;
  /** Address prefixes allowed to relay without AUTH (default: loopback). */
  clientNetworks?: string[];
  /** PEM key and certificate: with them, STARTTLS is offered. */
  tls?: { key: string | Buffer; cert: string | Buffer };
  /** Users who may AUTH (PLAIN, LOGIN); without any, AUTH is not offered. */
  users?: SubmissionUser[];
  /** Allow AUTH on a connection without TLS (default false; for loopback tests). */
  allowInsecureAuth?: boolean;
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

/**
 * The submission server, not yet listening. `acceptMessage` spools a message and resolves
 * with its id once durable; `isStopping` says the runtime is shutting down (answer 421).
 * Throws on options that would make AUTH unsafe: users without TLS and without
 * `allowInsecureAuth`, or a malformed password hash.
 */
export function createSubmissionServer(
  options: SubmissionOptions & { name: string },
  acceptMessage: (envelope: { from: string; to: string[] }, message: Buffer, values: ControlValues) => Promise<string>,
  isStopping: () => boolean,
): SMTPServer {
  const fromClientNetwork = networkMatcher(options.clientNetworks ?? DEFAULT_CLIENT_NETWORKS);
  const users = new Map((options.users ?? []).map((u) => [u.user, u.passwordHash]));
  const allowInsecureAuth = options.allowInsecureAuth ?? false;
  for (const [user, hash] of users) if (!isPasswordHash(hash)) throw new Error(`submission user \`${user}\`: password hash is not in the form scrypt$ln=N,r=R,p=P$SALT$HASH`);
  if (users.size > 0 && !options.tls && !allowInsecureAuth) throw new Error('submission users need TLS (a key and certificate) or allowInsecureAuth');
  // Checked for unknown users too, so the answer takes as long as for a known one.
  const decoy = `scrypt$ln=${SCRYPT.ln},r=${SCRYPT.r},p=${SCRYPT.p}$${'A'.repeat(22)}$${'A'.repeat(43)}`;
  const disabledCommands = [...(options.tls ? [] : ['STARTTLS']), ...(users.size > 0 ? [] : ['AUTH'])];
  return new SMTPServer({
    name: options.name,
    banner: 'Petrel',
    authOptional: true,
    authMethods: ['PLAIN', 'LOGIN'],
    allowInsecureAuth,
    disabledCommands,
    ...(options.tls ? { key: options.tls.key, cert: options.tls.cert } : {}),
    size: options.maxMessageBytes ?? 50 * 1024 * 1024,
    logger: false,
    onAuth(auth: SMTPServerAuthentication, session: SMTPServerSession, callback) {
      // smtp-server already refuses AUTH before STARTTLS (538) when STARTTLS is offered;
      // this holds the line even if it were not.
      if (!session.secure && !allowInsecureAuth) return callback(fail(538, '5.7.11 Encryption required for requested authentication mechanism'));
      if (auth.method !== 'PLAIN' && auth.method !== 'LOGIN') return callback(fail(504, '5.5.4 Unrecognized authentication type'));
      const hash = users.get(auth.username ?? '');
      verifyPassword(auth.password ?? '', hash ?? decoy).then(
        (ok) => (ok && hash ? callback(null, { user: auth.username }) : callback(fail(535, '5.7.8 Authentication credentials invalid'))),
        () => callback(fail(454, '4.7.0 Temporary authentication failure')),
      );
    },
    onRcptTo(_address, session: SMTPServerSession, callback) {
      // smtp-server sets `user` to false (not undefined) after STARTTLS: test truthiness.
      if (!session.user && !fromClientNetwork(session.remoteAddress)) return callback(fail(550, '5.7.1 Relaying denied'));
      callback();
    },
    onData(stream: SMTPServerDataStream, session: SMTPServerSession, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        if (stream.sizeExceeded) return callback(fail(552, '5.3.4 Message too big'));
        if (isStopping()) return callback(fail(421, '4.3.2 Shutting down, try again later'));
        const { values, message } = takeControlHeaders(Buffer.concat(chunks));
        const envelope = { from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '', to: session.envelope.rcptTo.map((r) => r.address) };
        acceptMessage(envelope, message, values).then(
          (id) => callback(null, `2.0.0 queued as ${id}`),
          (e: Error) => callback(fail(451, `4.3.0 Spool error: ${e.message}`)),
        );
      });
    },
  });
}
