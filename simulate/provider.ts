/**
 * A modelled provider as the scheduler's `Transport` (runtime/deliver/send-work.ts): the
 * sessions `petrel simulate` opens go to provider-state.ts's decisions — the same the SMTP
 * test peer makes — on the given (virtual) clock, with the model's latency as timers. No
 * socket, no SMTP text: each step asks the provider state and answers with its reply.
 *
 * A session's timeline: the connect gate and connection limits are decided when it opens,
 * and its banner's latency is added to its first transaction (one timer fewer per session:
 * sessions idle out between the messages of a slow queue); a transaction takes `latency.command` for MAIL and each RCPT plus
 * `latency.data`, and MAIL, the recipients and the end of DATA are decided, in that order,
 * at its end (one timer per transaction: a million messages are a million timers, not
 * four). A 421 closes the session, as smtp-server does.
 */
import type { RecipientResult, SendResult, SessionOptions, SmtpSession, Transport } from '../runtime/deliver/index.ts';
import type { Time } from '../runtime/schedule/index.ts';
import type { ProviderState, Refusal } from './provider-state.ts';

/** The reply to an accepted end of DATA. */
export const ACCEPTED_REPLY = '250 2.0.0 OK queued';

/** The client address a session comes from: the source's bound address, else one made up per EHLO name. */
export type ClientAddress = (options: SessionOptions) => string;

/** A transport whose sessions to MX host `host` meet `providers.get(host)`; an unknown host refuses the connection. */
export function modelledTransport(providers: ReadonlyMap<string, ProviderState>, time: Time, clientAddress: ClientAddress): Transport {
  const wait = (ms: number) => (ms > 0 ? new Promise<void>((resolve) => time.setTimeout(resolve, ms)) : Promise.resolve());
  return async (options) => {
    const provider = providers.get(options.host);
    if (!provider) return { ok: false, phase: 'connect', reply: '421 4.4.1 no answer from host (connection refused)', synthesized: true };
    const ip = clientAddress(options);
    const refusal = provider.gate(ip, 'connect') ?? provider.admitConnection(ip);
    if (refusal) return { ok: false, phase: 'connect', reply: refusal.text, synthesized: false };
    provider.opened(ip, 1);
    return { ok: true, session: new ModelledSession(provider, ip, options.host, wait, provider.behaviour.latency.bannerMs) };
  };
}

/** One open session with a modelled provider. */
class ModelledSession implements SmtpSession {
  readonly secure = false;
  readonly tls = null;
  readonly tlsFailure = null;
  readonly ended: Promise<void>;
  messagesSent = 0;
  transactions = 0;
  closed = false;
  private markEnded!: () => void;

  constructor(
    private readonly provider: ProviderState,
    readonly localAddress: string,
    readonly remoteAddress: string,
    private readonly wait: (ms: number) => Promise<void>,
    /** The banner's latency, not waited yet: the first transaction waits it too. */
    private bannerMs: number,
  ) {
    this.ended = new Promise((resolve) => (this.markEnded = resolve));
  }

  async send(message: { from: string; to: readonly string[] }): Promise<SendResult> {
    // INVARIANT: the sender never sends on a closed session (send-work.ts checks `closed`).
    if (this.closed) throw new Error('send: the session was closed');
    const { provider, localAddress: ip } = this;
    const { latency } = provider.behaviour;
    this.transactions++;
    // One wait for the whole transaction (MAIL, every RCPT, DATA and its end): each
    // recipient is decided at the end of it, where a sender's next step could first be.
    await this.wait(this.bannerMs + latency.commandMs * (1 + message.to.length) + latency.dataMs);
    this.bannerMs = 0;
    const atMail = provider.gate(ip, 'mail');
    if (atMail) return this.refuseAll(message.to, atMail, 'mail');
    // Each recipient's refusal at RCPT, or undefined when it was taken; after a 421 the rest get it too.
    const atRcpt: (Refusal | undefined)[] = [];
    let closing: Refusal | undefined;
    for (const rcpt of message.to) {
      const r = closing ?? provider.gate(ip, 'rcpt', rcpt) ?? provider.judgeRecipient(ip, message.from, rcpt) ?? (provider.countPhase === 'rcpt' ? provider.countSends(ip, 1, 'rcpt', rcpt) : undefined);
      if (r?.code === 421) closing = r;
      atRcpt.push(r);
    }
    const taken = message.to.filter((_, i) => atRcpt[i] === undefined);
    let atData: Refusal | undefined;
    if (taken.length > 0 && !closing) {
      atData = provider.gate(ip, 'data', taken[0]) ?? (provider.countPhase === 'data' ? provider.countSends(ip, taken.length, 'data', taken[0]) : undefined);
      if (!atData) this.messagesSent++;
    }
    if (closing || atData?.code === 421) this.end();
    const perRecipient = message.to.map((rcpt, i): RecipientResult => {
      const refused = atRcpt[i];
      if (refused) return { rcpt, accepted: false, reply: refused.text, phase: 'rcpt', synthesized: false };
      if (closing) return { rcpt, accepted: false, reply: closing.text, phase: 'rcpt', synthesized: false };
      return atData ? { rcpt, accepted: false, reply: atData.text, phase: 'data', synthesized: false } : { rcpt, accepted: true, reply: ACCEPTED_REPLY, phase: 'data', synthesized: false };
    });
    const messageReply = closing ? undefined : atData ? atData.text : taken.length > 0 ? ACCEPTED_REPLY : undefined;
    return { perRecipient, ...(messageReply !== undefined ? { messageReply } : {}) };
  }

  async close(): Promise<void> {
    this.end();
  }

  private refuseAll(to: readonly string[], r: Refusal, phase: 'mail'): SendResult {
    if (r.code === 421) this.end();
    return { perRecipient: to.map((rcpt) => ({ rcpt, accepted: false, reply: r.text, phase, synthesized: false })) };
  }

  private end(): void {
    if (this.closed) return;
    this.closed = true;
    this.provider.opened(this.localAddress, -1);
    this.markEnded();
  }
}
