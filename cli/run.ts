/** `petrel run`: compile the policies, load the artifact, and deliver mail under it. */
import type { KeyObject } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { Ajv } from 'ajv';
import { packageRoot } from '../compiler/index.ts';
import { readSigningKey, createPolicyControl, createPolicyCluster, type PolicySource, openVersionStore } from '../runtime/policy/index.ts';
import { openRedisLink, type RedisConfig } from '../runtime/schedule/index.ts';
import { hostname } from 'node:os';
import { createPolicyCompiler } from './policy-compiler.ts';
import { startRuntime } from '../runtime/runtime.ts';
import { smtpLimitsFromConfig, type SmtpLimitsConfig, isPasswordHash, networkMatcher, type SubmissionOptions, type SubmissionUser, type DkimConfig, nodeResolver, type InboundAuthOptions } from '../runtime/intake/index.ts';
import { defaultSetName, EXIT, findPolicyFiles, parseCommandArgs, UsageError, type Io } from './common.ts';
import { loadConfiguredKeys, startDkimKeys } from './dkim-keys.ts';
import { bounceLoopConfig, type BounceLoopFileConfig } from './bounce-loop-config.ts';
import { tlsPolicyFromConfig, type DnsConfig, type TlsConfig } from './tls-policy-config.ts';

