/**
 * The durable spool: where an accepted message lives until every recipient is delivered,
 * bounced or expired. A message is acknowledged (SMTP 250, HTTP 202) only once `accept`
 * resolves, and `accept` resolves only once the message is on disk and fsync'd.
 *
 * ## Layout
 *
 * ```
 * DIR/lock                      symlink to PID.TOKEN of the process that has the spool open
 * DIR/reserve                   disk space held for outcomes on a full disk (spool/reserve.ts)
 * DIR/segments/NNNN….seg        append-only logs of checksummed records (spool/frame.ts)
 * DIR/corrupt/SEG@OFFSET.bin    bytes recovery could not read, kept for an operator
 * ```
 *
 * Every change is a record appended to the newest segment: a **message** record (header
 * JSON + raw bytes), an **outcome** record (recipients done: delivered, bounced, expired)
 * or a **deferral** record (attempts and next attempt time). Nothing is ever rewritten in
 * place. Recovery reads every segment and merges what it finds; the merge is order-free
 * (a recipient once done stays done; of two retry states the one with more attempts wins),
 * so a segment that outlives its deletion or a duplicated record changes nothing.
 *
 * ## Why a log and not one file per message
 *
 * A file per message costs, per message, an fsync of its data and (shared by a group) an
 * fsync of the directory, and the fsyncs of separate files cannot be merged. A log makes a
 * whole group one `writev` and one `fdatasync`: measured on the development machine (ext4,
 * virtual disk, ~1 ms per fdatasync, 20 concurrent writers of 4 KB messages) the raw I/O
 * pattern of the file-per-message design does 750 to 2,400 messages/s and this spool
 * 9,000 to 11,500 (`npx tsx bench/spool.ts` prints both). Outcomes ride in the same groups, so a
 * delivery's "done" mark costs no fsync of its own either. The price is reclaiming space,
 * below.
 *
 * ## fsync points, and why kill -9 (or power loss) loses nothing acknowledged
 *
 * 1. A new segment file is created, then its directory is fsync'd, before any record in
 *    it is acknowledged — so the file itself survives.
 * 2. A group of records is written with one `writev` and made durable with one
 *    `fdatasync` (which also persists the file size). Only then are the group's promises
 *    resolved and its messages indexed. Group commit: the first record to arrive when
 *    nothing is being written waits `groupCommitMs` for company; records that arrive
 *    while a group is being written (or in the event-loop turn after) form the next
 *    group, written as soon as the current one is durable. `groupCommitMs: 0` turns
 *    grouping off: one record per fdatasync.
 * 3. A segment is deleted only when it is the oldest, holds no live message, is not the
 *    one being appended to and is not in use (a read, a write, or its own creation until
 *    it becomes the one appended to), and each deletion is made durable (directory fsync)
 *    before the next. So a message record can never outlive the outcome records that
 *    finished it: those are in the same or a later segment (INVARIANT, see
 *    `relocateOldest` for moved messages).
 *
 * A crash mid-write leaves at most a torn record at the end of the segment being written;
 * it was never acknowledged, and recovery skips it by its checksum. Damage elsewhere is
 * skipped record by record: the bytes are copied to `corrupt/` and reported in
 * `recovery.corrupt`, and every other record is still read. After a power loss (not kill
 * -9) the kernel may have written an unacknowledged group's pages out of order, so such a
 * group can show up there too; the copy lets someone check.
 *
 * ## Reclaiming space
 *
 * A segment holds garbage once its messages are finished. The oldest segment is deleted
 * as soon as it holds no live message. When the segments hold more than twice the live
 * data (plus two segments of slack), the live messages of the oldest segment are copied
 * forward — a new message record carrying their recipient state — and the segment is
 * deleted once the copies are durable. Disk use stays under about twice the live data.
 *
 * ## Retry state and duplicates
 *
 * `recordDeferral` stores attempts and the next attempt time per recipient, so a restart
 * does not retry everything at once or reset the retry curve. Delivery is at least once: a
 * recipient delivered but not yet marked done when the process dies is delivered again
 * after restart. The window is one group commit (milliseconds) per in-flight delivery.
 *
 * ## A full disk
 *
 * A full disk (ENOSPC, EDQUOT) must not turn into mail sent again and again: a delivered
 * recipient has to be marked done even when no byte is free. So the spool keeps a
 * **reserve**, `DIR/reserve`, `reserveBytes` of real bytes (default 4 MiB, about 40,000
 * outcome records), and:
 *
 * - A write that finds the disk full is cut off its segment (`ftruncate` to where the
 *   group began; those bytes were never acknowledged), and a segment left empty is
 *   deleted: a refused write leaves no file and no byte behind.
 * - A new message in it is refused with `no-space` (intake answers `452 4.3.1`), and from
 *   then on new messages are refused before anything is written, so refusals cost no
 *   disk however many there are.
 * - Outcome and deferral records in it are not refused: the reserve is given up (truncated)
 *   for them and they are written at once. INVARIANT: the reserve is only ever given up
 *   for records about messages already accepted, never for a new message.
 * - Beyond the reserve, they wait in memory: the group is halved until what fits is
 *   written, then the rest waits and is tried again every second. Their recipients are
 *   already out of `pending()` (no one delivers them again), and `recordOutcome` resolves
 *   once the record is durable: an outcome may be acknowledged late, a message never
 *   before it is durable. If the process dies (or closes) while an outcome waits, that
 *   recipient is delivered again after the restart — at least once, as above.
 * - Every second it looks for room: once the disk has the whole reserve free and as much
 *   again to spare, it fills the reserve again (fdatasync'd) and accepts new messages,
 *   without a restart. The spare keeps a nearly full disk from flapping.
 * - Moving messages forward (compaction) needs room too: it copies a segment only when the
 *   disk has that segment's live bytes and the reserve's worth to spare, and never while
 *   short of space; finishing messages still deletes old segments, which frees space.
 * - Opening needs no free byte: the lock is a symlink (kept in its inode), recovery only
 *   reads, and a reserve that cannot be filled opens the spool short of space.
 *
 * ## Errors
 *
 * A write that fails for lack of space is handled as above. Any other failed write
 * rejects its records with a `write-failed` `SpoolError` (nothing was acknowledged:
 * answer 4xx) and the spool continues, in the same segment with the failed group cut
 * off (or, if even that fails, in a fresh one). A failed fsync
 * is different — after one, the kernel may have dropped the dirty pages and a retry
 * would succeed on lost data — so the spool stops: every later call rejects with
 * `failed` until it is closed and reopened, which recovers what is really on disk.
 * INVARIANT: every failed write reaches whoever waits for it — a caller, or maintenance,
 * which counts it in `maintenanceErrors` — from the moment it is queued; none is left
 * unhandled to end the process.
 *
 * One process per directory (`DIR/lock`); no module state: everything lives in the
 * object `openSpool` returns.
 */
import * as nodeFs from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { SpoolError } from './errors.ts';
import { decodeFrameAt, eachFrame, encodeFrame, KIND, MAX_BODY, type DecodedFrame, type EncodedFrame, type HeaderReader } from './frame.ts';
import { createIdGenerator } from './ids.ts';
import { errorCode, freeBytes, isNoSpace, readAll, syncDir, writeAll, type SpoolFs } from './io.ts';
import { acquireLock, type SpoolLock } from './lock.ts';
import { clearDone, indexer, isDone, mergeRetry, OUTCOMES, retryAt, setDone, setRetry, statesByAddress, type Outcome, type RecipientStates, type RetryState } from './recipient-state.ts';
import { openReserve, type SpaceReserve } from './reserve.ts';

export { SpoolError, type SpoolErrorCode } from './errors.ts';
export { createIdGenerator } from './ids.ts';
export type { SpoolFs } from './io.ts';
export type { Outcome } from './recipient-state.ts';

/** A message as submitted. `size` is the length of its raw bytes. */
export interface SpoolMessage {
  /**
   * Unique, and never reused — not even after the message is finished, since records
   * about a finished message can stay in the log for a while and would apply to a new
   * one with its id. `spool.newId()` makes such ids. Printable ASCII, no spaces, at most
   * 256 characters.
   */
  id: string;
  /** `from` may be empty (the null sender `<>`); `to` lists each recipient once. */
  envelope: { from: string; to: string[] };
  tenant?: string;
  pool?: string;
  campaign?: string;
  size: number;
  /** Milliseconds since the epoch. */
  receivedAt: number;
}

/** A recipient still to be delivered. */
export interface RecipientState {
  readonly rcpt: string;
  /** Deferrals recorded so far. */
  readonly attempts: number;
  /** When to try again (milliseconds since the epoch); absent until the first deferral. */
  readonly nextAttemptAt?: number;
}

