import { describe, expect, it } from 'vitest';
import { takeControlHeaders, takeControlHeadersOfChunks } from '../../../runtime/intake/headers.ts';
import { receivedHeader, rfc5322Date } from '../../../runtime/intake/received.ts';

describe('control headers', () => {
  it('reads X-Petrel-* headers, removes them with their folded lines, and keeps everything else byte for byte', () => {
    const raw = Buffer.from('From: a@b.example\r\nX-Petrel-Tenant: shop\r\nSubject: hi\r\nX-Petrel-Campaign: black\r\n friday\r\nx-petrel-pool:warm\r\n\r\nX-Petrel-Tenant: in the body stays\r\n');
    const { values, message } = takeControlHeaders(raw);
    expect(values).toEqual({ tenant: 'shop', campaign: 'black friday', pool: 'warm' });
    expect(message.toString()).toBe('From: a@b.example\r\nSubject: hi\r\n\r\nX-Petrel-Tenant: in the body stays\r\n');
  });

  it('returns the same buffer when there is nothing to take', () => {
    const raw = Buffer.from('Subject: x\n\nbody\n');
    expect(takeControlHeaders(raw).message).toBe(raw);
  });
});

describe('control headers and bare CR', () => {
  const take = (text: string) => {
    const { values, message } = takeControlHeaders(Buffer.from(text, 'latin1'));
    return { values, text: message.toString('latin1') };
  };

  it('drops a control header whose value holds a bare CR, with what the CR would have started', () => {
    const got = take('From: a@b.example\r\nX-Petrel-Tenant: shop\rBcc: victim@x.example\r\nSubject: hi\r\n\r\nbody\r\n');
    expect(got.values).toEqual({});
    expect(got.text).toBe('From: a@b.example\r\nSubject: hi\r\n\r\nbody\r\n');
    expect(got.text).not.toMatch(/x-petrel|bcc/i);
  });

  it('drops any header field with a bare CR, also in a folded line, and the header block has no bare CR left', () => {
    const got = take('Subject: a\r\n b\rX-Petrel-Pool: warm\r\nTo: c@d.example\r\nX-Custom: e\rf\nX-Petrel-Campaign: spring\r\n\r\nbody\rkept\r\n');
    expect(got.values).toEqual({ campaign: 'spring' });
    expect(got.text).toBe('To: c@d.example\r\n\r\nbody\rkept\r\n');
  });

  it('a bare CR where a line break would end the header block cannot hide a control header from us', () => {
    // To a reader taking CR as a line break, `\r\r` ends the header block and the rest is body;
    // to us it is one odd header line. Either way no X-Petrel header reaches the relayed message.
    const got = take('Subject: x\r\rX-Petrel-Tenant: t\r\n\r\nbody\r\n');
    expect(got.text).toBe('\r\nbody\r\n');
    expect(got.values).toEqual({});
  });

  it('keeps the body byte for byte, bare CRs and non-ASCII bytes included', () => {
    const body = Buffer.from([0x62, 0x0d, 0x80, 0xff, 0x0d, 0x0a, 0x0d]);
    const raw = Buffer.concat([Buffer.from('X-Petrel-Tenant: t\nSubject: s\n\n'), body]);
    const { values, message } = takeControlHeaders(raw);
    expect(values).toEqual({ tenant: 't' });
    expect(message.equals(Buffer.concat([Buffer.from('Subject: s\n\n'), body]))).toBe(true);
  });

  it('a message with no empty line is all header; a control header there is still taken', () => {
    expect(take('Subject: s\r\nX-Petrel-Tenant: t')).toEqual({ values: { tenant: 't' }, text: 'Subject: s\r\n' });
  });
});

describe('Received header', () => {
  it('names the client, us, the protocol, the id, the single recipient and the date (RFC 5321 §4.4)', () => {
    const at = Date.UTC(2026, 1, 3, 9, 4, 5);
    expect(receivedHeader({ helo: 'client.test', address: '::ffff:127.0.0.2', hostname: 'host.test', protocol: 'ESMTPSA' }, 'petrel.test', 'ID1', ['a@b.example'], at)).toBe(
      'Received: from client.test (host.test [127.0.0.2])\r\n\tby petrel.test (Petrel) with ESMTPSA id ID1\r\n\tfor <a@b.example>; Tue, 3 Feb 2026 09:04:05 +0000\r\n',
    );
    expect(receivedHeader({ address: '127.0.0.1', protocol: 'HTTP' }, 'petrel.test', 'ID2', ['a@b.example', 'c@d.example'], at)).toBe('Received: from [127.0.0.1]\r\n\tby petrel.test (Petrel) with HTTP id ID2; Tue, 3 Feb 2026 09:04:05 +0000\r\n');
    expect(rfc5322Date(Date.UTC(2026, 11, 31, 23, 59, 59))).toBe('Thu, 31 Dec 2026 23:59:59 +0000');
  });

  it('no client-given text can break the header: line breaks, spaces and comment or angle characters become `?`', () => {
    const h = receivedHeader({ helo: 'evil\r\nBcc: x (y) <z>;', hostname: '[127.0.0.9]', address: '127.0.0.9', protocol: 'ESMTP' }, 'petrel.test', 'ID', ['a>\r\nX: y@b'], 0);
    expect(h.split('\r\n').filter(Boolean).map((l) => l.slice(0, 9))).toEqual(['Received:', '\tby petre', '\tfor <a??']);
    expect(h).toContain('from evil??Bcc:?x??y???z??');
    expect(h).toContain('([127.0.0.9])'); // an unresolved name (smtp-server's `[address]`) is not repeated
  });
});

describe('control headers of a message in chunks', () => {
  it('gives what takeControlHeaders gives for the joined message, however the chunks fall', () => {
    const messages = [
      'From: a@b.example\r\nX-Petrel-Tenant: shop\r\nSubject: hi\r\nX-Petrel-Campaign: black\r\n friday\r\n\r\nX-Petrel-Tenant: body\r\n',
      'Subject: x\r\rX-Petrel-Tenant: t\r\n\r\nbody\r\n',
      'X-Petrel-Pool: warm\nSubject: s\n\nbody\rcr\n',
      'Subject: no empty line\r\nX-Petrel-Tenant: t',
    ];
    for (const text of messages) {
      const raw = Buffer.from(text, 'latin1');
      const whole = takeControlHeaders(raw);
      for (let size = 1; size <= raw.length; size++) {
        const chunks = Array.from({ length: Math.ceil(raw.length / size) }, (_, i) => raw.subarray(i * size, (i + 1) * size));
        const got = takeControlHeadersOfChunks(chunks);
        expect(got.values).toEqual(whole.values);
        expect(Buffer.concat(got.message).toString('latin1')).toBe(whole.message.toString('latin1'));
      }
    }
  });

  it('does not copy the body: its chunks come back as views of the ones given', () => {
    const body = Buffer.from('b'.repeat(1000));
    const got = takeControlHeadersOfChunks([Buffer.from('X-Petrel-Tenant: t\r\n\r\n'), body]);
    expect(got.values).toEqual({ tenant: 't' });
    expect(got.message[got.message.length - 1]!.buffer).toBe(body.buffer);
  });
});
