/**
 * `petrel suppression ls|add|remove|import|export`: a running `petrel run`'s per-tenant
 * suppression list, through its HTTP API (runtime/observe/queue-api.ts).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { apiKeyOf, call, guarded } from './policy-ops.ts';
import { failed, LISTING_OPTIONS } from './queue.ts';
import { EXIT, parseCommandArgs, UsageError, type Io } from './common.ts';

export const SUPPRESSION_HELP = `usage: petrel suppression ls [--tenant T] [--offset N] [--limit N] [--json]
       petrel suppression add|remove <address…> [--tenant T] [--reason R]
       petrel suppression import <file> [--tenant T]
       petrel suppression export [--tenant T]

A tenant's suppression list: addresses Petrel refuses (or drops, by tenant setting) at
submission because they hard-bounced (bad-mailbox, bad-domain, inactive-mailbox) or
complained, or because an operator added them. Without --tenant: messages without a
tenant (ls and export without --tenant: every tenant).

  import <file>   one address a line, or the JSON lines \`export\` prints (reason kept);
                  blank lines and # comments are skipped; at most 100,000 a call
  export          JSON lines, one entry each: tenant, address, reason, at, detail

options:
  --tenant <name>       the tenant
  --reason <reason>     for add: manual (default), bad-mailbox, bad-domain,
                        inactive-mailbox or complaint
${LISTING_OPTIONS}

exit codes: 0 done, 1 the runtime could not be reached, 2 usage error (also a refused
API key or a bad address)
`;

const VERBS = ['ls', 'add', 'remove', 'import', 'export'] as const;
const PAGE = 1000;

export async function suppressionCommand(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parseCommandArgs(argv, { tenant: { type: 'string' }, reason: { type: 'string' }, offset: { type: 'string' }, limit: { type: 'string' }, json: { type: 'boolean' }, to: { type: 'string' }, 'api-key': { type: 'string' }, 'api-key-file': { type: 'string' } });
  if (values.help) return io.out(SUPPRESSION_HELP), EXIT.ok;
  const [verb, ...args] = positionals;
  if (!VERBS.includes(verb as (typeof VERBS)[number])) throw new UsageError(verb === undefined ? 'say what to do: ls, add, remove, import or export' : `unknown suppression command \`${verb}\`; ls, add, remove, import or export`);
  const url = values.to ?? 'http://127.0.0.1:8025';
  const apiKey = apiKeyOf(values, io);
  const tenant = values.tenant ?? '';
  const get = (offset: number, limit: number) => call(url, `/api/v1/suppression?${new URLSearchParams({ ...(values.tenant !== undefined ? { tenant } : {}), offset: String(offset), limit: String(limit) })}`, apiKey, undefined);
  return guarded(io, async () => {
    if (verb === 'ls' || verb === 'export') {
      if (args.length > 0) throw new UsageError(`\`${verb}\` takes no addresses`);
      let offset = verb === 'ls' ? Number(values.offset ?? 0) : 0;
      // `export` pages through everything; `ls` prints one page.
      for (;;) {
        const answer = await get(offset, verb === 'ls' ? Number(values.limit ?? 100) : PAGE);
        if (answer.status !== 200) return failed(answer, io);
        const entries = answer.body.entries as { tenant: string; address: string; reason: string; at: number; detail: string }[];
        if (verb === 'ls') {
          if (values.json) io.out(`${JSON.stringify(answer.body, null, 2)}\n`);
          else io.out(`${entries.map((e) => `${e.address}  ${e.reason}  ${new Date(e.at).toISOString()}  ${e.tenant || '-'}  ${e.detail}\n`).join('')}${entries.length} of ${String(answer.body.total)} suppressed address(es)\n`);
          return EXIT.ok;
        }
        io.out(entries.map((e) => `${JSON.stringify(e)}\n`).join(''));
        if (entries.length < PAGE) return EXIT.ok;
        offset += entries.length;
      }
    }
    if (verb === 'remove') {
      if (args.length === 0) throw new UsageError('name the addresses to remove');
      const answer = await call(url, '/api/v1/suppression/remove', apiKey, { tenant, addresses: args });
      if (answer.status !== 200) return failed(answer, io);
      io.out(`removed ${String(answer.body.removed)} of ${args.length}\n`);
      return EXIT.ok;
    }
    const entries = verb === 'add' ? args.map((address) => ({ address, reason: values.reason ?? 'manual' })) : readImport(args, io);
    if (entries.length === 0) throw new UsageError(verb === 'add' ? 'name the addresses to add' : 'the file holds no addresses');
    const answer = await call(url, '/api/v1/suppression/add', apiKey, { tenant, entries });
    if (answer.status !== 200) return failed(answer, io);
    io.out(`added ${String(answer.body.added)}; ${String(answer.body.total)} suppressed in all\n`);
    return EXIT.ok;
  });
}

/** The entries of an import file: plain addresses, or the JSON lines `export` prints. */
function readImport(args: string[], io: Io): { address: string; reason?: string; detail?: string }[] {
  if (args.length !== 1) throw new UsageError('`import` takes one file');
  let text: string;
  try {
    text = readFileSync(path.resolve(io.cwd, args[0]!), 'utf8');
  } catch (e) {
    throw new UsageError(`cannot read ${args[0]}: ${(e as Error).message}`);
  }
  return text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l, i) => {
      if (!l.startsWith('{')) return { address: l };
      try {
        const e = JSON.parse(l) as { address: string; reason?: string; detail?: string };
        return { address: e.address, ...(e.reason ? { reason: e.reason } : {}), ...(e.detail ? { detail: e.detail } : {}) };
      } catch {
        throw new UsageError(`${args[0]}:${i + 1}: not an address or a JSON line`);
      }
    });
}
