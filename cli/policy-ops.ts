/**
 * The commands that steer the policy of a running `petrel run` through its HTTP API:
 * `reload`, `rollback`, `deploy`, and `hook install` (a git post-receive hook that tells
 * the runtime about a push).
 */
import type { KeyObject } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname, userInfo } from 'node:os';
import path from 'node:path';
import { COMPILER_VERSION, compile, diskHost, renderDiagnostics, runTests } from '../compiler/index.ts';
import { readSignedArtifact, readSigningKey, signUpload, importArtifactText, type ArtifactTexts } from '../runtime/policy/index.ts';
import { testFailures } from './policy-compiler.ts';
import { defaultSetName, EXIT, findPolicyFiles, parseCommandArgs, UsageError, type Io } from './common.ts';

export const KEY = `  --api-key-file <file> a file holding an API key of the runtime (its first line);
                        default: $PETREL_API_KEY, else none (a loopback runtime
                        without keys answers keyless calls)
  --api-key <key>       the key itself (visible in \`ps\`: prefer the file or the environment)`;
const CONNECTION = `  --url <url>           the runtime's HTTP API (default: http://127.0.0.1:8025)
${KEY}`;

export const RELOAD_HELP = `usage: petrel reload [options]

Tell a running \`petrel run\` to build its policy source now (the directory, or the
--policy-git ref), test it, and make it current if it passes. Prints the outcome.

options:
${CONNECTION}
  -h, --help            show this help

exit codes: 0 live or unchanged, 1 the runtime could not be reached, 2 usage error,
3 refused (the diagnostics are printed; the running version stays)
`;

export const ROLLBACK_HELP = `usage: petrel rollback [options]

Switch a running \`petrel run\` back to a version it kept (GET /api/v1/policy lists them),
atomically, the way a new version goes live.

options:
  --to <hash>           the version (its hash, or a unique prefix); default: the one before
${CONNECTION}
  -h, --help            show this help

exit codes: 0 switched (or already current), 1 unreachable, 2 usage error, 3 refused
`;

export const DEPLOY_HELP = `usage: petrel deploy [options] <paths…> --to <url> --sign <keyfile>
       petrel deploy --artifact <dir> --to <url>

Build the policy files here, run their test blocks, sign the artifact and its tests with
an Ed25519 private key, and upload them to a running \`petrel run\`, which checks the
signature against its --deploy-public-key before it writes or evaluates anything, then
loads the artifact, checks its ABI, runs the tests again against the loaded module and
makes it current. Nothing is uploaded when the build or a test fails. With --artifact, the
directory \`petrel build --sign\` wrote is uploaded as it is (signed where it was built).
The runtime must have artifact upload on and needs an API key for it.

options:
  --to <url>            the runtime's HTTP API (required), e.g. http://10.0.0.5:8025
  --sign <keyfile>      Ed25519 private key (PEM) to sign with (\`petrel keygen\`)
  --artifact <dir>      upload a built and signed artifact instead of building <paths>
${KEY}
  --name <name>         the set's name (default: the first path's base name)
  --message <text>      what this version is, shown in GET /api/v1/policy
  -h, --help            show this help

exit codes: 0 live or unchanged, 1 unreachable, 2 usage error (also a refused key or
signature), 3 build, test or refusal
`;

export const HOOK_HELP = `usage: petrel hook install <repo> --notify <url> [options]

Write a git post-receive hook into <repo> (a bare repository that engineers push to) that
tells a running \`petrel run --policy-git <repo>\` about every push to --ref, so the new
commit is built, tested and live within seconds instead of at the next poll.

options:
  --notify <url>        the runtime's HTTP API, e.g. http://127.0.0.1:8025 (required)
  --ref <branch>        the branch to notify about (default: main)
  --api-key <key>       an API key of the runtime, written into the hook
  --wait                make the push wait for the outcome and print it to the pusher
                        (live, or refused with the diagnostics)
  --force               replace a post-receive hook that petrel did not write
  -h, --help            show this help

exit codes: 0 written, 2 usage error
`;