/** A message in the spool with the recipients still open. Immutable: a change makes a new object. */
export interface SpooledMessage {
  readonly id: string;
  readonly envelope: { readonly from: string; readonly to: readonly string[] };
  readonly tenant?: string;
  readonly pool?: string;
  readonly campaign?: string;
  readonly size: number;
  readonly receivedAt: number;
  /** Open recipients in envelope order; never empty. */
  readonly recipients: readonly RecipientState[];
}

export interface SpoolOptions {
  /** How long the first write of a group waits for others to share its fsync; 0 turns grouping off. Default 2. */
  groupCommitMs?: number;
  /** Only for ids (`newId`). Default `Date.now`. */
  clock?: () => number;
  /** A segment is closed for appends once it reaches this size. Default 64 MiB. */
  segmentBytes?: number;
  /** Most bytes written in one group. Default 8 MiB. */
  maxBatchBytes?: number;
  /**
   * Bytes of disk kept in reserve (`DIR/reserve`) for outcome and deferral records once
   * the disk is full. Default 4 MiB: about 40,000 such records of ~100 bytes, more than
   * the recipients a runtime has in flight many times over; 0 keeps no reserve.
   */
  reserveBytes?: number;
  /** File operations; default `node:fs/promises`. */
  fs?: SpoolFs;
}

/** Bytes recovery could not read. */
export interface CorruptRegion {
  /** Segment file name. */
  segment: string;
  offset: number;
  length: number;
  reason: string;
  /** Where the bytes were copied, relative to the spool directory; absent if copying failed. */
  savedAs?: string;
}

/** What `openSpool` found. */
export interface RecoveryReport {
  /** Messages with open recipients. */
  messages: number;
  recipients: number;
  segments: number;
  bytesRead: number;
  /** Bytes of torn records at segment ends: interrupted writes, never acknowledged. */
  tornBytes: number;
  corrupt: CorruptRegion[];
  /** Files in `segments/` that are not segments; left alone. */
  unknownFiles: string[];
  /** Segments deleted at open because nothing in them was live. */
  reclaimedSegments: number;
  ms: number;
}

/** Counters since open. */
export interface SpoolStats {
  accepted: number;
  /** Recipients marked delivered, bounced or expired. */
  recipientsDone: number;
  deferrals: number;
  /** Messages whose last recipient was finished. */
  finished: number;
  /** Groups written (one fdatasync each). */
  batches: number;
  records: number;
  largestBatch: number;
  /** Every fsync and fdatasync, files and directories. */
  fsyncs: number;
  dirFsyncs: number;
  /** Messages copied forward out of old segments. */
  relocated: number;
  reclaimedSegments: number;
  segments: number;
  diskBytes: number;
  /** Bytes of the records of live messages. */
  liveBytes: number;
  pendingMessages: number;
  /** Records waiting to be written. */
  queuedRecords: number;
  /** Reads whose bytes did not match their checksum. */
  corruptReads: number;
  maintenanceErrors: number;
  /** New messages refused with `no-space`. */
  refusedNoSpace: number;
  /** The disk was found full: new messages are refused until the reserve is whole again with room to spare. */
  spaceShort: boolean;
  /** Bytes the reserve holds now. */
  reserveBytes: number;
  /** Outcome and deferral records waiting for disk space. */
  waitingForSpace: number;
  /** Why the spool stopped, when it did. */
  failure?: string;
}

/** The spool; build one with `openSpool`. */
export interface Spool {
  readonly dir: string;
  readonly recovery: RecoveryReport;
  /** A new unique, time-sortable id (see spool/ids.ts). */
  newId(): string;
  /**
   * Stores a message. Resolves once it is durable — only then acknowledge it. Rejects
   * with a `SpoolError` otherwise; then nothing was acknowledged (`no-space`: the file
   * system is full, try later). `raw` is the message, whole or as its chunks in order
   * (written with one `writev`, never joined); it is referenced, not copied: do not
   * change it until `accept` settles.
   */
  accept(message: SpoolMessage, raw: Uint8Array | readonly Uint8Array[]): Promise<void>;
  /**
   * Marks recipients done. Resolves once that is durable; when it finishes the message,
   * the message leaves `pending()` at once and the spool at that point. Recipients
   * already done are left as they are. On a full disk it does not fail: the record waits
   * in memory (the recipients already out of `pending()`) and is written, and the
   * promise resolved, once there is room — or rejected with `no-space` at `close`.
   */
  recordOutcome(id: string, rcpt: string | readonly string[], outcome: Outcome): Promise<void>;
  /** Counts a failed attempt for open recipients and sets when to try again. Resolves once durable; waits for room as `recordOutcome` does. */
  recordDeferral(id: string, rcpt: string | readonly string[], nextAttemptAt: number): Promise<void>;
  /** Messages with open recipients, in the order they became durable (after recovery: log order). */
  pending(): SpooledMessage[];
  /** The same, one at a time: nothing is built for a message until it is reached. */
  eachPending(): IterableIterator<SpooledMessage>;
  /** How many messages `pending()` holds and their open recipients, in O(1). */
  counts(): { messages: number; recipients: number };
  get(id: string): SpooledMessage | undefined;
  /** The raw bytes, checked against their checksum. */
  read(id: string): Promise<Buffer>;
  /**
   * Copies every live message out of the segments that existed when called, then
   * deletes them: disk use drops to the live data. It also happens by itself, when
   * garbage passes the threshold.
   */
  compact(): Promise<void>;
  stats(): SpoolStats;
  /** Waits for queued writes, closes files, releases the lock. */
  close(): Promise<void>;
}

interface Segment {
  seq: number;
  name: string;
  file: string;
  handle: FileHandle | undefined;
  opening: Promise<FileHandle> | undefined;
  size: number;
  /** Live messages whose current copy is here (counted, not listed: a list costs memory per message). */
  live: number;
  /** Their bytes. */
  liveBytes: number;
  /** Reads, writes and its creation in progress: while any, the file stays open and the segment is not deleted. */
  users: number;
  reclaimFailed: boolean;
  compactionFailed: boolean;
}

/**
 * A live message in memory: its envelope, where its record is, and its recipients' state
 * (recipient-state.ts) as the caller has recorded it, durable or on its way. No view of it
 * is kept: `get` and `pending` build one when asked.
 */
interface Entry extends RecipientStates {
  /**
   * The message's own fields, flat: no message and envelope object per entry (about 100
   * bytes and two objects for the collector to trace, a million times); `messageOf` and
   * `viewOf` build them when asked. `to` is the envelope's recipients (frozen).
   */
  readonly id: string;
  readonly from: string;
  readonly size: number;
  readonly receivedAt: number;
  /** Its tenant, pool and campaign when it has any (most have none: no object then). */
  readonly labels: Labels | undefined;
  /** Where its current copy is (durable). */
  segment: Segment;
  offset: number;
  length: number;
  /** Every recipient is done; the message has left `pending()` and goes once that is durable. */
  finishing: boolean;
  /** Resolves when every record about this message so far is durable. */
  lastWrite: Promise<void>;
}

/** Shared by every entry with nothing on its way (one promise, not one per message). */
const SETTLED: Promise<void> = Promise.resolve();

type Labels = Readonly<Pick<SpoolMessage, 'tenant' | 'pool' | 'campaign'>>;

/** A message's tenant, pool and campaign, or undefined when it has none. */
function labelsOf(message: Readonly<SpoolMessage>): Labels | undefined {
  if (message.tenant === undefined && message.pool === undefined && message.campaign === undefined) return undefined;
  const labels: Labels = { ...(message.tenant !== undefined ? { tenant: message.tenant } : {}), ...(message.pool !== undefined ? { pool: message.pool } : {}), ...(message.campaign !== undefined ? { campaign: message.campaign } : {}) };
  return Object.freeze(labels);
}

/** The message an entry holds, as submitted (a new object: the caller freezes it, with what it adds). */
function messageFields(entry: Entry): SpoolMessage {
  return { id: entry.id, envelope: Object.freeze({ from: entry.from, to: entry.to as string[] }), size: entry.size, receivedAt: entry.receivedAt, ...entry.labels };
}

/** The message an entry holds, as submitted (a new frozen object). */
const messageOf = (entry: Entry): Readonly<SpoolMessage> => Object.freeze(messageFields(entry));

/** A new entry for a checked, frozen message (its `to` is kept, not copied): every recipient open, never deferred. */
function newEntry(message: Readonly<SpoolMessage>, segment: Segment, offset: number, length: number): Entry {
  const to = message.envelope.to;
  // Written out, not spread: one literal gets all its fields in the object (a spread adds them one by one, some outside it).
  return { id: message.id, from: message.envelope.from, size: message.size, receivedAt: message.receivedAt, labels: labelsOf(message), to, open: to.length, done: undefined, retry: undefined, attempts1: 0, next1: 0, segment, offset, length, finishing: false, lastWrite: SETTLED };
}

