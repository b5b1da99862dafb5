/**
 * DKIM signing (RFC 6376; Ed25519 by RFC 8463): which keys sign a message, and the
 * `DKIM-Signature` header fields that sign it. Keys in, header fields out: the caller
 * reads the key files (at start and on reload) and puts the fields on top of the message.
 *
 * The signing domain is aligned with the From header: the From domain itself, else the
 * closest parent domain that has keys, else the configured fallback domain. A tenant's own
 * keys for a domain come before the shared keys for it. Every key of the chosen set signs
 * (an RSA and an Ed25519 key: dual signing), relaxed/relaxed, never with `l=`.
 *
 * mailauth does the parsing and canonicalisation (its DkimSigner streams the message,
 * normalises line ends and hashes the body once for every key). Its own per-signature
 * step is replaced here (`finalize`) for two things it cannot do: sign with a cached
 * KeyObject (it parses the PEM again for every signature) and over-sign (name a header
 * field in `h=` once more than it occurs, so a copy added later breaks the signature).
 *
 * One shortcut past mailauth's stream (`plainBodyHash`): most messages are plain — CRLF
 * line ends only, and a body without tabs, runs of spaces or spaces at line ends — and for
 * those relaxed body canonicalisation changes no byte but trailing empty lines, so the
 * body hash is SHA-256 over the body itself. Native `Buffer.indexOf` checks that, instead
 * of mailauth's two JavaScript passes over every byte (line-end normalisation, relaxed
 * canonicalisation): they were half of signing's CPU at 100 KB. The header block is still
 * parsed, canonicalised and signed by mailauth's functions; any other message goes
 * through mailauth's stream whole, and the tests hold the two to identical signatures.
 *
 * INVARIANT: a private key leaves this module only into `crypto.sign` (in the signing
 * threads, dkim-signing.ts, which get the keyring as KeyObjects and use it only here);
 * nothing here puts it, its file's content or anything derived from it but the public
 * fingerprint into a message, a log line or a status.
 *
 * The live keys, their reload and the threads that sign are in dkim-signing.ts.
 */
import { createHash, createPublicKey, sign, type KeyObject, createPrivateKey } from 'node:crypto';
import { createRequire } from 'node:module';
import type { Writable } from 'node:stream';
import { domainToASCII } from 'node:url';

export type DkimAlgorithm = 'rsa-sha256' | 'ed25519-sha256';

/** One key as the runtime config names it (`dkim.keys[]`). */
export interface DkimKeyConfig {
  /** The signing domain (`d=`). */
  domain: string;
  /** The selector (`s=`): the key's DNS record is `SELECTOR._domainkey.DOMAIN`. */
  selector: string;
  /** A PEM private key (PKCS#8, or PKCS#1 for RSA): RSA of 1024 to 8192 bits, or Ed25519. */
  keyFile: string;
  /** Only for messages of this tenant (X-Petrel-Tenant / the API's `tenant`). */
  tenant?: string;
}

/** The runtime config's `dkim` section. */
export interface DkimConfig {
  keys: DkimKeyConfig[];
  /** Signs messages whose From domain (and its parents) has no key; it needs keys of its own. */
  fallbackDomain?: string;
}

/** A key, loaded. */
export interface DkimKey {
  domain: string;
  selector: string;
  tenant: string | undefined;
  algorithm: DkimAlgorithm;
  /** RSA modulus length; undefined for Ed25519. */
  bits: number | undefined;
  /** `sha256:` and the base64 SHA-256 of the public key (SubjectPublicKeyInfo DER): safe to show. */
  fingerprint: string;
  privateKey: KeyObject;
}

/** Every key, indexed by (tenant, domain). Built by {@link loadDkimKeyring}; never changed. */
export interface DkimKeyring {
  readonly keys: readonly DkimKey[];
  readonly fallbackDomain: string | undefined;
  /** `TENANT\nDOMAIN` (empty tenant: shared keys) → the keys that sign together. */
  readonly sets: ReadonlyMap<string, readonly DkimKey[]>;
}

/** A bad `dkim` config or key file: the message names the key (`dkim.keys.N…`) and the reason. */
export class DkimConfigError extends Error {}

