/**
 * The simulator agrees with the live runtime (issue 15 part 5). One small campaign — 240
 * recipients at yahoo.com and 120 at gmail.com, from three sources of one pool, under the
 * shipped Yahoo and Google rules — runs twice under the same compiled artifact and the
 * same provider models:
 *
 * - live: `startRuntime` (real spool, real clock, nodemailer submission), delivering over
 *   real sockets to test/fixtures/provider-peer.ts peers (smtp-server, STARTTLS);
 * - simulated: `runSimulation` (the same scheduler core on a virtual clock, the modelled
 *   provider, the in-memory spool).
 *
 * Both sides run 100 times faster than real time (models at scale 0.01, policy durations
 * and rates scaled alike: test/simulate/scaled-policy.ts), and the models tolerate fewer
 * messages per IP than the policies allow, so both meet deferrals. The recipients are the
 * addresses the campaign format makes (`s<stream>m<n>r0@domain`), so which are unknown or
 * full is the same on both sides.
 *
 * Stated tolerance: delivered and bounced (per category) agree exactly — they depend on
 * the recipients, not on timing; so does the number of deferral periods the providers
 * started (each IP pushed back, and stopped by the policy's reaction, the same number of
 * times); both see deferred attempts, neither earns a block from the provider. The number
 * of deferred attempts is printed, not bounded: live it depends on how many sends were in
 * flight when a window closed (8 on a quiet machine, 31 at load 8), against a simulated 26.
 */
import path from 'node:path';
import nodemailer from 'nodemailer';
import { describe, expect, it } from 'vitest';
import { startRuntime } from '../../runtime/runtime.ts';
import { recipientFate, runSimulation, type Campaign, type ProviderModel } from '../../simulate/index.ts';
import { startProviderPeer, type ProviderPeer } from '../fixtures/provider-peer.ts';
import { compileFiles, loadArtifact, ROOT } from '../helpers.ts';
import { e2eCase, readAccounting, selfSignedCertificate, until } from '../runtime/fixtures/e2e.ts';
import { scaledModel, scaledShippedFiles, threeSourcesPolicy } from './scaled-policy.ts';

const SCALE = 0.01;

const model = (name: string, change: (m: ProviderModel) => void) => scaledModel(name, SCALE, change);

/** Outcome counts from either side: delivered, bounced per category, deferred attempts. */
interface Outcomes {
  delivered: number;
  bounced: Record<string, number>;
  deferred: number;
}

const t = e2eCase('agreement', 5_000);

