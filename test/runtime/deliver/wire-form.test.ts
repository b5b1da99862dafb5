/**
 * A body in wire form goes onto the socket unchanged; any other is encoded by nodemailer as
 * before. Checked on the bytes a raw SMTP peer on loopback reads after DATA (dot-stuffed,
 * as on the wire), for both kinds on one reused session, and through smtp-server.
 */
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSession, type SmtpSession } from '../../../runtime/deliver/smtp-client.ts';
import { isWireForm } from '../../../runtime/deliver/wire-form.ts';
import { startSink } from '../fixtures/sink.ts';

describe('isWireForm', () => {
  const cases: [string, boolean][] = [
    ['Subject: a\r\n\r\nbody\r\n', true],
    ['no final line end', true],
    ['', true],
    ['a\r\n.b\r\n', false],
    ['.first line\r\n', false],
    ['bare\nLF\r\n', false],
    ['\nleading LF', false],
    ['bare\rCR\r\n', false],
    ['trailing CR\r', false],
    ['a\r\n\r\n..\r\n', false],
    ['dot.inside\r\nand . here\r\n', true],
  ];
  it.each(cases)('%j → %s', (text, expected) => {
    expect(isWireForm(Buffer.from(text, 'latin1'))).toBe(expected);
    // Any view of the bytes, not only a Buffer.
    expect(isWireForm(new Uint8Array(Buffer.from(text, 'latin1')))).toBe(expected);
  });
});

/** A raw SMTP peer: records each message's bytes between `354` and the terminator exactly as they came. */
function rawPeer(): Promise<{ port: number; messages: Buffer[]; close(): Promise<void> }> {
  const messages: Buffer[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    let pending = Buffer.alloc(0);
    let inData = false;
    socket.write('220 raw.test ESMTP\r\n');
    socket.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      for (;;) {
        if (inData) {
          // The terminator is CRLF.CRLF, or .CRLF at the very start of the data.
          const end = pending.subarray(0, 3).equals(Buffer.from('.\r\n')) ? 0 : pending.indexOf('\r\n.\r\n');
          if (end === -1) return;
          const cut = end === 0 ? 0 : end + 2;
          messages.push(Buffer.from(pending.subarray(0, cut)));
          pending = pending.subarray(cut + 3);
          inData = false;
          socket.write('250 2.0.0 ok\r\n');
          continue;
        }
        const eol = pending.indexOf('\r\n');
        if (eol === -1) return;
        const line = pending.subarray(0, eol).toString('latin1');
        pending = pending.subarray(eol + 2);
        const verb = line.slice(0, 4).toUpperCase();
        if (verb === 'EHLO') socket.write('250-raw.test\r\n250 PIPELINING\r\n');
        else if (verb === 'DATA') {
          inData = true;
          socket.write('354 go ahead\r\n');
        } else if (verb === 'QUIT') socket.end('221 bye\r\n');
        else socket.write('250 ok\r\n');
      }
    });
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () =>
      resolve({
        port: (server.address() as AddressInfo).port,
        messages,
        close: () =>
          new Promise<void>((r) => {
            for (const s of sockets) s.destroy();
            server.close(() => r());
          }),
      }),
    ),
  );
}

describe('sending a body in wire form', () => {
  let peer: Awaited<ReturnType<typeof rawPeer>>;
  let session: SmtpSession;
  beforeAll(async () => {
    peer = await rawPeer();
    const opened = await openSession({ host: '127.0.0.1', port: peer.port, ehlo: 'mta.petrel.test', tls: 'disabled' });
    if (!opened.ok) throw new Error(opened.reply);
    session = opened.session;
  });
  afterAll(async () => {
    await session?.close();
    await peer?.close();
  });

  const line = 'x'.repeat(76) + '\r\n';
  const big = Buffer.from('Subject: big\r\n\r\n' + line.repeat(1400));
  // What goes after DATA, terminator excluded: unchanged in wire form, else as nodemailer encodes it.
  const cases: [string, Buffer, string][] = [
    ['100 KB in wire form, unchanged', big, big.toString('latin1')],
    ['no final CRLF: one is added before the terminator', Buffer.from('Subject: a\r\n\r\nlast'), 'Subject: a\r\n\r\nlast\r\n'],
    ['a line starting with a dot is stuffed', Buffer.from('Subject: a\r\n\r\n.hidden\r\n..two\r\n'), 'Subject: a\r\n\r\n..hidden\r\n...two\r\n'],
    ['a dot on the first line is stuffed', Buffer.from('.x\r\n'), '..x\r\n'],
    ['bare LF and bare CR become CRLF, a dot after them is stuffed', Buffer.from('a\nb\rc\n.d\r\n'), 'a\r\nb\r\nc\r\n..d\r\n'],
    ['wire form again after an encoded body, on the same session', Buffer.from('Subject: b\r\n\r\nplain\r\n'), 'Subject: b\r\n\r\nplain\r\n'],
  ];
  it.each(cases)('%s', async (_name, raw, wire) => {
    const before = peer.messages.length;
    const result = await session.send({ from: 'a@petrel.test', to: ['b@example.test'], raw });
    expect(result.perRecipient[0]).toMatchObject({ accepted: true, reply: '250 2.0.0 ok' });
    expect(peer.messages.length).toBe(before + 1);
    expect(peer.messages.at(-1)!.toString('latin1')).toBe(wire);
  });

  it('a body in wire form reaches smtp-server whole, on a reused session', async () => {
    const sink = await startSink();
    try {
      const opened = await openSession({ host: '127.0.0.1', port: sink.port, ehlo: 'mta.petrel.test', tls: 'disabled' });
      if (!opened.ok) throw new Error(opened.reply);
      for (let i = 0; i < 3; i++) {
        const result = await opened.session.send({ from: 'a@petrel.test', to: [`r${i}@example.test`], raw: big });
        expect(result.perRecipient[0]!.accepted).toBe(true);
      }
      await opened.session.close();
      expect(sink.received.map((r) => r.raw)).toEqual([0, 1, 2].map(() => big.toString('latin1')));
    } finally {
      await sink.close();
    }
  });
});
