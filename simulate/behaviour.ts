/**
 * A checked provider model as the numbers a simulated provider runs on: every duration in
 * milliseconds multiplied by a time `scale` (0.01 makes an hour 36 s), replies split into
 * code and lines, sources dropped. Also what a model says about one recipient (unknown,
 * full, or deliverable), decided from the address alone so that runs are reproducible.
 */
import { createHash } from 'node:crypto';
import type { ModelPhase, ModelReply, ProviderModel, Rate } from './model.ts';

/** `count` events per `windowMs`, sliding. */
export interface WindowLimit {
  count: number;
  windowMs: number;
}

/** A reply ready to send: `code`, then each line's text after `NNN-`/`NNN `. */
export interface BehaviourReply {
  code: number;
  lines: string[];
  phase: ModelPhase;
}

/** What a simulated provider runs on; every time in (scaled) milliseconds. */
export interface ProviderBehaviour {
  name: string;
  route: string;
  domains: string[];
  scale: number;
  networkPrefix: { ipv4: number; ipv6: number };
  limits: {
    messagesPerIp: WindowLimit | null;
    messagesPerNetwork: WindowLimit | null;
    connectionsPerIp: number | null;
    connectionsPerNetwork: number | null;
    connectsPerIp: WindowLimit | null;
  };
  deferral: { durationMs: number; allowedRate: WindowLimit | null };
  penalty: { attemptsWhileDeferred: number; durationMs: number } | null;
  recipients: { unknownFraction: number; fullMailboxFraction: number };
  greylisting: { delayMs: number } | null;
  latency: { bannerMs: number; commandMs: number; dataMs: number };
  replies: {
    deferral: BehaviourReply;
    block: BehaviourReply | null;
    tooManyConnections: BehaviourReply;
    unknownUser: BehaviourReply;
    fullMailbox: BehaviourReply;
    greylisted: BehaviourReply | null;
  };
}

/** The smallest and largest time scale: a model's hour as 3.6 ms at least, 1000 h at most. */
export const MIN_SCALE = 1e-6;
export const MAX_SCALE = 1000;

/** The model's behaviour with time multiplied by `scale` (1: real time). */
export function behaviourOf(model: ProviderModel, options: { scale?: number } = {}): ProviderBehaviour {
  const scale = options.scale ?? 1;
  // INVARIANT: a bad scale is a caller's bug (tests and the CLI check user input first).
  if (!(scale >= MIN_SCALE && scale <= MAX_SCALE)) throw new RangeError(`scale ${scale} is outside ${MIN_SCALE}..${MAX_SCALE}`);
  const ms = (seconds: number) => seconds * 1000 * scale;
  const window = (r: Rate | null): WindowLimit | null => (r ? { count: r.count, windowMs: ms(r.windowSeconds) } : null);
  const reply = (r: ModelReply): BehaviourReply => {
    const lines = r.text.split('\n');
    return { code: Number(lines[0]!.slice(0, 3)), lines: lines.map((l) => l.slice(4)), phase: r.phase };
  };
  const { limits, replies } = model;
  return {
    name: model.name,
    route: model.route,
    domains: [...model.domains],
    scale,
    networkPrefix: { ipv4: model.network.ipv4PrefixLength.bits, ipv6: model.network.ipv6PrefixLength.bits },
    limits: {
      messagesPerIp: window(limits.messagesPerIp),
      messagesPerNetwork: window(limits.messagesPerNetwork),
      connectionsPerIp: limits.connectionsPerIp?.count ?? null,
      connectionsPerNetwork: limits.connectionsPerNetwork?.count ?? null,
      connectsPerIp: window(limits.connectsPerIp),
    },
    deferral: { durationMs: ms(model.deferral.duration.seconds), allowedRate: window(model.deferral.allowedRate) },
    penalty: model.penalty ? { attemptsWhileDeferred: model.penalty.attemptsWhileDeferred.count, durationMs: ms(model.penalty.duration.seconds) } : null,
    recipients: { unknownFraction: model.recipients.unknownFraction.fraction, fullMailboxFraction: model.recipients.fullMailboxFraction.fraction },
    greylisting: model.greylisting ? { delayMs: ms(model.greylisting.delay.seconds) } : null,
    latency: { bannerMs: model.latency.banner.ms * scale, commandMs: model.latency.command.ms * scale, dataMs: model.latency.data.ms * scale },
    replies: {
      deferral: reply(replies.deferral),
      block: replies.block ? reply(replies.block) : null,
      tooManyConnections: reply(replies.tooManyConnections),
      unknownUser: reply(replies.unknownUser),
      fullMailbox: reply(replies.fullMailbox),
      greylisted: replies.greylisted ? reply(replies.greylisted) : null,
    },
  };
}

/** What becomes of a recipient at a provider. */
export type RecipientFate = 'deliverable' | 'unknown' | 'full';

/**
 * The recipient's fate under these fractions: a hash of the lower-cased address, read as a
 * number in [0, 1), below `unknownFraction` is unknown, below that plus `fullMailboxFraction`
 * is full. INVARIANT: the same address has the same fate in every run and for every model
 * with the same fractions.
 */
export function recipientFate(recipients: ProviderBehaviour['recipients'], address: string): RecipientFate {
  const digest = createHash('sha256').update(address.toLowerCase()).digest();
  const u = digest.readUIntBE(0, 6) / 2 ** 48;
  if (u < recipients.unknownFraction) return 'unknown';
  if (u < recipients.unknownFraction + recipients.fullMailboxFraction) return 'full';
  return 'deliverable';
}

/** A reply with its placeholders filled: `{ip}`, `{rcpt}`, `{domain}` (the recipient's). */
export function renderReply(reply: BehaviourReply, fill: { ip: string; rcpt?: string }): { code: number; lines: string[] } {
  const domain = fill.rcpt?.slice(fill.rcpt.lastIndexOf('@') + 1) ?? '';
  const values: Record<string, string> = { ip: fill.ip, rcpt: fill.rcpt ?? '', domain };
  return { code: reply.code, lines: reply.lines.map((l) => l.replace(/\{(ip|rcpt|domain)\}/g, (_, k: string) => values[k]!)) };
}

/** A rendered reply as one string, lines joined by `\n` as the policies' examples write them. */
export function replyText(reply: { code: number; lines: string[] }): string {
  return reply.lines.map((l, i) => `${reply.code}${i < reply.lines.length - 1 ? '-' : ' '}${l}`).join('\n');
}