/** Puts `entry` in `segment`'s live count. */
function place(entry: Entry, segment: Segment): void {
  entry.segment = segment;
  segment.live++;
  segment.liveBytes += entry.length;
}

/** Takes `entry` out of its segment's live count. */
function unplace(entry: Entry): void {
  entry.segment.live--;
  entry.segment.liveBytes -= entry.length;
}

interface QueuedRecord {
  frame: EncodedFrame;
  /** On a full disk: a new message (or a copy moved forward) is refused; a record about a message waits for room. */
  onNoSpace: 'refuse' | 'wait';
  durable(segment: Segment, offset: number): void;
  resolve(): void;
  reject(error: Error): void;
}

/** Header of a message record. `done` and `retry` appear on copies moved forward. */
interface MessageHeader extends SpoolMessage {
  done?: Record<string, Outcome>;
  retry?: Record<string, [number, number]>;
}

const DEFAULTS = { groupCommitMs: 2, segmentBytes: 64 * 1024 * 1024, maxBatchBytes: 8 * 1024 * 1024, reserveBytes: 4 * 1024 * 1024 };
/** How often a spool short of space looks for room again. */
const SPACE_RETRY_MS = 1000;
/** The largest message: a record's body holds the header too. */
const MAX_MESSAGE_BYTES = MAX_BODY - 1024 * 1024;
const ID_PATTERN = /^[\x21-\x7e]{1,256}$/;
const SEGMENT_PATTERN = /^(\d{16})\.seg$/;

const segmentName = (seq: number) => `${String(seq).padStart(16, '0')}.seg`;
const invalid = (message: string) => new SpoolError('invalid', message);
const isString = (value: unknown): value is string => typeof value === 'string';

/** The bytes of `raw` as buffers over the same memory (no copy), empty chunks left out. */
function payloadOf(raw: Uint8Array | readonly Uint8Array[]): Buffer[] {
  const chunks = raw instanceof Uint8Array ? [raw] : raw;
  if (!Array.isArray(chunks) || !chunks.every((c) => c instanceof Uint8Array)) throw invalid('raw message bytes must be a Buffer, a Uint8Array or a list of them');
  return chunks.filter((c) => c.byteLength > 0).map((c) => (Buffer.isBuffer(c) ? c : Buffer.from(c.buffer, c.byteOffset, c.byteLength)));
}

/** Checks a submitted message and returns a frozen copy holding only the known fields, and its bytes. */
function checkMessage(message: SpoolMessage, raw: Uint8Array | readonly Uint8Array[]): { message: Readonly<SpoolMessage>; payload: Buffer[] } {
  const payload = payloadOf(raw);
  const size = payload.reduce((n, c) => n + c.byteLength, 0);
  if (!isString(message.id) || !ID_PATTERN.test(message.id)) throw invalid(`message id \`${String(message.id)}\` is not 1 to 256 printable ASCII characters without spaces`);
  const envelope = message.envelope;
  if (!envelope || !isString(envelope.from)) throw invalid(`message \`${message.id}\` has no envelope sender`);
  if (!Array.isArray(envelope.to) || envelope.to.length === 0) throw invalid(`message \`${message.id}\` has no recipients`);
  for (const rcpt of envelope.to) if (!isString(rcpt) || rcpt.length === 0) throw invalid(`message \`${message.id}\` has an empty or non-string recipient`);
  if (new Set(envelope.to).size !== envelope.to.length) throw invalid(`message \`${message.id}\` lists a recipient twice`);
  for (const key of ['tenant', 'pool', 'campaign'] as const) {
    if (message[key] !== undefined && !isString(message[key])) throw invalid(`message \`${message.id}\` has a non-string ${key}`);
  }
  if (message.size !== size) throw invalid(`message \`${message.id}\` says size ${message.size} but has ${size} bytes`);
  if (size > MAX_MESSAGE_BYTES) throw invalid(`message \`${message.id}\` has ${size} bytes, over the spool's limit of ${MAX_MESSAGE_BYTES}`);
  if (!Number.isFinite(message.receivedAt)) throw invalid(`message \`${message.id}\` has no valid receivedAt`);
  return { message: freezeMessage(message), payload };
}

/** A frozen copy holding only the known fields; `intern` may give a shared copy of a sender, tenant, pool or campaign. */
function freezeMessage(message: SpoolMessage, intern: (value: string) => string = (v) => v): Readonly<SpoolMessage> {
  const copy: SpoolMessage = {
    id: message.id,
    envelope: Object.freeze({ from: intern(message.envelope.from), to: Object.freeze([...message.envelope.to]) as string[] }),
    size: message.size,
    receivedAt: message.receivedAt,
  };
  if (message.tenant !== undefined) copy.tenant = intern(message.tenant);
  if (message.pool !== undefined) copy.pool = intern(message.pool);
  if (message.campaign !== undefined) copy.campaign = intern(message.campaign);
  return Object.freeze(copy);
}

function messageHeader(message: Readonly<SpoolMessage>, states?: RecipientStates): MessageHeader {
  return states ? { ...message, ...statesByAddress(states) } : { ...message };
}

/** Shared by every record whose header has no per-recipient field (most): never changed. */
const NONE: ReadonlyMap<string, never> = new Map<string, never>();

/** A per-recipient field of a header: absent is empty; undefined when it is not an object or `read` refuses an entry. */
function perRecipient<T>(value: unknown, read: (entry: unknown) => T | undefined): ReadonlyMap<string, T> | undefined {
  if (value === undefined) return NONE;
  if (typeof value !== 'object' || value === null) return undefined;
  const out = new Map<string, T>();
  for (const [rcpt, entry] of Object.entries(value)) {
    const parsed = read(entry);
    if (parsed === undefined) return undefined;
    out.set(rcpt, parsed);
  }
  return out;
}

const parseRetry = (value: unknown) =>
  perRecipient<RetryState>(value, (pair) => (Array.isArray(pair) && pair.length === 2 && Number.isInteger(pair[0]) && Number.isFinite(pair[1]) ? { attempts: pair[0] as number, nextAttemptAt: pair[1] as number } : undefined));

const parseDone = (value: unknown) => perRecipient<Outcome>(value, (outcome) => (isString(outcome) && OUTCOMES.has(outcome) ? (outcome as Outcome) : undefined));

/**
 * A deferral header as the spool writes it — `{"id":"…","retry":{"<rcpt>":[attempts,time],…}}`,
 * no whitespace, no escapes — read without `JSON.parse`, straight into the map recovery
 * uses. `JSON.parse` makes an object keyed by each address: a hidden class and an
 * internalized (old-generation) string per record, 3x the time of a message header
 * (1.7-2.1 µs against 0.6), a million times at a restart. Anything else, and any number
 * not in JSON's own grammar, is left to `JSON.parse` (undefined): the two agree on every
 * header this accepts.
 */
class DeferralHeader {
  constructor(
    readonly id: string,
    readonly retry: ReadonlyMap<string, RetryState>,
  ) {}
}
/** JSON strings without escapes or control characters (so their text is their value); numbers in JSON's grammar. */
const DEFERRAL_HEAD = /\{"id":"([^"\\\x00-\x1f]*)","retry":\{/y;
const DEFERRAL_PAIR = /"([^"\\\x00-\x1f]*)":\[(-?(?:0|[1-9]\d*)),(-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?)\]/y;

function plainDeferral(text: string): DeferralHeader | undefined {
  DEFERRAL_HEAD.lastIndex = 0;
  const head = DEFERRAL_HEAD.exec(text);
  if (!head) return undefined;
  const retry = new Map<string, RetryState>();
  let at = DEFERRAL_HEAD.lastIndex;
  for (;;) {
    DEFERRAL_PAIR.lastIndex = at;
    const pair = DEFERRAL_PAIR.exec(text);
    if (!pair) return undefined;
    const attempts = Number(pair[2]);
    const nextAttemptAt = Number(pair[3]);
    if (!Number.isSafeInteger(attempts) || !Number.isFinite(nextAttemptAt)) return undefined;
    retry.set(pair[1]!, { attempts, nextAttemptAt });
    at = DEFERRAL_PAIR.lastIndex;
    if (text[at] === ',') at++;
    else return at === text.length - 2 && text.endsWith('}}') ? new DeferralHeader(head[1]!, retry) : undefined;
  }
}

/** Recovery's header reader: deferrals as written by `plainDeferral`, the rest (and any other deferral) by `JSON.parse`. */
const readHeader: HeaderReader = (text, kind) => (kind === KIND.deferral ? plainDeferral(text) : undefined) ?? JSON.parse(text);

type ParsedRecord =
  | { kind: 'message'; message: Readonly<SpoolMessage>; done: ReadonlyMap<string, Outcome>; retry: ReadonlyMap<string, RetryState> }
  | { kind: 'outcome'; id: string; rcpts: string[]; outcome: Outcome }
  | { kind: 'deferral'; id: string; retry: ReadonlyMap<string, RetryState> };