/** Keys that sign one message at most: each signature costs a private-key operation. */
export const MAX_KEYS_PER_DOMAIN = 4;
/** Keys in one config at most. */
export const MAX_KEYS = 10_000;
/** A key file larger than this is not a key. */
export const MAX_KEY_FILE_BYTES = 64 * 1024;

const LABEL = '[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9])?';
const DNS_NAME = new RegExp(`^(?=.{1,253}$)${LABEL}(?:\\.${LABEL})*$`);
const TENANT = /^[\x21-\x7e]{1,256}$/;

/** `domain` lowercased, without a final dot, IDNs as A-labels; undefined when it is not a DNS name. */
export function normalizeDomain(domain: string): string | undefined {
  const ascii = domainToASCII(domain.trim().replace(/\.$/, '')).toLowerCase();
  return DNS_NAME.test(ascii) ? ascii : undefined;
}

/**
 * Loads every key of `config`, reading key files with `readKey`; throws a
 * {@link DkimConfigError} naming the first bad key. Nothing is half-loaded: either every
 * key parses or the caller keeps what it had.
 */
export function loadDkimKeyring(config: DkimConfig, readKey: (file: string) => Buffer): DkimKeyring {
  if (config.keys.length > MAX_KEYS) throw new DkimConfigError(`\`dkim.keys\` holds ${config.keys.length} keys; at most ${MAX_KEYS}`);
  const keys = config.keys.map((entry, i) => loadKey(entry, `dkim.keys.${i}`, readKey));
  const sets = new Map<string, DkimKey[]>();
  const records = new Map<string, string>();
  keys.forEach((key, i) => {
    const record = `${key.selector}._domainkey.${key.domain}`;
    const other = records.get(record);
    if (other !== undefined && other !== key.fingerprint) throw new DkimConfigError(`\`dkim.keys.${i}\`: \`${record}\` names two different keys; one DNS record publishes one key`);
    records.set(record, key.fingerprint);
    const set = sets.get(`${key.tenant ?? ''}\n${key.domain}`) ?? [];
    if (set.some((k) => k.selector === key.selector)) throw new DkimConfigError(`\`dkim.keys.${i}\`: selector \`${key.selector}\` of \`${key.domain}\`${key.tenant ? ` for tenant \`${key.tenant}\`` : ''} is given twice`);
    set.push(key);
    if (set.length > MAX_KEYS_PER_DOMAIN) throw new DkimConfigError(`\`dkim.keys.${i}\`: more than ${MAX_KEYS_PER_DOMAIN} keys sign for \`${key.domain}\`${key.tenant ? ` for tenant \`${key.tenant}\`` : ''}; each is a signature on every message`);
    sets.set(`${key.tenant ?? ''}\n${key.domain}`, set);
  });
  let fallbackDomain: string | undefined;
  if (config.fallbackDomain !== undefined) {
    fallbackDomain = normalizeDomain(config.fallbackDomain);
    if (fallbackDomain === undefined) throw new DkimConfigError(`\`dkim.fallbackDomain\`: \`${config.fallbackDomain}\` is not a domain name`);
    if (!sets.has(`\n${fallbackDomain}`)) throw new DkimConfigError(`\`dkim.fallbackDomain\`: \`${fallbackDomain}\` has no key of its own (one without \`tenant\`) in \`dkim.keys\``);
  }
  return { keys, fallbackDomain, sets };
}

