/**
 * The record format of spool segments: self-delimiting, checksummed frames, so recovery can
 * tell a complete record from a torn or damaged one and resynchronise after damage.
 *
 * ```
 * frame = magic   u32be  0x50544C31 ("PTL1", also the format version)
 *         length  u32be  bytes in body
 *         crc     u32be  CRC-32 of the length field and the body
 *         body
 * body  = kind    u8     1 message, 2 outcome, 3 deferral
 *         hlen    u32be  bytes in header
 *         header         UTF-8 JSON
 *         payload        the raw message (message records only)
 * ```
 *
 * Pure functions over buffers; no I/O.
 */
import { crc32 } from 'node:zlib';

export const FRAME_MAGIC = 0x50544c31;
const MAGIC_BYTES = Buffer.from([0x50, 0x54, 0x4c, 0x31]);
/** magic + length + crc. */
const PREFIX = 12;
/** kind + hlen. */
const BODY_PREFIX = 5;
/** A body larger than this is taken for damage, not data. */
export const MAX_BODY = 1 << 30;

export const KIND = { message: 1, outcome: 2, deferral: 3 } as const;
export type RecordKind = (typeof KIND)[keyof typeof KIND];

/** A frame ready to write: `buffers` in order, `length` bytes in all. */
export interface EncodedFrame {
  buffers: Buffer[];
  length: number;
}

/**
 * Encodes one record. `payload` (one buffer or chunks of it, written in order) is
 * referenced, not copied: do not change it until written.
 */
export function encodeFrame(kind: RecordKind, header: object, payload?: Buffer | readonly Buffer[]): EncodedFrame {
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const chunks = payload === undefined ? [] : Buffer.isBuffer(payload) ? [payload] : payload;
  let payloadLength = 0;
  for (const chunk of chunks) payloadLength += chunk.byteLength;
  const bodyLength = BODY_PREFIX + json.length + payloadLength;
  if (bodyLength > MAX_BODY) throw new RangeError(`a spool record of ${bodyLength} bytes is over the limit of ${MAX_BODY}`);
  const head = Buffer.allocUnsafe(PREFIX + BODY_PREFIX + json.length);
  head.writeUInt32BE(FRAME_MAGIC, 0);
  head.writeUInt32BE(bodyLength, 4);
  head.writeUInt8(kind, PREFIX);
  head.writeUInt32BE(json.length, PREFIX + 1);
  json.copy(head, PREFIX + BODY_PREFIX);
  let crc = crc32(head.subarray(4, 8));
  crc = crc32(head.subarray(PREFIX), crc);
  for (const chunk of chunks) crc = crc32(chunk, crc);
  head.writeUInt32BE(crc, 8);
  return { buffers: [head, ...chunks], length: PREFIX + bodyLength };
}

/** One record as found in a buffer. Offsets are relative to the buffer it was decoded from. */
export interface DecodedFrame {
  kind: RecordKind;
  /** Parsed JSON; its shape is checked by the caller. */
  header: unknown;
  offset: number;
  length: number;
  payloadOffset: number;
  payloadLength: number;
}

/** Reads a record's header text; throws when it is not a header (`JSON.parse` by default). */
export type HeaderReader = (text: string, kind: RecordKind) => unknown;
const parseJson: HeaderReader = (text) => JSON.parse(text);

/** Decodes the frame that starts at `offset`, or says why there is none. */
export function decodeFrameAt(buf: Buffer, offset: number, readHeader: HeaderReader = parseJson): DecodedFrame | { error: string } {
  if (offset + PREFIX > buf.length) return { error: 'truncated record' };
  if (buf.readUInt32BE(offset) !== FRAME_MAGIC) return { error: 'no record marker' };
  const bodyLength = buf.readUInt32BE(offset + 4);
  if (bodyLength < BODY_PREFIX || bodyLength > MAX_BODY) return { error: 'impossible record length' };
  const end = offset + PREFIX + bodyLength;
  if (end > buf.length) return { error: 'truncated record' };
  let crc = crc32(buf.subarray(offset + 4, offset + 8));
  crc = crc32(buf.subarray(offset + PREFIX, end), crc);
  if (crc !== buf.readUInt32BE(offset + 8)) return { error: 'checksum mismatch' };
  const kind = buf.readUInt8(offset + PREFIX);
  if (kind !== KIND.message && kind !== KIND.outcome && kind !== KIND.deferral) return { error: `unknown record kind ${kind}` };
  const headerLength = buf.readUInt32BE(offset + PREFIX + 1);
  if (BODY_PREFIX + headerLength > bodyLength) return { error: 'impossible header length' };
  const headerStart = offset + PREFIX + BODY_PREFIX;
  let header: unknown;
  try {
    header = readHeader(buf.toString('utf8', headerStart, headerStart + headerLength), kind);
  } catch {
    return { error: 'header is not JSON' };
  }
  const payloadOffset = headerStart + headerLength;
  const payloadLength = end - payloadOffset;
  if (kind !== KIND.message && payloadLength !== 0) return { error: 'payload on a record that has none' };
  return { kind, header, offset, length: end - offset, payloadOffset, payloadLength };
}

/** Bytes that do not decode as records. */
export interface InvalidRegion {
  offset: number;
  length: number;
  /** Why the first frame of the region did not decode. */
  reason: string;
  /** Nothing valid follows: the tail of an interrupted write, not damage. */
  atEnd: boolean;
}

/**
 * Decodes the records of a segment one at a time, in order: each a frame, or a region of
 * bytes that do not decode. After such bytes it resumes at the next record marker that
 * starts a valid frame, so one damaged record costs only itself. One at a time, so that
 * recovery holds one parsed header at a time, not a whole segment's (a million queued
 * messages would otherwise keep every header of a 64 MiB segment alive together, long
 * enough to reach the old generation of the heap as garbage).
 */
export function* eachFrame(buf: Buffer, readHeader: HeaderReader = parseJson): Generator<DecodedFrame | InvalidRegion> {
  let offset = 0;
  while (offset < buf.length) {
    const frame = decodeFrameAt(buf, offset, readHeader);
    if (!('error' in frame)) {
      yield frame;
      offset += frame.length;
      continue;
    }
    let next = buf.indexOf(MAGIC_BYTES, offset + 1);
    while (next !== -1 && 'error' in decodeFrameAt(buf, next, readHeader)) next = buf.indexOf(MAGIC_BYTES, next + 1);
    const end = next === -1 ? buf.length : next;
    yield { offset, length: end - offset, reason: frame.error, atEnd: next === -1 };
    offset = end;
  }
}