export const RUN_HELP = `usage: petrel run [options]

Start Petrel: compile the policies, load the artifact, accept mail over SMTP into the
durable spool, and deliver it under the policy. Stops on SIGTERM or SIGINT: no new mail is
accepted, deliveries in flight finish (up to --grace), everything else stays spooled.

options:
  --policies <path>     policy file or directory; repeat for several (default: policies, and
                        stdlib when the directory has one);
                        watched: a change is rebuilt, tested and goes live (see --no-watch)
  --no-watch            do not watch --policies for changes
  --policy-git <repo>   take the policies from a git repository (bare or not) instead
  --ref <ref>           the branch, tag or commit to follow in --policy-git (default: main)
  --policy-path <dir>   the folder inside the repository holding the policies (default: .)
  --poll <seconds>      how often to look at --ref for a new commit (default: 30; 0: only
                        when told: POST /api/v1/policy/reload, petrel reload, or the hook
                        that \`petrel hook install\` writes)
  --keep <n>            policy versions kept for rollback (default: 10)
  --spool <dir>         spool directory (default: var/spool)
  --acct <dir>          accounting directory (default: var/acct)
  --artifact <dir>      where policy versions are kept (default: var/artifact)
  --smtp <host:port>    SMTP submission listener (default: 127.0.0.1:2525)
  --http <host:port>    HTTP API listener (default: 127.0.0.1:8025): GET /api/v1/status,
                        GET /metrics (Prometheus), POST /api/v1/pause and /resume,
                        POST /api/v1/messages (JSON: from, to[], subject/text/html or raw,
                        headers, tenant, pool, campaign; 202 with the id once spooled),
                        GET /api/v1/policy, POST /api/v1/policy/reload, /rollback, /artifact,
                        POST /api/v1/sources/enable|disable, /api/v1/queue…, /api/v1/suppression…;
                        the live dashboard at GET /dashboard (docs/runtime.md; login with
                        an SMTP user's password: config dashboard.users, default none)
  --smtp-tls-key <file>  PEM private key for STARTTLS on SMTP submission (with --smtp-tls-cert)
  --smtp-tls-cert <file> PEM certificate chain for STARTTLS on SMTP submission
  --api-key-file <file> a file of HTTP API keys, one a line (repeat for several files);
                        also $PETREL_API_KEYS (comma-separated) and config http.apiKeys /
                        http.apiKeyFiles. With any key, every endpoint needs one
                        (Authorization: Bearer KEY or X-Api-Key); without any, only
                        loopback callers (Host localhost/127.0.0.1/[::1]) may call.
                        Requests with a foreign Origin are refused (403), POST bodies
                        must be application/json (415)
  --api-key <key>       an HTTP API key on the command line (visible in \`ps\`: prefer the
                        file or the environment)
  --deploy-public-key <file>
                        turn artifact upload (POST /api/v1/policy/artifact, petrel deploy)
                        on, accepting artifacts signed by this Ed25519 public key (PEM;
                        repeat for several; config deploy.publicKeys); needs an API key
  --mx-override <file>  JSON map of domain (or "*") to "host:port", used instead of DNS MX;
                        several hosts comma-separated, in preference order
  --grace <seconds>     how long shutdown waits for SMTP clients sending a message and for
                        deliveries in flight (default: 30); idle SMTP clients get 421 at once
  --delivery-threads <n>
                        worker threads for the SMTP client sessions (default: 1);
                        0 runs them on the main thread
  --config <file>       a JSON file with these options (schema: runtime/config.schema.json);
                        flags win over the file; an unknown or bad key exits 2 and names it.
                        SMTP AUTH users are set there only (smtp.users, password hashes
                        made by \`petrel hash-password\`), with smtp.allowInsecureAuth;
                        and the submission limits (smtp.maxMessageBytes, maxRecipients,
                        maxConnections, maxConnectionsPerIp, maxBufferedBytes,
                        idleTimeoutSeconds, maxSessionSeconds, minDataRateBytesPerSecond,
                        smtp.auth.*: failed-AUTH throttling), in docs/runtime.md's table;
                        and DKIM signing keys (dkim.keys, dkim.fallbackDomain: read again,
                        with the key files, on SIGHUP and POST /api/v1/dkim/reload);
                        and outbound TLS policy: dns.resolver (a loopback validating
                        resolver: DANE), tls.mtaSts, tls.extraCaFiles, tls.reportDir
                        (TLS-RPT files), in docs/runtime.md, "Outbound TLS";
                        and checks on received mail (inbound.dmarcReject,
                        dmarcQuarantine, spfFail: tag|reject; checkClientNetworks):
                        SPF, DKIM, DMARC, ARC and an Authentication-Results header, in
                        docs/runtime.md, "Checks on received mail";
                        and the bounce loop (tenants.*: dsn, delayDsn, suppressed,
                        webhook; feedback: secret, addresses, domains; webhooks:
                        allowPrivateTargets, maxPending): DSNs, suppression, feedback
                        reports and event webhooks; DSNs and suppression are on by
                        default (off: tenants: {"*": {"dsn": false, "suppressed":
                        "off"}}); docs/runtime.md, "Bounces, suppression, feedback and
                        webhooks" (also GET/POST /api/v1/queue…, /api/v1/suppression…:
                        petrel queue, petrel suppression)
  --redis <url>         share limits, reactions and the live policy version with the other
                        nodes on this Redis (redis://[user:pass@]host:port[/db]); config
                        \`redis\` also takes Sentinel and Redis Cluster, the node's name
                        (redis.node, unique per node) and the command timeout. Without it,
                        limits are this process's own. docs/runtime.md, "Several nodes"
  -h, --help            show this help

docs/runtime.md describes all of it, and what is not built yet.
exit codes: 0 stopped cleanly, 1 internal error, 2 usage error, 3 policy errors
`;

function listen(value: string, flag: string): { host: string; port: number } {
  const m = /^(.*):(\d+)$/.exec(value);
  if (!m) throw new UsageError(`\`${flag}\` takes host:port, not \`${value}\``);
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port: Number(m[2]) };
}

/** `host:port` as a client would write it (`[::1]:25`; `*:25` for every address). */
function hostPort(host: string, port: number): string {
  return `${host === '' ? '*' : host.includes(':') ? `[${host}]` : host}:${port}`;
}

/** The `inbound` section with its DNS: `dns.resolver` (checked by tlsPolicyFromConfig) and `dns.timeoutMs` when given. */
function inboundChecks(config: RunConfig): InboundAuthOptions {
  return { ...config.inbound, ...(config.dns?.resolver ? { resolver: nodeResolver(config.dns.resolver) } : {}), ...(config.dns?.timeoutMs ? { timeoutMs: config.dns.timeoutMs } : {}) };
}

