/**
 * Sending one work item: on an idle session to the first MX host, or on new sessions
 * host after host in MX order; every recipient's reply goes to the judge. A session that
 * can take more messages goes back to the session cache with its connection slot.
 */
import type { Reaction } from '../abi.ts';
import type { Verdict } from '../decide/index.ts';
import { effectiveSettings, sourceStopped, type PolicyState } from '../decide/index.ts';
import type { Lease, LimiterStore, LivePolicy, Source, Time, Work } from '../schedule/index.ts';
import { queueOf } from '../schedule/index.ts';
import type { Spool } from '../spool/index.ts';
import { sessionKey, type IdleSession, type SessionCache } from './session-cache.ts';
import { LOCAL_REPLIES, type SessionOptions, type SessionResult, type SmtpSession } from './smtp-client.ts';
import type { TlsPolicy } from './tls-policy.ts';

/** How sessions are opened: live, `openSession` (smtp-client.ts) or the delivery pool's; in a simulation, a modelled provider. */
export type Transport = (options: SessionOptions) => Promise<SessionResult>;

export interface SenderDeps {
  time: Time;
  state: PolicyState;
  spool: Pick<Spool, 'get' | 'read'>;
  transport: Transport;
  sessions: SessionCache;
  limiters: LimiterStore;
  judge: (v: Verdict) => Promise<void>;
  /** Recipients a block left untried go back as work. */
  requeue(work: Work): void;
  /** Whether the runtime is stopping (no session is kept then). */
  stopping(): boolean;
  ehlo: string;
  connectTimeoutMs?: number;
  greetingTimeoutMs?: number;
  /** Outbound TLS policy (MTA-STS, DANE; tls-policy.ts): sessions are opened through it when given. */
  tlsPolicy?: TlsPolicy;
}

/** One delivery to start: the work, where it goes, its connection slot and the idle session it may reuse. */
export interface Dispatch {
  policy: LivePolicy;
  item: Work;
  route: string;
  source: Source;
  hosts: { host: string; port: number }[];
  /** The connection slot a new session occupies (a reused session brings its own). */
  slot: Lease;
  reuse: IdleSession | undefined;
}

export function createSender(deps: SenderDeps): (d: Dispatch) => Promise<void> {
  const { time, state, spool, sessions, limiters, judge } = deps;
  return async function send({ policy: p, item, route, source, hosts, slot, reuse }: Dispatch): Promise<void> {
    const { artifact } = p;
    let slotHandedOff = false;
    let pooled = reuse;
    try {
      const m = spool.get(item.id);
      if (!m) return;
      const rcpts = item.rcpts.filter((r) => m.recipients.some((x) => x.rcpt === r));
      if (rcpts.length === 0) return;
      const context = { route: queueOf(route, item.domain), source: source.name, tenant: m.tenant };
      const settings = effectiveSettings(state, context, artifact.settings(route, source.name, m.tenant), time.now());
      const raw = await spool.read(m.id);
      let lastFailure: { reply: string; phase: 'connect' | 'ehlo'; host: string; reaction: Reaction } | undefined;
      for (const target of hosts) {
        let session: SmtpSession;
        let sent = 0;
        if (pooled && target === hosts[0] && (deps.tlsPolicy?.mayReuse(pooled.session, item.domain) ?? true)) {
          session = pooled.session;
          sent = pooled.sent;
          pooled = undefined;
        } else {
          const options: SessionOptions = { host: target.host, port: target.port, ehlo: source.ehlo ?? deps.ehlo, ...(source.address ? { localAddress: source.address } : {}), tls: settings.tls, ...(deps.connectTimeoutMs ? { connectTimeoutMs: deps.connectTimeoutMs } : {}), ...(deps.greetingTimeoutMs ? { greetingTimeoutMs: deps.greetingTimeoutMs } : {}) };
          const opened = await (deps.tlsPolicy ? deps.tlsPolicy.open(deps.transport, item.domain, options) : deps.transport(options));
          if (!opened.ok) {
            const reaction = artifact.react(route, opened.reply, opened.phase);
            lastFailure = { reply: opened.reply, phase: opened.phase, host: target.host, reaction };
            // A refusal that names this host only (or a connection failure) moves on to the next MX.
            if (reaction.disposition === 'hard' && !reaction.actions.some((a) => a.type === 'skip-mx')) break;
            continue;
          }
          session = opened.session;
        }
        let keep = false;
        try {
          const perTransaction = settings.recipientsPerTransaction ?? rcpts.length;
          for (let i = 0; i < rcpts.length; i += perTransaction) {
            if (i > 0 && sourceStopped(state, context, time.now())) {
              // A reply of this session stopped the source here (a block): the rest waits,
              // untried, for another source or the end of the suspension.
              deps.requeue({ id: m.id, domain: item.domain, rcpts: rcpts.slice(i), notBefore: time.now(), ...(item.pool !== undefined ? { pool: item.pool } : {}) });
              break;
            }
            const batch = rcpts.slice(i, i + perTransaction);
            const result = await session.send({ from: m.envelope.from, to: batch, raw });
            sent++;
            for (const r of result.perRecipient) await judge({ policy: p, message: m, rcpt: r.rcpt, route, source, reply: r.reply, phase: r.phase, accepted: r.accepted, mxHost: target.host, via: { item, hostCount: hosts.length, at: `${target.host}:${target.port}` }, tls: session.tls });
          }
          keep = !session.closed && !deps.stopping() && sent < (settings.messagesPerConnection ?? Infinity) && !sourceStopped(state, context, time.now());
        } finally {
          if (keep) {
            sessions.put(sessionKey(source, target, settings.tls), { session, slot, sent });
            slotHandedOff = true;
          } else await session.close();
        }
        return;
      }
      // No session: every recipient is judged by the last host's failure (its reaction already asked, not again).
      for (const rcpt of rcpts) await judge({ policy: p, message: m, rcpt, route, source, reply: lastFailure?.reply ?? LOCAL_REPLIES.noHost, phase: lastFailure?.phase ?? 'connect', accepted: false, mxHost: lastFailure?.host ?? '', ...(lastFailure ? { reaction: lastFailure.reaction } : {}) });
    } finally {
      if (pooled) await pooled.session.close();
      if (!slotHandedOff) void limiters.release(slot);
    }
  };
}
