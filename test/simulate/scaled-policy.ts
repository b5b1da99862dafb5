import { readFileSync } from 'node:fs';
import path from 'node:path';
import { behaviourOf, readShippedModel, type ProviderBehaviour, type ProviderModel } from '../../simulate/index.ts';

/**
 * Shipped policy files at another time scale, for tests that run a provider model scaled
 * the same way (test/runtime/run-campaign.e2e.test.ts, test/simulate/agreement.e2e.test.ts):
 * durations and rates in statements scaled, comments and examples untouched, test blocks
 * left out (their waits and expectations are in real time).
 */
const SECONDS: Record<string, number> = { s: 1, m: 60, min: 60, h: 3600, d: 86400, day: 86400 };

/**
 * A shipped policy file at time scale `scale`: durations (`1h`) and rates (`3600/h`) in its
 * statements scaled, comments and examples untouched, test blocks left out (their `wait`s
 * and expectations are in real time).
 */
export function scalePolicyText(text: string, scale: number): string {
  return text
    .replace(/^test "[^"\n]*" \{\n[\s\S]*?^\}\n?/gm, '')
    .split('\n')
    .map((line) => {
      const code = line.trimStart();
      if (code.startsWith('#') || code.startsWith('example ')) return line;
      return line
        .replace(/(?<![\w./"])(\d+)\/(s|min|h|day)\b/g, (_, n: string, unit: string) => `${Math.max(1, Math.round((Number(n) * 60) / (SECONDS[unit]! * scale)))}/min`)
        .replace(/(?<![\w./"])(\d+)(s|m|h|d)\b/g, (_, n: string, unit: string) => `${Math.max(1, Math.round(Number(n) * SECONDS[unit]! * scale))}s`);
    })
    .join('\n');
}

/**
 * The senders of the scaled campaign tests: three sources on 127.0.0.1-3 in one pool, and
 * the tenant `shop` that sends from it.
 */
export function threeSourcesPolicy(name: string): string {
  const sources = [1, 2, 3].map((n) => `source s${n} {\n  address 127.0.0.${n}\n  ehlo s${n}.petrel.test\n}\n`).join('\n');
  return `policy ${name} version 1.0.0\n\n${sources}\npool campaign {\n  s1, s2, s3\n}\n\ntenant shop {\n  pool campaign\n}\n`;
}

/** The shipped Yahoo and Google policies with the stdlib's retry and bounce rules, at time scale `scale`, by path. */
export function scaledShippedFiles(root: string, scale: number): Record<string, string> {
  const files: Record<string, string> = {};
  for (const f of ['policies/yahoo.policy', 'policies/google.policy', 'stdlib/retry.policy', 'stdlib/bounces.policy']) files[f] = scalePolicyText(readFileSync(path.join(root, f), 'utf8'), scale);
  return files;
}

/** A shipped provider model, changed by `change`, as a behaviour at time scale `scale`. */
export async function scaledModel(name: string, scale: number, change: (m: ProviderModel) => void): Promise<ProviderBehaviour> {
  const r = await readShippedModel(name);
  if (!r.ok) throw new Error(r.errors.join('\n'));
  const m = structuredClone(r.model);
  change(m);
  return behaviourOf(m, { scale });
}