function loadKey(entry: DkimKeyConfig, at: string, readKey: (file: string) => Buffer): DkimKey {
  const domain = normalizeDomain(entry.domain);
  if (domain === undefined) throw new DkimConfigError(`\`${at}.domain\`: \`${entry.domain}\` is not a domain name`);
  const selector = entry.selector.toLowerCase();
  if (!DNS_NAME.test(selector)) throw new DkimConfigError(`\`${at}.selector\`: \`${entry.selector}\` is not a selector (DNS labels: letters, digits, - and _)`);
  if (entry.tenant !== undefined && !TENANT.test(entry.tenant)) throw new DkimConfigError(`\`${at}.tenant\`: a tenant is 1 to 256 printable characters`);
  let pem: Buffer;
  try {
    pem = readKey(entry.keyFile);
  } catch (e) {
    throw new DkimConfigError(`\`${at}.keyFile\`: cannot read ${entry.keyFile}: ${(e as Error).message}`);
  }
  if (pem.length > MAX_KEY_FILE_BYTES) throw new DkimConfigError(`\`${at}.keyFile\`: ${entry.keyFile} is ${pem.length} bytes; a key file is at most ${MAX_KEY_FILE_BYTES}`);
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey({ key: pem, format: 'pem' });
  } catch (e) {
    // Node's reason names the format problem (or a passphrase), never the key's content.
    throw new DkimConfigError(`\`${at}.keyFile\`: ${entry.keyFile} is not an unencrypted PEM private key (${(e as Error).message})`);
  }
  const type = privateKey.asymmetricKeyType;
  const bits = privateKey.asymmetricKeyDetails?.modulusLength;
  if (type === 'rsa' && (bits === undefined || bits < 1024 || bits > 8192)) throw new DkimConfigError(`\`${at}.keyFile\`: ${entry.keyFile} is a ${bits}-bit RSA key; DKIM takes 1024 to 8192 bits (2048 recommended)`);
  if (type !== 'rsa' && type !== 'ed25519') throw new DkimConfigError(`\`${at}.keyFile\`: ${entry.keyFile} is a ${type} key; DKIM signs with RSA or Ed25519`);
  return { domain, selector, tenant: entry.tenant, algorithm: type === 'rsa' ? 'rsa-sha256' : 'ed25519-sha256', bits: type === 'rsa' ? bits : undefined, fingerprint: keyFingerprint(privateKey), privateKey };
}

/** `sha256:` and the base64 SHA-256 of the public key's SubjectPublicKeyInfo (DER). */
export function keyFingerprint(key: KeyObject): string {
  const spki = createPublicKey(key).export({ type: 'spki', format: 'der' });
  return `sha256:${createHash('sha256').update(spki).digest('base64')}`;
}

/**
 * The TXT record text that publishes `key` (private or public) at
 * `SELECTOR._domainkey.DOMAIN`: RSA as its SubjectPublicKeyInfo, Ed25519 as the bare
 * 32-byte public key (RFC 8463 §4.2).
 */
export function dkimRecord(key: KeyObject): string {
  const pub = createPublicKey(key);
  const der = pub.export({ type: 'spki', format: 'der' });
  if (pub.asymmetricKeyType === 'rsa') return `v=DKIM1; k=rsa; p=${der.toString('base64')}`;
  if (pub.asymmetricKeyType === 'ed25519') return `v=DKIM1; k=ed25519; p=${der.subarray(-32).toString('base64')}`;
  throw new DkimConfigError(`a ${pub.asymmetricKeyType} key cannot sign DKIM; use RSA or Ed25519`);
}

/** The keys that sign for a From domain, and the domain they sign as. */
export interface DkimChoice {
  domain: string;
  keys: readonly DkimKey[];
  /** Signed with the fallback domain: no key for the From domain or a parent of it. */
  fallback: boolean;
}

/** `domain`, then each parent that still has a dot (`a.b.example.com`, `b.example.com`, `example.com`). */
function* domainAndParents(domain: string): Generator<string> {
  for (let d = domain; d.includes('.'); d = d.slice(d.indexOf('.') + 1)) yield d;
}

/**
 * The keys for a message from `fromDomain` (undefined: no usable From) of `tenant`: the
 * From domain's, else the closest parent's, else the fallback domain's; at each domain
 * the tenant's own keys before the shared ones. Undefined: nothing signs it.
 */
export function chooseKeys(ring: DkimKeyring, fromDomain: string | undefined, tenant: string | undefined): DkimChoice | undefined {
  const at = (domain: string) => (tenant !== undefined ? ring.sets.get(`${tenant}\n${domain}`) : undefined) ?? ring.sets.get(`\n${domain}`);
  for (const domain of fromDomain ? domainAndParents(fromDomain) : []) {
    const keys = at(domain);
    if (keys) return { domain, keys, fallback: false };
  }
  if (ring.fallbackDomain === undefined) return undefined;
  return { domain: ring.fallbackDomain, keys: at(ring.fallbackDomain)!, fallback: true };
}

