/**
 * A campaign against providers that push back (issue 13 part 5, issue 15 part 1): the
 * runtime, under the shipped Yahoo and Google rules, sends a few hundred messages from
 * three sources (127.0.0.1-3, one pool) to provider peers (test/fixtures/provider-peer.ts)
 * driven by the shipped models, whose per-IP rates are set below what the policies allow
 * — the case of a list sent faster than the provider tolerates. The peers defer, and would
 * block an IP that keeps pushing.
 *
 * Time runs 100 times faster on both sides: the models at scale 0.01, and the policies are
 * the shipped files with every duration and rate scaled by the same factor (`suspend source
 * 1h` becomes 36 s, `rate 3600/h` 6000/min), their test blocks left out; stdlib/retry and
 * stdlib/bounces likewise (the set's own stdlib files replace the packaged ones).
 *
 * It proves, measured at the peers: every valid recipient is delivered exactly once; the
 * only bounces are the unknown users the model decides, and its full mailboxes are kept and
 * tried again (the bounded retry of issue 13), neither bounced nor delivered; no IP is
 * blocked (the first deferral stops or slows its source before it earns the block); and
 * after a suspension ends the source comes back at most at the recovery ramp's first step
 * (10% of the normal rate), not in a burst.
 */
import path from 'node:path';
import nodemailer from 'nodemailer';
import { describe, expect, it } from 'vitest';
import { loadArtifact } from '../../runtime/policy/loader.ts';
import { startRuntime } from '../../runtime/runtime.ts';
import { recipientFate, type ProviderModel } from '../../simulate/index.ts';
import { startProviderPeer, type ProviderPeer } from '../fixtures/provider-peer.ts';
import { compileFiles, ROOT, writeArtifact } from '../helpers.ts';
import { e2eCase, readAccounting, selfSignedCertificate, until } from './fixtures/e2e.ts';
import { scaledModel, scaledShippedFiles, threeSourcesPolicy } from '../simulate/scaled-policy.ts';

/** Time on both sides runs this much faster than real time. */
const SCALE = 0.01;
/** The recovery ramp's first step: this share of the normal rate (docs/language.md, "Coming back gently"). */
const RAMP_FIRST_STEP = 0.1;

const SOURCE_IPS: Record<string, string> = { s1: '127.0.0.1', s2: '127.0.0.2', s3: '127.0.0.3' };

const model = (name: string, change: (m: ProviderModel) => void) => scaledModel(name, SCALE, change);

const t = e2eCase('campaign', 5_000);

