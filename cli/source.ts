/**
 * `petrel source enable|disable NAME`: an operator's switch for one source of a running
 * `petrel run`, through its HTTP API (POST /api/v1/sources/enable|disable), like `petrel
 * reload` and `rollback` (policy-ops.ts: the call, the API key, an unreachable runtime).
 */
import { apiKeyOf, call, guarded, KEY, type Answer } from './policy-ops.ts';
import { EXIT, parseCommandArgs, UsageError, type Io } from './common.ts';

export const SOURCE_HELP = `usage: petrel source enable|disable <name> [options]

Disable a source of a running \`petrel run\` (it sends nothing more there, and mail waits
for another source of its pool or for the enable), on one route or on every route; or
enable it again where a rule (\`disable source\`) or an operator disabled it. An enabled
source comes back on the recovery ramp (10%, 25%, 50%, 75% of its limits, a quarter of
30 minutes each), and the mail it held goes out at once. Either is saved in the runtime's
state file at once and logged. GET /api/v1/status lists disabled sources.

options:
  --route <queue>       only this queue, as the status names it (\`provider:yahoo\`,
                        \`default/example.org\`); default: enable wherever it is
                        disabled, disable on every route
  --to <url>            the runtime's HTTP API (default: http://127.0.0.1:8025)
${KEY}
  -h, --help            show this help

exit codes: 0 done, 1 the runtime could not be reached, 2 usage error (also a refused
API key), 3 refused (no such source; not disabled there)
`;

const VERBS = ['enable', 'disable'] as const;

export async function sourceCommand(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parseCommandArgs(argv, { route: { type: 'string' }, to: { type: 'string' }, 'api-key': { type: 'string' }, 'api-key-file': { type: 'string' } });
  if (values.help) return io.out(SOURCE_HELP), EXIT.ok;
  const [verb, name, ...rest] = positionals;
  if (!VERBS.includes(verb as (typeof VERBS)[number])) throw new UsageError(verb === undefined ? 'say `petrel source enable NAME` or `petrel source disable NAME`' : `unknown source command \`${verb}\`; \`enable\` or \`disable\``);
  if (name === undefined) throw new UsageError(`name the source to ${verb}`);
  if (rest.length > 0) throw new UsageError(`unexpected \`${rest[0]}\``);
  const body = { source: name, ...(values.route !== undefined ? { route: values.route } : {}) };
  const apiKey = apiKeyOf(values, io);
  return guarded(io, async () => report(verb as (typeof VERBS)[number], await call(values.to ?? 'http://127.0.0.1:8025', `/api/v1/sources/${verb}`, apiKey, body), io));
}

const where = (queues: unknown) => (Array.isArray(queues) && queues.length > 0 ? queues.map((q) => (q === '*' ? 'every route' : String(q))).join(', ') : 'nowhere');

/** Prints what changed; returns the exit code. */
function report(verb: (typeof VERBS)[number], answer: Answer, io: Io): number {
  const b = answer.body;
  if (answer.status === 200) {
    const changed = b[verb === 'enable' ? 'enabled' : 'disabled'] as unknown[];
    io.out(changed.length > 0 ? `${verb}d ${String(b.source)} on ${where(changed)}${verb === 'enable' ? ' (recovery ramp)' : ''}; disabled now on ${where(b.disabledOn)}\n` : `${String(b.source)} was already disabled there; disabled now on ${where(b.disabledOn)}\n`);
    return EXIT.ok;
  }
  io.err(`the runtime answered ${answer.status}: ${String(b.error ?? JSON.stringify(b))}\n`);
  if (answer.status === 404 || answer.status === 409) return EXIT.policy;
  return [400, 401, 403, 413, 415].includes(answer.status) ? EXIT.usage : EXIT.internal;
}
