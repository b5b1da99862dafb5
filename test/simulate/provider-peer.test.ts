/**
 * The provider peer (test/fixtures/provider-peer.ts) against a real SMTP client
 * (nodemailer, from two loopback addresses) and raw sockets: over the rate it defers with
 * the model's reply, pushing while deferred earns the block reply, the block lasts its
 * duration, connections over the limit are refused, unknown users and full mailboxes come
 * at the configured fraction with the model's texts, and greylisting lets the retry in.
 */
import net from 'node:net';
import nodemailer from 'nodemailer';
import { afterEach, describe, expect, it } from 'vitest';
import { behaviourOf, readShippedModel, recipientFate, type ProviderBehaviour, type ProviderModel } from '../../simulate/index.ts';
import { startProviderPeer, networkOf, type ProviderPeer } from '../fixtures/provider-peer.ts';
import { until } from '../runtime/fixtures/e2e.ts';

const peers: ProviderPeer[] = [];
afterEach(async () => {
  for (const p of peers.splice(0)) await p.close();
});

/** A shipped model with some values changed (`change` edits a copy), at time scale `scale`. */
async function tuned(name: string, scale: number, change: (m: ProviderModel) => void): Promise<ProviderBehaviour> {
  const r = await readShippedModel(name);
  if (!r.ok) throw new Error(r.errors.join('\n'));
  const model = structuredClone(r.model);
  change(model);
  return behaviourOf(model, { scale });
}

async function peer(b: ProviderBehaviour): Promise<ProviderPeer> {
  const p = await startProviderPeer(b);
  peers.push(p);
  return p;
}

