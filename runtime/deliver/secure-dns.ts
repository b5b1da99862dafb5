/**
 * A DNS client for outbound TLS policy that can see the AD ("authenticated data") bit,
 * which Node's `dns` module never shows: one query at a time to one configured, local,
 * DNSSEC-validating resolver (unbound or similar), over UDP with EDNS0 (DO set) and over
 * TCP when the answer is truncated.
 *
 * INVARIANT: `authenticated` is true only when the answer came from the configured
 * resolver, which is a loopback address (checked when the client is made: the AD bit of
 * a resolver across a network proves nothing, RFC 6698 §4.1), over a socket connected to
 * it (a datagram from any other address or port is never read), with the query's id and
 * question, and had AD set.
 *
 * Answers are the RDATA of the records of the asked type in the answer section (a CNAME
 * chain the resolver followed is skipped over), each at most 65535 bytes, the whole
 * response at most 65535 bytes; a query is bounded by `timeoutMs`.
 */
import dgram from 'node:dgram';
import net, { BlockList } from 'node:net';
import { randomInt } from 'node:crypto';

/** The record types outbound TLS policy asks for. */
export const DNS_TYPES = { A: 1, AAAA: 28, TXT: 16, TLSA: 52, CNAME: 5 } as const;
export type DnsType = Exclude<keyof typeof DNS_TYPES, 'CNAME'>;

/** What one query gave: the records (RDATA), or why there are none. */
export type DnsAnswer =
  | { ok: true; authenticated: boolean; records: Buffer[] }
  /** NXDOMAIN (no such name) and NODATA (name, no record of the type) are answers too: `records` is empty. */
  | { ok: false; reason: string; rcode: number | undefined };

export interface SecureDns {
  /** `host:port` of the resolver asked. */
  readonly resolver: string;
  query(name: string, type: DnsType): Promise<DnsAnswer>;
}

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');

/** Parses `127.0.0.1:5353` or `[::1]:53`; throws a message naming the value when it is not a loopback address and port. */
export function parseResolverAddress(value: string): { host: string; port: number; family: 4 | 6 } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(value);
  const host = m?.[1] ?? m?.[2] ?? '';
  const port = Number(m?.[3]);
  const family = net.isIP(host);
  if (!m || family === 0 || !(port >= 1 && port <= 65535)) throw new Error(`dns resolver \`${value}\` is not an address:port (\`127.0.0.1:53\`, \`[::1]:53\`)`);
  if (!LOOPBACK.check(host, family === 4 ? 'ipv4' : 'ipv6')) throw new Error(`dns resolver \`${value}\` is not a loopback address: its AD bit could be forged on the way, so only a local validating resolver is trusted`);
  return { host, port, family: family as 4 | 6 };
}

/** Encodes the query: RD and AD set, EDNS0 with DO (RFC 6840 §5.7: AD in a query asks for AD in the answer). */
export function encodeQuery(id: number, name: string, type: number): Buffer {
  const labels = name.replace(/\.$/, '').split('.').filter(Boolean);
  if (labels.some((l) => Buffer.byteLength(l) > 63) || name.length > 253) throw new Error(`invalid DNS name \`${name}\``);
  const qname = Buffer.concat([...labels.map((l) => Buffer.concat([Buffer.from([Buffer.byteLength(l)]), Buffer.from(l)])), Buffer.from([0])]);
  const header = Buffer.alloc(12);
  header.writeUInt16BE(id, 0);
  header.writeUInt16BE(0x0120, 2); // RD | AD
  header.writeUInt16BE(1, 4); // one question
  header.writeUInt16BE(1, 10); // one additional: OPT
  const question = Buffer.alloc(4);
  question.writeUInt16BE(type, 0);
  question.writeUInt16BE(1, 2); // IN
  const opt = Buffer.from([0, 0, 41, 0x04, 0xd0, 0, 0, 0x80, 0, 0, 0]); // root, OPT, udp 1232, DO
  return Buffer.concat([header, qname, question, opt]);
}

/** Skips a (possibly compressed) name at `at`; returns the offset after it. */
function skipName(msg: Buffer, at: number): number {
  for (let i = at, hops = 0; hops < 128; hops++) {
    const len = msg[i];
    if (len === undefined) throw new Error('truncated name');
    if (len === 0) return i + 1;
    if ((len & 0xc0) === 0xc0) return i + 2;
    i += len + 1;
  }
  throw new Error('name too long');
}

/** Reads a response to query `id` for `type`: the flags and the RDATA of every answer of that type. */
export function decodeResponse(msg: Buffer, id: number, type: number): { rcode: number; ad: boolean; tc: boolean; records: Buffer[] } {
  if (msg.length < 12 || msg.readUInt16BE(0) !== id || (msg.readUInt16BE(2) & 0x8000) === 0) throw new Error('not the answer to this query');
  const flags = msg.readUInt16BE(2);
  const qd = msg.readUInt16BE(4);
  const an = msg.readUInt16BE(6);
  let at = 12;
  for (let i = 0; i < qd; i++) at = skipName(msg, at) + 4;
  const records: Buffer[] = [];
  for (let i = 0; i < an; i++) {
    at = skipName(msg, at);
    if (at + 10 > msg.length) throw new Error('truncated record');
    const rtype = msg.readUInt16BE(at);
    const rdlength = msg.readUInt16BE(at + 8);
    const rdata = msg.subarray(at + 10, at + 10 + rdlength);
    if (rdata.length !== rdlength) throw new Error('truncated record data');
    if (rtype === type) records.push(Buffer.from(rdata));
    at += 10 + rdlength;
  }
  return { rcode: flags & 0x0f, ad: (flags & 0x0020) !== 0, tc: (flags & 0x0200) !== 0, records };
}