describe('petrel simulate agrees with the live runtime', () => {
  it('on one campaign: the same delivered, bounced per category and deferral periods of the providers', async () => {
    const yahoo = await model('yahoo', (m) => {
      m.limits.messagesPerIp = { ...m.limits.messagesPerIp!, count: 40 };
      m.recipients.unknownFraction.fraction = 0.05;
      // No full mailboxes: they are soft with a bounded retry (yahoo.policy: 72 tries an hour
      // apart, 43 minutes scaled), whose end a live run this short cannot reach — the
      // simulation would bounce them as quota-issues, the live side still hold them.
      // run-campaign.e2e asserts that a live full mailbox is kept and retried.
      m.recipients.fullMailboxFraction.fraction = 0;
    });
    const google = await model('google', (m) => {
      m.limits.messagesPerIp = { ...m.limits.messagesPerIp!, count: 30 };
      m.recipients.unknownFraction.fraction = 0.05;
      m.recipients.fullMailboxFraction.fraction = 0;
    });
    const longTail = await model('long-tail', () => {});
    const files: Record<string, string> = { 'senders.policy': threeSourcesPolicy('senders'), ...scaledShippedFiles(ROOT, SCALE) };
    const compiled = await compileFiles(files);
    const artifact = await loadArtifact(compiled);
    const manifest = compiled.artifact!.manifest;

    // The campaign, and the very addresses it makes, for the live side.
    const campaign: Campaign = { format: 1, name: 'agreement', streams: [{ count: 240, domains: { 'yahoo.com': 1 }, tenant: 'shop' }, { count: 120, domains: { 'gmail.com': 1 }, tenant: 'shop' }] };
    const recipients = campaign.streams.flatMap((s, i) => Array.from({ length: s.count }, (_, n) => `s${i}m${n}r0@${Object.keys(s.domains!)[0]}`));
    const fates = recipients.map((r) => recipientFate((r.endsWith('@yahoo.com') ? yahoo : google).recipients, r));
    expect(fates.filter((f) => f !== 'deliverable').length).toBeGreaterThan(5);

    // --- simulated
    const sim = await runSimulation({ artifact, manifest, campaign, behaviours: new Map([['yahoo', yahoo], ['google', google], ['long-tail', longTail]]) });
    expect(sim.finished).toBe(true);
    const simulated: Outcomes = { delivered: 0, bounced: {}, deferred: 0 };
    for (const c of sim.tally.cells.values()) {
      simulated.delivered += c.delivered;
      simulated.deferred += c.deferred;
      for (const [k, v] of Object.entries(c.bouncedByCategory)) simulated.bounced[k] = (simulated.bounced[k] ?? 0) + v;
    }
    const simBlocks = [...sim.providerSide.values()].reduce((n, p) => n + p.blocks, 0);
    const simPeriods = [...sim.providerSide.values()].reduce((n, p) => n + p.deferrals, 0);
    let livePeriods = 0;

    // --- live
    const peers: Record<string, ProviderPeer> = {};
    let live: Outcomes;
    try {
      const { key, cert } = selfSignedCertificate(t.dir, 'mx.provider.test');
      peers.yahoo = await startProviderPeer(yahoo, { tls: { key, cert } });
      peers.google = await startProviderPeer(google, { tls: { key, cert } });
      // The sender's MX: the live runtime sends a DSN for each bounced recipient (the simulation does not model them).
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
        mxOverride: { 'yahoo.com': `127.0.0.1:${peers.yahoo.port}`, 'gmail.com': `127.0.0.1:${peers.google.port}`, 'campaign.example': `127.0.0.1:${senderMx.port}` },
      });
      const runtime = t.runtime;
      const bouncing = fates.filter((f) => f !== 'deliverable').length;
      const transport = nodemailer.createTransport({ host: '127.0.0.1', port: runtime.smtpPort, secure: false, ignoreTLS: true, pool: true, maxConnections: 5, maxMessages: Infinity });
      try {
        await Promise.all(recipients.map((to, n) => transport.sendMail({ from: 'news@campaign.example', to, subject: `issue ${n}`, text: `hello ${to}`, headers: { 'X-Petrel-Tenant': 'shop' } })));
      } finally {
        transport.close();
      }
      await until('every recipient delivered or bounced', () => {
        const s = runtime.status();
        return s.delivered + s.bounced >= recipients.length + bouncing && s.queued === 0;
      }, 170_000);
      await runtime.stop(5_000);
      t.runtime = undefined;
      const all = readAccounting(path.join(t.dir, 'acct'));
      // One DSN (from the null sender) per bounced recipient, delivered; the comparison is of the campaign's own mail.
      expect(all.filter((r) => r.type === 'd' && r.orig === '')).toHaveLength(bouncing);
      expect(senderMx.received).toHaveLength(bouncing);
      const rows = all.filter((r) => r.orig !== '');
      live = { delivered: rows.filter((r) => r.type === 'd').length, bounced: {}, deferred: rows.filter((r) => r.type === 't' || r.type === 'tq').length };
      for (const r of rows.filter((r) => r.type === 'b')) live.bounced[r.bounceCat] = (live.bounced[r.bounceCat] ?? 0) + 1;
      livePeriods = peers.yahoo.deferrals.length + peers.google.deferrals.length;
      expect(livePeriods, 'the live providers deferred').toBeGreaterThan(0);
      expect(peers.yahoo.blocks.length + peers.google.blocks.length, 'no live block').toBe(0);
    } finally {
      for (const p of Object.values(peers)) await p.close();
    }

    console.info(`agreement: deferral periods the providers started: live ${livePeriods}, simulated ${simPeriods}`);
    console.info(`agreement: live ${JSON.stringify(live)}, simulated ${JSON.stringify(simulated)} (${(sim.wallMs / 1000).toFixed(2)} s of wall time for the simulation)`);
    expect(simulated.delivered).toBe(fates.filter((f) => f === 'deliverable').length);
    expect(simulated.delivered).toBe(live.delivered);
    expect(simulated.bounced).toEqual(live.bounced);
    expect(simulated.deferred, 'the simulation met deferrals').toBeGreaterThan(0);
    expect(simBlocks, 'no simulated block').toBe(0);
    expect(live.deferred, 'the live runtime met deferred attempts').toBeGreaterThan(0);
    // The providers' pushback, IP by IP: the same number of deferral periods on both sides.
    expect(simPeriods).toBe(livePeriods);
  }, 240_000);
});
