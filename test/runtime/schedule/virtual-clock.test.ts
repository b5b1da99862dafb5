/**
 * The scheduling core on a virtual clock (issue 14 part 2): the same scheduler, source
 * choice, limiters, session cache and judge that `petrel run` uses, given virtual time
 * and an in-memory provider instead of the process's clock and SMTP sessions. A day of
 * retries for 300 messages runs in well under a second, and every attempt lands where
 * the policy's retry curve puts it. The spool is an in-memory one with the same interface
 * (fixtures/memory-spool.ts): the real one fsyncs, which a virtual clock cannot wait for.
 */
import { describe, expect, it } from 'vitest';
import type { PolicyArtifact } from '../../../runtime/abi.ts';
import { createMxResolver, type SessionOptions, type SessionResult, type SmtpSession } from '../../../runtime/deliver/index.ts';
import { createPolicyState } from '../../../runtime/decide/index.ts';
import { outcomeRecord, type AccountingRecord } from '../../../runtime/observe/index.ts';
import { createScheduler, livePolicy, MemoryLimiterStore, VirtualTime } from '../../../runtime/schedule/index.ts';
import { compileFiles, loadArtifact } from '../../helpers.ts';
import { memorySpool } from '../fixtures/memory-spool.ts';

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

/**
 * A modelled provider: sessions open at once; `defer.example` answers every RCPT with a
 * 451, `ok.example` accepts. Each send is logged with the virtual time it happened at.
 */
function provider(time: VirtualTime, tries: Map<string, number[]>) {
  let sessions = 0;
  const open = async (options: SessionOptions): Promise<SessionResult> => {
    sessions++;
    let closed = false;
    const session: SmtpSession = {
      secure: false,
      tls: null,
      tlsFailure: null,
      localAddress: '192.0.2.1',
      remoteAddress: options.host,
      messagesSent: 0,
      transactions: 0,
      get closed() {
        return closed;
      },
      ended: Promise.resolve(),
      async send(message) {
        return {
          perRecipient: message.to.map((rcpt) => {
            tries.set(rcpt, [...(tries.get(rcpt) ?? []), time.now()]);
            const deferred = rcpt.endsWith('@defer.example');
            return { rcpt, accepted: !deferred, reply: deferred ? '451 4.7.1 try again later' : '250 2.0.0 ok', phase: deferred ? ('rcpt' as const) : ('data' as const), synthesized: false };
          }),
        };
      },
      async close() {
        closed = true;
      },
    };
    return { ok: true, session };
  };
  return { open, sessions: () => sessions };
}

async function run(artifact: PolicyArtifact, manifest: Parameters<typeof livePolicy>[1]) {
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
    mx: createMxResolver({ override: { '*': 'mx.sim.test:25' }, clock: time.now }),
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
  // 300 messages in three batches 10 minutes apart: 250 to a domain that defers all, 50 accepted.
  for (let batch = 0; batch < 3; batch++) {
    await time.runUntil(T0 + batch * 10 * MIN);
    for (let i = 0; i < 100; i++) {
      const n = batch * 100 + i;
      const rcpt = n % 6 === 5 ? `user${n}@ok.example` : `user${n}@defer.example`;
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
    const { core, spool, tries, records, accepted, fired, sessions } = await run(artifact, manifest);
    const wallMs = performance.now() - started;
    console.log(`virtual clock: 300 messages, 25 virtual hours, ${records.length} outcomes, ${fired} timers, ${sessions} sessions in ${wallMs.toFixed(0)} ms of wall time`);
    expect(wallMs).toBeLessThan(1000);

    const deferred = [...accepted].filter(([rcpt]) => rcpt.endsWith('@defer.example'));
    const delivered = [...accepted].filter(([rcpt]) => rcpt.endsWith('@ok.example'));
    expect(deferred).toHaveLength(250);
    expect(delivered).toHaveLength(50);
    // Every always-deferred recipient was tried exactly at acceptance + each step of the curve.
    for (const [rcpt, at] of deferred) expect((tries.get(rcpt) ?? []).map((t) => (t - at) / MIN), rcpt).toEqual(CURVE_MINUTES);
    for (const [rcpt, at] of delivered) expect(tries.get(rcpt), rcpt).toEqual([at]);

    // Accounting: a `t` record per deferral; at the last try the curve has no step left within
    // its `expire 1d` (retryDelay gives up), so the recipient bounces with its reply's category.
    // A `d` per delivery.
    const byType = (type: string) => records.filter((r) => r.type === type);
    expect(byType('t')).toHaveLength(250 * (CURVE_MINUTES.length - 1));
    expect(byType('d')).toHaveLength(50);
    expect(byType('b')).toHaveLength(250);
    for (const b of byType('b')) {
      expect(b.bounceCat).toBe('policy-related');
      expect(b.dsnDiag).toBe('smtp;451 4.7.1 try again later');
      expect(b.timeLogged - accepted.get(b.rcpt)!).toBe(CURVE_MINUTES.at(-1)! * MIN);
    }
    expect(core.view().counters).toEqual({ delivered: 50, deferred: 250 * (CURVE_MINUTES.length - 1), bounced: 250 });
    expect(spool.outcomes.filter((o) => o.outcome === 'bounced')).toHaveLength(250);
    expect(spool.outcomes.filter((o) => o.outcome === 'delivered')).toHaveLength(50);
    expect(spool.pending()).toEqual([]);
    expect(core.view().work).toEqual([]);
    expect(core.view().inFlight).toBe(0);
    core.halt();
    await core.drain(0);
  });
});
