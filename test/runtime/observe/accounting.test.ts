import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ACCOUNTING_FIELDS, FIELD_MAX_BYTES, openAccounting, type AccountingRecord } from '../../../runtime/observe/accounting.ts';
import { parseCsv } from '../fixtures/e2e.ts';

const base: AccountingRecord = {
  type: 'b',
  timeLogged: Date.UTC(2026, 10, 29, 23, 59, 58),
  timeQueued: Date.UTC(2026, 10, 29, 23, 50, 0),
  orig: 'news@shop.example',
  rcpt: 'someone@yahoo.com',
  dsnAction: 'failed',
  dsnStatus: '5.1.1',
  dsnDiag: 'smtp;554 delivery error: dd This user doesn\'t have a yahoo.com account (someone@yahoo.com) [0] - "quoted", too\nsecond line',
  dsnMta: 'dns;mta5.am0.yahoodns.net (192.0.2.5)',
  bounceCat: 'bad-mailbox',
  vmta: 'ip1',
  queue: 'provider:yahoo/ip1',
  jobId: 'black-friday',
  tenant: 'shop',
  policyVersion: 'b042be57a2d25d1a',
  policyRule: 'policies/yahoo.policy:88',
};

let dir: string;
beforeEach(() => (dir = mkdtempSync(path.join(tmpdir(), 'petrel-acct-'))));
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('accounting', () => {
  it('writes PowerMTA-named columns, quoting what needs it, readable by a CSV reader', () => {
    const acct = openAccounting(dir, { flushMs: 0, clock: () => base.timeLogged });
    acct.write(base);
    acct.close();
    const rows = parseCsv(readFileSync(path.join(dir, 'acct-2026-11-29.csv'), 'utf8'));
    expect(rows[0]).toEqual([...ACCOUNTING_FIELDS]);
    expect(rows[1]).toEqual(['b', '2026-11-29 23:59:58+0000', '2026-11-29 23:50:00+0000', base.orig, base.rcpt, 'failed', '5.1.1', base.dsnDiag.replace('\n', '\\n'), base.dsnMta, 'bad-mailbox', 'ip1', 'provider:yahoo/ip1', 'black-friday', 'shop', 'b042be57a2d25d1a', 'policies/yahoo.policy:88', '', '', '']);
    expect(rows).toHaveLength(2);
  });

  it('ends with the TLS columns, after every PowerMTA column', () => {
    const acct = openAccounting(dir, { flushMs: 0, clock: () => base.timeLogged });
    acct.write({ ...base, tlsVersion: 'TLSv1.3', tlsCipher: 'TLS_AES_256_GCM_SHA384', tlsVerified: 'dane-ee' });
    acct.close();
    const [header, row] = parseCsv(readFileSync(path.join(dir, 'acct-2026-11-29.csv'), 'utf8'));
    expect(header!.slice(-4)).toEqual(['policyRule', 'tlsVersion', 'tlsCipher', 'tlsVerified']);
    expect(row!.slice(-3)).toEqual(['TLSv1.3', 'TLS_AES_256_GCM_SHA384', 'dane-ee']);
  });

  it('starts a new file each UTC day, with its own header, and appends to an existing one', () => {
    let now = base.timeLogged;
    const acct = openAccounting(dir, { flushMs: 0, clock: () => now });
    acct.write(base);
    now += 5_000;
    acct.write({ ...base, type: 'd', timeLogged: now, dsnAction: 'relayed', dsnStatus: '2.0.0', dsnDiag: 'smtp;250 ok', bounceCat: '' });
    acct.close();
    const again = openAccounting(dir, { flushMs: 0, clock: () => now });
    again.write({ ...base, type: 't', timeLogged: now + 1 });
    again.close();
    expect(readdirSync(dir).sort()).toEqual(['acct-2026-11-29.csv', 'acct-2026-11-30.csv']);
    const second = parseCsv(readFileSync(path.join(dir, 'acct-2026-11-30.csv'), 'utf8'));
    expect(second.map((r) => r[0])).toEqual(['type', 'd', 't']);
  });

  it('buffers writes and flushes them in batches', async () => {
    const acct = openAccounting(dir, { flushMs: 20, clock: () => base.timeLogged });
    for (let i = 0; i < 100; i++) acct.write({ ...base, rcpt: `r${i}@yahoo.com` });
    expect(readdirSync(dir)).toEqual([]);
    await new Promise((r) => setTimeout(r, 60));
    expect(parseCsv(readFileSync(path.join(dir, 'acct-2026-11-29.csv'), 'utf8'))).toHaveLength(101);
    expect(acct.written).toBe(100);
    acct.close();
  });

  it('writes a multi-line reply with a fake record inside as one line, its breaks escaped', () => {
    const acct = openAccounting(dir, { flushMs: 0, clock: () => base.timeLogged });
    const fake = 'd,2026-11-29 23:59:58+0000,2026-11-29 23:50:00+0000,ceo@shop.example,victim@yahoo.com,relayed,2.0.0,smtp;250 ok';
    acct.write({ ...base, dsnDiag: `smtp;550-5.1.1 user unknown\r\n${fake}\r\n550 5.1.1 end`, rcpt: 'a@b.example\nd,forged', tenant: 'shop\r', jobId: 'x\u2028y' });
    acct.close();
    const text = readFileSync(path.join(dir, 'acct-2026-11-29.csv'), 'utf8');
    const lines = text.split('\n');
    expect(lines).toHaveLength(3); // header, the record, and the empty string after the last newline
    expect(lines[2]).toBe('');
    expect(lines.filter((l) => l.startsWith('d,'))).toEqual([]);
    expect(text).not.toMatch(/[\r\u2028]/);
    const [, row] = parseCsv(text);
    expect(row![ACCOUNTING_FIELDS.indexOf('dsnDiag')]).toBe(`smtp;550-5.1.1 user unknown\\r\\n${fake}\\r\\n550 5.1.1 end`);
    expect(row![ACCOUNTING_FIELDS.indexOf('rcpt')]).toBe('a@b.example\\nd,forged');
    expect(row![ACCOUNTING_FIELDS.indexOf('tenant')]).toBe('shop\\r');
    expect(row![ACCOUNTING_FIELDS.indexOf('jobId')]).toBe('x\\u2028y');
  });

  it('writes control bytes as \\xNN escapes, and a backslash doubled so every escape reads back', () => {
    const acct = openAccounting(dir, { flushMs: 0, clock: () => base.timeLogged });
    acct.write({ ...base, dsnDiag: 'smtp;421 \x1b[31mred\x00\x7f\t\\n', orig: 'a\x07@shop.example', dsnMta: 'dns;mx\x85.example' });
    acct.close();
    const text = readFileSync(path.join(dir, 'acct-2026-11-29.csv'), 'utf8');
    expect(text.split('\n')).toHaveLength(3);
    for (const line of text.split('\n')) expect(line).not.toMatch(/[\x00-\x1f\x7f-\x9f]/);
    const [, row] = parseCsv(text);
    expect(row![ACCOUNTING_FIELDS.indexOf('dsnDiag')]).toBe('smtp;421 \\x1b[31mred\\x00\\x7f\\t\\\\n');
    expect(row![ACCOUNTING_FIELDS.indexOf('orig')]).toBe('a\\x07@shop.example');
    expect(row![ACCOUNTING_FIELDS.indexOf('dsnMta')]).toBe('dns;mx\\x85.example');
  });

  it('cuts every field to its byte bound, dsnDiag to 1,000 bytes, ending in …', () => {
    const acct = openAccounting(dir, { flushMs: 0, clock: () => base.timeLogged });
    const huge = 'é'.repeat(100_000);
    acct.write({ ...base, dsnDiag: `smtp;550 ${huge}`, orig: huge, rcpt: huge, dsnMta: huge, jobId: huge, tenant: huge, queue: huge, vmta: huge, policyRule: huge });
    acct.close();
    const [, row] = parseCsv(readFileSync(path.join(dir, 'acct-2026-11-29.csv'), 'utf8'));
    expect(FIELD_MAX_BYTES.dsnDiag).toBe(1000);
    for (const f of ['dsnDiag', 'orig', 'rcpt', 'dsnMta', 'jobId', 'tenant', 'queue', 'vmta', 'policyRule'] as const) {
      const value = row![ACCOUNTING_FIELDS.indexOf(f)]!;
      expect(Buffer.byteLength(value), f).toBeLessThanOrEqual(FIELD_MAX_BYTES[f]);
      expect(Buffer.byteLength(value), f).toBeGreaterThan(FIELD_MAX_BYTES[f] - 4);
      expect(value.endsWith('…'), f).toBe(true);
    }
  });

  it('writes a time no Date can hold without throwing', () => {
    const acct = openAccounting(dir, { flushMs: 0, clock: () => base.timeLogged });
    acct.write({ ...base, timeQueued: 8.64e24 });
    acct.close();
    const [, row] = parseCsv(readFileSync(path.join(dir, 'acct-2026-11-29.csv'), 'utf8'));
    expect(row![2]).toBe('+275760-09-13 00:00:00+0000');
  });
});
