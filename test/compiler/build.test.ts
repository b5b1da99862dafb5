import { Ajv } from 'ajv';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { compileFiles, compileRepoFiles, loadArtifact, ROOT, shippedFiles } from '../helpers.ts';

const schema = JSON.parse(readFileSync(path.join(ROOT, 'compiler', 'ir.schema.json'), 'utf8'));
const validateIr = new Ajv({ allErrors: true, strict: true, allowUnionTypes: true }).compile(schema);

const SAMPLE = {
  'sample.policy': `policy sample version 1.2.0
use stdlib/retry

default {
  connections 5 per source
  retry standard
  on reply 5.1.1 {
    bounce bad-mailbox
    example "550 5.1.1 <a@example.com>: Recipient address rejected: User unknown"
  }
}

provider acme {
  match domain acme.example, [*.]acme-mail.example
  match mx *.mx.acme.example
  rate 100/min per source
  data-rate 10MB/min
  on reply 421 /too many connections/i phase connect when 2 in 10m {
    backoff 15m {
      connections 1 per source
    }
    example "421 4.7.0 Too many connections from your IP" phase connect
  }
  on reply 4xx "mailbox busy" {
    retry after 2m
    example "450 4.2.1 Mailbox busy, try later"
  }
}

domain special.acme-mail.example {
  tls required
}

warmup fresh {
  schedule 100/day, 500/day, 2000/day
  for provider acme {
    start 50/day grow x2 cap 1000/day
  }
  overflow pool warm
}

source ip1 {
  address 192.0.2.10
  ehlo mta1.example.com
}
source ip2 {
  address 192.0.2.11
  ehlo mta2.example.com
  warmup fresh since 2026-11-20
  rate 1000/h
}
pool warm {
  ip1
}
tenant shop {
  pool warm
  rate 5000/h
}
`,
};

describe('petrel build', () => {
  it('builds the shipped policies into an IR that matches the published schema', async () => {
    const result = await compileRepoFiles(shippedFiles());
    expect(result.diagnostics).toEqual([]);
    const ok = validateIr(result.ir);
    expect(validateIr.errors ?? []).toEqual([]);
    expect(ok).toBe(true);
  });

  it('emits an IR for every construct that matches the schema', async () => {
    const result = await compileFiles(SAMPLE);
    expect(result.diagnostics).toEqual([]);
    expect(validateIr(result.ir), JSON.stringify(validateIr.errors)).toBe(true);
  });

  it('the schema rejects a broken IR', async () => {
    const result = await compileFiles(SAMPLE);
    const broken = structuredClone(result.ir!) as unknown as { routes: { settings: { tls: string } }[] };
    broken.routes[0]!.settings.tls = 'maybe';
    expect(validateIr(broken)).toBe(false);
  });

  it('gives byte-identical modules and manifests for the same sources', async () => {
    const a = await compileRepoFiles(shippedFiles());
    const b = await compileRepoFiles(shippedFiles());
    expect(a.artifact!.module).toBe(b.artifact!.module);
    expect(a.artifact!.manifest).toEqual(b.artifact!.manifest);
    expect(a.artifact!.module).not.toMatch(/\d{4}-\d{2}-\d{2}T\d{2}:/);
  });

  it('changes the hash when a source changes', async () => {
    const a = await compileFiles(SAMPLE);
    const b = await compileFiles({ 'sample.policy': SAMPLE['sample.policy'].replace('100/min', '90/min') });
    expect(a.artifact!.manifest.hash).not.toBe(b.artifact!.manifest.hash);
  });

  it('bundles a self-contained module with no imports, matching the golden file', async () => {
    const result = await compileFiles(SAMPLE);
    const module = result.artifact!.module;
    expect(module).not.toMatch(/^\s*import\s/m);
    expect(module).not.toContain(ROOT);
    await expect(module).toMatchFileSnapshot('./__snapshots__/sample-artifact.mjs');
  });

  it('writes a manifest with the ABI fields', async () => {
    const result = await compileFiles(SAMPLE, { name: 'acme-set' });
    const m = result.artifact!.manifest;
    expect(m).toMatchObject({ name: 'acme-set', version: '1.2.0', abi: 1, module: result.artifact!.moduleFile, compiler: { name: 'petrel' } });
    expect(m.hash).toMatch(/^[0-9a-f]{64}$/);
    expect(m.sources.map((s) => s.path)).toEqual(['sample.policy', 'petrel:stdlib/retry.policy']);
  });
});

