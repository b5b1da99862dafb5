/**
 * The dashboard's message search, over the message index (observe/message-index.ts):
 *
 *   GET /dashboard/api/messages?messageId=ID | id=QUEUE_ID | rcpt=GLOB [&limit=N]
 *       messages accepted in the last SEARCH_DAYS days, newest first, each `queued` (the
 *       spool still holds it: the queue API shows it and acts on it) or `finished`
 *   GET /dashboard/api/messages/QUEUE_ID
 *       one of them with its accounting trail and each finished recipient's outcome
 *
 * Bounds: one query field of at most 998 characters; at most 100 messages (default 20);
 * the index's own bound on the days read.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { finalOutcomes } from '../accounting-trail.ts';
import type { HttpHelpers } from '../http-api.ts';
import { percentDecoded } from '../text.ts';
import { SEARCH_DAYS, type IndexedMessage, type MessageIndex, type MessageQuery } from '../message-index.ts';

export interface MessageSearchDeps {
  index: Pick<MessageIndex, 'find'>;
  /** Whether the spool still holds message `id`. */
  queued(id: string): boolean;
  /** The accounting lines of an indexed message (accounting-trail.ts), written ones flushed first. */
  trail(m: IndexedMessage): Promise<string[]>;
  clock(): number;
}

const MAX_LIMIT = 100;
const MAX_QUERY = 998;
const FIELDS = ['messageId', 'id', 'rcpt'] as const;

/** The query of a search URL, or what is wrong with it. */
function queryOf(q: URLSearchParams): { query: MessageQuery; limit: number } | string {
  const given = FIELDS.filter((k) => q.has(k));
  if (given.length !== 1) return 'give exactly one of `messageId`, `id` or `rcpt`';
  const key = given[0]!;
  const value = q.get(key)!.trim();
  if (value === '' || value.length > MAX_QUERY) return `\`${key}\` takes 1 to ${MAX_QUERY} characters`;
  const limit = Number(q.get('limit') ?? 20);
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT) return `\`limit\` takes a whole number from 1 to ${MAX_LIMIT}`;
  return { query: { [key]: value } as MessageQuery, limit };
}

export function messageSearchRoutes(deps: MessageSearchDeps): (req: IncomingMessage, res: ServerResponse, h: HttpHelpers) => void {
  const stateOf = (m: IndexedMessage) => ({ ...m, state: deps.queued(m.id) ? 'queued' : 'finished' });
  const answer = async (req: IncomingMessage, res: ServerResponse, { send }: HttpHelpers) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const one = /^\/dashboard\/api\/messages\/([\x21-\x7e]{1,256})$/.exec(url.pathname)?.[1];
    if (one !== undefined) {
      const id = percentDecoded(one);
      if (id === undefined) return send(res, 400, { error: 'the queue id in the path is not valid percent-encoding' });
      const [m] = await deps.index.find({ id }, deps.clock(), 1);
      if (!m) return send(res, 404, { error: `no message \`${id.slice(0, 256)}\` accepted in the last ${SEARCH_DAYS} days` });
      const accounting = await deps.trail(m);
      return send(res, 200, { ...stateOf(m), outcomes: finalOutcomes(accounting), accounting });
    }
    if (url.pathname !== '/dashboard/api/messages') return send(res, 404, { error: 'not found' });
    const parsed = queryOf(url.searchParams);
    if (typeof parsed === 'string') return send(res, 400, { error: parsed });
    const found = await deps.index.find(parsed.query, deps.clock(), parsed.limit);
    send(res, 200, { searchedDays: SEARCH_DAYS, messages: found.map(stateOf) });
  };
  return (req, res, h) => void answer(req, res, h).catch((e: Error) => h.send(res, 500, { error: e.message }));
}
