/**
 * The X-Petrel-Id token and the ARF reader (intake/feedback.ts, intake/mime-parts.ts):
 * a token verifies only with its secret and unchanged; any input to the reader gives a
 * result, never a throw; base64 and quoted-printable parts are decoded.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { feedbackHeader, readFeedbackReport, readMime, verifyFeedbackToken } from '../../../runtime/intake/index.ts';

const SECRET = 'a-secret-of-some-length';
const tokenOf = (origin: { id: string; tenant: string; campaign: string }) => feedbackHeader(SECRET, origin).replace(/^X-Petrel-Id: /, '').trim();

describe('X-Petrel-Id', () => {
  it('round-trips queue id, tenant and campaign (any text) under its secret only', () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[A-Z0-9]{1,30}$/), fc.string({ maxLength: 60 }), fc.string({ maxLength: 60 }), (id, tenant, campaign) => {
        const token = tokenOf({ id, tenant, campaign });
        expect(verifyFeedbackToken(SECRET, token)).toEqual({ id, tenant, campaign });
        expect(verifyFeedbackToken('another-secret-entirely', token)).toBeUndefined();
      }),
    );
  });

  it('refuses a token with any part changed', () => {
    const token = tokenOf({ id: 'ABC123', tenant: 'acme', campaign: 'spring' });
    const [v, id, tenant, campaign, mac] = token.split('.');
    const victim = Buffer.from('victim').toString('base64url');
    for (const forged of [[v, 'ABC124', tenant, campaign, mac], [v, id, victim, campaign, mac], [v, id, tenant, campaign, mac!.replace(/^./, (c) => (c === 'A' ? 'B' : 'A'))], [v, id, tenant, campaign]]) expect(verifyFeedbackToken(SECRET, forged.join('.'))).toBeUndefined();
  });
});

describe('reading reports', () => {
  it('never throws on any input, and names what is missing', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 400 }), (text) => {
        const raw = `Content-Type: multipart/report; report-type=feedback-report; boundary=b\r\n\r\n--b\r\n${text}\r\n--b--\r\n`;
        const read = readFeedbackReport(Buffer.from(raw), SECRET);
        expect(read.ok).toBe(false);
        readMime(Buffer.from(text));
      }),
    );
  });

  it('decodes base64 and quoted-printable parts, and nests no deeper than its bound', () => {
    const raw = 'Content-Type: multipart/mixed; boundary="o"\r\n\r\n--o\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8gd29ybGQ=\r\n--o\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nsoft=\r\n break =3D done\r\n--o--\r\n';
    const m = readMime(Buffer.from(raw));
    expect(m.parts.map((p) => p.body.toString())).toEqual(['hello world', 'soft break = done']);
    // 50 nested multiparts: read to the bound, no deeper.
    let nested = 'leaf';
    for (let i = 0; i < 50; i++) nested = `Content-Type: multipart/mixed; boundary="b${i}"\r\n\r\n--b${i}\r\n${nested}\r\n--b${i}--\r\n`;
    let depth = 0;
    for (let p = readMime(Buffer.from(nested)); p.parts.length > 0; p = p.parts[0]!) depth++;
    expect(depth).toBe(4);
  });
});