/** Decodes a v3 source map's mappings: for each generated line, its first segment's source and original line (1-based). */
function decodeLines(map: { sources: string[]; mappings: string }): ({ source: string; line: number } | undefined)[] {
  const chars = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
  const state = [0, 0, 0, 0];
  return map.mappings.split(';').map((line) => {
    state[0] = 0;
    let first: { source: string; line: number } | undefined;
    for (const segment of line.split(',').filter(Boolean)) {
      const values: number[] = [];
      let shift = 0;
      let value = 0;
      for (const ch of segment) {
        const digit = chars.indexOf(ch);
        value += (digit & 31) << shift;
        if (digit & 32) shift += 5;
        else {
          values.push(value & 1 ? -(value >>> 1) : value >>> 1);
          value = 0;
          shift = 0;
        }
      }
      values.forEach((v, i) => (state[i] = state[i]! + v));
      if (values.length >= 4 && !first) first = { source: map.sources[state[1]!]!, line: state[2]! + 1 };
    }
    return first;
  });
}

describe('source map', () => {
  it('leads each rule\'s generated code back to its .policy line', async () => {
    const result = await compileFiles(SAMPLE);
    const { module, sourceMap, moduleFile } = result.artifact!;
    expect(module.trimEnd().endsWith(`//# sourceMappingURL=${moduleFile}.map`)).toBe(true);
    const map = JSON.parse(sourceMap);
    expect(map.sources).toContain('policy:///sample.policy');
    expect(map.sourcesContent[map.sources.indexOf('policy:///sample.policy')]).toBe(SAMPLE['sample.policy']);
    const lines = decodeLines(map);
    const moduleLines = module.split('\n');
    const rules = result.ir!.rules;
    expect(rules.length).toBeGreaterThan(0);
    for (const rule of rules) {
      // Each rule is one row of the rule table, a line of its own: `'[id, codes, …]',` (JSON text).
      const at = moduleLines.findIndex((l) => new RegExp(`^\\s+["'\`]\\[${rule.id},`).test(l));
      expect(at, `rule ${rule.id}`).toBeGreaterThan(-1);
      expect(lines[at], `rule ${rule.id}`).toEqual({ source: `policy:///${rule.loc.file}`, line: rule.loc.line });
    }
  });
});