describe('a campaign against providers that push back', () => {
  it('delivers every valid recipient once, bounces only unknown users, keeps full mailboxes for their bounded retry, never earns a block, and comes back gently', async () => {
    // The providers tolerate 40 (Yahoo) and 30 (Gmail) messages an hour per IP while the
    // policies allow 3600/h per source: every source meets a deferral within a second.
    const yahoo = await model('yahoo', (m) => {
      m.limits.messagesPerIp = { ...m.limits.messagesPerIp!, count: 40 };
      m.recipients.unknownFraction.fraction = 0.05;
      m.recipients.fullMailboxFraction.fraction = 0.02;
    });
    const google = await model('google', (m) => {
      m.limits.messagesPerIp = { ...m.limits.messagesPerIp!, count: 30 };
      m.recipients.unknownFraction.fraction = 0.05;
      // Gmail's full mailbox is a 452, retried until the message expires: not in this campaign.
      m.recipients.fullMailboxFraction.fraction = 0;
    });
    const peers: Record<string, ProviderPeer> = {};
    try {
      // Both require TLS (`tls required` in their policies), as the real ones offer it.
      const { key, cert } = selfSignedCertificate(t.dir, 'mx.provider.test');
      peers.yahoo = await startProviderPeer(yahoo, { tls: { key, cert } });
      peers.google = await startProviderPeer(google, { tls: { key, cert } });
      const files: Record<string, string> = { 'campaign.policy': threeSourcesPolicy('campaign'), ...scaledShippedFiles(ROOT, SCALE) };
      const { artifact, manifest } = await loadArtifact(await writeArtifact(t.dir, await compileFiles(files)));
      // The sender's MX: where the DSN of each bounced recipient arrives.
      const senderMx = await t.sink();
      t.runtime = await startRuntime({
        artifact,
        manifest,
        spoolDir: path.join(t.dir, 'spool'),
        accountingDir: path.join(t.dir, 'acct'),
        smtp: { host: '127.0.0.1', port: 0 },
        http: { host: '127.0.0.1', port: 0 },
        ehlo: 'petrel.test',
        connectTimeoutMs: 1000,
        random: () => 0.5,
        mxOverride: { 'yahoo.com': `127.0.0.1:${peers.yahoo.port}`, 'gmail.com': `127.0.0.1:${peers.google.port}`, 'shop.example': `127.0.0.1:${senderMx.port}` },
      });
      const runtime = t.runtime;

      const recipients = [...Array.from({ length: 240 }, (_, i) => `fan${i}@yahoo.com`), ...Array.from({ length: 120 }, (_, i) => `reader${i}@gmail.com`)];
      const fate = (rcpt: string) => recipientFate((rcpt.endsWith('@yahoo.com') ? yahoo : google).recipients, rcpt);
      const valid = recipients.filter((r) => fate(r) === 'deliverable');
      const invalid = recipients.filter((r) => fate(r) === 'unknown');
      // A full mailbox is soft with a bounded retry (yahoo.policy: retry after 1h attempts 72,
      // scaled: 36 s) — kept and tried again, never bounced within this campaign.
      const full = recipients.filter((r) => fate(r) === 'full');
      expect(invalid.length).toBeGreaterThan(5);
      expect(full.length).toBeGreaterThan(0);
      const refusedAt = (rcpt: string) => peers.yahoo!.refusals.filter((r) => r.rcpt === rcpt && r.kind === 'fullMailbox').length;

      // Every suspension the runtime reports while the campaign runs (source → its ends).
      const suspensions = new Map<string, number>();
      const watch = setInterval(() => {
        for (const s of runtime.status().suspensions) suspensions.set(`${s.key} ${s.until}`, Date.parse(s.until));
      }, 50);
      try {
        const transport = nodemailer.createTransport({ host: '127.0.0.1', port: runtime.smtpPort, secure: false, ignoreTLS: true, pool: true, maxConnections: 5, maxMessages: Infinity });
        try {
          await Promise.all(recipients.map((to, n) => transport.sendMail({ from: 'news@shop.example', to, subject: `issue ${n}`, text: `hello ${to}`, headers: { 'X-Petrel-Tenant': 'shop' } })));
        } finally {
          transport.close();
        }
        // Every other recipient delivered or bounced, each bounce's DSN delivered to the
        // sender, and every full mailbox still queued after its second refusal (one retry).
        await until('every recipient delivered, bounced, or a full mailbox retried', () => {
          const s = runtime.status();
          return s.delivered + s.bounced >= recipients.length - full.length + invalid.length && s.queued === full.length && full.every((r) => refusedAt(r) >= 2);
        }, 170_000);
      } finally {
        clearInterval(watch);
      }

      // Exactly once, at the providers.
      const accepted = [...peers.yahoo.accepted, ...peers.google.accepted].map((a) => a.rcpt);
      expect(accepted.sort()).toEqual([...valid].sort());
      // The providers pushed back, and no IP pushed on into a block.
      expect(peers.yahoo.deferrals.length + peers.google.deferrals.length).toBeGreaterThan(0);
      expect(peers.yahoo.blocks).toEqual([]);
      expect(peers.google.blocks).toEqual([]);

      await runtime.stop(5_000);
      t.runtime = undefined;
      const rows = readAccounting(path.join(t.dir, 'acct'));
      const bounces = rows.filter((r) => r.type === 'b');
      expect(bounces.map((r) => r.rcpt).sort()).toEqual([...invalid].sort());
      for (const b of bounces) expect(b.bounceCat, b.rcpt).toBe('bad-mailbox');
      // The full mailboxes: neither delivered nor bounced, deferred as quota-issues at each try.
      for (const r of full) {
        expect(rows.filter((x) => x.rcpt === r && (x.type === 'd' || x.type === 'b')), r).toEqual([]);
        expect(rows.filter((x) => x.rcpt === r && x.type === 't' && x.bounceCat === 'quota-issues').length, r).toBeGreaterThanOrEqual(2);
      }
      expect(rows.filter((r) => r.type === 'd' && r.orig !== '').map((r) => r.rcpt).sort()).toEqual([...valid].sort());
      // One DSN (from the null sender) per bounced recipient, delivered to the sender's MX.
      expect(rows.filter((r) => r.type === 'd' && r.orig === '').map((r) => r.rcpt)).toEqual(invalid.map(() => 'news@shop.example'));
      expect(senderMx.received.map((m) => /^Final-Recipient: rfc822; (\S+)\r?$/m.exec(m.raw)?.[1]).sort()).toEqual([...invalid].sort());

      // No burst after a suspension ends: in the second after it, the source sends at most
      // the ramp's first step of its normal rate (3600/h per source, scaled: 100/s).
      const normalPerSecond = artifact.settings('provider:yahoo', 's1').messageRate.find((r) => r.scope === 'destination/source')!;
      const firstStep = Math.ceil(RAMP_FIRST_STEP * (normalPerSecond.count / normalPerSecond.perSeconds));
      const ended = [...suspensions.entries()].map(([k, end]) => ({ key: k.split(' ')[0]!, end })).filter((s) => s.key.startsWith('source|'));
      expect(ended.length).toBeGreaterThan(0);
      const firstSecond = ended.map(({ key, end }) => {
        const [, queue, source] = key.split('|');
        const peer = queue === 'provider:yahoo' ? peers.yahoo : peers.google;
        const ip = SOURCE_IPS[source!]!;
        return { key, attempts: [...peer.accepted, ...peer.refusals].filter((e) => e.ip === ip && e.at >= end && e.at < end + 1000).length };
      });
      // The figures, for the record (the assertions below judge them).
      console.info(`campaign: ${valid.length} delivered, ${invalid.length} bounced; deferrals yahoo ${peers.yahoo.deferrals.length}, gmail ${peers.google.deferrals.length}; blocks ${peers.yahoo.blocks.length + peers.google.blocks.length}; ramp first step ${firstStep}/s; tried in the second after each suspension: ${firstSecond.map((f) => `${f.key} ${f.attempts}`).join(', ')}`);
      for (const { key, attempts } of firstSecond) expect(attempts, `${key}: recipients tried in the second after its suspension ended`).toBeLessThanOrEqual(firstStep);
    } finally {
      for (const p of Object.values(peers)) await p.close();
    }
  }, 240_000);
});
