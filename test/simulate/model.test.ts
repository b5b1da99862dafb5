/**
 * Provider models: the shipped ones pass the schema and the checks, say which values are
 * guesses, and answer with replies that the shipped policies' rules judge as the model
 * means them (a deferral slows or stops the source, a block never bounces, an unknown user
 * bounces as bad-mailbox); bad models give one clear error per problem, naming the field.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { PolicyArtifact } from '../../runtime/abi.ts';
import { behaviourOf, MODELS_DIR, parseModel, readModel, readShippedModel, recipientFate, renderReply, replyText, shippedModelNames, type ModelReply, type ProviderModel } from '../../simulate/index.ts';
import { compileRepoFiles, loadArtifact, ROOT, shippedFiles } from '../helpers.ts';

const REQUIRED = ['google', 'yahoo', 'microsoft', 'apple', 'comcast', 'gmx', 'orange', 't-online', 'long-tail'];

async function shipped(name: string): Promise<ProviderModel> {
  const r = await readShippedModel(name);
  if (!r.ok) throw new Error(r.errors.join('\n'));
  return r.model;
}

/** Every `{ …, source, guess }` value in a model, with its path. */
function sourcedValues(value: unknown, at = ''): [string, Record<string, unknown>][] {
  if (value === null || typeof value !== 'object') return [];
  const own: [string, Record<string, unknown>][] = 'guess' in value ? [[at, value as Record<string, unknown>]] : [];
  return [...own, ...Object.entries(value).flatMap(([k, v]) => sourcedValues(v, at ? `${at}.${k}` : k))];
}

describe('shipped provider models', () => {
  let artifact: PolicyArtifact;
  let routes: string[];
  beforeAll(async () => {
    const result = await compileRepoFiles(shippedFiles());
    artifact = await loadArtifact(result);
    routes = result.ir!.routes.map((r) => r.id);
  });

  it('has a model for every provider the task names, each valid', async () => {
    expect(shippedModelNames()).toEqual(expect.arrayContaining(REQUIRED));
    for (const name of shippedModelNames()) {
      const r = await readShippedModel(name);
      expect(r.ok ? [] : r.errors, name).toEqual([]);
    }
  });

  it('gives every number a source, and routes and policies that exist', async () => {
    for (const name of shippedModelNames()) {
      const model = await shipped(name);
      expect(model.name).toBe(name);
      expect(routes, name).toContain(model.route);
      expect(readFileSync(path.join(ROOT, model.policy), 'utf8'), name).toMatch(/^policy /);
      const values = sourcedValues(model);
      // Every leaf number sits in a sourced value (the schema makes `source` and `guess` required there).
      const numbers = JSON.stringify(model).match(/":\s*-?\d/g) ?? [];
      expect(numbers.length, name).toBe(values.filter(([, v]) => Object.values(v).some((x) => typeof x === 'number')).reduce((n, [, v]) => n + Object.values(v).filter((x) => typeof x === 'number').length, 0) + 1 /* format */);
      for (const [at, v] of values) expect(String(v.source).length, `${name} ${at}`).toBeGreaterThan(3);
    }
  });

  it('routes its domains to its route in the shipped policies', async () => {
    for (const name of shippedModelNames()) {
      const model = await shipped(name);
      for (const domain of model.domains) expect(artifact.route(domain), `${name}: ${domain}`).toBe(model.route);
    }
  });

  it("answers with replies the shipped policies' rules judge as the model means them", async () => {
    const judge = (model: ProviderModel, reply: ModelReply) => {
      const text = replyText(renderReply(split(reply), { ip: '192.0.2.1', rcpt: `someone@${model.domains[0]}` }));
      return artifact.react(model.route, text, reply.phase);
    };
    for (const name of shippedModelNames()) {
      const model = await shipped(name);
      const { replies } = model;
      const deferral = judge(model, replies.deferral);
      expect(['throttle', 'block'], `${name} deferral`).toContain(deferral.disposition);
      if (replies.block) {
        const block = judge(model, replies.block);
        expect(block.disposition, `${name} block`).toBe('block');
        expect(block.actions.filter((a) => a.type === 'bounce'), `${name} block`).toEqual([]);
        expect(block.actions.some((a) => a.type === 'suspend' || a.type === 'disable-source'), `${name} block stops the source`).toBe(true);
      }
      expect(['soft', 'throttle'], `${name} tooManyConnections`).toContain(judge(model, replies.tooManyConnections).disposition);
      const unknown = judge(model, replies.unknownUser);
      expect([unknown.disposition, unknown.category], `${name} unknownUser`).toEqual(['hard', 'bad-mailbox']);
      expect(judge(model, replies.fullMailbox).category, `${name} fullMailbox`).toBe('quota-issues');
      if (replies.greylisted) expect(judge(model, replies.greylisted).disposition, `${name} greylisted`).toBe('soft');
    }
  });
});

/** A model reply as code and lines (the phase kept). */
function split(reply: ModelReply) {
  const lines = reply.text.split('\n');
  return { code: Number(reply.text.slice(0, 3)), lines: lines.map((l) => l.slice(4)), phase: reply.phase };
}

describe('reading models', () => {
  const base = () => JSON.parse(readFileSync(path.join(MODELS_DIR, 'yahoo.json'), 'utf8')) as Record<string, any>;
  const errorsOf = (model: unknown) => {
    const r = parseModel(JSON.stringify(model), 'm.json');
    return r.ok ? [] : r.errors;
  };

  it('names the file and the field of each problem', () => {
    const m = base();
    delete m.limits.messagesPerIp.source;
    m.limits.connectionsPerIp.count = 0;
    m.colour = 'blue';
    expect(errorsOf(m)).toEqual(expect.arrayContaining(['m.json: unknown field `colour`', 'm.json: `limits.connectionsPerIp.count` must be >= 1']));
    expect(errorsOf(m).some((e) => e.startsWith('m.json: `limits.messagesPerIp') && e.includes('source'))).toBe(true);
  });

  it('rejects replies whose lines disagree, of the wrong class, or with placeholders they cannot fill', () => {
    const m = base();
    m.replies.deferral.text = '554 5.7.1 blocked';
    m.replies.block.text = '553-first line\n550 second line';
    m.replies.unknownUser.text = '550 no {user} here';
    m.replies.deferral.phase = 'connect';
    m.replies.tooManyConnections.text = '421 {rcpt} too many';
    expect(errorsOf(m)).toEqual([
      'm.json: `replies.deferral.text` must be a 4xx reply, not 554',
      'm.json: `replies.block.text` line 2 must start `553 ` and hold text (every line but the last `NNN-`, the last `NNN `)',
      'm.json: `replies.tooManyConnections.text` uses `{rcpt}` at phase `connect`, before there is a recipient',
      'm.json: `replies.unknownUser.text` has an unknown placeholder `{user}`; known: {ip}, {rcpt}, {domain}',
    ]);
  });

  it('rejects fractions over 1 in sum, a penalty without its reply, and non-JSON or oversized text', () => {
    const m = base();
    m.recipients.unknownFraction.fraction = 0.7;
    m.recipients.fullMailboxFraction.fraction = 0.5;
    m.replies.block = null;
    expect(errorsOf(m)).toEqual(['m.json: `recipients`: unknownFraction and fullMailboxFraction add up to more than 1', 'm.json: `penalty` and `replies.block` go together: both null, or both given']);
    expect(parseModel('{', 'x.json')).toEqual({ ok: false, errors: [expect.stringMatching(/^x\.json: not JSON: /)] });
    expect(parseModel(' '.repeat(1024 * 1024 + 1), 'big.json')).toEqual({ ok: false, errors: ['big.json: more than 1048576 bytes, the most a model may be'] });
  });

  it('reads files, and says which models exist for an unknown name', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'petrel-model-'));
    try {
      writeFileSync(path.join(dir, 'y.json'), JSON.stringify(base()));
      expect((await readModel(path.join(dir, 'y.json'))).ok).toBe(true);
      expect(await readModel(path.join(dir, 'missing.json'))).toEqual({ ok: false, errors: [expect.stringContaining('missing.json: cannot read: ')] });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    const r = await readShippedModel('hotmale');
    expect(r.ok ? '' : r.errors[0]).toMatch(/^unknown model `hotmale`; the shipped models are .*`microsoft`/);
  });
});

