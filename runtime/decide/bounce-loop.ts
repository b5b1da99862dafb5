/**
 * The bounce loop: what follows a recipient's fate besides the spool and its accounting
 * line — a DSN to the sender for a bounce or expiry (dsn.ts), the address onto the
 * tenant's suppression list for a hard bounce that speaks of the address
 * (`bad-mailbox`, `bad-domain`, `inactive-mailbox`, disposition `hard`) or a complaint,
 * and an event for the tenant's webhook (observe/webhooks.ts) — plus the same for what
 * an operator does (queue bounce) and what a feedback report says (a complaint).
 *
 * Per tenant (`tenants` in the config; `*` for every tenant without its own entry, `''`
 * is the tenant of messages without one): `dsn` (default true), `delayDsn` (default
 * false: a DSN at a recipient's first deferral), `suppressed` (`refuse`, the default,
 * `drop`, or `off`: the tenant's bounces and complaints feed nothing and its submissions
 * are not checked), and `webhook`. With no settings at all every tenant has these
 * defaults: the loop is on unless a tenant turns its parts off.
 */
import type { AccountedOutcome, AccountingRecord, WebhookEvent, WebhookSender } from '../observe/index.ts';
import { openOutbox, outcomeRecord, startWebhooks } from '../observe/index.ts';
import type { Complaint, ScreenDeps, SuppressionList, SuppressionReason } from '../intake/index.ts';
import { openSuppressionList, splitHeader, SUPPRESSING_CATEGORIES } from '../intake/index.ts';
import type { SpooledMessage } from '../spool/index.ts';
import { createHash } from 'node:crypto';
import { Counter, Gauge, type Registry } from 'prom-client';
import { dsnFor, type DsnRecipient } from './dsn.ts';

/** What a tenant turned on or off (config `tenants`). */
export interface TenantSettings {
  dsn?: boolean;
  delayDsn?: boolean;
  suppressed?: 'refuse' | 'drop' | 'off';
  webhook?: { url: string; secret: string };
}

export interface BounceLoopDeps {
  tenants: Record<string, TenantSettings>;
  suppression: SuppressionList;
  webhooks?: WebhookSender | undefined;
  /** Spools a message from Petrel itself (a DSN) and resolves with its id once durable. */
  acceptMessage(envelope: { from: string; to: string[] }, raw: Buffer, values: { tenant?: string }): Promise<string>;
  /** The original message's bytes while the spool still holds them. */
  read(id: string): Promise<Buffer>;
  /** Writes an accounting record. */
  account(record: AccountingRecord): void;
  reportingMta: string;
  clock(): number;
  warn(line: string): void;
}

export interface BounceLoop {
  settings(tenant: string): TenantSettings;
  /** After the judge settled a recipient (its accounting record written). */
  outcome(m: SpooledMessage, o: AccountedOutcome): Promise<void>;
  /** A complaint from a feedback report: accounted (`f`), suppressed, and an event. */
  complaint(c: Complaint): Promise<void>;
  /** An operator bounced these recipients (their outcome is recorded by the caller): a DSN. */
  operatorBounce(m: SpooledMessage, rcpts: readonly string[], originalHeaders: string | undefined): Promise<void>;
  /** An operator or import suppressed an address: its event. */
  suppressed(tenant: string, rcpt: string, reason: SuppressionReason, detail: string): Promise<void>;
}

/** An accounting record of Petrel's own about one address (no delivery behind it): PowerMTA's columns from `outcomeRecord`, then `over`. */
function addressRecord(at: number, rcpt: string, of: { tenant?: string; campaign?: string }, over: Partial<AccountingRecord>): AccountingRecord {
  const m = { id: '', envelope: { from: '', to: [rcpt] }, size: 0, receivedAt: at, recipients: [], ...(of.tenant ? { tenant: of.tenant } : {}), ...(of.campaign ? { campaign: of.campaign } : {}) };
  return { ...outcomeRecord(m, { type: 'b', rcpt, queue: '', source: '', reply: '', reaction: undefined, mxHost: '', policyVersion: '', at }), ...over };
}

/** A stable event id: the same fact judged again after a crash gives the same id. */
const eventId = (...parts: string[]) => createHash('sha256').update(parts.join('\n')).digest('base64url').slice(0, 22);