/** Checks the shape of a decoded record's header; a string says what is wrong. */
function parseRecord(frame: DecodedFrame, intern: (value: string) => string): ParsedRecord | string {
  if (frame.header instanceof DeferralHeader && frame.kind === KIND.deferral) return { kind: 'deferral', id: frame.header.id, retry: frame.header.retry };
  const h = frame.header as Record<string, unknown> | null;
  if (typeof h !== 'object' || h === null || !isString(h.id)) return 'record header without an id';
  if (frame.kind === KIND.message) {
    const env = h.envelope as Record<string, unknown> | undefined;
    if (typeof env !== 'object' || env === null || !isString(env.from) || !Array.isArray(env.to) || env.to.length === 0 || !env.to.every(isString)) return 'message record without a valid envelope';
    if (h.size !== frame.payloadLength || !Number.isFinite(h.receivedAt)) return 'message record size or time does not check';
    for (const key of ['tenant', 'pool', 'campaign']) if (h[key] !== undefined && !isString(h[key])) return `message record with a non-string ${key}`;
    const done = parseDone(h.done);
    const retry = parseRetry(h.retry);
    if (!done || !retry) return 'message record with malformed recipient state';
    return { kind: 'message', message: freezeMessage(h as unknown as SpoolMessage, intern), done, retry };
  }
  if (frame.kind === KIND.outcome) {
    if (!Array.isArray(h.rcpts) || !h.rcpts.every(isString) || !isString(h.outcome) || !OUTCOMES.has(h.outcome)) return 'malformed outcome record';
    return { kind: 'outcome', id: h.id, rcpts: h.rcpts, outcome: h.outcome as Outcome };
  }
  const retry = parseRetry(h.retry);
  if (!retry) return 'malformed deferral record';
  return { kind: 'deferral', id: h.id, retry };
}

function newSegment(dir: string, seq: number, size: number): Segment {
  const name = segmentName(seq);
  return { seq, name, file: path.join(dir, name), handle: undefined, opening: undefined, size, live: 0, liveBytes: 0, users: 0, reclaimFailed: false, compactionFailed: false };
}

/** Records about a message read before its own record (a copy moved forward): applied when it comes, dropped if it never does. */
type Early = Extract<ParsedRecord, { kind: 'outcome' | 'deferral' }>[];

/**
 * Merges one record into the live messages (order-free, see the module comment). A
 * message's first record makes its entry; records about it met earlier wait in `early`.
 */
function replay(record: ParsedRecord, frame: DecodedFrame, segment: Segment, entries: Map<string, Entry>, early: Map<string, Early>, find: (to: readonly string[], rcpt: string) => number): void {
  if (record.kind !== 'message') {
    const entry = entries.get(record.id);
    if (entry) applyTo(entry, record, find);
    else early.set(record.id, [...(early.get(record.id) ?? []), record]);
    return;
  }
  const id = record.message.id;
  let entry = entries.get(id);
  if (entry) {
    // Copies of one message carry the same bytes; the newest copy is the one kept.
    unplace(entry);
    entry.offset = frame.offset;
    entry.length = frame.length;
  } else {
    entries.set(id, (entry = newEntry(record.message, segment, frame.offset, frame.length)));
    for (const r of early.get(id) ?? []) applyTo(entry, r, find);
    early.delete(id);
  }
  place(entry, segment);
  for (const [rcpt, outcome] of record.done) applyTo(entry, { kind: 'outcome', id, rcpts: [rcpt], outcome }, find);
  if (record.retry.size > 0) applyTo(entry, { kind: 'deferral', id, retry: record.retry }, find);
}

/** An outcome or deferral record's effect on one message: a recipient once done stays done; retry states merge. Addresses not in the envelope are ignored. */
function applyTo(entry: Entry, record: Early[number], find: (to: readonly string[], rcpt: string) => number): void {
  if (record.kind === 'outcome') {
    for (const rcpt of record.rcpts) {
      const i = find(entry.to, rcpt);
      if (i >= 0 && !isDone(entry, i)) setDone(entry, i, record.outcome);
    }
    return;
  }
  for (const [rcpt, state] of record.retry) {
    const i = find(entry.to, rcpt);
    if (i >= 0) mergeRetry(entry, i, state);
  }
}

/** The segments in `segmentsDir`, oldest first (not read yet), and the files that are not segments. */
async function listSegments(fs: SpoolFs, segmentsDir: string): Promise<{ segments: Segment[]; unknownFiles: string[] }> {
  const unknownFiles: string[] = [];
  const segments: Segment[] = [];
  for (const name of (await fs.readdir(segmentsDir)).sort()) {
    const match = SEGMENT_PATTERN.exec(name);
    if (match) segments.push(newSegment(segmentsDir, Number(match[1]), 0));
    else unknownFiles.push(name);
  }
  return { segments, unknownFiles };
}

/** What recovery found: the live messages of `segments` (each segment's size and live count set). */
interface Recovered {
  /** By id, in log order: the spool's index once the messages accepted meanwhile join it. */
  live: Map<string, Entry>;
  entries: Entry[];
  report: Omit<RecoveryReport, 'reclaimedSegments' | 'ms' | 'unknownFiles'>;
}

/** Reads every segment of `segments` and rebuilds the live messages. See the module comment. */
async function recover(fs: SpoolFs, dir: string, segments: readonly Segment[]): Promise<Recovered> {
  const live = new Map<string, Entry>();
  const early = new Map<string, Early>();
  const find = indexer();
  const corrupt: CorruptRegion[] = [];
  let tornBytes = 0;
  let bytesRead = 0;
  const saveCorrupt = async (segment: Segment, buf: Buffer, offset: number, length: number, reason: string) => {
    const region: CorruptRegion = { segment: segment.name, offset, length, reason };
    const savedAs = path.join('corrupt', `${segment.name}@${offset}.bin`);
    try {
      await fs.writeFile(path.join(dir, savedAs), buf.subarray(offset, offset + length));
      region.savedAs = savedAs;
    } catch {
      // Reported without a copy (a full disk leaves no partial one); the bytes stay in the segment until it is reclaimed.
      await fs.unlink(path.join(dir, savedAs)).catch(() => undefined);
    }
    corrupt.push(region);
  };

  const intern = interner();
  const reader = segmentReader(fs);
  for (const segment of segments) {
    const buf = await reader(segment.file);
    segment.size = buf.length;
    bytesRead += buf.length;
    for (const item of eachFrame(buf, readHeader)) {
      if ('reason' in item) {
        if (item.atEnd) tornBytes += item.length;
        else await saveCorrupt(segment, buf, item.offset, item.length, item.reason);
        continue;
      }
      const record = parseRecord(item, intern);
      if (typeof record === 'string') await saveCorrupt(segment, buf, item.offset, item.length, record);
      else replay(record, item, segment, live, early, find);
    }
  }

  // Records about a message whose own record is gone (in `early`) belong to a finished message whose segment was reclaimed.
  const entries: Entry[] = [];
  let recipients = 0;
  for (const [id, entry] of live) {
    if (entry.open === 0) {
      unplace(entry);
      live.delete(id);
      continue;
    }
    recipients += entry.open;
    entries.push(entry);
  }
  return { live, entries, report: { messages: entries.length, recipients, segments: segments.length, bytesRead, tornBytes, corrupt } };
}

/**
 * Reads whole segments one after the other into one buffer, grown when a segment is
 * larger: recovery of a big spool (40 segments of 64 MiB for a million 2 KB messages)
 * then holds one segment's bytes outside the heap, not as many as the garbage collector
 * has not freed yet. A returned buffer is valid until the next call.
 */
function segmentReader(fs: SpoolFs): (file: string) => Promise<Buffer> {
  let buf = Buffer.alloc(0);
  return async (file) => {
    const handle = await fs.open(file, 'r');
    try {
      const { size } = await handle.stat();
      if (size > buf.length) buf = Buffer.allocUnsafeSlow(size);
      const into = buf.subarray(0, size);
      await readAll(handle, into, 0);
      return into;
    } finally {
      await handle.close();
    }
  };
}

/**
 * One copy of each distinct sender, tenant, pool and campaign while recovering: a million
 * messages from one sender otherwise hold a million copies of its address.
 */
function interner(): (value: string) => string {
  const seen = new Map<string, string>();
  return (value) => {
    const known = seen.get(value);
    if (known !== undefined) return known;
    if (seen.size < 100_000) seen.set(value, value);
    return value;
  };
}

/**
 * Opens (creating if needed) the spool in `dir` and recovers it: every message with open
 * recipients is in `pending()`, torn writes are skipped, damaged records are copied to
 * `dir/corrupt/` and listed in `recovery.corrupt`. Rejects with a `locked` `SpoolError`
 * when another live process has it open.
 */
