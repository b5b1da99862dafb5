/**
 * The scheduling core on a virtual clock (issue 14 part 2): the same scheduler, source
 * choice, limiters, session cache and judge that `petrel run` uses, given virtual time
 * and an in-memory provider instead of the process's clock and SMTP sessions. A day of
 * retries for 300 messages runs in well under a second, and every attempt lands where
 * the policy's retry curve puts it — at the provider, and for a domain whose DNS fails,
 * at the real MX resolver given a modelled DNS client. The spool is an in-memory one with the same interface
 * (simulate/memory-spool.ts): the real one fsyncs, which a virtual clock cannot wait for.
 */
import { describe, expect, it } from 'vitest';
import type { PolicyArtifact } from '../../../runtime/abi.ts';
import { createMxResolver, type DnsClient, type SessionOptions, type SessionResult } from '../../../runtime/deliver/index.ts';
import { createPolicyState } from '../../../runtime/decide/index.ts';
import { outcomeRecord, type AccountingRecord } from '../../../runtime/observe/index.ts';
import { createScheduler, livePolicy, MemoryLimiterStore, VirtualTime } from '../../../runtime/schedule/index.ts';
import { compileFiles, loadArtifact } from '../../helpers.ts';
import { memorySpool } from '../../../simulate/memory-spool.ts';
import { memorySession } from './memory-session.ts';

const POLICY = `policy sim version 1

retry day {
  after 5m, 10m, 20m, 40m
  then every 2h
  jitter 0%
  expire 1d
}

default {
  connections 1000
  retry day
}
`;

const MIN = 60_000;
/** Minutes after acceptance at which a recipient that is always deferred is tried: the curve's steps, then every 2 h while the next try is within the day. */
const CURVE_MINUTES = [0, 5, 15, 35, 75, ...Array.from({ length: 11 }, (_, i) => 75 + 120 * (i + 1))];
const T0 = Date.UTC(2026, 0, 5);

/** Message n's recipient domain: 50 accepted, 30 with no such domain, 30 whose MX lookup fails for now, 190 deferred by the provider. */
const domainFor = (n: number) => (n % 6 === 5 ? 'ok.example' : n % 10 === 0 ? 'gone.example' : n % 10 === 4 ? 'flaky.example' : 'defer.example');

/** The modelled DNS: `gone.example` does not exist, `flaky.example`'s server fails, every other domain has one MX. */
const dns: DnsClient = {
  async resolveMx(name) {
    if (name === 'gone.example') throw Object.assign(new Error(`queryMx ENOTFOUND ${name}`), { code: 'ENOTFOUND' });
    if (name === 'flaky.example') throw Object.assign(new Error(`queryMx ESERVFAIL ${name}`), { code: 'ESERVFAIL' });
    return [{ exchange: 'mx.sim.test', priority: 10 }];
  },
  resolve4: async () => ['192.0.2.25'],
  resolve6: async () => [],
};

/**
 * A modelled provider: sessions open at once; `defer.example` answers every RCPT with a
 * 451, `ok.example` accepts. Each send is logged with the virtual time it happened at.
 */
function provider(time: VirtualTime, tries: Map<string, number[]>) {
  let sessions = 0;
  const open = async (options: SessionOptions): Promise<SessionResult> => {
    sessions++;
    const session = memorySession(options.host, async (message) => ({
      perRecipient: message.to.map((rcpt) => {
        tries.set(rcpt, [...(tries.get(rcpt) ?? []), time.now()]);
        const deferred = rcpt.endsWith('@defer.example');
        return { rcpt, accepted: !deferred, reply: deferred ? '451 4.7.1 try again later' : '250 2.0.0 ok', phase: deferred ? ('rcpt' as const) : ('data' as const), synthesized: false };
      }),
    }));
    return { ok: true, session };
  };
  return { open, sessions: () => sessions };
}

/** Runs the core on `messages` messages (one recipient each, at `domainFor(n)`, in three batches 10 minutes apart) for 25 virtual hours. */
async function run(artifact: PolicyArtifact, manifest: Parameters<typeof livePolicy>[1], messages = 300, domainOf = domainFor) {
  const time = new VirtualTime(T0);
  const spool = memorySpool();
  const tries = new Map<string, number[]>();
  const peer = provider(time, tries);
  const records: AccountingRecord[] = [];
  const policy = livePolicy(artifact, manifest);
  const core = createScheduler({
    time,
    transport: peer.open,
    spool,
    mx: createMxResolver({ client: dns, clock: time.now, random: time.random }),
    limiters: new MemoryLimiterStore({ clock: time.now }),
    policy: () => policy,
    state: createPolicyState(),
    paused: new Set(),
    warmupSent: new Map(),
    record: (m, outcome) => records.push(outcomeRecord(m, outcome)),
    changed: () => {},
    warn: (line) => {
      throw new Error(line);
    },
    maxInFlight: 100,
    ehlo: 'petrel.sim.test',
  });
  const accepted = new Map<string, number>();
  const perBatch = messages / 3;
  for (let batch = 0; batch < 3; batch++) {
    await time.runUntil(T0 + batch * 10 * MIN);
    for (let i = 0; i < perBatch; i++) {
      const n = batch * perBatch + i;
      const rcpt = `user${n}@${domainOf(n)}`;
      const id = `m${n}`;
      spool.accept({ id, envelope: { from: 'news@sender.test', to: [rcpt] }, size: 100, receivedAt: time.now() }, Buffer.from('Subject: hi\r\n\r\nhello\r\n'));
      core.enqueue(spool.get(id)!, () => 0);
      accepted.set(rcpt, time.now());
    }
    core.wake();
  }
  const fired = await time.runUntil(T0 + 25 * 60 * MIN);
  return { core, spool, tries, records, accepted, fired, sessions: peer.sessions() };
}

