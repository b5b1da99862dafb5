/**
 * `petrel queue ls|show|retry|delete|bounce`: the queued mail of a running `petrel run`,
 * through its HTTP API (runtime/observe/queue-api.ts), like `petrel source` (policy-ops.ts:
 * the call, the API key, an unreachable runtime).
 */
import { apiKeyOf, call, guarded, KEY, type Answer } from './policy-ops.ts';
import { EXIT, parseCommandArgs, UsageError, type Io } from './common.ts';

/** The options \`petrel queue\` and \`petrel suppression\` share, as their help shows them. */
export const LISTING_OPTIONS = `  --offset <n>, --limit <n>   the page of \`ls\` (default 0 and 100; at most 1000)
  --json                print the API's answer as JSON
  --to <url>            the runtime's HTTP API (default: http://127.0.0.1:8025)
${KEY}
  -h, --help            show this help`;

export const QUEUE_HELP = `usage: petrel queue ls [filters] [--offset N] [--limit N] [--json]
       petrel queue show <id> [--json]
       petrel queue retry|delete|bounce <id…> | [filters] | --all

List the messages a running \`petrel run\` holds, show one (its recipients with their
attempts, next attempt and queue, and its accounting trail), or act on them:
  retry    try every open recipient now (a deferral due at once; accounted \`t\`)
  delete   finish every open recipient without a DSN (accounted \`b\`, petrel;deleted by operator)
  bounce   finish every open recipient and send the sender a DSN (accounted \`b\`)
A change needs ids, a filter or --all.

filters (all given must match):
  --route <route>       a recipient's route (provider name, or \`default\`)
  --domain <domain>     a recipient's domain
  --source <source>     a source the message may go out from
  --tenant <tenant>     the message's tenant
  --older <seconds>     received at least this long ago
  --rcpt <glob>         a recipient matching this pattern (\`*@gmail.com\`, case-insensitive)

options:
${LISTING_OPTIONS}

exit codes: 0 done, 1 the runtime could not be reached, 2 usage error (also a refused
API key), 3 no such message
`;

const FILTERS = ['route', 'domain', 'source', 'tenant', 'older', 'rcpt'] as const;
const VERBS = ['ls', 'show', 'retry', 'delete', 'bounce'] as const;
type Verb = (typeof VERBS)[number];

export async function queueCommand(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parseCommandArgs(argv, {
    route: { type: 'string' },
    domain: { type: 'string' },
    source: { type: 'string' },
    tenant: { type: 'string' },
    older: { type: 'string' },
    rcpt: { type: 'string' },
    offset: { type: 'string' },
    limit: { type: 'string' },
    all: { type: 'boolean' },
    json: { type: 'boolean' },
    to: { type: 'string' },
    'api-key': { type: 'string' },
    'api-key-file': { type: 'string' },
  });
  if (values.help) return io.out(QUEUE_HELP), EXIT.ok;
  const [verb, ...ids] = positionals;
  if (!VERBS.includes(verb as Verb)) throw new UsageError(verb === undefined ? 'say what to do: ls, show, retry, delete or bounce' : `unknown queue command \`${verb}\`; ls, show, retry, delete or bounce`);
  const filter: Record<string, string> = Object.fromEntries(FILTERS.flatMap((f) => (values[f] !== undefined ? [[f, values[f]]] : [])));
  const url = values.to ?? 'http://127.0.0.1:8025';
  const apiKey = apiKeyOf(values, io);
  const print = (answer: Answer, text: (b: Record<string, unknown>) => string) => {
    if (answer.status !== 200) return failed(answer, io);
    io.out(values.json ? `${JSON.stringify(answer.body, null, 2)}\n` : text(answer.body));
    return EXIT.ok;
  };
  if (verb === 'ls') {
    if (ids.length > 0) throw new UsageError('`ls` takes filters, not ids');
    const query = new URLSearchParams({ ...filter, ...(values.offset ? { offset: values.offset } : {}), ...(values.limit ? { limit: values.limit } : {}) });
    return guarded(io, async () => print(await call(url, `/api/v1/queue?${query}`, apiKey, undefined), listText));
  }
  if (verb === 'show') {
    if (ids.length !== 1) throw new UsageError('`show` takes one queue id');
    return guarded(io, async () => print(await call(url, `/api/v1/queue/${encodeURIComponent(ids[0]!)}`, apiKey, undefined), showText));
  }
  if (ids.length === 0 && Object.keys(filter).length === 0 && !values.all) throw new UsageError(`\`${verb}\` needs ids, a filter or --all`);
  const body = { ...filter, ...(filter.older !== undefined ? { older: Number(filter.older) } : {}), ...(ids.length > 0 ? { ids } : {}), ...(values.all ? { all: true } : {}) };
  const done = verb === 'retry' ? 'retried' : verb === 'delete' ? 'deleted' : 'bounced';
  return guarded(io, async () => print(await call(url, `/api/v1/queue/${verb}`, apiKey, body), (b) => `${done} ${(b[done] as string[]).length} message(s)${(b[done] as string[]).length > 0 ? `: ${(b[done] as string[]).join(' ')}` : ''}\n`));
}

interface Listed {
  id: string;
  from: string;
  tenant: string;
  receivedAt: number;
  recipients: { rcpt: string; attempts: number; nextAttemptAt: number | null; queue: string | null }[];
}

const when = (ms: number | null) => (ms === null ? '-' : new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z'));

function listText(b: Record<string, unknown>): string {
  const messages = b.messages as Listed[];
  const lines = messages.map((m) => `${m.id}  ${when(m.receivedAt)}  ${m.tenant || '-'}  <${m.from}>  ${m.recipients.map((r) => r.rcpt).join(', ')}`);
  return `${lines.join('\n')}${lines.length > 0 ? '\n' : ''}${messages.length} of ${String(b.total)} queued message(s) from ${String(b.offset)}\n`;
}

function showText(b: Record<string, unknown>): string {
  const m = b as unknown as Listed & { campaign: string; pool: string; size: number; accounting: string[] };
  return [
    `id        ${m.id}`,
    `from      <${m.from}>`,
    `received  ${when(m.receivedAt)}  (${m.size} bytes)`,
    `tenant    ${m.tenant || '-'}   campaign ${m.campaign || '-'}   pool ${m.pool || '-'}`,
    'recipients:',
    ...m.recipients.map((r) => `  ${r.rcpt}  attempts ${r.attempts}  next ${when(r.nextAttemptAt)}  queue ${r.queue ?? '-'}`),
    `accounting (${m.accounting.length}):`,
    ...m.accounting.map((l) => `  ${l}`),
    '',
  ].join('\n');
}

/** Prints a refusal; returns the exit code. */
export function failed(answer: Answer, io: Io): number {
  io.err(`the runtime answered ${answer.status}: ${String(answer.body.error ?? JSON.stringify(answer.body))}\n`);
  if (answer.status === 404) return EXIT.policy;
  return [400, 401, 403, 405, 413, 415].includes(answer.status) ? EXIT.usage : EXIT.internal;
}