describe('the artifact', () => {
  it('default-exports a frozen object with exactly the six ABI members', async () => {
    const artifact = await loadArtifact(await compileFiles(SAMPLE));
    expect(Object.isFrozen(artifact)).toBe(true);
    expect(Object.keys(artifact).sort()).toEqual(['meta', 'react', 'retryDelay', 'route', 'settings', 'warmupLimit']);
    expect(artifact.meta).toMatchObject({ name: 'test', version: '1.2.0', abi: 1 });
  });

  it('routes exact domains, wildcards, domain blocks and MX rollup', async () => {
    const artifact = await loadArtifact(await compileFiles(SAMPLE));
    expect(artifact.route('acme.example')).toBe('provider:acme');
    expect(artifact.route('ACME.example.')).toBe('provider:acme');
    expect(artifact.route('acme-mail.example')).toBe('provider:acme');
    expect(artifact.route('eu.acme-mail.example')).toBe('provider:acme');
    expect(artifact.route('sub.acme.example')).toBe('default');
    expect(artifact.route('special.acme-mail.example')).toBe('domain:special.acme-mail.example');
    expect(artifact.route('brand.example', ['mx1.mx.acme.example', 'mx2.mx.acme.example'])).toBe('provider:acme');
    expect(artifact.route('brand.example', ['mx1.mx.acme.example', 'mx.other.example'])).toBe('default');
    expect(artifact.route('brand.example')).toBe('default');
  });

  it('merges settings default → provider → domain block, with source and tenant limits', async () => {
    const artifact = await loadArtifact(await compileFiles(SAMPLE));
    const s = artifact.settings('domain:special.acme-mail.example', 'ip2', 'shop');
    expect(s.tls).toBe('required');
    expect(s.connections).toEqual([{ max: 5, scope: 'destination/source' }]);
    expect(s.messageRate).toEqual([
      { count: 1000, perSeconds: 3600, scope: 'source' },
      { count: 5000, perSeconds: 3600, scope: 'tenant' },
      { count: 100, perSeconds: 60, scope: 'destination/source' },
    ]);
    expect(s.dataRate).toEqual([{ count: 10 * 1024 * 1024, perSeconds: 60, scope: 'destination' }]);
    expect(s.retry).toBe('standard');
    expect(s.expireSeconds).toBe(3 * 86400);
    expect(s.source).toEqual({ name: 'ip2', address: '192.0.2.11', ehlo: 'mta2.example.com', warmup: { ramp: 'fresh', since: '2026-11-20', overflowPool: 'warm' } });
    expect(s.tenant).toEqual({ name: 'shop', pool: 'warm' });
    expect(artifact.settings('no-such-route').route).toBe('default');
  });

  it('reacts with the deciding rule, trigger, actions and fallbacks', async () => {
    const artifact = await loadArtifact(await compileFiles(SAMPLE));
    const r = artifact.react('provider:acme', '421 4.7.0 Too many connections from your IP', 'connect');
    expect(r).toEqual({
      category: 'policy-related',
      disposition: 'throttle',
      actions: [{ type: 'backoff', durationSeconds: 900, overrides: { connections: [{ max: 1, scope: 'destination/source' }] } }],
      rule: { file: 'sample.policy', line: 18 },
      trigger: { count: 2, withinSeconds: 600, id: expect.any(Number) },
    });
    // The same reply in another phase is not this rule's business.
    expect(artifact.react('provider:acme', '421 4.7.0 Too many connections from your IP', 'rcpt').rule).toBeUndefined();
    // Provider rules come before the default's; the default's still apply.
    expect(artifact.react('provider:acme', '550 5.1.1 <x@acme.example>: User unknown')).toMatchObject({ category: 'bad-mailbox', disposition: 'hard', rule: { file: 'sample.policy', line: 7 } });
    expect(artifact.react('provider:acme', '250 2.0.0 OK')).toEqual({ category: 'success', disposition: null, actions: [] });
    expect(artifact.react('default', '452 4.2.2 Mailbox full')).toEqual({ category: 'quota-issues', disposition: 'soft', actions: [] });
    expect(artifact.react('default', '554 5.7.1 Service unavailable; client host blocked using Spamhaus')).toEqual({ category: 'spam-related', disposition: 'hard', actions: [] });
  });

  it('computes retry delays from the curve, rule overrides and expiry', async () => {
    const artifact = await loadArtifact(await compileFiles(SAMPLE));
    expect([1, 2, 3, 4, 5, 6].map((n) => artifact.retryDelay('provider:acme', n))).toEqual([300_000, 600_000, 1_200_000, 2_400_000, 3_600_000, 3_600_000]);
    expect(artifact.retryDelay('provider:acme', 1, '450 4.2.1 Mailbox busy, try later')).toBe(120_000);
    expect(artifact.retryDelay('provider:acme', 1, '550 5.1.1 <x@acme.example>: User unknown')).toBeNull();
    // standard: 5m+10m+20m+40m then hourly, expiring after 3 days.
    expect(artifact.retryDelay('provider:acme', 74)).toBe(3_600_000);
    expect(artifact.retryDelay('provider:acme', 75)).toBeNull();
  });

  it('gives warmup limits per day, per provider, and Infinity when complete', async () => {
    const artifact = await loadArtifact(await compileFiles(SAMPLE));
    expect([0, 1, 2, 3].map((d) => artifact.warmupLimit('fresh', 'default', d))).toEqual([100, 500, 2000, Infinity]);
    expect([0, 1, 2, 3, 4, 5].map((d) => artifact.warmupLimit('fresh', 'provider:acme', d))).toEqual([50, 100, 200, 400, 800, Infinity]);
    expect(artifact.warmupLimit('no-such-ramp', 'default', 0)).toBe(Infinity);
  });

  it('answers for a yahoo.com route and a [TS01] reply from the shipped policies', async () => {
    const artifact = await loadArtifact(await compileRepoFiles(shippedFiles()));
    const route = artifact.route('yahoo.com');
    expect(route).toBe('provider:yahoo');
    const r = artifact.react(route, '421 4.7.0 [TS01] Messages from 192.0.2.1 temporarily deferred due to user complaints - 4.16.55.1');
    expect(r.disposition).toBe('throttle');
    expect(r.trigger).toMatchObject({ count: expect.any(Number), withinSeconds: expect.any(Number) });
    expect(r.actions[0]).toMatchObject({ type: 'backoff' });
    expect(r.rule?.file).toBe('policies/yahoo.policy');
  });
});