export function createBounceLoop(deps: BounceLoopDeps): BounceLoop {
  const settings = (tenant: string): TenantSettings => ({ ...deps.tenants['*'], ...deps.tenants[tenant] });

  async function emit(events: WebhookEvent[]): Promise<void> {
    const wanted = events.filter((e) => deps.webhooks?.wants(e.tenant));
    if (wanted.length === 0) return;
    try {
      await deps.webhooks!.add(wanted);
    } catch (e) {
      deps.warn(`petrel webhooks: ${wanted.length} event(s) dropped: ${(e as Error).message}`);
    }
  }

  async function suppress(tenant: string, rcpt: string, reason: SuppressionReason, detail: string, messageId: string): Promise<void> {
    const at = deps.clock();
    try {
      await deps.suppression.add([{ tenant, address: rcpt, reason, at, detail }]);
    } catch (e) {
      return deps.warn(`petrel suppression: ${rcpt} not suppressed: ${(e as Error).message}`);
    }
    await emit([{ id: eventId('suppressed', tenant, rcpt.toLowerCase(), String(at)), type: 'suppressed', tenant, messageId, rcpt, at, detail: { reason, detail } }]);
  }

  async function sendDsn(m: SpooledMessage, recipients: DsnRecipient[], headers: string | undefined): Promise<void> {
    const dsn = await dsnFor({ message: m, recipients, reportingMta: deps.reportingMta, originalHeaders: headers, now: deps.clock() });
    if (!dsn) return;
    try {
      await deps.acceptMessage(dsn.envelope, dsn.raw, m.tenant ? { tenant: m.tenant } : {});
    } catch (e) {
      deps.warn(`petrel: no DSN for ${m.id} to ${dsn.envelope.to[0]}: ${(e as Error).message}`);
    }
  }

  /** The original's header block while the spool holds it (a multi-recipient message still open); undefined once finished. */
  async function headersOf(id: string): Promise<string | undefined> {
    try {
      return splitHeader(await deps.read(id)).head;
    } catch {
      return undefined;
    }
  }

  return {
    settings,
    async outcome(m, o) {
      const tenant = m.tenant ?? '';
      const category = o.reaction?.category ?? '';
      const type = o.type === 'd' ? 'delivered' : o.type === 'b' ? (category === 'message-expired' ? 'expired' : 'bounced') : 'deferred';
      const attempts = m.recipients.find((r) => r.rcpt === o.rcpt)?.attempts ?? 0;
      await emit([{ id: eventId(type, m.id, o.rcpt, type === 'deferred' ? String(attempts) : ''), type, tenant, messageId: m.id, rcpt: o.rcpt, at: o.at, detail: { reply: o.reply.slice(0, 1000), category, source: o.source, queue: o.queue, campaign: m.campaign ?? '' } }]);
      const s = settings(tenant);
      if (o.type === 'b' && o.reaction?.disposition === 'hard' && SUPPRESSING_CATEGORIES.has(category) && s.suppressed !== 'off') await suppress(tenant, o.rcpt, category as SuppressionReason, o.reply, m.id);
      // An expired recipient is 4.4.7 (delivery time expired, RFC 3463), whatever its last reply said.
      const status = type === 'expired' ? '4.4.7' : /^\d{3}[ -](\d\.\d{1,3}\.\d{1,3})/.exec(o.reply)?.[1];
      const bounce = o.type === 'b' && s.dsn !== false;
      const delay = (o.type === 't' || o.type === 'tq') && attempts === 0 && s.delayDsn === true;
      if (bounce || delay) await sendDsn(m, [{ rcpt: o.rcpt, action: bounce ? 'failed' : 'delayed', status: status ?? (bounce ? '5.0.0' : '4.0.0'), diagnostic: o.reply, remoteMta: o.mxHost }], await headersOf(m.id));
    },
    async complaint(c) {
      const { origin } = c;
      // PowerMTA's `f` record: the complaint, with the feedback type where the status goes.
      deps.account(addressRecord(deps.clock(), c.rcpt, origin, { type: 'f', dsnAction: '', dsnStatus: c.feedbackType, dsnDiag: `arf;${c.reporter} ${c.messageId} ${c.sourceIp}`.trim(), queue: origin.id, bounceCat: 'spam-related' }));
      await emit([{ id: eventId('complained', origin.id, c.rcpt), type: 'complained', tenant: origin.tenant, messageId: origin.id, rcpt: c.rcpt, at: deps.clock(), detail: { feedbackType: c.feedbackType, reporter: c.reporter, messageIdHeader: c.messageId, campaign: origin.campaign, sourceIp: c.sourceIp } }]);
      if (settings(origin.tenant).suppressed !== 'off') await suppress(origin.tenant, c.rcpt, 'complaint', `${c.feedbackType} report from ${c.reporter || 'unknown'} about ${origin.id}`, origin.id);
    },
    async operatorBounce(m, rcpts, headers) {
      if (settings(m.tenant ?? '').dsn === false) return;
      await sendDsn(m, rcpts.map((rcpt) => ({ rcpt, action: 'failed', status: '5.0.0', diagnostic: 'bounced by the operator of the sending system', remoteMta: '' })), headers);
    },
    suppressed: (tenant, rcpt, reason, detail) => emit([{ id: eventId('suppressed', tenant, rcpt.toLowerCase(), String(deps.clock())), type: 'suppressed', tenant, messageId: '', rcpt, at: deps.clock(), detail: { reason, detail } }]),
  };
}

