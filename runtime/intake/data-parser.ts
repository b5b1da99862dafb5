/**
 * smtp-server's DATA parser with its byte loop replaced by a native search. smtp-server
 * (SMTPStream `_feedDataStream`) looks at every byte of a message in JavaScript for a dot
 * at the start of a line (an escape dot to remove, or the terminator); that was about 6% of
 * `petrel run`'s CPU at 100 KB messages (docs/performance.md "Delivery throughput").
 * Here the same positions are found with Buffer.indexOf("\n.") (native memmem), and what
 * is done at each is smtp-server's code unchanged, in the same order, with the same
 * comments — so the output, the byte counts and the defences against SMTP smuggling
 * (the terminator at the very start, an escape dot then a lone dot) stay smtp-server's.
 *
 * It replaces `SMTPStream.prototype._feedDataStream` for the whole process — the one place
 * the runtime changes a dependency — and only for the smtp-server version it was ported
 * from (package.json pins it exactly); any other version keeps its own parser.
 * test/runtime/intake/data-parser.test.ts compares the two on random messages cut into
 * random chunks.
 */
import { createRequire } from 'node:module';
import { SMTPStream } from 'smtp-server/lib/smtp-stream';

/** The smtp-server whose `_feedDataStream` this is a port of. */
export const PORTED_FROM = '3.21.6';

const END_SEQUENCE = Buffer.from('\r\n.\r\n');
const LF_DOT = Buffer.from('\n.');
const DOT_CRLF = Buffer.from('.\r\n');

type Done = (err?: Error | null) => void;

/** smtp-server's own `_feedDataStream`, kept for the comparison test. */
export const ORIGINAL_FEED = SMTPStream.prototype._feedDataStream;

/**
 * Puts {@link feedDataStream} in place of smtp-server's DATA parser when the installed
 * smtp-server is the version it was ported from; says whether it did. Idempotent.
 */
export function installDataParser(): boolean {
  const version = (createRequire(import.meta.url)('smtp-server/package.json') as { version: string }).version;
  if (version !== PORTED_FROM || typeof ORIGINAL_FEED !== 'function') return false;
  SMTPStream.prototype._feedDataStream = feedDataStream;
  return true;
}

/**
 * Processes a chunk in data mode: escape dots are removed and the final dot ends the data
 * mode (smtp-server 3.21.6's `_feedDataStream`, with its loop over every byte replaced).
 */
export function feedDataStream(this: SMTPStream, input: Buffer, done: Done): void {
  // only called in data mode, which always has a stream
  const dataStream = this._dataStream!;
  let chunk = input;
  if (this._lastBytes && this._lastBytes.length) {
    chunk = Buffer.concat([this._lastBytes, chunk], this._lastBytes.length + chunk.length);
    this._lastBytes = false;
  }
  let len = chunk.length;
  // Check if the data does not start with the end terminator (smtp-server: this must test
  // _atDataStart, not dataBytes, or a client controlling TCP segmentation could end DATA
  // early after an escaped first line and smuggle commands into the data phase).
  if (this._atDataStart && len >= 3 && chunk.subarray(0, 3).equals(DOT_CRLF)) {
    this._endDataMode(false, chunk.subarray(3), done);
    return;
  }
  // check if the first symbol is an escape dot
  if (this._atDataStart && len >= 2 && chunk[0] === 0x2e && chunk[1] === 0x2e) {
    chunk = chunk.subarray(1);
    len--;
    // the escape dot is consumed payload, so the leading dot from now on is content
    this._atDataStart = false;
  }
  // INVARIANT: visits exactly the positions smtp-server's loop (i = 2 … len - 3) acts on,
  // in order: a dot right after a LF. "\n." occurrences cannot overlap.
  for (let lf = chunk.indexOf(LF_DOT, 1); lf !== -1 && lf + 1 < len - 2; lf = chunk.indexOf(LF_DOT, lf + 1)) {
    const i = lf + 1;
    // if the dot matches end terminator
    if (chunk.subarray(i - 2, i + 3).equals(END_SEQUENCE)) {
      // everything before the terminator is message content, including the CRLF that
      // ends the last line (the loop starts at i = 2, so that CRLF is always emitted)
      const buf = chunk.subarray(0, i);
      this._countDataBytes(buf.length);
      this._endDataMode(buf, chunk.subarray(i + 3), done);
      return;
    }
    // check if the dot is an escape char and remove it
    if (chunk[i + 1] === 0x2e) {
      const buf = chunk.subarray(0, i);
      this._lastBytes = false;
      this._countDataBytes(buf.length);
      // emit what we already have and continue without the dot
      if (dataStream.writable) dataStream.write(buf);
      const rest = chunk.subarray(i + 1);
      setImmediate(() => this._feedDataStream(rest, done));
      return;
    }
  }
  // keep the last bytes
  this._lastBytes = chunk.length < 4 ? chunk : chunk.subarray(chunk.length - 4);
  // nothing to emit beyond the kept bytes: continue with the input stream
  if (this._lastBytes.length >= chunk.length) return done();
  const buf = chunk.subarray(0, chunk.length - this._lastBytes.length);
  this._countDataBytes(buf.length);
  if (!dataStream.writable) return done();
  // write to stream but stop if need to wait for drain
  if (dataStream.write(buf) || dataStream.destroyed) return done();
  // a stream that the application destroys never drains, it only closes
  const onDrain = () => {
    dataStream.removeListener('drain', onDrain);
    dataStream.removeListener('close', onDrain);
    done();
  };
  dataStream.once('drain', onDrain);
  dataStream.once('close', onDrain);
}