describe('the scheduling core on a virtual clock', () => {
  it('runs a day of retries for 300 messages in well under a second, every attempt on the curve, then gives up', async () => {
    const compiled = await compileFiles({ 'sim.policy': POLICY });
    expect(compiled.diagnostics.filter((d) => d.severity === 'error')).toEqual([]);
    const artifact = await loadArtifact(compiled);
    const manifest = compiled.artifact!.manifest;

    const started = performance.now();
    const cpu = process.cpuUsage();
    const { core, spool, tries, records, accepted, fired, sessions } = await run(artifact, manifest);
    const cpuMs = (({ user, system }) => (user + system) / 1000)(process.cpuUsage(cpu));
    const wallMs = performance.now() - started;
    console.log(`virtual clock: 300 messages, 25 virtual hours, ${records.length} outcomes, ${fired} timers, ${sessions} sessions in ${wallMs.toFixed(0)} ms of wall time, ${cpuMs.toFixed(0)} ms of CPU`);
    // CPU time, not wall time: on a loaded machine (the whole suite runs two files at once on
    // two cores) the wall clock also counts the time this process waited for a core.
    expect(cpuMs).toBeLessThan(1000);

    const at = (domain: string) => [...accepted].filter(([rcpt]) => rcpt.endsWith(`@${domain}`));
    const [deferred, delivered, gone, flaky] = [at('defer.example'), at('ok.example'), at('gone.example'), at('flaky.example')];
    expect([deferred.length, delivered.length, gone.length, flaky.length]).toEqual([190, 50, 30, 30]);
    // Every always-deferred recipient was tried exactly at acceptance + each step of the curve.
    for (const [rcpt, t0] of deferred) expect((tries.get(rcpt) ?? []).map((t) => (t - t0) / MIN), rcpt).toEqual(CURVE_MINUTES);
    for (const [rcpt, t0] of delivered) expect(tries.get(rcpt), rcpt).toEqual([t0]);
    for (const [rcpt] of [...gone, ...flaky]) expect(tries.get(rcpt), rcpt).toBeUndefined();
    const recordsOf = (rcpt: string) => records.filter((r) => r.rcpt === rcpt);
    // No such domain: bounced at once. A failing lookup: a queue-level deferral (`tq`) on the curve, then bounced.
    for (const [rcpt, t0] of gone) expect(recordsOf(rcpt).map((r) => [r.type, r.timeLogged - t0, r.dsnDiag]), rcpt).toEqual([['b', 0, 'smtp;550 5.1.2 gone.example: no such domain']]);
    for (const [rcpt, t0] of flaky) {
      expect(recordsOf(rcpt).map((r) => [r.type, (r.timeLogged - t0) / MIN]), rcpt).toEqual(CURVE_MINUTES.map((m, i) => [i < CURVE_MINUTES.length - 1 ? 'tq' : 'b', m]));
      expect(new Set(recordsOf(rcpt).map((r) => r.dsnDiag))).toEqual(new Set(['smtp;451 4.4.3 flaky.example: MX lookup failed (ESERVFAIL)']));
    }

    // Accounting: a `t` record per deferral; at the last try the curve has no step left within
    // its `expire 1d` (retryDelay gives up), so the recipient bounces with its reply's category.
    // A `d` per delivery.
    const byType = (type: string) => records.filter((r) => r.type === type);
    const retries = CURVE_MINUTES.length - 1;
    expect(byType('t')).toHaveLength(190 * retries);
    expect(byType('tq')).toHaveLength(30 * retries);
    expect(byType('d')).toHaveLength(50);
    expect(byType('b')).toHaveLength(250);
    for (const b of byType('b').filter((r) => r.rcpt.endsWith('@defer.example'))) {
      expect(b.bounceCat).toBe('policy-related');
      expect(b.dsnDiag).toBe('smtp;451 4.7.1 try again later');
      expect(b.timeLogged - accepted.get(b.rcpt)!).toBe(CURVE_MINUTES.at(-1)! * MIN);
    }
    expect(core.view().counters).toEqual({ delivered: 50, deferred: 220 * retries, bounced: 250 });
    expect(spool.outcomes.filter((o) => o.outcome === 'bounced')).toHaveLength(250);
    expect(spool.outcomes.filter((o) => o.outcome === 'delivered')).toHaveLength(50);
    expect(spool.pending()).toEqual([]);
    expect(core.view().work).toEqual([]);
    expect(core.view().inFlight).toBe(0);
    core.halt();
    await core.drain(0);
  });

  it('admits deliveries through the limiters on the virtual clock: rate 60/min sends one a second, each batch from its acceptance', async () => {
    const compiled = await compileFiles({ 'rate.policy': POLICY.replace('connections 1000', 'connections 1000\n  rate 60/min') });
    expect(compiled.diagnostics.filter((d) => d.severity === 'error')).toEqual([]);
    const { tries, records } = await run(await loadArtifact(compiled), compiled.artifact!.manifest, 150, () => 'ok.example');
    expect(records.filter((r) => r.type === 'd')).toHaveLength(150);
    // 50 a batch, 10 minutes apart; the bucket (burst 1 at 60/min) is full again by the next batch.
    const sent = [...tries.values()].map((t) => t[0]! - T0).sort((a, b) => a - b);
    const expected = [0, 1, 2].flatMap((batch) => Array.from({ length: 50 }, (_, i) => batch * 10 * MIN + i * 1000));
    expect(sent).toEqual(expected);
  });
});