const HOOK_MARK = '# petrel post-receive hook';

export interface Answer {
  status: number;
  body: Record<string, unknown>;
}

/** POSTs `body` as JSON to the runtime's API (GETs when `body` is undefined); an unreachable runtime is `Unreachable` (see `guarded`). */
export async function call(url: string, apiPath: string, apiKey: string | undefined, body: unknown): Promise<Answer> {
  let res: Response;
  try {
    res = await fetch(new URL(apiPath, url), {
      method: body === undefined ? 'GET' : 'POST',
      headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...(apiKey ? { authorization: `Bearer ${apiKey}` } : {}) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
  } catch (e) {
    throw new Unreachable(`cannot reach ${url}: ${(e as Error & { cause?: Error }).cause?.message ?? (e as Error).message}`);
  }
  const text = await res.text();
  try {
    return { status: res.status, body: JSON.parse(text) as Record<string, unknown> };
  } catch {
    return { status: res.status, body: { error: text } };
  }
}

class Unreachable extends Error {}

/** Prints a reload/rollback/deploy answer; returns the exit code. */
function report(answer: Answer, io: Io): number {
  const b = answer.body;
  if (b.result === 'live') {
    const e = b.entry as { hash: string; trigger: string; commit?: string };
    io.out(`live: ${e.hash}${e.commit ? ` (commit ${e.commit.slice(0, 12)})` : ''}\n`);
    return EXIT.ok;
  }
  if (b.result === 'unchanged') {
    io.out(`unchanged: ${String(b.hash)}\n`);
    return EXIT.ok;
  }
  if (b.result === 'refused') {
    const r = b.refusal as { stage: string; report: string; commit?: string };
    io.err(`refused at ${r.stage}${r.commit ? ` (commit ${r.commit.slice(0, 12)})` : ''}; still running ${String(b.hash)}\n${r.report}`);
    return EXIT.policy;
  }
  io.err(`the runtime answered ${answer.status}: ${String(b.error ?? JSON.stringify(b))}\n`);
  return [400, 401, 403, 415].includes(answer.status) ? EXIT.usage : EXIT.internal;
}

export async function guarded(io: Io, f: () => Promise<number>): Promise<number> {
  try {
    return await f();
  } catch (e) {
    if (!(e instanceof Unreachable)) throw e;
    io.err(`${e.message}\n`);
    return EXIT.internal;
  }
}

const keyOptions = { 'api-key': { type: 'string' }, 'api-key-file': { type: 'string' } } as const;
const connection = { url: { type: 'string' }, ...keyOptions } as const;

/** The API key to send: `--api-key`, else the first line of `--api-key-file`, else $PETREL_API_KEY. */
export function apiKeyOf(values: { 'api-key'?: string | undefined; 'api-key-file'?: string | undefined }, io: Io): string | undefined {
  if (values['api-key'] !== undefined) return values['api-key'];
  const file = values['api-key-file'];
  if (file === undefined) return process.env.PETREL_API_KEY || undefined;
  let text: string;
  try {
    text = readFileSync(path.resolve(io.cwd, file), 'utf8');
  } catch (e) {
    throw new UsageError(`cannot read \`--api-key-file\` ${file}: ${(e as Error).message}`);
  }
  const key = text.split(/\r?\n/).map((l) => l.trim()).find((l) => l !== '' && !l.startsWith('#'));
  if (key === undefined) throw new UsageError(`\`--api-key-file\` ${file} holds no key`);
  return key;
}

export async function reloadCommand(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parseCommandArgs(argv, connection);
  if (values.help) return io.out(RELOAD_HELP), EXIT.ok;
  if (positionals.length > 0) throw new UsageError(`unexpected \`${positionals[0]}\``);
  return guarded(io, async () => report(await call(values.url ?? 'http://127.0.0.1:8025', '/api/v1/policy/reload', apiKeyOf(values, io), { trigger: 'petrel reload' }), io));
}

export async function rollbackCommand(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parseCommandArgs(argv, { ...connection, to: { type: 'string' } });
  if (values.help) return io.out(ROLLBACK_HELP), EXIT.ok;
  if (positionals.length > 0) throw new UsageError(`unexpected \`${positionals[0]}\``);
  if (values.to !== undefined && !/^[0-9a-f]{4,128}$/.test(values.to)) throw new UsageError('`--to` takes a version hash or a prefix of it (hex)');
  return guarded(io, async () => report(await call(values.url ?? 'http://127.0.0.1:8025', '/api/v1/policy/rollback', apiKeyOf(values, io), values.to ? { to: values.to } : {}), io));
}

export async function deployCommand(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parseCommandArgs(argv, { to: { type: 'string' }, ...keyOptions, sign: { type: 'string' }, artifact: { type: 'string' }, name: { type: 'string' }, message: { type: 'string' } });
  if (values.help) return io.out(DEPLOY_HELP), EXIT.ok;
  if (!values.to) throw new UsageError('`--to URL` is required');
  if (values.artifact !== undefined && (positionals.length > 0 || values.sign !== undefined)) throw new UsageError('`--artifact DIR` uploads a built, signed artifact: give no paths and no `--sign`');
  if (values.artifact === undefined && positionals.length === 0) throw new UsageError('name at least one policy file or directory (or `--artifact DIR`)');
  if (values.artifact === undefined && values.sign === undefined) throw new UsageError('`--sign KEYFILE` is required: the runtime accepts only signed artifacts');
  const apiKey = apiKeyOf(values, io);
  const upload = values.artifact !== undefined ? await signedDirectory(path.resolve(io.cwd, values.artifact)) : await buildAndSign(positionals, values.sign!, values.name, io);
  if (upload === undefined) return EXIT.policy;
  const body = { ...upload, author: `${userInfo().username}@${hostname()}`, ...(values.message ? { subject: values.message } : {}) };
  return guarded(io, async () => report(await call(values.to!, '/api/v1/policy/artifact', apiKey, body), io));
}

/** Builds `paths`, runs their tests (undefined, reported, when either fails) and signs the artifact with them. */
async function buildAndSign(paths: string[], keyFile: string, name: string | undefined, io: Io): Promise<{ artifact: ArtifactTexts; tests: unknown; signature: string } | undefined> {
  const key = signingKey(keyFile, io);
  const result = await compile({ inputs: findPolicyFiles(paths, io.cwd), host: diskHost(io.cwd), name: name ?? defaultSetName(paths, io.cwd) });
  io.err(renderDiagnostics(result.diagnostics, 'human', { sources: result.sources, toolVersion: COMPILER_VERSION }));
  if (!result.artifact) return undefined;
  const tests = result.ir!.tests;
  const failures = testFailures(runTests(tests, await importArtifactText(result.artifact)));
  if (failures) {
    io.err(`${failures.report}petrel deploy: nothing uploaded\n`);
    return undefined;
  }
  return { artifact: result.artifact, tests, signature: signUpload({ ...result.artifact, tests }, key) };
}

async function signedDirectory(dir: string): Promise<Awaited<ReturnType<typeof readSignedArtifact>>> {
  try {
    return await readSignedArtifact(dir);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/** The private key of `--sign`; a usage error naming the file when it is not an Ed25519 key. */
export function signingKey(file: string, io: Io): KeyObject {
  try {
    return readSigningKey(path.resolve(io.cwd, file), 'private');
  } catch (e) {
    throw new UsageError(`\`--sign\`: ${(e as Error).message}`);
  }
}

export async function hookCommand(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parseCommandArgs(argv, { notify: { type: 'string' }, ref: { type: 'string' }, 'api-key': { type: 'string' }, wait: { type: 'boolean' }, force: { type: 'boolean' } });
  if (values.help) return io.out(HOOK_HELP), EXIT.ok;
  const [verb, repoArg, ...rest] = positionals;
  if (verb !== 'install') throw new UsageError(verb === undefined ? 'say `petrel hook install <repo> --notify <url>`' : `unknown hook command \`${verb}\`; only \`install\``);
  if (!repoArg || rest.length > 0) throw new UsageError('name one repository');
  if (!values.notify) throw new UsageError('`--notify URL` is required');
  let notify: URL;
  try {
    notify = new URL(values.notify);
  } catch {
    throw new UsageError(`\`--notify\` takes a URL, not \`${values.notify}\``);
  }
  const repo = path.resolve(io.cwd, repoArg);
  const hooksDir = existsSync(path.join(repo, '.git')) ? path.join(repo, '.git', 'hooks') : path.join(repo, 'hooks');
  if (!existsSync(path.join(hooksDir, '..', 'HEAD'))) throw new UsageError(`\`${repoArg}\` is not a git repository`);
  const file = path.join(hooksDir, 'post-receive');
  if (existsSync(file) && !readFileSync(file, 'utf8').includes(HOOK_MARK) && !values.force) throw new UsageError(`${file} exists and was not written by petrel; use --force to replace it`);
  const ref = (values.ref ?? 'main').replace(/^refs\/heads\//, '');
  writeFileSync(file, hookScript({ url: notify.href, ref: `refs/heads/${ref}`, apiKey: values['api-key'], wait: values.wait ?? false }));
  chmodSync(file, 0o755);
  io.err(`wrote ${file}: pushes to ${ref} notify ${notify.href}\n`);
  return EXIT.ok;
}

const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/**
 * The hook: for each updated ref on stdin (`old new name`), a push to the followed branch
 * POSTs `{commit, ref, trigger}` to /api/v1/policy/reload with Node (the one that wrote
 * the hook, by absolute path). A runtime that cannot be reached does not fail the push:
 * the runtime's poll picks the commit up later.
 */
function hookScript(o: { url: string; ref: string; apiKey: string | undefined; wait: boolean }): string {
  const notifier = `
const [url, commit, ref, key, wait] = process.argv.slice(1);
fetch(new URL('/api/v1/policy/reload', url), {
  method: 'POST',
  headers: { 'content-type': 'application/json', ...(key ? { authorization: 'Bearer ' + key } : {}) },
  body: JSON.stringify({ commit, ref, trigger: 'post-receive', wait: wait === 'wait' }),
  signal: AbortSignal.timeout(wait === 'wait' ? 60000 : 5000),
}).then(async (res) => {
  const b = await res.json().catch(() => ({}));
  if (b.result === 'live') console.log('petrel: ' + commit.slice(0, 12) + ' is live as ' + b.entry.hash.slice(0, 12));
  else if (b.result === 'refused') console.log('petrel: ' + commit.slice(0, 12) + ' REFUSED at ' + b.refusal.stage + '; still running ' + b.hash.slice(0, 12) + '\\n' + b.refusal.report);
  else if (res.status >= 300) console.log('petrel: the runtime answered ' + res.status + ': ' + (b.error || ''));
  else if (b.result === 'accepted') console.log('petrel: notified ' + url);
}, (e) => console.log('petrel: could not notify ' + url + ': ' + e.message));
`.trim();
  return `#!/bin/sh
${HOOK_MARK}, written by \`petrel hook install\`.
# For each pushed ref (stdin: old new name), a push to ${o.ref} asks the runtime at
# ${o.url} to build, test and load that commit. An unreachable runtime does not fail the
# push; the runtime's own poll of the ref catches up.
PETREL_URL=${quote(o.url)}
PETREL_REF=${quote(o.ref)}
PETREL_API_KEY=${quote(o.apiKey ?? '')}
PETREL_WAIT=${o.wait ? 'wait' : 'nowait'}
while read old new name; do
  [ "$name" = "$PETREL_REF" ] || continue
  [ "$new" = "0000000000000000000000000000000000000000" ] && continue
  ${quote(process.execPath)} -e ${quote(notifier)} "$PETREL_URL" "$new" "$name" "$PETREL_API_KEY" "$PETREL_WAIT"
done
exit 0
`;
}
