import { describe, expect, it } from 'vitest';
import { takeControlHeaders } from '../../runtime/headers.ts';

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
