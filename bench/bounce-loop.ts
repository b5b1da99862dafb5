/**
 * Figures for the bounce loop (docs/runtime.md, "Bounces, suppression, feedback and
 * webhooks"): the suppression list's heap per entry and its add/lookup speed, DSN
 * composition, ARF reading, and the webhook outbox's durable adds.
 *
 *   node --expose-gc --import tsx bench/bounce-loop.ts [entries]
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { dsnFor } from '../runtime/decide/index.ts';
import { feedbackHeader, openSuppressionList, readFeedbackReport } from '../runtime/intake/index.ts';
import { openOutbox } from '../runtime/observe/index.ts';

const entries = Number(process.argv[2] ?? 200_000);
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with node --expose-gc');
const dir = mkdtempSync(path.join(tmpdir(), 'petrel-bench-loop-'));
const rate = (n: number, ms: number) => `${Math.round((n / ms) * 1000).toLocaleString('en')}/s`;

try {
  // Suppression: heap per entry, adds in batches of 1000 (one fdatasync each), lookups.
  const list = openSuppressionList(dir);
  gc();
  const before = process.memoryUsage().heapUsed;
  let t = performance.now();
  for (let i = 0; i < entries; i += 1000) await list.add(Array.from({ length: 1000 }, (_, n) => ({ tenant: `tenant${(i + n) % 10}`, address: `user${i + n}@example${(i + n) % 97}.com`, reason: 'bad-mailbox' as const, at: Date.now(), detail: '550 5.1.1 <user@example.com>: Recipient address rejected: User unknown' })));
  const addMs = performance.now() - t;
  gc();
  const perEntry = (process.memoryUsage().heapUsed - before) / entries;
  t = performance.now();
  let hits = 0;
  for (let i = 0; i < entries; i++) if (list.has(`tenant${i % 10}`, `user${i}@example${i % 97}.com`)) hits++;
  const hasMs = performance.now() - t;
  const fileBytes = statSync(path.join(dir, 'suppression.log')).size;
  list.close();
  t = performance.now();
  const reopened = openSuppressionList(dir);
  const openMs = performance.now() - t;
  reopened.close();
  console.log(`suppression: ${entries.toLocaleString('en')} entries, ${Math.round(perEntry)} B heap each; add ${rate(entries, addMs)} (batches of 1000, one fdatasync each); has ${rate(entries, hasMs)} (${hits} hits); log ${(fileBytes / entries).toFixed(0)} B/entry; reopen ${Math.round(openMs)} ms`);

  // DSN composition (MimeNode) and ARF reading.
  const n = 2000;
  t = performance.now();
  let dsnBytes = 0;
  for (let i = 0; i < n; i++) {
    const d = await dsnFor({ message: { id: `ID${i}`, envelope: { from: 'news@shop.example' }, receivedAt: Date.now() }, recipients: [{ rcpt: `u${i}@x.example`, action: 'failed', status: '5.1.1', diagnostic: '550 5.1.1 User unknown', remoteMta: 'mx.x.example' }], reportingMta: 'petrel.example', originalHeaders: 'From: news@shop.example\r\nSubject: offer\r\nMessage-ID: <1@shop.example>\r\n', now: Date.now() });
    dsnBytes += d!.raw.length;
  }
  const dsnMs = performance.now() - t;
  const original = `${feedbackHeader('bench-secret-0123456789', { id: 'QUEUEID123', tenant: 'acme', campaign: 'spring' })}From: news@shop.example\r\nTo: u@x.example\r\nSubject: offer\r\n\r\n${'body line\r\n'.repeat(200)}`;
  const report = Buffer.from(`Content-Type: multipart/report; report-type=feedback-report; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nspam\r\n--b\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nUser-Agent: bench\r\nVersion: 1\r\nOriginal-Rcpt-To: <u@x.example>\r\n\r\n--b\r\nContent-Type: message/rfc822\r\n\r\n${original}\r\n--b--\r\n`);
  t = performance.now();
  for (let i = 0; i < n; i++) if (!readFeedbackReport(report, 'bench-secret-0123456789').ok) throw new Error('report not read');
  const arfMs = performance.now() - t;
  console.log(`dsn: ${rate(n, dsnMs)} composed (${Math.round(dsnBytes / n)} B each); arf: ${rate(n, arfMs)} reports read and verified (${report.length} B each)`);

  // Outbox: durable adds (one event each, as outcomes arrive; concurrent adds share a sync) and acks.
  const box = openOutbox(dir);
  const events = 20_000;
  t = performance.now();
  await Promise.all(Array.from({ length: events }, (_, i) => box.add([{ id: `e${i}`, type: 'delivered', tenant: 'acme', messageId: `m${i}`, rcpt: `u${i}@x.example`, at: Date.now(), detail: { reply: '250 2.0.0 OK', category: '', source: 'ip1', queue: 'default/x.example', campaign: 'spring' } }])));
  const outboxMs = performance.now() - t;
  for (let i = 0; i < events; i++) box.ack(`e${i}`);
  box.close();
  console.log(`outbox: ${rate(events, outboxMs)} events made durable (concurrent adds, group fdatasync)`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