/**
 * The domain of the first address of a From field's value (`"A, B" <a@Example.COM>`,
 * `a@example.com (A)`, `a@b.example, c@d.example`), normalised; undefined when it has none.
 */
export function addressDomain(value: string): string | undefined {
  const text = value.replace(/"(?:[^"\\]|\\.)*"/g, '""').replace(/\((?:[^()\\]|\\.)*\)/g, ' ');
  const address = (/<([^<>]*)>/.exec(text)?.[1] ?? text.split(',')[0]!).trim();
  const at = address.lastIndexOf('@');
  return at < 0 ? undefined : normalizeDomain(address.slice(at + 1));
}

// ---------------------------------------------------------------------------------------
// signing with mailauth

/** A header field as mailauth parses it (`line`: the whole field, folded as it came). */
interface ParsedHeader {
  key: string | null;
  casedKey?: string;
  line: Buffer;
}
/** The header fields that a signature covers, and its `h=` (`keys`). */
interface SigningHeaderLines {
  keys: string;
  headers: ParsedHeader[];
}
/** What this module uses of mailauth's DkimSigner (lib/dkim/dkim-signer.js, 4.13.3). */
interface MailauthDkimSigner extends Writable {
  headers: { parsed: ParsedHeader[] } | false;
  signatureData: object[];
  bodyHashes: Map<string, { hash: string | null }>;
  signatureHeaders: string[];
  setupHashes(): void;
  messageHeaders(headers: { parsed: ParsedHeader[] }): Promise<void>;
  finalize(): Promise<void>;
}

const require = createRequire(import.meta.url);
// Deep imports: the package's entry exposes dkimSign only, which can neither take a
// KeyObject nor over-sign. The version is pinned exactly; the tests verify every signature.
const { DkimSigner } = require('mailauth/lib/dkim/dkim-signer.js') as { DkimSigner: new (options: object) => MailauthDkimSigner };
const { relaxedHeaders } = require('mailauth/lib/dkim/header/relaxed.js') as {
  relaxedHeaders(type: 'DKIM', lines: SigningHeaderLines, options: object): { canonicalizedHeader: Buffer; dkimHeaderOpts: Record<string, unknown> };
};
const { getSigningHeaderLines, formatSignatureHeaderLine, parseHeaders } = require('mailauth/lib/tools.js') as {
  getSigningHeaderLines(parsed: ParsedHeader[], fieldNames: string): SigningHeaderLines;
  formatSignatureHeaderLine(type: 'DKIM', values: Record<string, unknown>, folded: boolean): string;
  parseHeaders(block: Buffer): { parsed: ParsedHeader[] };
};

/** Over-signed always: a message without them cannot be given one later, nor a second one. */
const OVERSIGNED_ALWAYS = ['From', 'Subject', 'To'];
/** Over-signed where present: a second copy cannot be added. */
const OVERSIGNED_PRESENT = ['Date', 'Message-ID', 'Reply-To', 'Content-Type', 'MIME-Version', 'List-Unsubscribe', 'List-Unsubscribe-Post', 'Feedback-ID'];
/** Signed where present, not over-signed: lists and forwarders may add a Sender or Cc, and that must not break us. */
const SIGNED_PRESENT = [
  'Cc', 'Sender', 'In-Reply-To', 'References', 'Content-Transfer-Encoding', 'Content-ID', 'Content-Description',
  'List-Id', 'List-Help', 'List-Subscribe', 'List-Post', 'List-Owner', 'List-Archive', 'BIMI-Selector',
  'Resent-Date', 'Resent-From', 'Resent-Sender', 'Resent-To', 'Resent-Cc', 'Resent-Message-ID',
];
/** Every field name a signature covers, lowercase. */
export const SIGNED_HEADERS: readonly string[] = [...OVERSIGNED_ALWAYS, ...OVERSIGNED_PRESENT, ...SIGNED_PRESENT].map((n) => n.toLowerCase());