describe('behaviour', () => {
  it('scales every duration, and only durations', async () => {
    const model = await shipped('google');
    const real = behaviourOf(model);
    const fast = behaviourOf(model, { scale: 0.01 });
    expect(real.deferral.durationMs).toBe(3_600_000);
    expect(fast.deferral.durationMs).toBeCloseTo(36_000);
    expect(fast.limits.messagesPerIp).toEqual({ count: 3600, windowMs: expect.closeTo(36_000, 6) });
    expect(fast.penalty!.durationMs).toBeCloseTo(216_000);
    expect(fast.latency.dataMs).toBeCloseTo(3);
    expect(fast.penalty!.attemptsWhileDeferred).toBe(real.penalty!.attemptsWhileDeferred);
    expect(() => behaviourOf(model, { scale: 0 })).toThrow(/scale 0 is outside/);
  });

  it('decides recipients from the address alone, at the configured fractions', () => {
    const recipients = { unknownFraction: 0.1, fullMailboxFraction: 0.05 };
    const addresses = Array.from({ length: 20_000 }, (_, i) => `user${i}@example.com`);
    const fates = addresses.map((a) => recipientFate(recipients, a));
    const share = (f: string) => fates.filter((x) => x === f).length / fates.length;
    expect(share('unknown')).toBeGreaterThan(0.09);
    expect(share('unknown')).toBeLessThan(0.11);
    expect(share('full')).toBeGreaterThan(0.04);
    expect(share('full')).toBeLessThan(0.06);
    expect(recipientFate(recipients, 'USER7@EXAMPLE.COM')).toBe(fates[7]);
    expect(addresses.map((a) => recipientFate(recipients, a))).toEqual(fates);
  });

  it('fills placeholders and writes multi-line replies as the policies do', async () => {
    const model = await shipped('yahoo');
    const r = renderReply(behaviourOf(model).replies.unknownUser, { ip: '192.0.2.7', rcpt: 'x@ymail.com' });
    expect(replyText(r)).toBe("554 delivery error: dd This user doesn't have a ymail.com account (x@ymail.com) [-5] - mta123.mail.mud.yahoo.com");
    const g = renderReply(behaviourOf(await shipped('google')).replies.deferral, { ip: '192.0.2.7' });
    expect(replyText(g)).toBe((await shipped('google')).replies.deferral.text.replace('{ip}', '192.0.2.7'));
  });
});