/** The configuration file, as runtime/config.schema.json describes it. */
interface RunConfig extends BounceLoopFileConfig {
  policies?: string[];
  watch?: boolean;
  policyGit?: { repo: string; ref?: string; path?: string; pollSeconds?: number };
  keepVersions?: number;
  spool?: string;
  acct?: string;
  artifact?: string;
  ehlo?: string;
  maxInFlight?: number;
  deliveryThreads?: number;
  graceSeconds?: number;
  smtp?: { listen?: string; clientNetworks?: string[]; tls?: { key: string; cert: string }; users?: SubmissionUser[]; allowInsecureAuth?: boolean } & SmtpLimitsConfig;
  http?: { listen?: string; apiKeys?: string[]; apiKeyFiles?: string[]; keylessLoopback?: boolean; publicMetrics?: boolean };
  dashboard?: { users?: string[]; sessionMinutes?: number };
  deploy?: { publicKeys?: string[] };
  mxOverride?: Record<string, string>;
  dkim?: DkimConfig;
  dns?: DnsConfig;
  inbound?: Omit<InboundAuthOptions, 'resolver' | 'timeoutMs'>;
  tls?: TlsConfig;
  redis?: RedisConfig & { node?: string };
}

/** Reads and validates `--config`; a problem is a UsageError that names the key. */
function readConfig(file: string, shown: string): RunConfig {
  let data: unknown;
  try {
    data = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new UsageError(`cannot read config \`${shown}\`: ${(e as Error).message}`);
  }
  const validate = new Ajv({ allErrors: false, strict: true }).compile<RunConfig>(JSON.parse(readFileSync(path.join(packageRoot(), 'runtime', 'config.schema.json'), 'utf8')));
  if (validate(data)) return data;
  const e = validate.errors![0]!;
  const at = e.instancePath.slice(1).replace(/\//g, '.');
  const key = e.keyword === 'additionalProperties' ? [at, (e.params as { additionalProperty: string }).additionalProperty].filter(Boolean).join('.') : at;
  throw new UsageError(e.keyword === 'additionalProperties' ? `config \`${shown}\`: unknown key \`${key}\`` : `config \`${shown}\`: \`${key || '(top level)'}\` ${e.message}`);
}

/**
 * STARTTLS certificate (flags win over the file) and AUTH users for submission. Unreadable
 * files, a malformed password hash, and users without TLS (unless `allowInsecureAuth`)
 * are usage errors: AUTH must never be offered where a password would cross in clear.
 */
function submissionSecurity(keyFlag: string | undefined, certFlag: string | undefined, config: RunConfig, at: (p: string) => string): Pick<SubmissionOptions, 'tls' | 'users' | 'allowInsecureAuth'> {
  if ((keyFlag === undefined) !== (certFlag === undefined)) throw new UsageError('`--smtp-tls-key` and `--smtp-tls-cert` go together');
  const files = keyFlag !== undefined ? { key: keyFlag, cert: certFlag!, how: '--smtp-tls-' } : config.smtp?.tls ? { ...config.smtp.tls, how: 'smtp.tls.' } : undefined;
  const read = (file: string, what: string) => {
    try {
      return readFileSync(at(file));
    } catch (e) {
      throw new UsageError(`cannot read \`${what}\` ${file}: ${(e as Error).message}`);
    }
  };
  const tls = files ? { key: read(files.key, `${files.how}key`), cert: read(files.cert, `${files.how}cert`) } : undefined;
  const users = config.smtp?.users ?? [];
  users.forEach((u, i) => {
    if (!isPasswordHash(u.passwordHash)) throw new UsageError(`config: \`smtp.users.${i}.passwordHash\` is not a hash made by \`petrel hash-password\``);
  });
  const allowInsecureAuth = config.smtp?.allowInsecureAuth ?? false;
  if (users.length > 0 && !tls && !allowInsecureAuth) throw new UsageError('config: `smtp.users` needs `smtp.tls` (or `--smtp-tls-key`/`--smtp-tls-cert`), or `smtp.allowInsecureAuth: true`');
  return { ...(tls ? { tls } : {}), ...(users.length > 0 ? { users } : {}), allowInsecureAuth };
}

/**
 * The HTTP API's keys, from every place they may be given (all of them count): the
 * environment (`PETREL_API_KEYS`), key files (flag and config), `--api-key` and the
 * config; and the deploy public keys, which need an API key beside them.
 */
function httpSecurity(flags: { keys?: string[] | undefined; keyFiles?: string[] | undefined; deployKeys?: string[] | undefined }, config: RunConfig, at: (p: string) => string): { apiKeys: string[]; deployKeys: KeyObject[] } {
  const fromFile = (file: string) => {
    try {
      return readFileSync(at(file), 'utf8').split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
    } catch (e) {
      throw new UsageError(`cannot read API key file ${file}: ${(e as Error).message}`);
    }
  };
  const apiKeys = [...(process.env.PETREL_API_KEYS ?? '').split(',').map((k) => k.trim()).filter(Boolean), ...[...(flags.keyFiles ?? []), ...(config.http?.apiKeyFiles ?? [])].flatMap(fromFile), ...(flags.keys ?? []), ...(config.http?.apiKeys ?? [])];
  const weak = apiKeys.find((k) => !/^[\x21-\x7e]{8,512}$/.test(k));
  if (weak !== undefined) throw new UsageError(`an API key must be 8 to 512 printable characters without spaces; one given is ${weak.length} characters long`);
  const deployKeys = [...(flags.deployKeys ?? []), ...(config.deploy?.publicKeys ?? [])].map((file) => {
    try {
      return readSigningKey(at(file), 'public');
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
  });
  if (deployKeys.length > 0 && apiKeys.length === 0) throw new UsageError('artifact upload (`--deploy-public-key`, deploy.publicKeys) needs an API key too (`--api-key-file`, $PETREL_API_KEYS or http.apiKeys)');
  return { apiKeys, deployKeys };
}

export async function runCommand(argv: string[], io: Io): Promise<number> {
  const { values } = parseCommandArgs(argv, {
    policies: { type: 'string', multiple: true },
    spool: { type: 'string' },
    acct: { type: 'string' },
    artifact: { type: 'string' },
    smtp: { type: 'string' },
    http: { type: 'string' },
    'mx-override': { type: 'string' },
    grace: { type: 'string' },
    'delivery-threads': { type: 'string' },
    'api-key': { type: 'string', multiple: true },
    'api-key-file': { type: 'string', multiple: true },
    'deploy-public-key': { type: 'string', multiple: true },
    'smtp-tls-key': { type: 'string' },
    'smtp-tls-cert': { type: 'string' },
    config: { type: 'string' },
    'no-watch': { type: 'boolean' },
    'policy-git': { type: 'string' },
    ref: { type: 'string' },
    'policy-path': { type: 'string' },
    poll: { type: 'string' },
    keep: { type: 'string' },
    redis: { type: 'string' },
  });
  if (values.help) {
    io.out(RUN_HELP);
    return EXIT.ok;
  }
  const at = (p: string) => path.resolve(io.cwd, p);
  const config = values.config ? readConfig(at(values.config), values.config) : {};
  let mxOverride: Record<string, string> | undefined = config.mxOverride;
  if (values['mx-override']) {
    try {
      mxOverride = JSON.parse(readFileSync(at(values['mx-override']), 'utf8')) as Record<string, string>;
    } catch (e) {
      throw new UsageError(`cannot read \`--mx-override\` ${values['mx-override']}: ${(e as Error).message}`);
    }
    if (typeof mxOverride !== 'object' || mxOverride === null || Object.values(mxOverride).some((v) => typeof v !== 'string')) throw new UsageError('`--mx-override` must be a JSON object of domain → "host:port"');
  }
  const grace = Number(values.grace ?? config.graceSeconds ?? 30);
  if (!(grace >= 0)) throw new UsageError('`--grace` takes a number of seconds');
  try {
    networkMatcher(config.smtp?.clientNetworks ?? []);
  } catch (e) {
    throw new UsageError(`config: \`smtp.clientNetworks\`: ${(e as Error).message}`);
  }
  const submission = submissionSecurity(values['smtp-tls-key'], values['smtp-tls-cert'], config, at);
  const stranger = (config.dashboard?.users ?? []).find((u) => !(submission.users ?? []).some((s) => s.user === u));
  if (stranger !== undefined) throw new UsageError(`config: \`dashboard.users\` names \`${stranger}\`, who is not one of \`smtp.users\``);
  let smtpLimits: Partial<SubmissionOptions>;
  try {
    smtpLimits = smtpLimitsFromConfig(config.smtp ?? {});
  } catch (e) {
    throw new UsageError(`config: ${(e as Error).message}`);
  }
  let dkimKeys;
  try {
    dkimKeys = loadConfiguredKeys(config.dkim, at);
  } catch (e) {
    throw new UsageError(`config: ${(e as Error).message}`);
  }
  // Outbound TLS policy (MTA-STS, DANE, TLS-RPT): only with a dns or tls section.
  const bounceLoop = bounceLoopConfig(config, at);
  const outboundTls = config.dns || config.tls ? tlsPolicyFromConfig(config.dns, config.tls, at, at(values.spool ?? config.spool ?? 'var/spool')) : undefined;
  const { apiKeys, deployKeys } = httpSecurity({ keys: values['api-key'], keyFiles: values['api-key-file'], deployKeys: values['deploy-public-key'] }, config, at);
  const number = (value: string | undefined, flag: string, fallback: number, min: number) => {
    const n = Number(value ?? fallback);
    if (!Number.isInteger(n) || n < min) throw new UsageError(`\`${flag}\` takes a whole number of at least ${min}, not \`${value}\``);
    return n;
  };
  const gitRepo = values['policy-git'] ?? config.policyGit?.repo;
  if (!gitRepo && (values.ref || values['policy-path'] || values.poll)) throw new UsageError('`--ref`, `--policy-path` and `--poll` go with `--policy-git`');
  if (gitRepo && values.policies) throw new UsageError('give either `--policies` or `--policy-git`, not both');
  const threads = values['delivery-threads'] ?? config.deliveryThreads?.toString();
  // Given only when set: the runtime owns the default.
  const deliveryThreads = threads === undefined ? undefined : number(threads, '--delivery-threads', 0, 0);
  // Without --policies: `policies`, and `stdlib` where the directory has one (Petrel's own
  // checkout, or a team's edited copy); a repository from `petrel init` has none and uses
  // the packaged stdlib.
  const policyPaths = values.policies ?? config.policies ?? (existsSync(path.join(io.cwd, 'stdlib')) ? ['policies', 'stdlib'] : ['policies']);
  if (!gitRepo) findPolicyFiles(policyPaths, io.cwd); // a missing path is a usage error now, not a refusal later
  const source: PolicySource = gitRepo
    ? {
        kind: 'git',
        repo: at(gitRepo),
        ref: values.ref ?? config.policyGit?.ref ?? 'main',
        subdir: values['policy-path'] ?? config.policyGit?.path ?? '.',
        pollSeconds: number(values.poll ?? config.policyGit?.pollSeconds?.toString(), '--poll', 30, 0),
        name: path.basename(at(gitRepo)).replace(/\.git$/, ''),
      }
    : { kind: 'paths', paths: policyPaths, cwd: io.cwd, listInputs: () => findPolicyFiles(policyPaths, io.cwd), watch: !values['no-watch'] && (config.watch ?? true), name: defaultSetName(policyPaths, io.cwd) };
  const store = await openVersionStore(at(values.artifact ?? config.artifact ?? 'var/artifact'), { keep: number(values.keep ?? config.keepVersions?.toString(), '--keep', 10, 2) });
  const sharing = await joinCluster(values.redis, config.redis, { deployKeys, artifactDir: at(values.artifact ?? config.artifact ?? 'var/artifact'), log: (line) => io.err(`${line}\n`) });
  const control = createPolicyControl({ source, store, compiler: createPolicyCompiler(), deployKeys, log: (line) => io.err(`${line}\n`), ...(sharing ? { onLive: sharing.cluster.onLive } : {}) });
  let first;
  try {
    first = await control.initial();
  } catch (e) {
    io.err(`${(e as Error).message.trimEnd()}\npetrel: no policy version to run\n`);
    await control.close();
    await sharing?.link.close();
    return EXIT.policy;
  }
  const { artifact, manifest } = first.loaded;
  const smtpAt = listen(values.smtp ?? config.smtp?.listen ?? '127.0.0.1:2525', '--smtp');
  const httpAt = listen(values.http ?? config.http?.listen ?? '127.0.0.1:8025', '--http');
  // A reload re-reads the config file's dkim section (and only it).
  const dkim = startDkimKeys(dkimKeys, () => (values.config ? readConfig(at(values.config), values.config).dkim : undefined), at, (line) => io.err(`${line}\n`));
  const runtime = await startRuntime({
    artifact,
    manifest,
    httpRoutes: (req, res, helpers) => control.httpRoutes(req, res, helpers) || dkim.httpRoutes(req, res, helpers),
    dkim: dkim.signing,
    spoolDir: at(values.spool ?? config.spool ?? 'var/spool'),
    accountingDir: at(values.acct ?? config.acct ?? 'var/acct'),
    smtp: { ...smtpAt, ...smtpLimits, ...(config.smtp?.clientNetworks ? { clientNetworks: config.smtp.clientNetworks } : {}), ...submission, ...(config.inbound ? { inbound: inboundChecks(config) } : {}) },
    http: { ...httpAt, apiKeys, keylessLoopback: config.http?.keylessLoopback, publicMetrics: config.http?.publicMetrics },
    ...(config.ehlo ? { ehlo: config.ehlo } : {}),
    ...(config.maxInFlight ? { maxInFlight: config.maxInFlight } : {}),
    ...(deliveryThreads !== undefined ? { deliveryThreads } : {}),
    ...(mxOverride ? { mxOverride } : {}),
    ...(outboundTls ? { tlsPolicy: outboundTls.tlsPolicy } : {}),
    bounceLoop,
    ...(sharing ? { shared: { link: sharing.link, nodeId: sharing.nodeId, liveNodes: sharing.cluster.liveNodes, status: sharing.cluster.status } } : {}),
    dashboard: { ...config.dashboard, policyDir: at(values.artifact ?? config.artifact ?? 'var/artifact') },
  });
  control.attach(runtime);
  await sharing?.cluster.start({ control, current: () => runtime.policy().manifest });
  io.err(`petrel: policy ${manifest.name} ${manifest.version} (${manifest.hash.slice(0, 12)}); SMTP on ${hostPort(smtpAt.host, runtime.smtpPort)}, HTTP on ${hostPort(httpAt.host, runtime.httpPort)}\n`);
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  io.err('petrel: stopping\n');
  dkim.close();
  await control.close();
  await runtime.stop(grace * 1000);
  outboundTls?.tlsrpt.close();
  await sharing?.cluster.close();
  await sharing?.link.close();
  return EXIT.ok;
}

/**
 * With `--redis` or config `redis`: the link to Redis and this node's membership of the
 * cluster (policy/cluster.ts). A bad setting is a usage error; Redis being down is not
 * (the node starts on its share of every limit and joins when Redis answers).
 */
async function joinCluster(url: string | undefined, config: (RedisConfig & { node?: string }) | undefined, options: { deployKeys: KeyObject[]; artifactDir: string; log: (line: string) => void }) {
  if (url === undefined && config === undefined) return undefined;
  const settings: RedisConfig = { ...config, ...(url !== undefined ? { url } : {}) };
  if (settings.url !== undefined && !/^rediss?:\/\//.test(settings.url)) throw new UsageError(`\`--redis\` takes a redis:// or rediss:// URL, not \`${settings.url.slice(0, 80)}\``);
  const nodeId = config?.node ?? `${hostname()}-${process.pid}`;
  if (!/^[\w.:-]{1,128}$/.test(nodeId)) throw new UsageError('config: `redis.node` takes 1 to 128 letters, digits, `_`, `.`, `:` or `-`');
  let link;
  try {
    link = await openRedisLink(settings, { warn: options.log });
  } catch (e) {
    throw new UsageError(`config: \`redis\`: ${(e as Error).message}`);
  }
  const cluster = createPolicyCluster({ link, nodeId, log: options.log, artifactDir: options.artifactDir, ...(options.deployKeys.length > 0 ? { deployKeys: options.deployKeys } : {}) });
  return { link, nodeId, cluster };
}