/**
 * The fields a signature covers and its `h=`: every instance of a signed name (bottom up,
 * as a verifier takes them), then once more each over-signed name — an instance that does
 * not exist, which counts as empty (RFC 6376 §5.4.2), so a copy added later breaks it.
 */
function signedHeaderLines(parsed: ParsedHeader[]): SigningHeaderLines {
  const { headers } = getSigningHeaderLines(parsed, SIGNED_HEADERS.join(':'));
  const present = new Set(headers.map((h) => h.key));
  const oversigned = [...OVERSIGNED_ALWAYS, ...OVERSIGNED_PRESENT.filter((n) => present.has(n.toLowerCase()))];
  return { keys: [...headers.map((h) => h.casedKey!), ...oversigned].join(': '), headers };
}

/** One `DKIM-Signature` field (folded, without its CRLF) by `key` over `lines` and the body hash. */
function signatureField(key: DkimKey, lines: SigningHeaderLines, bodyHash: string, signTime: Date): string {
  const { canonicalizedHeader, dkimHeaderOpts } = relaxedHeaders('DKIM', lines, { signingDomain: key.domain, selector: key.selector, algorithm: key.algorithm, canonicalization: 'relaxed/relaxed', bodyHash, signTime });
  // RFC 8463: Ed25519 signs the SHA-256 of the canonical header data; RSA hashes it itself.
  const signature = key.algorithm === 'rsa-sha256' ? sign('sha256', canonicalizedHeader, key.privateKey) : sign(null, createHash('sha256').update(canonicalizedHeader).digest(), key.privateKey);
  return formatSignatureHeaderLine('DKIM', { ...dkimHeaderOpts, b: signature.toString('base64') }, true);
}

/** The `DKIM-Signature` fields (folded, without CRLF) by every key of `choice` over the parsed header block and the body hash. */
function signatureFields(choice: DkimChoice, parsed: ParsedHeader[], bodyHash: string, signTime: Date): string[] {
  const lines = signedHeaderLines(parsed);
  return choice.keys.map((key) => signatureField(key, lines, bodyHash, signTime));
}

/** The domain of the first From field of a parsed header block; undefined without one. */
function fromDomain(parsed: ParsedHeader[]): string | undefined {
  const from = parsed.find((h) => h.key === 'from');
  return from ? addressDomain(from.line.toString('utf8').replace(/^[^:]*:/, '').replace(/\r?\n/g, '')) : undefined;
}

/** mailauth's signer, choosing its keys from the From header once the header block is read. */
class MessageSigner extends DkimSigner {
  choice: DkimChoice | undefined;
  constructor(
    private readonly choose: (fromDomain: string | undefined) => DkimChoice | undefined,
    // t= is given, not taken from the clock twice: mailauth formats the field twice.
    private readonly signTime: Date,
  ) {
    super({ canonicalization: 'relaxed/relaxed', signTime });
  }

  override async messageHeaders(headers: { parsed: ParsedHeader[] }): Promise<void> {
    this.choice = this.choose(fromDomain(headers.parsed));
    // Every key hashes the body alike (relaxed, SHA-256, whole body): one hash for all.
    this.signatureData = (this.choice?.keys ?? []).map((k) => ({ type: 'DKIM', privateKey: k.privateKey, algorithm: k.algorithm, canonicalization: 'relaxed/relaxed' }));
    this.setupHashes();
    await super.messageHeaders(headers);
  }

  override async finalize(): Promise<void> {
    if (!this.choice || !this.headers) return;
    const [body] = [...this.bodyHashes.values()];
    this.signatureHeaders.push(...signatureFields(this.choice, this.headers.parsed, body!.hash!, this.signTime));
  }
}

const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
const CRLF = Buffer.from('\r\n');
/** Where mailauth's parser ends the header block (after its line-end normalisation): the LF of an empty line. */
const HEADER_END = Buffer.from('\n\r\n');

/** The fields to put on top of a message, and what signed it. */
export interface DkimSignature {
  /** The `DKIM-Signature` fields, each ending in CRLF. */
  fields: Buffer;
  choice: DkimChoice;
}

