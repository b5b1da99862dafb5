/**
 * Figures for the dashboard's message index (docs/runtime.md, "Dashboard"): the cost of
 * indexing one accepted message at acceptance (its Message-ID taken from the header block,
 * one JSON line buffered), and how long a search takes through a day's file of N messages
 * by Message-ID, by queue id and by recipient glob — the search reads every line of the
 * days it covers, so this is its cost per million messages.
 *
 *   npx tsx bench/message-index.ts [messages]    (default 1,000,000)
 */
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { globMatch } from '../runtime/decide/queue-ops.ts';
import { openMessageIndex, type MessageQuery } from '../runtime/observe/message-index.ts';

const messages = Number(process.argv[2] ?? 1_000_000);
const dir = mkdtempSync(path.join(tmpdir(), 'petrel-bench-index-'));
const now = Date.UTC(2026, 11, 7, 12);
const queueId = (i: number) => `01M99D8MXR${String(i).padStart(10, '0')}`;

try {
  const lines: string[] = [];
  for (let i = 0; i < messages; i++) lines.push(JSON.stringify({ id: queueId(i), messageId: `msg-${i}@sender.example`, from: 'bulk@sender.example', to: [`user${i}@provider${i % 50}.example`], receivedAt: now - messages + i, tenant: 't1' }) + '\n');
  const file = path.join(dir, 'msgs-2026-12-07.ndjson');
  writeFileSync(file, lines.join(''));
  lines.length = 0;
  console.log(`${messages.toLocaleString('en')} messages indexed today: ${(statSync(file).size / 1e6).toFixed(0)} MB`);

  const index = openMessageIndex(dir, { globMatch, flushMs: 0 });
  const writes = 100_000;
  const started = performance.now();
  for (let i = 0; i < writes; i++) index.write({ id: `w${i}`, from: 'a@sender.example', to: ['r@provider.example'], receivedAt: now }, [Buffer.from(`From: a@sender.example\r\nTo: r@provider.example\r\nMessage-ID: <w${i}@sender.example>\r\nSubject: hello\r\n\r\n`)]);
  index.flush();
  console.log(`indexing at acceptance: ${(((performance.now() - started) * 1000) / writes).toFixed(1)} µs a message (${writes.toLocaleString('en')} messages, appended at once)`);

  const searches: [string, MessageQuery][] = [
    ['by Message-ID', { messageId: `<msg-${messages - 5}@sender.example>` }],
    ['by queue id', { id: queueId(messages - 5) }],
    ['by recipient glob', { rcpt: 'user99*@provider49.example' }],
  ];
  for (const [what, query] of searches) {
    const t0 = performance.now();
    const found = await index.find(query, now, 20);
    console.log(`search ${what}: ${found.length} found in ${Math.round(performance.now() - t0)} ms`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