export async function openSpool(dir: string, options: SpoolOptions = {}): Promise<Spool> {
  const { spool, recovered } = await openSpoolRecovering(dir, options);
  await recovered;
  return spool;
}

/** A spool open before its recovery is done (`openSpoolRecovering`). */
export interface RecoveringSpool {
  spool: Spool;
  /**
   * Resolves once every segment is read, with the messages recovered that are still open
   * (each built when reached); from then on they are in `pending()` and `spool.recovery`
   * is set. Rejects when recovery failed; the spool is closed then.
   */
  recovered: Promise<{ report: RecoveryReport; messages: IterableIterator<SpooledMessage> }>;
}

/**
 * Opens the spool in `dir` at once and recovers it in the background: a restart with a
 * big queue accepts mail in the meantime. Until `recovered` resolves, `accept` works (new
 * messages go to new segments, after every segment being read), and `pending()`, `get`
 * and `counts()` know only the messages accepted since; the recovered ones join once
 * every segment is read — never earlier, since an outcome in the last segment may have
 * finished a message of the first (INVARIANT: no recovered recipient is handed out before
 * its state is whole, so none is delivered twice). No segment is reclaimed or compacted
 * while recovering. `close` waits for the reading to end.
 */
export async function openSpoolRecovering(dir: string, options: SpoolOptions = {}): Promise<RecoveringSpool> {
  const started = performance.now();
  const fs = options.fs ?? nodeFs;
  const groupCommitMs = options.groupCommitMs ?? DEFAULTS.groupCommitMs;
  const segmentBytes = options.segmentBytes ?? DEFAULTS.segmentBytes;
  const maxBatchBytes = options.maxBatchBytes ?? DEFAULTS.maxBatchBytes;
  const reserveBytes = options.reserveBytes ?? DEFAULTS.reserveBytes;
  if (!(Number.isInteger(reserveBytes) && reserveBytes >= 0 && reserveBytes <= 1024 ** 3)) throw invalid(`reserveBytes must be an integer from 0 to 1 GiB, not ${reserveBytes}`);
  if (!(groupCommitMs >= 0 && groupCommitMs <= 1000)) throw invalid(`groupCommitMs must be between 0 and 1000, not ${groupCommitMs}`);
  if (!(Number.isInteger(segmentBytes) && segmentBytes >= 4096)) throw invalid(`segmentBytes must be an integer of at least 4096, not ${segmentBytes}`);
  if (!(Number.isInteger(maxBatchBytes) && maxBatchBytes >= 1)) throw invalid(`maxBatchBytes must be a positive integer, not ${maxBatchBytes}`);

  dir = path.resolve(dir);
  const segmentsDir = path.join(dir, 'segments');
  await fs.mkdir(segmentsDir, { recursive: true });
  await fs.mkdir(path.join(dir, 'corrupt'), { recursive: true });
  const lock = await acquireLock(fs, dir);
  try {
    // The directories must survive before anything in them is acknowledged.
    for (const d of [path.dirname(dir), dir, segmentsDir]) await syncDir(fs, d);
    const { segments, unknownFiles } = await listSegments(fs, segmentsDir);
    const reserve = await openReserve(fs, path.join(dir, 'reserve'), reserveBytes).catch((error: unknown) => {
      throw isNoSpace(error) ? new SpoolError('no-space', `the file system of spool \`${dir}\` is full: cannot create \`reserve\`; free some space`, { cause: error }) : error;
    });
    const spool = new DiskSpool({ dir, fs, lock, groupCommitMs, segmentBytes, maxBatchBytes, clock: options.clock ?? Date.now, segments, reserve });
    const recovered = spool.recoverAll(started, unknownFiles);
    // Whoever opened it hears of a failure through `recovered`; this keeps it from ending the process meanwhile.
    recovered.catch(() => undefined);
    return { spool, recovered };
  } catch (error) {
    await lock.release();
    throw error;
  }
}

interface DiskSpoolInit {
  dir: string;
  fs: SpoolFs;
  lock: SpoolLock;
  groupCommitMs: number;
  segmentBytes: number;
  maxBatchBytes: number;
  clock: () => number;
  /** Found on disk, not read yet. */
  segments: Segment[];
  reserve: SpaceReserve;
}

class DiskSpool implements Spool {
  readonly dir: string;
  recovery!: RecoveryReport;
  private readonly fs: SpoolFs;
  private readonly lock: SpoolLock;
  private readonly segmentsDir: string;
  private readonly groupCommitMs: number;
  private readonly segmentBytes: number;
  private readonly maxBatchBytes: number;
  private readonly ids: () => string;
  /** Oldest first. */
  private readonly segments: Segment[];
  /** The segment being appended to; undefined until the first write, or after one failed. */
  private active: Segment | undefined;
  private nextSeq: number;
  private entries = new Map<string, Entry>();
  /** The segments found at open are being read: no maintenance until their messages are known. */
  private recovering = true;
  /** That reading, for `close` to wait for. */
  private scanning: Promise<unknown> | undefined;
  /** Envelope index of an address (spool/recipient-state.ts). */
  private readonly find = indexer();
  /** Messages in `pending()` (not finishing), and their open recipients: counted as they change, so `counts()` is O(1). */
  private openMessages = 0;
  private openRecipients = 0;
  /** Ids of accepts on their way to disk. */
  private readonly accepting = new Set<string>();
  private queue: QueuedRecord[] = [];
  private queuedBytes = 0;
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;
  private maintaining: Promise<void> | undefined;
  /** Something changed while maintenance ran: look again when it ends. */
  private maintainAgain = false;
  private readonly reads = new Set<Promise<unknown>>();
  private failure: SpoolError | undefined;
  private closed = false;
  private closing: Promise<void> | undefined;
  private liveBytes = 0;
  private diskBytes = 0;
  private readonly reserve: SpaceReserve;
  /** The disk was found full: new messages are refused until `lookForSpace` finds room. */
  private spaceShort = false;
  /** Outcome and deferral records that found no room even without the reserve. */
  private readonly waitingForSpace: QueuedRecord[] = [];
  private spaceTimer: NodeJS.Timeout | undefined;
  private spaceLook: Promise<void> | undefined;
  /** Groups are halved down to this while they find no room (see `writeRefused`). */
  private spaceBatchBytes = Infinity;
  /** Relocation found no room; until then it does not look again. */
  private noRoomUntil = 0;
  private readonly counters = {
    accepted: 0,
    recipientsDone: 0,
    deferrals: 0,
    finished: 0,
    batches: 0,
    records: 0,
    largestBatch: 0,
    fsyncs: 0,
    dirFsyncs: 0,
    relocated: 0,
    reclaimedSegments: 0,
    corruptReads: 0,
    maintenanceErrors: 0,
    refusedNoSpace: 0,
  };

  constructor(init: DiskSpoolInit) {
    this.dir = init.dir;
    this.fs = init.fs;
    this.lock = init.lock;
    this.segmentsDir = path.join(init.dir, 'segments');
    this.groupCommitMs = init.groupCommitMs;
    this.segmentBytes = init.segmentBytes;
    this.maxBatchBytes = init.maxBatchBytes;
    this.ids = createIdGenerator(init.clock);
    this.reserve = init.reserve;
    this.segments = init.segments;
    this.nextSeq = (init.segments.at(-1)?.seq ?? 0) + 1;
  }

  /**
   * Reads the segments found at open (`recover`), then makes their live messages known
   * and starts maintenance (`start`). See `openSpoolRecovering`.
   */
  async recoverAll(started: number, unknownFiles: string[]): Promise<{ report: RecoveryReport; messages: IterableIterator<SpooledMessage> }> {
    const scanning = recover(this.fs, this.dir, this.segments.slice());
    this.scanning = scanning;
    let found: Recovered;
    try {
      found = await scanning;
    } catch (error) {
      this.failure ??= new SpoolError('failed', `the spool could not be recovered (${error instanceof Error ? error.message : String(error)}); fix the cause and reopen it`, { cause: error });
      await this.close();
      throw error;
    }
    for (const segment of this.segments.slice(0, found.report.segments)) this.diskBytes += segment.size;
    // The recovered map becomes the index, the messages accepted meanwhile added after
    // them (log order): a million entries are not copied into a second map, whose table
    // and the first's would both be garbage for the collector to find.
    for (const [id, entry] of this.entries) if (!found.live.has(id)) found.live.set(id, entry);
    this.entries = found.live;
    for (const entry of found.entries) {
      this.liveBytes += entry.length;
      this.openMessages++;
      this.openRecipients += entry.open;
    }
    this.recovering = false;
    if (!this.closed) await this.start();
    this.recovery = { ...found.report, unknownFiles, reclaimedSegments: this.counters.reclaimedSegments, ms: performance.now() - started };
    const self = this;
    function* open(): IterableIterator<SpooledMessage> {
      for (const entry of found.entries) if (self.entries.get(entry.id) === entry && !entry.finishing) yield self.viewOf(entry);
    }
    return { report: this.recovery, messages: open() };
  }