const fieldsBuffer = (fields: readonly string[]) => Buffer.from(fields.map((f) => `${f}\r\n`).join(''), 'latin1');

/**
 * Signs `message` (the whole message, as chunks) for `tenant` at `signTime` with the keys
 * {@link chooseKeys} picks for its From domain; undefined when none does. A plain message
 * ({@link plainBodyHash}) is hashed natively; any other goes through mailauth's stream.
 */
export async function signMessage(ring: DkimKeyring, message: readonly Buffer[], tenant: string | undefined, signTime: Date): Promise<DkimSignature | undefined> {
  const whole = message.length === 1 ? message[0]! : Buffer.concat(message);
  const plain = plainBodyHash(whole);
  if (!plain) return signMessageStreamed(ring, [whole], tenant, signTime);
  const { parsed } = parseHeaders(plain.header);
  const choice = chooseKeys(ring, fromDomain(parsed), tenant);
  return choice && { fields: fieldsBuffer(signatureFields(choice, parsed, plain.bodyHash, signTime)), choice };
}

/**
 * The header block and the relaxed/SHA-256 body hash of `message` when relaxed
 * canonicalisation would change no byte inside its body; undefined when it might, or when
 * the message has no empty line ending its header block. Plain means: no bare LF anywhere
 * (mailauth rewrites each to CRLF first, headers included), and a body (trailing CR and LF
 * aside) with no tab, no two spaces in a row, no space before a CR and none at its end.
 * Then relaxed canonicalisation only drops the trailing empty lines and ends a non-empty
 * body with one CRLF (RFC 6376 §3.4.4), and that is what is hashed. A bare CR is an
 * ordinary byte to it, as to mailauth.
 */
export function plainBodyHash(message: Buffer): { header: Buffer; bodyHash: string } | undefined {
  for (let at = message.indexOf(LF); at >= 0; at = message.indexOf(LF, at + 1)) if (at === 0 || message[at - 1] !== CR) return undefined;
  const end = message.indexOf(HEADER_END);
  if (end < 0) return undefined;
  const body = message.subarray(end + HEADER_END.length);
  let length = body.length;
  while (length > 0 && (body[length - 1] === CR || body[length - 1] === LF)) length--;
  const text = body.subarray(0, length);
  if (text[length - 1] === SP || text.indexOf(0x09) >= 0 || text.indexOf('  ') >= 0 || text.indexOf(' \r') >= 0) return undefined;
  const hash = createHash('sha256').update(text);
  if (length > 0) hash.update(CRLF);
  return { header: message.subarray(0, end + HEADER_END.length), bodyHash: hash.digest('base64') };
}

/**
 * {@link signMessage} through mailauth's stream for every message: its line-end
 * normalisation and relaxed canonicalisation, byte by byte. What signs a message that is
 * not plain; exported as the reference the tests and `bench/delivery-dkim.ts --sign` hold
 * the shortcut to.
 */
export async function signMessageStreamed(ring: DkimKeyring, message: readonly Buffer[], tenant: string | undefined, signTime: Date): Promise<DkimSignature | undefined> {
  const signer = new MessageSigner((from) => chooseKeys(ring, from, tenant), signTime);
  // A CRLF more never changes a relaxed body hash (empty lines at the end are ignored, a
  // missing final CRLF is added), and it ends the header block of a message that has no
  // body, so that one is signed too (mailauth signs nothing without an end of headers).
  // Written straight in (the message is in memory already), not through stream.pipeline:
  // its AbortController made a DOMException per message, about 6% of signing's time at 4 KB (cpu profile).
  await new Promise<void>((resolve, reject) => {
    signer.once('error', reject);
    signer.once('finish', resolve);
    for (const chunk of message) signer.write(chunk);
    signer.end(CRLF);
  });
  if (!signer.choice) return undefined;
  if (signer.signatureHeaders.length !== signer.choice.keys.length) throw new Error(`dkim: ${signer.signatureHeaders.length} of ${signer.choice.keys.length} signatures made for ${signer.choice.domain}`);
  return { fields: fieldsBuffer(signer.signatureHeaders), choice: signer.choice };
}