/** One message from `localAddress` to `to`: what the peer accepted and refused, or the reply that failed it. */
async function send(p: ProviderPeer, localAddress: string, to: string[]): Promise<{ accepted: string[]; rejected: string[]; failed?: { code: number | undefined; reply: string } }> {
  const transport = nodemailer.createTransport({ host: '127.0.0.1', port: p.port, localAddress, secure: false, ignoreTLS: true, connectionTimeout: 5000, greetingTimeout: 5000 });
  try {
    const info = await transport.sendMail({ from: 'news@shop.example', to, subject: 'x', text: 'x' });
    return { accepted: info.accepted.map(String), rejected: info.rejected.map(String) };
  } catch (e) {
    const err = e as { responseCode?: number; response?: string; message: string; rejected?: string[] };
    return { accepted: [], rejected: err.rejected?.map(String) ?? [], failed: { code: err.responseCode, reply: err.response ?? err.message } };
  } finally {
    transport.close();
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('provider peer', () => {
  it('defers over the rate, blocks an IP that keeps pushing, for the block duration, and judges each IP on its own', async () => {
    // Yahoo at scale 1/2000: 5 messages per hour (1.8 s), deferred an hour (1.8 s), blocked
    // after 3 refused attempts for two hours (3.6 s).
    const b = await tuned('yahoo', 1 / 2000, (m) => {
      m.limits.messagesPerIp = { ...m.limits.messagesPerIp!, count: 5, windowSeconds: 3600 };
      m.penalty = { attemptsWhileDeferred: { ...m.penalty!.attemptsWhileDeferred, count: 3 }, duration: { ...m.penalty!.duration, seconds: 7200 } };
    });
    const p = await peer(b);
    for (let n = 0; n < 5; n++) expect((await send(p, '127.0.0.1', [`r${n}@yahoo.com`])).accepted).toEqual([`r${n}@yahoo.com`]);
    const over = await send(p, '127.0.0.1', ['r5@yahoo.com']);
    expect(over.failed?.code).toBe(421);
    expect(over.failed?.reply).toContain('[TSS04] Messages from 127.0.0.1 temporarily deferred due to unexpected volume');
    expect(p.deferrals).toHaveLength(1);
    expect(p.stateOf('127.0.0.1')).toBe('deferred');
    // Another IP of the same network is not deferred (Yahoo's network limit is far higher).
    expect((await send(p, '127.0.0.2', ['other@yahoo.com'])).accepted).toEqual(['other@yahoo.com']);
    // Pushing on while deferred: refused at connect (Yahoo's phase), and the third refusal is the block.
    for (let n = 0; n < 2; n++) expect((await send(p, '127.0.0.1', ['again@yahoo.com'])).failed).toMatchObject({ code: 421, reply: expect.stringContaining('[TSS04]') });
    const blocked = await send(p, '127.0.0.1', ['again@yahoo.com']);
    expect(blocked.failed).toMatchObject({ code: 553, reply: expect.stringContaining('[TSS09] All messages from 127.0.0.1 will be permanently deferred') });
    expect(p.blocks).toHaveLength(1);
    const block = p.blocks[0]!;
    expect(block.until - block.at).toBeCloseTo(3600, -1);
    expect(p.refusals.map((r) => `${r.kind}@${r.phase}`)).toEqual(['deferral@rcpt', 'deferral@connect', 'deferral@connect', 'block@connect']);
    // The block lasts its duration: still refused shortly before its end, accepted after it.
    await sleep(block.until - 400 - Date.now());
    expect((await send(p, '127.0.0.1', ['late@yahoo.com'])).failed?.code).toBe(553);
    await sleep(block.until + 50 - Date.now());
    expect(p.stateOf('127.0.0.1')).toBe('normal');
    expect((await send(p, '127.0.0.1', ['after@yahoo.com'])).accepted).toEqual(['after@yahoo.com']);
    expect(p.accepted.map((a) => `${a.ip} ${a.rcpt}`)).toEqual([...[0, 1, 2, 3, 4].map((n) => `127.0.0.1 r${n}@yahoo.com`), '127.0.0.2 other@yahoo.com', '127.0.0.1 after@yahoo.com']);
  });

  it('lets the allowed rate through while deferred, answers at end of data where the model says so, and counts the network', async () => {
    // Gmail at scale 1/1000: 4 per IP and 6 per network per hour (3.6 s), 1 more allowed while deferred.
    const b = await tuned('google', 1 / 1000, (m) => {
      m.limits.messagesPerIp = { ...m.limits.messagesPerIp!, count: 4 };
      m.limits.messagesPerNetwork = { ...m.limits.messagesPerNetwork!, count: 6 };
      m.deferral.allowedRate = { ...m.deferral.allowedRate!, count: 1 };
      m.recipients.unknownFraction.fraction = 0;
      m.recipients.fullMailboxFraction.fraction = 0;
    });
    const p = await peer(b);
    for (let n = 0; n < 4; n++) expect((await send(p, '127.0.0.1', [`a${n}@gmail.com`])).accepted).toHaveLength(1);
    const over = await send(p, '127.0.0.1', ['a4@gmail.com']);
    expect(over.failed?.code).toBe(421);
    expect(over.failed?.reply).toContain('4.7.28 [127.0.0.1] Our system has detected an unusual rate of');
    expect(p.refusals[0]).toMatchObject({ kind: 'deferral', phase: 'data' });
    expect((await send(p, '127.0.0.1', ['a5@gmail.com'])).accepted).toEqual(['a5@gmail.com']);
    expect((await send(p, '127.0.0.1', ['a6@gmail.com'])).failed?.code).toBe(421);
    // The /24 has taken 5 of its 6: the other IP gets one, then is deferred itself.
    expect((await send(p, '127.0.0.2', ['b0@gmail.com'])).accepted).toHaveLength(1);
    expect((await send(p, '127.0.0.2', ['b1@gmail.com'])).failed?.code).toBe(421);
    expect(p.deferrals.map((d) => d.ip)).toEqual(['127.0.0.1', '127.0.0.2']);
  });

  it('refuses connections over the per-IP limit with the model reply at connect', async () => {
    const b = await tuned('orange', 1 / 1000, () => undefined);
    expect(b.limits.connectionsPerIp).toBe(3);
    const p = await peer(b);
    const banners: string[] = [];
    const sockets = await Promise.all(
      Array.from({ length: 4 }, async (_, n) => {
        await sleep(n * 30);
        const s = net.connect({ host: '127.0.0.1', port: p.port, localAddress: '127.0.0.3' });
        banners[n] = await new Promise<string>((r) => s.once('data', (d) => r(d.toString())));
        return s;
      }),
    );
    try {
      expect(banners.slice(0, 3).every((t) => t.startsWith('220 '))).toBe(true);
      expect(banners[3]).toBe('421 mwinf5c79 ME Trop de connexions, veuillez verifier votre configuration. Too many connections, slow down. OFR005_104 [104]\r\n');
      expect(p.refusals).toMatchObject([{ kind: 'tooManyConnections', ip: '127.0.0.3', phase: 'connect' }]);
    } finally {
      for (const s of sockets) s.destroy();
    }
    // Once they are closed, the IP may connect again.
    await until('connections closed', async () => (await send(p, '127.0.0.3', ['x@orange.fr'])).failed === undefined, 5000);
  });

  it('refuses unknown users and full mailboxes at the configured fractions, with the model texts', async () => {
    const b = await tuned('orange', 1 / 1000, (m) => {
      m.recipients.unknownFraction.fraction = 0.2;
      m.recipients.fullMailboxFraction.fraction = 0.1;
    });
    const p = await peer(b);
    const to = Array.from({ length: 300 }, (_, i) => `member${i}@orange.fr`);
    const result = await send(p, '127.0.0.1', to);
    const expected = (fate: string) => to.filter((a) => recipientFate(b.recipients, a) === fate);
    expect(result.accepted).toEqual(expected('deliverable'));
    expect(p.refusals.filter((r) => r.kind === 'unknownUser').map((r) => r.rcpt)).toEqual(expected('unknown'));
    expect(p.refusals.filter((r) => r.kind === 'fullMailbox').map((r) => r.rcpt)).toEqual(expected('full'));
    expect(expected('unknown').length / to.length).toBeGreaterThan(0.14);
    expect(expected('unknown').length / to.length).toBeLessThan(0.26);
    expect(expected('full').length / to.length).toBeGreaterThan(0.05);
    expect(expected('full').length / to.length).toBeLessThan(0.15);
    expect(new Set(p.refusals.map((r) => r.text))).toEqual(new Set(['550 5.1.1 Adresse d au moins un destinataire invalide. Invalid recipient. OFR_416 [416]', '552 5.1.1 Boite du destinataire pleine. Recipient overquota. OFR_417 [417]']));
    expect(p.accepted.map((a) => a.rcpt)).toEqual(expected('deliverable'));
  });

  it('greylists the first attempt of a triplet and takes the retry after the delay', async () => {
    // Postgrey's 300 s at scale 1/1000: 300 ms; postscreen's 6 s banner: 6 ms.
    const b = await tuned('long-tail', 1 / 1000, (m) => {
      m.recipients.unknownFraction.fraction = 0;
      m.recipients.fullMailboxFraction.fraction = 0;
    });
    const p = await peer(b);
    const first = await send(p, '127.0.0.1', ['friend@club.example']);
    expect(first.failed?.reply).toBe('450 4.2.0 <friend@club.example>: Recipient address rejected: Greylisted, see http://postgrey.schweikert.ch/help/club.example.html');
    expect((await send(p, '127.0.0.1', ['friend@club.example'])).failed?.code).toBe(450);
    await sleep(320);
    expect((await send(p, '127.0.0.1', ['friend@club.example'])).accepted).toEqual(['friend@club.example']);
    // Another IP is another triplet.
    expect((await send(p, '127.0.0.2', ['friend@club.example'])).failed?.code).toBe(450);
  });

  it('groups addresses into networks by prefix', () => {
    expect(networkOf('127.0.0.1', { ipv4: 24, ipv6: 64 })).toBe(networkOf('127.0.0.3', { ipv4: 24, ipv6: 64 }));
    expect(networkOf('127.0.1.1', { ipv4: 24, ipv6: 64 })).not.toBe(networkOf('127.0.0.1', { ipv4: 24, ipv6: 64 }));
    expect(networkOf('2001:db8::1', { ipv4: 24, ipv6: 64 })).toBe(networkOf('2001:db8:0:0:ffff::2', { ipv4: 24, ipv6: 64 }));
    expect(networkOf('2001:db8:0:1::1', { ipv4: 24, ipv6: 64 })).not.toBe(networkOf('2001:db8::1', { ipv4: 24, ipv6: 64 }));
  });
});
