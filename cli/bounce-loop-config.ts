/**
 * `petrel run`'s bounce loop settings from the config file (`tenants`, `feedback`,
 * `webhooks`; runtime/config.schema.json, docs/runtime.md "Bounces, suppression, feedback
 * and webhooks"): secret files read, webhook URLs checked. The loop is on without any of
 * them (every tenant with the defaults); a tenant turns its DSNs or suppression off.
 */
import { readFileSync } from 'node:fs';
import type { BounceLoopConfig, TenantSettings } from '../runtime/decide/index.ts';
import { webhookUrlProblem } from '../runtime/observe/index.ts';
import { UsageError } from './common.ts';

/** A secret given inline or in a file (first line). */
interface Secret {
  secret?: string;
  secretFile?: string;
}

export interface BounceLoopFileConfig {
  tenants?: Record<string, Omit<TenantSettings, 'webhook'> & { webhook?: { url: string } & Secret }>;
  feedback?: Secret & { addresses?: string[]; domains?: string[] };
  webhooks?: { allowPrivateTargets?: boolean; maxPending?: number };
}

/** The runtime's bounce loop config (the defaults when the file has none of its keys); a problem is a UsageError naming the key. */
export function bounceLoopConfig(config: BounceLoopFileConfig, at: (p: string) => string): BounceLoopConfig {
  const secretOf = (s: Secret, key: string): string => {
    if ((s.secret === undefined) === (s.secretFile === undefined)) throw new UsageError(`config: \`${key}\` needs \`secret\` or \`secretFile\` (one of them)`);
    let secret = s.secret;
    if (s.secretFile !== undefined) {
      try {
        secret = readFileSync(at(s.secretFile), 'utf8').split(/\r?\n/)[0]!.trim();
      } catch (e) {
        throw new UsageError(`config: cannot read \`${key}.secretFile\` ${s.secretFile}: ${(e as Error).message}`);
      }
    }
    if (secret!.length < 16) throw new UsageError(`config: \`${key}\` secret must be at least 16 characters`);
    return secret!;
  };
  const tenants: Record<string, TenantSettings> = {};
  for (const [name, { webhook, ...rest }] of Object.entries(config.tenants ?? {})) {
    const problem = webhook && webhookUrlProblem(webhook.url);
    if (problem) throw new UsageError(`config: \`tenants.${name}.webhook.url\`: ${problem}`);
    tenants[name] = { ...rest, ...(webhook ? { webhook: { url: webhook.url, secret: secretOf(webhook, `tenants.${name}.webhook`) } } : {}) };
  }
  const feedback = config.feedback ? { secret: secretOf(config.feedback, 'feedback'), addresses: config.feedback.addresses ?? [], domains: config.feedback.domains ?? [] } : undefined;
  if (feedback && feedback.addresses.length + feedback.domains.length === 0) throw new UsageError('config: `feedback` needs `addresses` or `domains` to take reports at');
  return { tenants, ...(feedback ? { feedback } : {}), ...(config.webhooks ? { webhooks: config.webhooks } : {}) };
}
