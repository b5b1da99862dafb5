/**
 * The suppression list on disk (intake/suppression.ts on spool/json-log.ts): what was
 * acknowledged survives a reopen, a torn last line is skipped, compaction keeps the
 * entries, the bound holds, bad input is refused with what and where.
 */
import { appendFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openSuppressionList, type SuppressionEntry } from '../../../runtime/intake/index.ts';

let dir = '';
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'petrel-suppression-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const entry = (address: string, tenant = 't', reason: SuppressionEntry['reason'] = 'bad-mailbox'): SuppressionEntry => ({ tenant, address, reason, at: 1, detail: '550 5.1.1' });

describe('suppression list', () => {
  it('keeps adds and removes across a reopen, per tenant, case-insensitively', async () => {
    const list = openSuppressionList(dir);
    await list.add([entry('Bob@X.example'), entry('amy@x.example'), entry('bob@x.example', 'other', 'complaint')]);
    expect(await list.remove('t', ['AMY@x.example', 'nobody@x.example'])).toBe(1);
    list.close();
    const again = openSuppressionList(dir);
    expect(again.has('t', 'BOB@x.example')).toMatchObject({ address: 'bob@x.example', reason: 'bad-mailbox' });
    expect(again.has('t', 'amy@x.example')).toBeUndefined();
    expect(again.has('other', 'bob@x.example')?.reason).toBe('complaint');
    expect(again.has('', 'bob@x.example')).toBeUndefined();
    expect(again.list(undefined, 0, 10)).toMatchObject({ total: 2, entries: [{ tenant: 'other' }, { tenant: 't' }] });
    again.close();
  });

  it('skips a torn last line (a crash mid-write) and keeps what came before', async () => {
    const list = openSuppressionList(dir);
    await list.add([entry('a@x.example')]);
    list.close();
    appendFileSync(path.join(dir, 'suppression.log'), '{"op":"add","e":{"tenant":"t","addr');
    const again = openSuppressionList(dir);
    expect(again.size).toBe(1);
    await again.add([entry('b@x.example')]);
    again.close();
    expect(openSuppressionList(dir).size).toBe(2);
  });

  it('compacts a log of many replaced entries down to the live ones', async () => {
    const list = openSuppressionList(dir);
    for (let i = 0; i < 30; i++) await list.add(Array.from({ length: 50 }, (_, n) => entry(`u${n}@x.example`)));
    list.close();
    const lines = readFileSync(path.join(dir, 'suppression.log'), 'utf8').trim().split('\n');
    expect(lines.length).toBeLessThan(1100);
    expect(openSuppressionList(dir).size).toBe(50);
  });

  it('refuses bad addresses and reasons, and adds past the bound', async () => {
    const list = openSuppressionList(dir, { maxEntries: 2 });
    await expect(list.add([entry('not-an-address')])).rejects.toThrow('`not-an-address` is not an address');
    await expect(list.add([{ ...entry('a@x.example'), reason: 'block' as never }])).rejects.toThrow('`block` is not a suppression reason');
    await list.add([entry('a@x.example'), entry('b@x.example')]);
    await list.add([entry('a@x.example', 't', 'complaint')]); // a replacement is not a new entry
    await expect(list.add([entry('c@x.example')])).rejects.toThrow('the suppression list is full (2 entries)');
    expect(list.size).toBe(2);
    list.close();
  });
});
