/**
 * The DATA parser port (intake/data-parser.ts) against smtp-server's own, on real SMTPStream
 * instances: random messages full of dots, CRs, LFs and early terminators, cut into random
 * chunks, must give the same data bytes, the same byte count and the same commands after
 * the data. And a message through a real submission server on loopback.
 */
import fc from 'fast-check';
import { createConnection } from 'node:net';
import { SMTPStream } from 'smtp-server/lib/smtp-stream';
import { describe, expect, it } from 'vitest';
import { feedDataStream, installDataParser, ORIGINAL_FEED, PORTED_FROM } from '../../../runtime/intake/data-parser.ts';
import { createSubmissionServer } from '../../../runtime/intake/submission-smtp.ts';

interface Parsed {
  data: string;
  dataBytes: number;
  commands: string[];
}

/** Feeds `chunks` (one write each, in data mode) to an SMTPStream parsing DATA with `feed`. */
async function parse(feed: typeof ORIGINAL_FEED, chunks: Buffer[]): Promise<Parsed> {
  const stream = new SMTPStream();
  stream._feedDataStream = feed;
  const commands: string[] = [];
  stream.oncommand = (command: Buffer, callback?: () => void) => {
    commands.push(command.toString('latin1'));
    callback?.();
  };
  const data = stream.startDataMode();
  const out: Buffer[] = [];
  data.on('data', (c: Buffer) => out.push(c));
  data.on('end', () => stream.continue());
  for (const chunk of chunks) await new Promise<void>((resolve, reject) => stream.write(chunk, (e) => (e ? reject(e) : resolve())));
  // Escape dots resume on setImmediate: let every deferred step run.
  for (let i = 0; i < 50; i++) await new Promise((r) => setImmediate(r));
  return { data: Buffer.concat(out).toString('latin1'), dataBytes: stream.dataBytes, commands };
}

/** `bytes` cut at the given positions. */
function cut(bytes: Buffer, at: number[]): Buffer[] {
  const points = [...new Set(at.map((p) => p % (bytes.length + 1)))].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let from = 0;
  for (const p of points) {
    if (p > from) chunks.push(bytes.subarray(from, p));
    from = Math.max(from, p);
  }
  if (from < bytes.length) chunks.push(bytes.subarray(from));
  return chunks;
}

const TOKENS = ['.', '..', '\r', '\n', '\r\n', '\r\n.', '\r\n..', '\r\n.\r\n', '.\r\n', 'a', 'line of text', 'QUIT'];

describe('the DATA parser port', () => {
  it('is the version it was ported from, and is installed', () => {
    expect(installDataParser()).toBe(true);
    expect(SMTPStream.prototype._feedDataStream).toBe(feedDataStream);
    expect(PORTED_FROM).toBe('3.21.6');
  });

  it('gives what smtp-server gives, on random messages cut into random chunks', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.constantFrom(...TOKENS), { maxLength: 40 }), fc.array(fc.nat(400), { maxLength: 12 }), async (tokens, at) => {
        const bytes = Buffer.from(tokens.join('') + '\r\n.\r\nQUIT\r\n', 'latin1');
        const chunks = cut(bytes, at);
        expect(await parse(feedDataStream, chunks)).toEqual(await parse(ORIGINAL_FEED, chunks));
      }),
      { numRuns: 400 },
    );
  });

  it('unstuffs and ends a 100 KB message cut at every 1,000 bytes as smtp-server does', async () => {
    const line = 'x'.repeat(70) + '\r\n';
    const body = ('..dot line\r\n' + line.repeat(30)).repeat(45);
    const bytes = Buffer.from(body + '.\r\nNOOP\r\n', 'latin1');
    const chunks = cut(bytes, Array.from({ length: Math.ceil(bytes.length / 1000) }, (_, k) => k * 1000));
    const ported = await parse(feedDataStream, chunks);
    expect(ported).toEqual(await parse(ORIGINAL_FEED, chunks));
    expect(ported.data).toBe(body.replaceAll('\r\n..', '\r\n.').replace(/^\.\./, '.'));
    expect(ported.commands).toEqual(['NOOP']);
  });

  it('carries a message through a real submission server on loopback', async () => {
    const accepted: Buffer[][] = [];
    const server = createSubmissionServer(
      { host: '127.0.0.1', port: 0, name: 'mta.petrel.test' },
      {
        acceptMessage: async (_envelope, message) => {
          accepted.push([...message]);
          return 'id1';
        },
        isStopping: () => false,
      },
    );
    const port = await server.listen();
    try {
      const body = 'Subject: t\r\n\r\n..leading dot\r\nplain\r\n';
      const socket = createConnection(port, '127.0.0.1');
      let transcript = '';
      socket.setEncoding('latin1').on('data', (d: string) => (transcript += d));
      const waitFor = async (re: RegExp) => {
        for (let i = 0; i < 200 && !re.test(transcript); i++) await new Promise((r) => setTimeout(r, 25));
        expect(transcript).toMatch(re);
      };
      await waitFor(/^220 /m);
      socket.write('EHLO client.test\r\nMAIL FROM:<a@petrel.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n');
      await waitFor(/^354 /m);
      socket.write(body + '.\r\nQUIT\r\n');
      await waitFor(/^221 /m);
      socket.destroy();
      expect(transcript).toMatch(/^250 2\.0\.0 queued as id1/m);
      expect(Buffer.concat(accepted[0]!).toString('latin1')).toBe('Subject: t\r\n\r\n.leading dot\r\nplain\r\n');
    } finally {
      await server.close(1000);
    }
  });
});
