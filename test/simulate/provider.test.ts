/**
 * simulate/provider.ts, the modelled provider as a scheduler Transport on a virtual clock:
 * the model's replies at their phases (connection limit at connect, unknown user at RCPT,
 * Gmail's rate deferral at end of DATA), results in the order of the recipients, a 421
 * closing the session and freeing its connection slot, and the model's latency as virtual
 * time.
 */
import { describe, expect, it } from 'vitest';
import { VirtualTime } from '../../runtime/schedule/index.ts';
import { ACCEPTED_REPLY, behaviourOf, createProviderState, modelledTransport, readShippedModel, recipientFate, replyText, renderReply, type ProviderModel } from '../../simulate/index.ts';

async function google(change: (m: ProviderModel) => void) {
  const r = await readShippedModel('google');
  if (!r.ok) throw new Error(r.errors.join('\n'));
  const m = structuredClone(r.model);
  change(m);
  return behaviourOf(m);
}

describe('the modelled provider transport', () => {
  it('answers with the model at each phase, in recipient order, closes on 421, and takes the model latency in virtual time', async () => {
    const b = await google((m) => {
      m.limits.connectionsPerIp = { ...m.limits.connectionsPerIp!, count: 2 };
      m.limits.connectsPerIp = null;
      m.limits.messagesPerIp = { ...m.limits.messagesPerIp!, count: 3, windowSeconds: 3600 };
      m.recipients.unknownFraction.fraction = 0.3;
      m.recipients.fullMailboxFraction.fraction = 0;
    });
    const time = new VirtualTime(Date.UTC(2026, 0, 5));
    const state = createProviderState(b, time.now);
    const open = modelledTransport(new Map([['mx.google.simulated', state]]), time, (o) => o.localAddress ?? '198.18.0.1');
    const options = { host: 'mx.google.simulated', port: 25, ehlo: 'a.test', tls: 'opportunistic' as const, localAddress: '192.0.2.10' };

    const first = await open(options);
    const second = await open(options);
    const third = await open(options);
    expect(first.ok && second.ok).toBe(true);
    expect(third).toEqual({ ok: false, phase: 'connect', reply: replyText(renderReply(b.replies.tooManyConnections, { ip: '192.0.2.10' })), synthesized: false });
    expect(await open({ host: 'mx.nowhere.simulated', port: 25, ehlo: 'a.test', tls: 'opportunistic' })).toMatchObject({ ok: false, phase: 'connect', synthesized: true });
    if (!first.ok || !second.ok) return;

    // An unknown recipient refused at RCPT, three accepted at end of DATA, in the order given.
    const to = Array.from({ length: 12 }, (_, n) => `u${n}@gmail.com`);
    const unknown = to.filter((r) => recipientFate(b.recipients, r) === 'unknown');
    const known = to.filter((r) => recipientFate(b.recipients, r) === 'deliverable').slice(0, 3);
    expect(unknown.length).toBeGreaterThan(0);
    const batch = [unknown[0]!, ...known];
    const started = time.now();
    const sending = first.session.send({ from: 'news@shop.test', to: batch, raw: Buffer.from('x') });
    await time.runUntil(started + 10_000);
    const result = await sending;
    expect(result.perRecipient.map((r) => r.rcpt)).toEqual(batch);
    expect(result.perRecipient[0]).toEqual({ rcpt: unknown[0], accepted: false, reply: replyText(renderReply(b.replies.unknownUser, { ip: '192.0.2.10', rcpt: unknown[0]! })), phase: 'rcpt', synthesized: false });
    expect(result.perRecipient.slice(1).map((r) => [r.accepted, r.reply, r.phase])).toEqual(known.map(() => [true, ACCEPTED_REPLY, 'data']));
    expect(first.session.messagesSent).toBe(1);

    // The fourth send this hour goes over 3 per IP: Gmail's deferral at end of DATA, a 421 that closes the session.
    const again = first.session.send({ from: 'news@shop.test', to: [to.find((r) => recipientFate(b.recipients, r) === 'deliverable' && !known.includes(r))!], raw: Buffer.from('x') });
    const t1 = time.now();
    await time.runUntil(t1 + 10_000);
    const deferred = await again;
    expect(deferred.perRecipient[0]).toMatchObject({ accepted: false, phase: 'data', reply: replyText(renderReply(b.replies.deferral, { ip: '192.0.2.10' })) });
    expect(first.session.closed).toBe(true);
    await first.session.ended;
    expect(state.stateOf('192.0.2.10')).toBe('deferred');
    // Its connection slot is free again: a new session opens.
    expect((await open(options)).ok).toBe(true);
    await second.session.close();
  });

  it('takes the banner and the transaction latency on the virtual clock', async () => {
    const b = await google((m) => {
      m.recipients.unknownFraction.fraction = 0;
      m.recipients.fullMailboxFraction.fraction = 0;
    });
    const time = new VirtualTime(0);
    const open = modelledTransport(new Map([['mx', createProviderState(b, time.now)]]), time, () => '198.18.0.1');
    const opened = await open({ host: 'mx', port: 25, ehlo: 'a.test', tls: 'disabled' });
    if (!opened.ok) throw new Error(opened.reply);
    let at = -1;
    void opened.session.send({ from: 'a@b.test', to: ['x@gmail.com', 'y@gmail.com'], raw: Buffer.from('x') }).then(() => (at = time.now()));
    await time.runUntil(60_000);
    expect(at).toBe(b.latency.bannerMs + 3 * b.latency.commandMs + b.latency.dataMs);
    let second = -1;
    void opened.session.send({ from: 'a@b.test', to: ['z@gmail.com'], raw: Buffer.from('x') }).then(() => (second = time.now()));
    await time.runUntil(120_000);
    expect(second).toBe(60_000 + 2 * b.latency.commandMs + b.latency.dataMs);
  });
});
