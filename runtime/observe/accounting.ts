/**
 * Accounting: one CSV line per event, in daily files, with PowerMTA's accounting field
 * names so existing PowerMTA log tooling reads them — plus the policy version and rule
 * that made each decision.
 *
 * Files are `acct-YYYY-MM-DD.csv` (UTC day of `timeLogged`), each starting with a header
 * line. Fields follow RFC 4180: quoted when they hold a comma or quote. Times are written
 * as PowerMTA does, `YYYY-MM-DD HH:MM:SS+0000`.
 *
 * INVARIANT: one record is one line. Much of a record comes from outside (the reply text
 * of a receiving MX, addresses, tenant and campaign names), so every field passes through
 * `printable` (text.ts): line breaks and control characters are written as visible escapes
 * (`\r`, `\n`, `\t`, `\\`, `\xNN`) and each field is cut to its bound in `FIELD_MAX_BYTES`
 * (ending in `…`). Line-oriented tools (grep, awk, `wc -l`) see one line per record.
 *
 * Writes are buffered and appended in batches (`flushMs`); `flush()` forces it, and
 * `close()` flushes and fsyncs. Accounting is a log, not the spool: a crash can lose the
 * last unflushed batch of lines, never a message.
 */
import { closeSync, fstatSync, fsyncSync, mkdirSync, openSync, writeSync } from 'node:fs';
import path from 'node:path';
import { isoTime, printable } from './text.ts';

/** PowerMTA record types: d delivered, b bounced, t transient failure, tq queue-level transient, r received, f feedback (a complaint). */
export type RecordType = 'd' | 'b' | 't' | 'tq' | 'r' | 'f';

export interface AccountingRecord {
  type: RecordType;
  timeLogged: number;
  timeQueued: number;
  orig: string;
  rcpt: string;
  /** `delivered`, `failed`, `delayed`, `relayed`… (RFC 3464 action). */
  dsnAction: string;
  /** Enhanced status, e.g. `2.0.0`, `5.1.1`. */
  dsnStatus: string;
  /** The reply as received, e.g. `smtp;550 5.1.1 user unknown`. */
  dsnDiag: string;
  /** The remote MTA, e.g. `dns;mx1.example.com (192.0.2.1)`. */
  dsnMta: string;
  bounceCat: string;
  /** The source (PowerMTA's virtual MTA). */
  vmta: string;
  /** The queue: `route/source`. */
  queue: string;
  /** The campaign. */
  jobId: string;
  tenant: string;
  /** Hash of the policy artifact that decided. */
  policyVersion: string;
  /** `file:line` of the deciding rule, or empty. */
  policyRule: string;
  /** The TLS protocol of the session (`TLSv1.3`), empty in plain text or without a session. */
  tlsVersion?: string;
  /** The OpenSSL cipher name of the session, or empty. */
  tlsCipher?: string;
  /** What authenticated the server (`none`, `ca`, `mta-sts`, `dane-ee`, `dane-ta`; smtp-client.ts `TLS_VERIFIED`), empty without a session. */
  tlsVerified?: string;
}

/** Column order of every file. */
export const ACCOUNTING_FIELDS: readonly (keyof AccountingRecord)[] = [
  'type',
  'timeLogged',
  'timeQueued',
  'orig',
  'rcpt',
  'dsnAction',
  'dsnStatus',
  'dsnDiag',
  'dsnMta',
  'bounceCat',
  'vmta',
  'queue',
  'jobId',
  'tenant',
  'policyVersion',
  'policyRule',
  // Petrel's own, after PowerMTA's columns (which stay first and unchanged).
  'tlsVersion',
  'tlsCipher',
  'tlsVerified',
];

/** The most UTF-8 bytes of a field's text; a longer value is cut to it, ending in `…`. */
export const FIELD_MAX_BYTES: Readonly<Record<Exclude<keyof AccountingRecord, 'timeLogged' | 'timeQueued'>, number>> = {
  type: 2,
  orig: 512,
  rcpt: 512,
  dsnAction: 64,
  dsnStatus: 64,
  dsnDiag: 1000,
  dsnMta: 512,
  bounceCat: 64,
  vmta: 256,
  queue: 512,
  jobId: 256,
  tenant: 256,
  policyVersion: 128,
  policyRule: 1024,
  tlsVersion: 32,
  tlsCipher: 128,
  tlsVerified: 16,
};

