/**
 * Provider models: JSON files (`models/*.json`, format in models/provider-model.schema.json,
 * reference in docs/simulate.md) that say how a receiving mailbox provider treats a sender
 * — its limits, its replies and when it gives them, how it punishes a sender that keeps
 * pushing, how many recipients are unknown or full, greylisting and latency — with a
 * source for every number. This file reads and checks them; behaviour.ts turns a checked
 * model into the scaled numbers a peer runs on.
 *
 * Reading never throws on bad input: the result names every problem with its file and field.
 * Imports nothing from runtime/ but the ABI's types.
 */
import { Ajv, type ErrorObject } from 'ajv';
import { readdirSync } from 'node:fs';
import { open } from 'node:fs/promises';
import path from 'node:path';
import { packageRoot } from '../compiler/paths.ts';
import type { Phase } from '../runtime/abi.ts';
import schema from '../models/provider-model.schema.json' with { type: 'json' };

/** Where a value comes from; `guess` when no public source states it. */
export interface Sourced {
  source: string;
  guess: boolean;
  notes?: string;
}
export interface Count extends Sourced {
  count: number;
}
/** `count` events per `windowSeconds` (a sliding window). */
export interface Rate extends Sourced {
  count: number;
  windowSeconds: number;
}
export interface Duration extends Sourced {
  seconds: number;
}
export interface Milliseconds extends Sourced {
  ms: number;
}
export interface Fraction extends Sourced {
  fraction: number;
}
/** The phases at which a model's provider answers (EHLO is never refused by a model). */
export type ModelPhase = Exclude<Phase, 'ehlo'>;
/** A reply as on the wire (`421 4.7.0 …`, lines joined by `\n`), with `{ip}`, `{rcpt}`, `{domain}`. */
export interface ModelReply extends Sourced {
  text: string;
  phase: ModelPhase;
}

/** A provider model, format 1, as the file holds it. */
export interface ProviderModel {
  $schema?: string;
  format: 1;
  name: string;
  description: string;
  /** The route id in the shipped policies whose rules the replies are written for. */
  route: string;
  /** The shipped policy file holding those rules. */
  policy: string;
  /** Recipient domains the provider receives for. */
  domains: string[];
  /** How large a "network" is, for the per-network limits. */
  network: { ipv4PrefixLength: Sourced & { bits: number }; ipv6PrefixLength: Sourced & { bits: number } };
  limits: {
    messagesPerIp: Rate | null;
    messagesPerNetwork: Rate | null;
    connectionsPerIp: Count | null;
    connectionsPerNetwork: Count | null;
    connectsPerIp: Rate | null;
  };
  /** Once over a message rate, how long the client IP is deferred, and what it may still send meanwhile (null: nothing). */
  deferral: { duration: Duration; allowedRate: Rate | null };
  /** Refused attempts while deferred that earn the block reply, and how long the block lasts (null: the provider never escalates). */
  penalty: { attemptsWhileDeferred: Count; duration: Duration } | null;
  recipients: { unknownFraction: Fraction; fullMailboxFraction: Fraction };
  /** The first attempt per (client IP, sender, recipient) is deferred until `delay` has passed (null: no greylisting). */
  greylisting: { delay: Duration } | null;
  latency: { banner: Milliseconds; command: Milliseconds; data: Milliseconds };
  replies: {
    deferral: ModelReply;
    block: ModelReply | null;
    tooManyConnections: ModelReply;
    unknownUser: ModelReply;
    fullMailbox: ModelReply;
    greylisted: ModelReply | null;
  };
}

/** A model, or every problem found in it (one line each, `file: \`field\` …`). */
export type ModelResult = { ok: true; model: ProviderModel } | { ok: false; errors: string[] };

/** The largest model file read. */
export const MAX_MODEL_BYTES = 1024 * 1024;
/** The folder of the shipped models: `models/` of the package (from source, or from the bundled CLI in dist/). */
export const MODELS_DIR = path.join(packageRoot(), 'models') + path.sep;

const validateShape = new Ajv({ allErrors: true, strict: true }).compile<ProviderModel>(schema);

/** Checks a model's text; `file` names it in the errors. */
export function parseModel(text: string, file: string): ModelResult {
  if (Buffer.byteLength(text) > MAX_MODEL_BYTES) return { ok: false, errors: [`${file}: more than ${MAX_MODEL_BYTES} bytes, the most a model may be`] };
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    return { ok: false, errors: [`${file}: not JSON: ${(e as Error).message}`] };
  }
  if (!validateShape(data)) return { ok: false, errors: [...new Set((validateShape.errors ?? []).map((e) => `${file}: ${describeSchemaError(e)}`))] };
  const errors = checkMeaning(data).map((e) => `${file}: ${e}`);
  return errors.length > 0 ? { ok: false, errors } : { ok: true, model: data };
}

/** Reads and checks a model file (at most {@link MAX_MODEL_BYTES}). */
export function readModel(file: string): Promise<ModelResult> {
  return readChecked(file, MAX_MODEL_BYTES, 'a model', parseModel);
}