  newId(): string {
    return this.ids();
  }

  async accept(message: SpoolMessage, raw: Uint8Array | readonly Uint8Array[]): Promise<void> {
    this.checkUsable();
    const { message: frozen, payload } = checkMessage(message, raw);
    const id = frozen.id;
    if (this.entries.has(id) || this.accepting.has(id)) throw new SpoolError('duplicate-id', `message id \`${id}\` is already in the spool`);
    // INVARIANT: while the disk is short of space nothing is written for a new message, so a refusal costs no disk.
    if (this.spaceShort) {
      this.counters.refusedNoSpace++;
      throw this.noSpace();
    }
    let frame: EncodedFrame;
    try {
      frame = encodeFrame(KIND.message, messageHeader(frozen), payload);
    } catch (error) {
      throw error instanceof RangeError ? invalid(`message \`${id}\`: ${error.message}`) : error;
    }
    this.accepting.add(id);
    try {
      await this.enqueue(frame, 'refuse', (segment, offset) => {
        const entry = newEntry(frozen, segment, offset, frame.length);
        place(entry, segment);
        this.entries.set(id, entry);
        this.liveBytes += frame.length;
        this.openMessages++;
        this.openRecipients += entry.open;
        this.counters.accepted++;
      });
    } catch (error) {
      if (error instanceof SpoolError && error.code === 'no-space') this.counters.refusedNoSpace++;
      throw error;
    } finally {
      this.accepting.delete(id);
    }
  }

  async recordOutcome(id: string, rcpt: string | readonly string[], outcome: Outcome): Promise<void> {
    this.checkUsable();
    if (!OUTCOMES.has(outcome)) throw invalid(`outcome \`${String(outcome)}\` is not delivered, bounced or expired`);
    const entry = this.entryFor(id);
    const fresh = this.recipientsOf(entry, rcpt).filter((i) => !isDone(entry, i));
    if (fresh.length === 0) return entry.lastWrite;
    const retried = fresh.map((i) => [i, retryAt(entry, i)] as const);
    for (const i of fresh) {
      setDone(entry, i, outcome);
      setRetry(entry, i, undefined);
    }
    this.setFinishing(entry, entry.open === 0);
    this.openRecipients -= fresh.length;
    const write = this.enqueue(encodeFrame(KIND.outcome, { id, rcpts: fresh.map((i) => entry.to[i]!), outcome }), 'wait', () => {
      this.counters.recipientsDone += fresh.length;
      // Re-checked: an earlier outcome of this message may have failed and been taken back.
      if (entry.finishing && entry.open === 0) this.finish(entry);
    });
    entry.lastWrite = write;
    try {
      await write;
    } catch (error) {
      // Not recorded: the caller was told so and may record it again.
      for (const [i, state] of retried) {
        clearDone(entry, i);
        setRetry(entry, i, state);
      }
      this.openRecipients += fresh.length;
      this.setFinishing(entry, false);
      throw error;
    }
  }

  /** Counts `entry` in or out of `pending()`. */
  private setFinishing(entry: Entry, finishing: boolean): void {
    if (entry.finishing === finishing) return;
    entry.finishing = finishing;
    this.openMessages += finishing ? -1 : 1;
  }

  async recordDeferral(id: string, rcpt: string | readonly string[], nextAttemptAt: number): Promise<void> {
    this.checkUsable();
    if (!Number.isFinite(nextAttemptAt)) throw invalid(`nextAttemptAt \`${nextAttemptAt}\` is not a time`);
    const entry = this.entryFor(id);
    const open = this.recipientsOf(entry, rcpt).filter((i) => !isDone(entry, i));
    if (open.length === 0) return entry.lastWrite;
    const before = open.map((i) => [i, retryAt(entry, i)] as const);
    const retry: Record<string, [number, number]> = {};
    for (const i of open) {
      const attempts = (retryAt(entry, i)?.attempts ?? 0) + 1;
      setRetry(entry, i, { attempts, nextAttemptAt });
      retry[entry.to[i]!] = [attempts, nextAttemptAt];
    }
    const write = this.enqueue(encodeFrame(KIND.deferral, { id, retry }), 'wait', () => {
      this.counters.deferrals += open.length;
    });
    entry.lastWrite = write;
    try {
      await write;
    } catch (error) {
      for (const [i, state] of before) setRetry(entry, i, state);
      throw error;
    }
  }

  pending(): SpooledMessage[] {
    return [...this.eachPending()];
  }

  *eachPending(): IterableIterator<SpooledMessage> {
    for (const entry of this.entries.values()) if (!entry.finishing) yield this.viewOf(entry);
  }

  counts(): { messages: number; recipients: number } {
    return { messages: this.openMessages, recipients: this.openRecipients };
  }

  get(id: string): SpooledMessage | undefined {
    const entry = this.entries.get(id);
    return entry && !entry.finishing ? this.viewOf(entry) : undefined;
  }

  async read(id: string): Promise<Buffer> {
    if (this.closed) throw new SpoolError('closed', 'the spool is closed');
    const entry = this.entryFor(id);
    const reading = this.readFrame(entry.segment, entry.offset, entry.length, id);
    this.reads.add(reading);
    try {
      const { buf, frame } = await reading;
      return buf.subarray(frame.payloadOffset, frame.payloadOffset + frame.payloadLength);
    } finally {
      this.reads.delete(reading);
    }
  }

  async compact(): Promise<void> {
    this.checkUsable();
    if (this.recovering) throw new SpoolError('recovering', `spool \`${this.dir}\` is still being recovered; compact it once that is done`);
    await this.drain();
    while (this.maintaining) await this.maintaining;
    // Seal the segment being written, so its live messages move too.
    const before = this.nextSeq;
    this.active = undefined;
    const run = this.maintain(before);
    this.claimMaintenance(run);
    const moved = await run;
    if (this.failure) throw this.failure;
    if (!moved) throw new SpoolError('no-space', `not enough free space in spool \`${this.dir}\` to copy its live messages; nothing was lost, try again once there is room`);
  }