/** `2026-11-29 23:43:39+0000` */
export function powerMtaTime(ms: number): string {
  return isoTime(ms).replace('T', ' ').replace(/\.\d+Z$/, '+0000');
}

/** One CSV field, quoted when needed (RFC 4180). */
export function csvField(value: string): string {
  return /[",\r\n]/.test(value) ? `"${value.replace(/"/g, '""')}"` : value;
}

/** One CSV line (with `\n`) for a record: every field printable and within its bound, so never more than one line. */
export function csvLine(record: AccountingRecord): string {
  return (
    ACCOUNTING_FIELDS.map((f) => csvField(f === 'timeLogged' || f === 'timeQueued' ? powerMtaTime(record[f]) : printable(String(record[f] ?? ''), FIELD_MAX_BYTES[f]))).join(',') + '\n'
  );
}

export interface AccountingWriter {
  write(record: AccountingRecord): void;
  /** Appends everything buffered. */
  flush(): void;
  /** Flushes, fsyncs and closes the files. */
  close(): void;
  /** Lines written so far. */
  readonly written: number;
  /** The last failed background flush (lines stay buffered and are retried), if the last attempt failed. */
  readonly lastError: Error | undefined;
}

export function openAccounting(dir: string, options: { flushMs?: number; clock?: () => number } = {}): AccountingWriter {
  const clock = options.clock ?? Date.now;
  mkdirSync(dir, { recursive: true });
  const buffers = new Map<string, string[]>();
  const fds = new Map<string, number>();
  let written = 0;
  let timer: NodeJS.Timeout | undefined;
  let lastError: Error | undefined;
  const flushMs = options.flushMs ?? 200;

  const fileFor = (ms: number) => path.join(dir, `acct-${isoTime(ms).slice(0, 10)}.csv`);

  function fdFor(file: string): number {
    let fd = fds.get(file);
    if (fd === undefined) {
      fd = openSync(file, 'a');
      // A new (empty) file gets the header; an existing one already has it.
      const { size } = fstatSync(fd);
      if (size === 0) writeSync(fd, ACCOUNTING_FIELDS.join(',') + '\n');
      fds.set(file, fd);
    }
    return fd;
  }

  /** A timed flush must not throw from a timer: a failed write is kept (buffered lines stay) and reported by `lastError`. */
  function flushInBackground(): void {
    try {
      flush();
      lastError = undefined;
    } catch (e) {
      lastError = e as Error;
      timer = setTimeout(flushInBackground, Math.max(flushMs, 1000));
    }
  }

  function flush(): void {
    if (timer) {
      clearTimeout(timer);
      timer = undefined;
    }
    for (const [file, lines] of buffers) {
      if (lines.length === 0) continue;
      writeSync(fdFor(file), lines.join(''));
      lines.length = 0;
    }
    // Files of past days are finished: close them.
    const today = fileFor(clock());
    for (const [file, fd] of fds) {
      if (file < today) {
        fsyncSync(fd);
        closeSync(fd);
        fds.delete(file);
        buffers.delete(file);
      }
    }
  }

  return {
    write(record) {
      const file = fileFor(record.timeLogged);
      let lines = buffers.get(file);
      if (!lines) buffers.set(file, (lines = []));
      lines.push(csvLine(record));
      written++;
      if (!timer && flushMs > 0) timer = setTimeout(flushInBackground, flushMs);
      if (flushMs === 0) flush();
    },
    flush,
    close() {
      flush();
      for (const fd of fds.values()) {
        fsyncSync(fd);
        closeSync(fd);
      }
      fds.clear();
    },
    get written() {
      return written;
    },
    get lastError() {
      return lastError;
    },
  };
}