/** Reads a file of at most `maxBytes` and checks it with `parse`; a file too large or unreadable is an error naming it (`what`: `a model`). */
export async function readChecked<R>(file: string, maxBytes: number, what: string, parse: (text: string, file: string) => R | { ok: false; errors: string[] }): Promise<R | { ok: false; errors: string[] }> {
  let handle;
  try {
    handle = await open(file, 'r');
    const { size } = await handle.stat();
    if (size > maxBytes) return { ok: false, errors: [`${file}: ${size} bytes, more than the ${maxBytes} ${what} may be`] };
    return parse(await handle.readFile('utf8'), file);
  } catch (e) {
    return { ok: false, errors: [`${file}: cannot read: ${(e as Error).message}`] };
  } finally {
    await handle?.close();
  }
}

/** The names of the shipped models (`models/NAME.json`), sorted. */
export function shippedModelNames(): string[] {
  return readdirSync(MODELS_DIR)
    .filter((f) => f.endsWith('.json') && !f.endsWith('.schema.json'))
    .map((f) => f.slice(0, -'.json'.length))
    .sort();
}

/** Reads a shipped model by name; an unknown name is an error that lists the known ones. */
export async function readShippedModel(name: string): Promise<ModelResult> {
  const names = shippedModelNames();
  if (!names.includes(name)) return { ok: false, errors: [`unknown model \`${name}\`; the shipped models are ${names.map((n) => `\`${n}\``).join(', ')}`] };
  return readModel(path.join(MODELS_DIR, `${name}.json`));
}

/** One line naming the field an ajv error is about. */
export function describeSchemaError(e: ErrorObject): string {
  const at = e.instancePath.slice(1).replace(/\//g, '.');
  if (e.keyword === 'required') return `\`${[at, (e.params as { missingProperty: string }).missingProperty].filter(Boolean).join('.')}\` is required`;
  if (e.keyword === 'additionalProperties') return `unknown field \`${[at, (e.params as { additionalProperty: string }).additionalProperty].filter(Boolean).join('.')}\``;
  return `${at ? `\`${at}\`` : 'the model'} ${e.message}`;
}

/** Which reply may have which code class, and which may use `{rcpt}` (only answers to a recipient). */
const REPLY_CLASSES: Record<keyof ProviderModel['replies'], readonly ('4' | '5')[]> = {
  deferral: ['4'],
  block: ['4', '5'],
  tooManyConnections: ['4'],
  unknownUser: ['5'],
  fullMailbox: ['4', '5'],
  greylisted: ['4'],
};

/** What the schema cannot say: reply lines that agree, placeholders that can be filled, fractions that add up, a penalty with its reply. */
function checkMeaning(model: ProviderModel): string[] {
  const errors: string[] = [];
  for (const [kind, reply] of Object.entries(model.replies) as [keyof ProviderModel['replies'], ModelReply | null][]) {
    if (reply) errors.push(...checkReply(`replies.${kind}`, reply, REPLY_CLASSES[kind]));
  }
  if (model.replies.tooManyConnections.phase !== 'connect') errors.push('`replies.tooManyConnections.phase` must be `connect`: connection limits are enforced when a client connects');
  for (const kind of ['unknownUser', 'fullMailbox', 'greylisted'] as const) {
    const phase = model.replies[kind]?.phase;
    if (phase !== undefined && phase !== 'rcpt') errors.push(`\`replies.${kind}.phase\` must be \`rcpt\`: a model decides each recipient at RCPT`);
  }
  const { unknownFraction, fullMailboxFraction } = model.recipients;
  if (unknownFraction.fraction + fullMailboxFraction.fraction > 1) errors.push('`recipients`: unknownFraction and fullMailboxFraction add up to more than 1');
  if ((model.penalty === null) !== (model.replies.block === null)) errors.push('`penalty` and `replies.block` go together: both null, or both given');
  if ((model.greylisting === null) !== (model.replies.greylisted === null)) errors.push('`greylisting` and `replies.greylisted` go together: both null, or both given');
  return errors;
}

function checkReply(at: string, reply: ModelReply, classes: readonly string[]): string[] {
  const lines = reply.text.split('\n');
  const code = lines[0]!.slice(0, 3);
  const errors: string[] = [];
  if (!classes.includes(code[0]!)) errors.push(`\`${at}.text\` must be a ${classes.map((c) => `${c}xx`).join(' or ')} reply, not ${code}`);
  if (lines.length > 20) errors.push(`\`${at}.text\` has ${lines.length} lines; a reply may have at most 20`);
  lines.forEach((line, i) => {
    const sep = i === lines.length - 1 ? ' ' : '-';
    if (!line.startsWith(code + sep) || line.length < 5) errors.push(`\`${at}.text\` line ${i + 1} must start \`${code}${sep}\` and hold text (every line but the last \`NNN-\`, the last \`NNN \`)`);
    if (/[\x00-\x1f\x7f]/.test(line)) errors.push(`\`${at}.text\` line ${i + 1} holds a control character`);
  });
  for (const m of reply.text.matchAll(/\{([^}]*)\}/g)) {
    if (!['ip', 'rcpt', 'domain'].includes(m[1]!)) errors.push(`\`${at}.text\` has an unknown placeholder \`{${m[1]}}\`; known: {ip}, {rcpt}, {domain}`);
    else if (m[1] !== 'ip' && reply.phase !== 'rcpt' && reply.phase !== 'data') errors.push(`\`${at}.text\` uses \`{${m[1]}}\` at phase \`${reply.phase}\`, before there is a recipient`);
  }
  return errors;
}