  stats(): SpoolStats {
    const stats: SpoolStats = {
      ...this.counters,
      segments: this.segments.length,
      diskBytes: this.diskBytes,
      liveBytes: this.liveBytes,
      pendingMessages: this.entries.size,
      queuedRecords: this.queue.length,
      spaceShort: this.spaceShort,
      reserveBytes: this.reserve.bytes,
      waitingForSpace: this.waitingForSpace.length,
    };
    if (this.failure) stats.failure = this.failure.message;
    return stats;
  }

  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.closed = true;
    await this.scanning?.catch(() => undefined);
    clearTimeout(this.spaceTimer);
    this.spaceTimer = undefined;
    await this.spaceLook;
    // Records waiting for room get a last try, with what callers queued (maintenance may
    // be waiting on it); then maintenance, which stops at its next check of `closed`,
    // then what it queued meanwhile.
    this.requeue(this.waitingForSpace.splice(0));
    this.kick();
    await this.drain();
    while (this.maintaining) await this.maintaining;
    await this.drain();
    // Still no room: not recorded. At least once: such a recipient is delivered again after the next open.
    this.rejectBatch(this.waitingForSpace.splice(0), new SpoolError('no-space', `the file system of spool \`${this.dir}\` is full; the record was not written before close`));
    await Promise.allSettled([...this.reads]);
    for (const segment of this.segments) {
      await segment.opening?.catch(() => undefined);
      await segment.handle?.close();
      segment.handle = undefined;
    }
    await this.reserve.close().catch(() => undefined);
    await this.lock.release();
  }

  // ---- writing ----

  private checkUsable(): void {
    if (this.closed) throw new SpoolError('closed', 'the spool is closed');
    if (this.failure) throw this.failure;
  }

  private entryFor(id: string): Entry {
    const entry = this.entries.get(id);
    if (!entry) throw new SpoolError('unknown-message', `no message \`${id}\` in the spool`);
    return entry;
  }

  /** Envelope indexes of `rcpt`, each once; throws when one is not a recipient. */
  private recipientsOf(entry: Entry, rcpt: string | readonly string[]): number[] {
    const list = isString(rcpt) ? [rcpt] : [...new Set(rcpt)];
    return list.map((r) => {
      const i = this.find(entry.to, r);
      if (i < 0) throw new SpoolError('unknown-recipient', `\`${r}\` is not a recipient of message \`${entry.id}\``);
      return i;
    });
  }

  /** A new immutable view each time: views are not kept (a million of them would be most of the memory). */
  private viewOf(entry: Entry): SpooledMessage {
    const recipients: RecipientState[] = [];
    entry.to.forEach((rcpt, i) => {
      if (isDone(entry, i)) return;
      const retry = retryAt(entry, i);
      recipients.push(Object.freeze(retry ? { rcpt, attempts: retry.attempts, nextAttemptAt: retry.nextAttemptAt } : { rcpt, attempts: 0 }));
    });
    return Object.freeze(Object.assign(messageFields(entry), { recipients: Object.freeze(recipients) }));
  }

  private finish(entry: Entry): void {
    if (this.entries.get(entry.id) !== entry) return;
    this.entries.delete(entry.id);
    unplace(entry);
    this.liveBytes -= entry.length;
    this.counters.finished++;
  }

  private enqueue(frame: EncodedFrame, onNoSpace: QueuedRecord['onNoSpace'], durable: QueuedRecord['durable']): Promise<void> {
    return new Promise((resolve, reject) => {
      this.queue.push({ frame, onNoSpace, durable, resolve, reject });
      this.queuedBytes += frame.length;
      this.kick();
    });
  }

  /** Starts a group: now if grouping is off, after the window otherwise; never while one is being written. */
  private kick(): void {
    if (this.flushing) return;
    if (this.timer) {
      if (this.queuedBytes < this.maxBatchBytes) return;
      clearTimeout(this.timer);
      this.timer = undefined;
    } else if (this.groupCommitMs > 0 && !this.closed) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.startFlush();
      }, this.groupCommitMs);
      return;
    }
    this.startFlush();
  }

  private startFlush(): void {
    if (this.flushing) return;
    this.flushing = this.flushQueue()
      .catch((error: unknown) => this.fail(error))
      .finally(() => {
        this.flushing = undefined;
        if (this.queue.length > 0) this.kick();
      });
  }

  /**
   * Writes groups until the queue is empty; what arrives meanwhile is the next group.
   * After a group it lingers one event-loop turn before calling the queue empty: the
   * callers it just acknowledged often submit again at once (a writer loop, an SMTP
   * session's next message), and they should join the next group at once rather than
   * open a new window.
   */
  private async flushQueue(): Promise<void> {
    for (;;) {
      if (this.queue.length === 0) {
        await new Promise((resolve) => setImmediate(resolve));
        if (this.queue.length === 0) return;
      }
      if (this.failure) {
        const rest = this.queue;
        this.queue = [];
        this.queuedBytes = 0;
        for (const record of rest) record.reject(this.failure);
        return;
      }
      await this.writeBatch(this.takeBatch());
    }
  }

  private takeBatch(): QueuedRecord[] {
    let count = 0;
    let bytes = 0;
    if (this.groupCommitMs === 0) {
      count = 1;
      bytes = this.queue[0]!.frame.length;
    } else {
      const limit = Math.min(this.maxBatchBytes, this.spaceBatchBytes);
      while (count < this.queue.length && (count === 0 || bytes + this.queue[count]!.frame.length <= limit)) bytes += this.queue[count++]!.frame.length;
    }
    this.queuedBytes -= bytes;
    return this.queue.splice(0, count);
  }

  private async writeBatch(batch: QueuedRecord[]): Promise<void> {
    let segment: Segment;
    try {
      segment = await this.writableSegment();
    } catch (error) {
      return this.writeRefused(batch, error);
    }
    const start = segment.size;
    const offsets: number[] = [];
    const buffers: Buffer[] = [];
    let position = start;
    for (const record of batch) {
      offsets.push(position);
      position += record.frame.length;
      buffers.push(...record.frame.buffers);
    }
    segment.users++;
    try {
      try {
        await writeAll(segment.handle!, buffers, start);
      } catch (error) {
        await this.cutBack(segment, start);
        return await this.writeRefused(batch, error);
      }
      segment.size = position;
      this.diskBytes += position - start;
      try {
        this.counters.fsyncs++;
        await segment.handle!.datasync();
      } catch (error) {
        this.fail(error);
        return this.rejectBatch(batch, this.failure!);
      }
    } finally {
      segment.users--;
    }
    // INVARIANT: the whole group is durable; only now may anyone act on it.
    try {
      for (let i = 0; i < batch.length; i++) batch[i]!.durable(segment, offsets[i]!);
    } catch (error) {
      this.fail(error);
      return this.rejectBatch(batch, this.failure!);
    }
    for (const record of batch) record.resolve();
    this.counters.batches++;
    this.counters.records += batch.length;
    this.counters.largestBatch = Math.max(this.counters.largestBatch, batch.length);
    this.maintainSoon();
  }

  private rejectBatch(batch: QueuedRecord[], error: Error): void {
    for (const record of batch) record.reject(error);
  }

  /**
   * Cuts a group that failed to write off the end of its segment (those bytes were never
   * acknowledged), so the next group goes where it began and a refused write leaves
   * nothing behind; a segment left empty is deleted (it held nothing, so no order
   * matters). If the cut fails, the segment takes no more appends and the bytes stay a
   * torn tail, skipped by recovery.
   */
  private async cutBack(segment: Segment, size: number): Promise<void> {
    try {
      await segment.handle!.truncate(size);
      if (size > 0 || this.segments.at(-1) !== segment) return;
      this.segments.pop();
      if (this.active === segment) this.active = undefined;
      await segment.handle!.close();
      segment.handle = undefined;
      await this.fs.unlink(segment.file);
    } catch {
      if (this.active === segment) this.active = undefined;
    }
  }

  /**
   * A group could not be written. On a full disk a new message is refused (`no-space`),
   * and a record about a message already accepted waits: the reserve is given up for it
   * and it is tried again at once. With no reserve left, the group is halved and tried
   * again (part of it may fit); when not even one record fits, it and every record
   * queued behind it wait for room (`lookForSpace`).
   */
  private async writeRefused(batch: QueuedRecord[], error: unknown): Promise<void> {
    if (this.failure) return this.rejectBatch(batch, this.failure);
    if (!isNoSpace(error)) return this.rejectBatch(batch, writeFailed(error));
    this.shortOfSpace();
    const refused = batch.filter((record) => record.onNoSpace === 'refuse');
    const waiting = batch.filter((record) => record.onNoSpace === 'wait');
    this.rejectBatch(refused, this.noSpace(error));
    if (waiting.length === 0) return;
    let released = false;
    if (this.reserve.bytes > 0) {
      // INVARIANT: the reserve is only ever given up for records about accepted messages.
      released = await this.reserve.release().then(
        () => true,
        () => false,
      );
    }
    // Without the refused records (maybe what did not fit) or with the reserve's room, try again now.
    if (released || refused.length > 0) return this.requeue(waiting);
    if (waiting.length > 1) {
      this.spaceBatchBytes = Math.floor(waiting.reduce((n, record) => n + record.frame.length, 0) / 2);
      return this.requeue(waiting);
    }
    const queued = this.queue;
    this.queue = [];
    this.queuedBytes = 0;
    this.rejectBatch(queued.filter((record) => record.onNoSpace === 'refuse'), this.noSpace(error));
    this.waitingForSpace.push(...waiting, ...queued.filter((record) => record.onNoSpace === 'wait'));
  }

  /** Puts records back at the head of the queue, in their order. */
  private requeue(records: QueuedRecord[]): void {
    if (records.length === 0) return;
    this.queue.unshift(...records);
    for (const record of records) this.queuedBytes += record.frame.length;
  }

  private noSpace(cause?: unknown): SpoolError {
    return new SpoolError('no-space', `the file system of spool \`${this.dir}\` is full; the message was not accepted: try again later`, { cause });
  }

  /** The disk is full: refuse new messages, and look for room every second until there is some. */
  private shortOfSpace(): void {
    this.spaceShort = true;
    if (this.spaceTimer || this.closed) return;
    this.spaceTimer = setTimeout(() => {
      this.spaceLook = this.lookForSpace()
        .catch(() => {
          this.counters.maintenanceErrors++;
        })
        .finally(() => {
          this.spaceTimer = undefined;
          this.spaceLook = undefined;
          if (this.spaceShort && !this.closed && !this.failure) this.shortOfSpace();
        });
    }, SPACE_RETRY_MS);
  }

  /**
   * While short of space: first writes what waits for room; then, once the disk has room
   * for the whole reserve and as much again to spare, fills the reserve again and takes
   * new messages again. The spare keeps a nearly full disk from flapping.
   */
  private async lookForSpace(): Promise<void> {
    if (this.closed || this.failure) return;
    if (this.waitingForSpace.length > 0) {
      this.spaceBatchBytes = Infinity;
      this.requeue(this.waitingForSpace.splice(0));
      this.kick();
      return;
    }
    const missing = this.reserve.target - this.reserve.bytes;
    if ((await freeBytes(this.fs, this.dir)) < missing + this.reserve.target) return;
    if (await this.reserve.fill()) this.spaceShort = false;
  }

  /** The segment to append to; a new one (file created, directory fsync'd) when there is none or it is full. */
  private async writableSegment(): Promise<Segment> {
    if (this.active && this.active.size < this.segmentBytes) return this.active;
    this.active = undefined;
    const segment = newSegment(this.segmentsDir, this.nextSeq++, 0);
    segment.handle = await this.fs.open(segment.file, 'wx+');
    // In use until active: while its directory entry is made durable, maintenance may reclaim
    // every segment before it, and would take this one, empty and not active, for the next.
    segment.users++;
    this.segments.push(segment);
    try {
      await this.syncDirectory();
    } catch (error) {
      this.fail(error);
      throw this.failure;
    } finally {
      segment.users--;
    }
    this.active = segment;
    return segment;
  }

  private async syncDirectory(): Promise<void> {
    this.counters.fsyncs++;
    this.counters.dirFsyncs++;
    await syncDir(this.fs, this.segmentsDir);
  }

  /** After a failed fsync nothing since can be trusted: stop, and reject everything queued. */
  private fail(error: unknown): void {
    if (this.failure) return;
    const reason = error instanceof Error ? error.message : String(error);
    this.failure = new SpoolError('failed', `the spool could not make a write durable (${reason}); close and reopen it to recover what is on disk`, { cause: error });
    this.rejectBatch(this.waitingForSpace.splice(0), this.failure);
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    if (!this.flushing && this.queue.length > 0) this.startFlush();
  }

  private async drain(): Promise<void> {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
      this.startFlush();
    }
    while (this.flushing) await this.flushing;
  }

  // ---- reading ----

  private handleOf(segment: Segment): Promise<FileHandle> {
    if (segment.handle) return Promise.resolve(segment.handle);
    segment.opening ??= this.fs.open(segment.file, 'r').then(
      (handle) => {
        segment.handle = handle;
        segment.opening = undefined;
        return handle;
      },
      (error: unknown) => {
        segment.opening = undefined;
        throw error;
      },
    );
    return segment.opening;
  }

  private async readFrame(segment: Segment, offset: number, length: number, id: string): Promise<{ buf: Buffer; frame: DecodedFrame }> {
    segment.users++;
    try {
      const handle = await this.handleOf(segment);
      const buf = Buffer.allocUnsafe(length);
      await readAll(handle, buf, offset);
      const frame = decodeFrameAt(buf, 0);
      if ('error' in frame || frame.kind !== KIND.message || frame.length !== length) {
        this.counters.corruptReads++;
        const reason = 'error' in frame ? frame.error : 'not the record expected';
        throw new SpoolError('corrupt', `message \`${id}\` in segment \`${segment.name}\` at ${offset} no longer reads back (${reason})`);
      }
      return { buf, frame };
    } finally {
      segment.users--;
    }
  }

  // ---- reclaiming space ----

  /** Runs maintenance in the background when there is something to do. One at a time. */
  private maintainSoon(): void {
    if (this.closed || this.failure || this.recovering) return;
    if (this.maintaining) {
      this.maintainAgain = true;
      return;
    }
    if (this.canReclaim() || (this.shouldCompact(undefined) && !this.spaceShort)) this.claimMaintenance(this.maintain(undefined));
  }

  /** Marks `run` as the maintenance in progress; its errors are counted (and still reach whoever awaits `run`). */
  private claimMaintenance(run: Promise<unknown>): void {
    this.maintainAgain = false;
    this.maintaining = run
      .then(
        () => undefined,
        () => {
          this.counters.maintenanceErrors++;
        },
      )
      .finally(() => {
        this.maintaining = undefined;
        if (this.maintainAgain) this.maintainSoon();
      });
  }

  /** Maintenance right after recovery: reclaims what recovery found finished. */
  async start(): Promise<void> {
    const run = this.maintain(undefined);
    this.claimMaintenance(run);
    await run.catch(() => undefined);
    if (this.failure) {
      await this.close();
      throw this.failure;
    }
    // After reclaiming, which frees space. A disk too full for the reserve: open, but short of space.
    const filled = await this.reserve.fill().catch(async (error: unknown) => {
      await this.close();
      throw error;
    });
    if (!filled) this.shortOfSpace();
  }

  /**
   * Deletes what can go, and copies live messages out of old segments: those older than
   * `compactBefore`, or by the garbage threshold when it is undefined. Resolves false
   * when it stopped because there was no room to copy.
   */
  private async maintain(compactBefore: number | undefined): Promise<boolean> {
    await this.reclaim();
    while (!this.closed && !this.failure && this.shouldCompact(compactBefore)) {
      if (!(await this.roomToRelocate())) return false;
      if (!(await this.relocateOldest())) break;
      await this.reclaim();
    }
    return true;
  }

  /**
   * Copies need room: the oldest segment's live bytes and the reserve's worth to spare
   * (INVARIANT: moving messages never fills the disk; while short of space none move).
   */
  private async roomToRelocate(): Promise<boolean> {
    if (this.spaceShort || performance.now() < this.noRoomUntil) return false;
    if ((await freeBytes(this.fs, this.dir)) >= this.segments[0]!.liveBytes + this.reserve.target) return true;
    // Not asked again for a while: maintenance runs after every group.
    this.noRoomUntil = performance.now() + SPACE_RETRY_MS;
    return false;
  }

  private canReclaim(): boolean {
    const oldest = this.segments[0];
    return oldest !== undefined && oldest !== this.active && oldest.live === 0 && oldest.users === 0 && !oldest.opening && !oldest.reclaimFailed;
  }

  private shouldCompact(compactBefore: number | undefined): boolean {
    const oldest = this.segments[0];
    if (!oldest || oldest === this.active || oldest.compactionFailed || oldest.live === 0) return false;
    if (compactBefore !== undefined) return oldest.seq < compactBefore;
    return this.diskBytes > 2 * this.liveBytes + 2 * this.segmentBytes;
  }

  /** Deletes the oldest segments while they hold nothing live, each deletion durable before the next. */
  private async reclaim(): Promise<void> {
    while (this.canReclaim()) {
      const segment = this.segments[0]!;
      try {
        await segment.handle?.close();
        segment.handle = undefined;
        await this.fs.unlink(segment.file);
      } catch (error) {
        if (errorCode(error) !== 'ENOENT') {
          segment.reclaimFailed = true;
          throw error;
        }
      }
      this.segments.shift();
      this.diskBytes -= segment.size;
      try {
        await this.syncDirectory();
      } catch (error) {
        // Later deletions could become durable before this one: that order is what keeps finished messages finished.
        this.fail(error);
        throw error;
      }
      this.counters.reclaimedSegments++;
    }
  }

  /**
   * Copies the live messages of the oldest segment forward, each as a message record
   * carrying its recipient state as recorded so far (INVARIANT: every outcome enqueued
   * before the copy is in the copy or before it in the log, every one enqueued after is
   * after it; a message whose last recipient is already done is not copied). A copy
   * becomes the message's home only once durable. Returns whether anything was copied.
   */
  private async relocateOldest(): Promise<boolean> {
    const segment = this.segments[0]!;
    // A scan of every live message, once per segment moved: cheaper than a list per segment held all the time.
    const victims = [...this.entries.values()].filter((entry) => entry.segment === segment && !entry.finishing);
    let copied = false;
    for (let i = 0; i < victims.length && !this.closed && !this.failure; ) {
      const writes: Promise<void>[] = [];
      let bytes = 0;
      for (; i < victims.length && bytes < this.maxBatchBytes; i++) {
        const entry = victims[i]!;
        if (entry.finishing || entry.segment !== segment) continue;
        let raw: Buffer;
        try {
          const { buf, frame } = await this.readFrame(segment, entry.offset, entry.length, entry.id);
          raw = buf.subarray(frame.payloadOffset, frame.payloadOffset + frame.payloadLength);
        } catch (error) {
          segment.compactionFailed = true;
          throw error;
        }
        if (entry.finishing || entry.segment !== segment) continue;
        const frame = encodeFrame(KIND.message, messageHeader(messageOf(entry), entry), raw);
        bytes += frame.length;
        copied = true;
        const write = this.enqueue(frame, 'refuse', (target, offset) => {
          if (this.entries.get(entry.id) !== entry) return;
          unplace(entry);
          this.liveBytes += frame.length - entry.length;
          entry.offset = offset;
          entry.length = frame.length;
          place(entry, target);
          this.counters.relocated++;
        });
        // Handled now: a copy can fail (a full disk, EIO) while the next message is still
        // being read, long before `Promise.all` below sees it — unhandled, that ends the process.
        write.catch(() => undefined);
        writes.push(write);
      }
      await Promise.all(writes);
    }
    return copied;
  }
}

function writeFailed(error: unknown): SpoolError {
  const reason = error instanceof Error ? error.message : String(error);
  return new SpoolError('write-failed', `the spool could not write (${reason}); nothing was acknowledged`, { cause: error });
}