const RCODES: Record<number, string> = { 1: 'FORMERR', 2: 'SERVFAIL', 4: 'NOTIMP', 5: 'REFUSED' };

/** A client of the resolver at `address` (loopback only, see {@link parseResolverAddress}). */
export function createSecureDns(address: string, options: { timeoutMs?: number } = {}): SecureDns {
  const server = parseResolverAddress(address);
  const timeoutMs = options.timeoutMs ?? 5_000;
  return {
    resolver: address,
    async query(name, type) {
      const id = randomInt(0, 0x10000);
      const code = DNS_TYPES[type];
      let query: Buffer;
      try {
        query = encodeQuery(id, name, code);
      } catch (e) {
        return { ok: false, reason: (e as Error).message, rcode: undefined };
      }
      try {
        let r = decodeResponse(await exchangeUdp(server, query, timeoutMs), id, code);
        if (r.tc) r = decodeResponse(await exchangeTcp(server, query, timeoutMs), id, code);
        if (r.rcode === 0 || r.rcode === 3) return { ok: true, authenticated: r.ad, records: r.rcode === 3 ? [] : r.records };
        return { ok: false, reason: `${type} ${name}: ${RCODES[r.rcode] ?? `rcode ${r.rcode}`}`, rcode: r.rcode };
      } catch (e) {
        return { ok: false, reason: `${type} ${name}: ${(e as Error).message}`, rcode: undefined };
      }
    },
  };
}

/** Runs one exchange: `start` opens a socket, calls `done` once with the answer or an error, and returns how to close the socket; settles once, at `done` or after `timeoutMs`. */
function bounded(timeoutMs: number, timeoutMessage: string, start: (done: (err: Error | null, msg?: Buffer) => void) => () => void): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let settled = false;
    let close = () => {};
    const done = (err: Error | null, msg?: Buffer) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      close();
      if (err) reject(err);
      else resolve(msg!);
    };
    const timer = setTimeout(() => done(new Error(timeoutMessage)), timeoutMs);
    close = start(done);
  });
}

/** One datagram out, the first datagram back from the resolver (a connected socket reads no other sender). */
function exchangeUdp(server: { host: string; port: number; family: 4 | 6 }, query: Buffer, timeoutMs: number): Promise<Buffer> {
  return bounded(timeoutMs, `no answer from ${server.host}:${server.port} within ${timeoutMs} ms`, (done) => {
    const socket = dgram.createSocket(server.family === 4 ? 'udp4' : 'udp6');
    socket.once('error', (err) => done(err));
    socket.once('message', (msg) => done(null, msg));
    socket.connect(server.port, server.host, () => socket.send(query));
    return () => socket.close();
  });
}

/** The query over TCP (two-byte length prefix both ways), for an answer too big for UDP. */
function exchangeTcp(server: { host: string; port: number }, query: Buffer, timeoutMs: number): Promise<Buffer> {
  return bounded(timeoutMs, `no TCP answer from ${server.host}:${server.port} within ${timeoutMs} ms`, (done) => {
    const socket = net.connect({ host: server.host, port: server.port });
    const chunks: Buffer[] = [];
    let length = 0;
    socket.once('error', (err) => done(err));
    socket.once('connect', () => {
      const prefix = Buffer.alloc(2);
      prefix.writeUInt16BE(query.length);
      socket.write(Buffer.concat([prefix, query]));
    });
    socket.on('data', (c: Buffer) => {
      chunks.push(c);
      length += c.length;
      const all = Buffer.concat(chunks, length);
      if (all.length >= 2 && all.length >= 2 + all.readUInt16BE(0)) done(null, all.subarray(2, 2 + all.readUInt16BE(0)));
    });
    socket.once('end', () => done(new Error('connection closed before the whole answer')));
    return () => socket.destroy();
  });
}

/** TXT RDATA as text: its character-strings joined (RFC 7208 §3.3's rule, which MTA-STS and TLS-RPT follow). */
export function txtText(rdata: Buffer): string {
  const parts: string[] = [];
  for (let i = 0; i < rdata.length; ) {
    const len = rdata[i]!;
    parts.push(rdata.subarray(i + 1, i + 1 + len).toString('latin1'));
    i += len + 1;
  }
  return parts.join('');
}

/** A or AAAA RDATA as an address. */
export function addressText(rdata: Buffer): string {
  if (rdata.length === 4) return [...rdata].join('.');
  return new net.SocketAddress({ address: [...Array(8).keys()].map((i) => rdata.readUInt16BE(i * 2).toString(16)).join(':'), family: 'ipv6' }).address;
}
