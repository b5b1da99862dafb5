/**
 * The suppression list: per tenant, the addresses Petrel refuses to mail again because
 * they hard-bounced (`bad-mailbox`, `bad-domain`, `inactive-mailbox`) or complained —
 * never because of a `block`, `throttle` or `soft` reply, which say nothing about the
 * address. Submission consults it (runtime.ts `acceptMessage`); the bounce loop
 * (decide/bounce-loop.ts), feedback reports and the operator (API, `petrel suppression`)
 * feed it.
 *
 * Durable: an append-only log of JSON lines, `DIR/suppression.log`, each change
 * written and fdatasync'd before `add`/`remove` resolve (changes arriving together share
 * one sync). Opening replays it; a torn last line (a crash mid-write) is ignored. When
 * removed and replaced lines pass half the file, it is rewritten (temp file, fsync,
 * rename, directory fsync).
 *
 * Bounded: at most `maxEntries` entries over all tenants (default 1,000,000); past it an
 * add is refused with an error. One entry costs about 190 bytes of heap (measured:
 * bench/bounce-loop.ts) plus its detail text (at most 200 characters, ~1 byte each when
 * ASCII): ≤ 400 MB at a million entries, ~250 MB with typical bounce replies.
 *
 * Addresses are compared case-insensitively (lower-cased): a mailbox's local part is
 * case-sensitive in theory and never in practice, and a bounce of `Bob@x` must stop `bob@x`.
 */
import path from 'node:path';
import { openJsonLog } from '../spool/index.ts';

/** Why an address is suppressed. */
export type SuppressionReason = 'bad-mailbox' | 'bad-domain' | 'inactive-mailbox' | 'complaint' | 'manual';
export const SUPPRESSION_REASONS: readonly SuppressionReason[] = ['bad-mailbox', 'bad-domain', 'inactive-mailbox', 'complaint', 'manual'];
/** Bounce categories that suppress (hard bounces that speak of the address itself). */
export const SUPPRESSING_CATEGORIES: ReadonlySet<string> = new Set(['bad-mailbox', 'bad-domain', 'inactive-mailbox']);

export interface SuppressionEntry {
  /** The tenant; `''` for messages without one. */
  tenant: string;
  address: string;
  reason: SuppressionReason;
  /** Milliseconds since the epoch. */
  at: number;
  /** What caused it: the bounce reply, the feedback report's queue id, or the operator's note; at most 200 characters (it is held in memory). */
  detail: string;
}

export interface SuppressionList {
  has(tenant: string, address: string): SuppressionEntry | undefined;
  /** Adds or replaces; resolves once durable. Rejects past `maxEntries` or with a malformed address. */
  add(entries: readonly SuppressionEntry[]): Promise<void>;
  /** Removes; resolves with how many existed, once durable. */
  remove(tenant: string, addresses: readonly string[]): Promise<number>;
  /** Entries of one tenant (or all, `undefined`), sorted by address, from `offset`, at most `limit`. */
  list(tenant: string | undefined, offset: number, limit: number): { total: number; entries: SuppressionEntry[] };
  readonly size: number;
  close(): void;
}

/** A mailbox as the list keys it: something@domain, printable, no spaces, at most 320 bytes. */
const ADDRESS = /^[^\s@<>]{1,64}@[^\s@<>]{1,255}$/;
export const normalAddress = (address: string): string | undefined => {
  const a = address.trim().toLowerCase();
  return ADDRESS.test(a) && /^[\x21-\x7e]+$/.test(a) ? a : undefined;
};

type LogLine = { op: 'add'; e: SuppressionEntry } | { op: 'del'; t: string; a: string };

export function openSuppressionList(dir: string, options: { maxEntries?: number } = {}): SuppressionList {
  const maxEntries = options.maxEntries ?? 1_000_000;
  const file = path.join(dir, 'suppression.log');
  const byTenant = new Map<string, Map<string, SuppressionEntry>>();
  let size = 0;
  const put = (e: SuppressionEntry) => {
    let m = byTenant.get(e.tenant);
    if (!m) byTenant.set(e.tenant, (m = new Map()));
    if (!m.has(e.address)) size++;
    m.set(e.address, e);
  };
  const del = (tenant: string, address: string) => {
    const m = byTenant.get(tenant);
    if (!m?.delete(address)) return false;
    size--;
    if (m.size === 0) byTenant.delete(tenant);
    return true;
  };
  const log = openJsonLog<LogLine>(
    file,
    (line) => {
      if (line.op === 'add') put(line.e);
      else if (line.op === 'del') del(line.t, line.a);
    },
    // Compaction: when removed and replaced lines pass half the file.
    () => {
      if (log.lines > 1000 && log.lines > 2 * size) log.rewrite(all().map((e) => ({ op: 'add', e })));
    },
  );
  const all = () => [...byTenant.values()].flatMap((m) => [...m.values()]);
  return {
    has: (tenant, address) => byTenant.get(tenant)?.get(address.toLowerCase()),
    async add(entries) {
      const clean = entries.map((e) => {
        const address = normalAddress(e.address);
        if (!address) throw new Error(`\`${e.address.slice(0, 100)}\` is not an address`);
        if (!SUPPRESSION_REASONS.includes(e.reason)) throw new Error(`\`${String(e.reason).slice(0, 40)}\` is not a suppression reason (${SUPPRESSION_REASONS.join(', ')})`);
        return { tenant: e.tenant, address, reason: e.reason, at: e.at, detail: e.detail.slice(0, 200) };
      });
      const fresh = new Set(clean.filter((e) => !byTenant.get(e.tenant)?.has(e.address)).map((e) => `${e.tenant}\n${e.address}`));
      if (size + fresh.size > maxEntries) throw new Error(`the suppression list is full (${maxEntries} entries)`);
      for (const e of clean) put(e);
      await log.append(clean.map((e) => ({ op: 'add', e })));
    },
    async remove(tenant, addresses) {
      const gone = addresses.map((a) => a.trim().toLowerCase()).filter((a) => del(tenant, a));
      if (gone.length > 0) await log.append(gone.map((a) => ({ op: 'del', t: tenant, a })));
      return gone.length;
    },
    list(tenant, offset, limit) {
      const entries = tenant === undefined ? all() : [...(byTenant.get(tenant)?.values() ?? [])];
      const sorted = entries.sort((a, b) => (a.tenant === b.tenant ? (a.address < b.address ? -1 : 1) : a.tenant < b.tenant ? -1 : 1));
      return { total: sorted.length, entries: sorted.slice(offset, offset + limit) };
    },
    get size() {
      return size;
    },
    close: () => log.close(),
  };
}
