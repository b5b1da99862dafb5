/**
 * The webhook outbox: events waiting to be POSTed, kept on disk so that none is lost
 * when the process dies — `DIR/webhook-outbox.log`, JSON lines: `{"e":EVENT}` when an
 * event is added, `{"ack":ID}` when its receiver took it. `add` resolves once its lines
 * are written and fdatasync'd (adds in one turn of the event loop share one sync). Acks
 * are written in the same batches but nobody waits for them: an ack lost in a crash
 * sends that event again, which at-least-once delivery allows (receivers dedup by id).
 *
 * Opening replays the log: an event without an ack is pending again, in its original
 * order; a torn last line is ignored. When acked events pass 10,000 and half the file,
 * the log is rewritten with only the pending ones (temp file, fsync, rename, dir fsync).
 *
 * Bounded: at most `maxPending` events (default 100,000; an event is ≤ 4 KB of JSON, so
 * ≤ 400 MB held at the bound, typically ~400 bytes each, 40 MB); past it `add` rejects
 * and the caller counts the event as dropped.
 */
import path from 'node:path';
import { openJsonLog } from '../spool/index.ts';

/** One webhook event: the JSON body of one POST (webhooks.ts). */
export interface WebhookEvent {
  /** Deterministic: the same outcome judged again after a crash gets the same id. */
  id: string;
  type: 'delivered' | 'bounced' | 'deferred' | 'expired' | 'complained' | 'suppressed';
  tenant: string;
  /** The queue id of the message it is about (empty for `suppressed` by the operator). */
  messageId: string;
  rcpt: string;
  /** Milliseconds since the epoch. */
  at: number;
  /** What else is known: reply, category, campaign, feedback type… */
  detail: Record<string, string>;
}

export interface Outbox {
  add(events: readonly WebhookEvent[]): Promise<void>;
  ack(id: string): void;
  /** Pending events, oldest first. */
  pending(): WebhookEvent[];
  readonly size: number;
  close(): void;
}

export function openOutbox(dir: string, options: { maxPending?: number } = {}): Outbox {
  const maxPending = options.maxPending ?? 100_000;
  const file = path.join(dir, 'webhook-outbox.log');
  // Map keeps insertion order: the order events were added.
  const events = new Map<string, WebhookEvent>();
  const log = openJsonLog<{ e?: WebhookEvent; ack?: string }>(
    file,
    (line) => {
      if (line.e) events.set(line.e.id, line.e);
      else if (line.ack) events.delete(line.ack);
    },
    () => {
      if (log.lines > 10_000 && log.lines > 2 * events.size) log.rewrite([...events.values()].map((e) => ({ e })));
    },
  );
  return {
    add(list) {
      const fresh = list.filter((e) => !events.has(e.id));
      if (events.size + fresh.length > maxPending) return Promise.reject(new Error(`the webhook outbox is full (${maxPending} events)`));
      for (const e of fresh) events.set(e.id, e);
      return log.append(fresh.map((e) => ({ e })));
    },
    ack(id) {
      // Nobody waits for an ack to be durable: one lost in a crash only sends the event again.
      if (events.delete(id)) log.append([{ ack: id }]).catch(() => undefined);
    },
    pending: () => [...events.values()],
    get size() {
      return events.size;
    },
    close: () => log.close(),
  };
}
