import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ACCOUNTING_FIELDS, openAccounting, type AccountingRecord } from '../../runtime/accounting.ts';
import { parseCsv } from './fixtures/e2e.ts';

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
    expect(rows[1]).toEqual(['b', '2026-11-29 23:59:58+0000', '2026-11-29 23:50:00+0000', base.orig, base.rcpt, 'failed', '5.1.1', base.dsnDiag, base.dsnMta, 'bad-mailbox', 'ip1', 'provider:yahoo/ip1', 'black-friday', 'shop', 'b042be57a2d25d1a', 'policies/yahoo.policy:88']);
    expect(rows).toHaveLength(2);
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
});
