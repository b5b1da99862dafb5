/**
 * Campaign files: what `petrel simulate` sends (format in simulate/campaign.schema.json,
 * reference in docs/simulate.md) — streams of messages to a provider's domains or to a mix
 * of recipient domains, from the policy's pools and tenants, injected evenly over a time,
 * and the warmup age of sources. Reading never throws on bad input: every problem is one
 * line naming the file and the field. What needs the policy and the models to judge (a
 * pool, a provider, a source) is `checkCampaign`'s.
 */
import { Ajv, type ErrorObject } from 'ajv';
import type { DeliveryTopology } from '../runtime/abi.ts';
import { describeSchemaError, readChecked } from './model.ts';
import schema from './campaign.schema.json' with { type: 'json' };

/** One stream of messages. */
export interface CampaignStream {
  name?: string;
  count: number;
  provider?: string;
  domains?: Record<string, number>;
  recipients?: number;
  tenant?: string;
  pool?: string;
  startSeconds?: number;
  overSeconds?: number;
}

/** A campaign, format 1, as the file holds it. */
export interface Campaign {
  $schema?: string;
  format: 1;
  name?: string;
  start?: string;
  horizonSeconds?: number;
  from?: string;
  size?: number;
  streams: CampaignStream[];
  warmup?: Record<string, { ageDays: number }>;
}

export type CampaignResult = { ok: true; campaign: Campaign } | { ok: false; errors: string[] };

/** The largest campaign file read. */
export const MAX_CAMPAIGN_BYTES = 1024 * 1024;
/** The most messages one campaign may hold (all streams together). */
export const MAX_CAMPAIGN_MESSAGES = 5_000_000;
/** When a campaign names no start. */
export const DEFAULT_START = '2026-01-05T00:00:00Z';

const validateShape = new Ajv({ allErrors: true, strict: false }).compile<Campaign>(schema);

/** Checks a campaign's text; `file` names it in the errors. */
export function parseCampaign(text: string, file: string): CampaignResult {
  if (Buffer.byteLength(text) > MAX_CAMPAIGN_BYTES) return { ok: false, errors: [`${file}: more than ${MAX_CAMPAIGN_BYTES} bytes, the most a campaign may be`] };
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    return { ok: false, errors: [`${file}: not JSON: ${(e as Error).message}`] };
  }
  if (!validateShape(data)) return { ok: false, errors: [...new Set((validateShape.errors ?? []).map((e) => `${file}: ${describe(e)}`))] };
  const total = data.streams.reduce((n, s) => n + s.count, 0);
  if (total > MAX_CAMPAIGN_MESSAGES) return { ok: false, errors: [`${file}: \`streams\` hold ${total} messages, more than the ${MAX_CAMPAIGN_MESSAGES} a campaign may`] };
  if (data.start !== undefined && Number.isNaN(Date.parse(data.start))) return { ok: false, errors: [`${file}: \`start\` \`${data.start}\` is not a date`] };
  return { ok: true, campaign: data };
}

/** Reads and checks a campaign file (at most {@link MAX_CAMPAIGN_BYTES}). */
export function readCampaign(file: string): Promise<CampaignResult> {
  return readChecked(file, MAX_CAMPAIGN_BYTES, 'a campaign', parseCampaign);
}

/** What the campaign names that the policy or the models do not have, one line each. */
export function checkCampaign(c: Campaign, file: string, known: { models: readonly string[]; topology: DeliveryTopology }): string[] {
  const errors: string[] = [];
  const one = (what: string, list: readonly string[]) => (list.length ? `; ${what} ${list.map((n) => `\`${n}\``).join(', ')}` : `; the policy defines no ${what.split(' ').at(-1)}`);
  c.streams.forEach((s, i) => {
    if (s.provider !== undefined && !known.models.includes(s.provider)) errors.push(`${file}: \`streams.${i}.provider\` \`${s.provider}\` is no model${one('the models are', known.models)}`);
    const pools = Object.keys(known.topology.pools);
    if (s.pool !== undefined && !pools.includes(s.pool)) errors.push(`${file}: \`streams.${i}.pool\` \`${s.pool}\` is not a pool of the policy${one('its pools are', pools)}`);
  });
  for (const name of Object.keys(c.warmup ?? {})) {
    const source = known.topology.sources.find((s) => s.name === name);
    if (!source) errors.push(`${file}: \`warmup.${name}\`: the policy has no source \`${name}\`${one('its sources are', known.topology.sources.map((s) => s.name))}`);
    else if (!source.warmup) errors.push(`${file}: \`warmup.${name}\`: source \`${name}\` has no warmup in the policy`);
  }
  return errors;
}

/** One line naming the field an ajv error is about. */
const describe = (e: ErrorObject): string => (e.keyword === 'oneOf' ? `\`${e.instancePath.slice(1).replace(/\//g, '.')}\` must name either \`provider\` or \`domains\`, not both` : describeSchemaError(e));