/** The bounce loop's configuration (`petrel run` config: `tenants`, `feedback`, `webhooks`). */
export interface BounceLoopConfig {
  tenants?: Record<string, TenantSettings>;
  /** Feedback reports: the secret of the `X-Petrel-Id` token (≥ 16 characters) and where reports arrive. */
  feedback?: { secret: string; addresses?: string[]; domains?: string[] };
  webhooks?: { allowPrivateTargets?: boolean; maxPending?: number; baseDelayMs?: number };
  /** Most suppressed addresses over all tenants (default 1,000,000). */
  maxSuppressed?: number;
}

/** Everything the bounce loop keeps open: the suppression list, the outbox and its sender. */
export interface OpenBounceLoop {
  loop: BounceLoop;
  suppression: SuppressionList;
  screen: ScreenDeps;
  webhooks: WebhookSender | undefined;
  /** `petrel_suppressed_addresses`, `petrel_webhook_events_pending`, `petrel_webhook_posts_total{result}`. */
  registerMetrics(registry: Registry): void;
  close(): void;
}

/** Opens the suppression list and (with any webhook configured) the outbox in `dir`, and builds the loop. */
export function openBounceLoop(dir: string, config: BounceLoopConfig, deps: Omit<BounceLoopDeps, 'tenants' | 'suppression' | 'webhooks'>): OpenBounceLoop {
  const tenants = config.tenants ?? {};
  const suppression = openSuppressionList(dir, config.maxSuppressed !== undefined ? { maxEntries: config.maxSuppressed } : {});
  const targets = Object.fromEntries(Object.entries(tenants).flatMap(([t, s]) => (s.webhook ? [[t, s.webhook]] : [])));
  const outbox = Object.keys(targets).length > 0 ? openOutbox(dir, config.webhooks?.maxPending !== undefined ? { maxPending: config.webhooks.maxPending } : {}) : undefined;
  const webhooks = outbox ? startWebhooks(outbox, { targets, warn: deps.warn, clock: deps.clock, ...config.webhooks }) : undefined;
  const loop = createBounceLoop({ ...deps, tenants, suppression, webhooks });
  const lower = (l: string[] | undefined) => new Set((l ?? []).map((a) => a.toLowerCase()));
  const feedback = config.feedback ? { secret: config.feedback.secret, addresses: lower(config.feedback.addresses), domains: lower(config.feedback.domains) } : undefined;
  const screen: ScreenDeps = {
    suppression,
    feedback,
    mode: (tenant) => loop.settings(tenant).suppressed ?? 'refuse',
    complaint: (c) => loop.complaint(c),
    dropped: (rcpt, e) => deps.account(addressRecord(deps.clock(), rcpt, e, { dsnStatus: '5.1.1', dsnDiag: `petrel;suppressed (${e.reason}) at submission`, bounceCat: 'policy-related' })),
  };
  return {
    loop,
    suppression,
    screen,
    webhooks,
    registerMetrics(registry) {
      new Gauge({ name: 'petrel_suppressed_addresses', help: 'Addresses on the suppression lists, over all tenants', registers: [registry], collect() { this.set(suppression.size); } });
      if (!webhooks) return;
      new Gauge({ name: 'petrel_webhook_events_pending', help: 'Webhook events in the outbox, not yet taken by their receiver', registers: [registry], collect() { this.set(webhooks.stats().pending); } });
      new Counter({
        name: 'petrel_webhook_posts_total',
        help: 'Webhook POSTs by result: sent (2xx), failed (retried), given-up',
        labelNames: ['result'],
        registers: [registry],
        collect() {
          const s = webhooks.stats();
          this.reset();
          this.inc({ result: 'sent' }, s.sent);
          this.inc({ result: 'failed' }, s.failures);
          this.inc({ result: 'given-up' }, s.givenUp);
        },
      });
    },
    close() {
      webhooks?.close();
      outbox?.close();
      suppression.close();
    },
  };
}
