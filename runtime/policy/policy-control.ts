/**
 * Hot reload: where the running policy comes from, how a new version is built, tested and
 * made current, and how an operator sees and steers it.
 *
 * A version goes live only through {@link PolicyControl}: built in the compile worker
 * (never on the delivery path), its `test` blocks passed, written to the version store and
 * loaded there (ABI check and self-test), recorded in the history, and then swapped in
 * with `Runtime.swapPolicy` — one assignment on the main thread, where every decision is
 * made, so the scheduler and every delivery see the new version from their next decision
 * on. Anything short of that is a refusal: the running version stays, the refusal is kept
 * with its diagnostics for `GET /api/v1/policy`, logged, and counted in
 * `petrel_policy_refusals_total`.
 *
 * Builds run one at a time, in the order asked. From git, a commit already built is not
 * built again.
 */
import type { KeyObject } from 'node:crypto';
import { existsSync, watch, type FSWatcher } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import path from 'node:path';
import { Counter } from 'prom-client';
import type { ArtifactManifest } from '../abi.ts';
import { verifyUpload } from './artifact-signature.ts';
import { checkDeployRequest, MAX_DEPLOY_BYTES } from './deploy-request.ts';
import type { ArtifactTexts } from './loader.ts';
import type { CompileAnswer, PolicyCompiler, Problem } from './policy-compiler.ts';
import { commitInfo, exportCommit, resolveRef } from './policy-git.ts';
import type { LoadedVersion, VersionEntry, VersionOrigin, VersionStore } from './policy-versions.ts';
import type { HttpHelpers } from '../observe/index.ts';
import type { Runtime } from '../runtime.ts';

/** Where the policy comes from. */
export type PolicySource =
  | {
      kind: 'paths';
      /** As given (for display), and the `.policy` files they hold now (absolute). */
      paths: string[];
      cwd: string;
      listInputs: () => string[];
      /** Rebuild when a file under them changes (debounced). */
      watch: boolean;
      name: string;
    }
  | {
      kind: 'git';
      repo: string;
      ref: string;
      /** The folder inside the repository that holds the policies (`.` for all of it). */
      subdir: string;
      /** How often the ref is looked at; 0: only when told (hook, API, `petrel reload`). */
      pollSeconds: number;
      name: string;
    };

/** A version that did not go live, and why. */
export interface Refusal {
  at: string;
  trigger: string;
  commit?: string;
  /** Where it failed: `compile` (diagnostics), `test` (a failing expectation), `abi` (load, ABI check or self-test), `source` (git or files unreadable), `internal`. */
  stage: string;
  /** The diagnostics as `petrel check` prints them. */
  report: string;
  problems: Problem[];
}

export type ReloadOutcome =
  | { result: 'live'; entry: VersionEntry; ms: number }
  | { result: 'unchanged'; hash: string; commit?: string; ms: number }
  | { result: 'refused'; refusal: Refusal; hash: string; ms: number };

export interface PolicyDescription {
  current: VersionEntry | null;
  previous: VersionEntry[];
  /** Newest first, the last 20. */
  refusals: Refusal[];
  source: { kind: 'paths'; paths: string[]; watch: boolean } | { kind: 'git'; repo: string; ref: string; subdir: string; pollSeconds: number; lastCommit: string | null };
  reloads: number;
}

export interface PolicyControl {
  /**
   * The version to start with: the source built now, or — when that is refused — the
   * version that was live last time (kept in the store), with the refusal. Throws with
   * the refusal's report when there is neither.
   */
  initial(): Promise<{ loaded: LoadedVersion; entry: VersionEntry; refusal?: Refusal }>;
  /** Starts watching or polling, serves the HTTP routes, counts in the runtime's metrics. */
  attach(runtime: Runtime): void;
  reload(trigger: string, commit?: string): Promise<ReloadOutcome>;
  /** Back to a kept version: `to` (a hash or its prefix), else the one before the current. */
  rollback(to: string | undefined, trigger?: string): Promise<ReloadOutcome>;
  /** A version built elsewhere (`petrel deploy`): loaded, its tests run, then live. */
  deploy(texts: ArtifactTexts, tests: readonly unknown[], origin: VersionOrigin, signature?: string): Promise<ReloadOutcome>;
  /**
   * A version another node made live (policy/cluster.ts): installed and loaded here (ABI
   * check and self-test; `check` for more, e.g. the upload's signature), then live.
   */
  adopt(texts: ArtifactTexts, origin: VersionOrigin, check?: (loaded: LoadedVersion) => Promise<void>): Promise<ReloadOutcome>;
  describe(): PolicyDescription;
  /** For `startRuntime({ httpRoutes })`. */
  httpRoutes(req: IncomingMessage, res: ServerResponse, helpers: HttpHelpers): boolean;
  close(): Promise<void>;
}

export interface PolicyControlOptions {
  source: PolicySource;
  store: VersionStore;
  compiler: PolicyCompiler;
  log: (line: string) => void;
  /** Public keys whose signature an uploaded artifact must carry; none (the default): upload is off. */
  deployKeys?: readonly KeyObject[];
  clock?: () => number;
  /** Quiet time after the last file change before a rebuild (default 300 ms). */
  debounceMs?: number;
  /**
   * A version went live here after start-up (policy/cluster.ts publishes it to the other
   * nodes): with its texts when they are at hand (built or uploaded; not on a rollback),
   * and an upload's tests and signature.
   */
  onLive?: (entry: VersionEntry, texts: ArtifactTexts | undefined, upload?: { tests: readonly unknown[]; signature: string }) => void;
}

/** A hash names a directory of the version store: hex only, so it cannot name another path. */
const HASH = /^[0-9a-f]{16,128}$/;
const MAX_REFUSALS = 20;

class Refused extends Error {
  constructor(
    readonly stage: string,
    readonly report: string,
    readonly problems: Problem[] = [],
  ) {
    super(report);
  }
}

export function createPolicyControl(options: PolicyControlOptions): PolicyControl {
  const { source, store, compiler, log } = options;
  const clock = options.clock ?? Date.now;
  let runtime: Runtime | undefined;
  let queue: Promise<unknown> = Promise.resolve();
  const refusals: Refusal[] = [];
  /** The last commit built (live, unchanged or refused): polling does not build it again. */
  let lastCommit: string | null = null;
  let reloads = 0;
  const closers: (() => void)[] = [];
  let metrics: { reloads: Counter<'result'>; refusals: Counter } | undefined;

  /** Runs `task` after every earlier one: one build or swap at a time. */
  const serial = <T>(task: () => Promise<T>): Promise<T> => {
    const next = queue.then(task);
    queue = next.catch(() => undefined);
    return next;
  };

  const fromAnswer = (answer: CompileAnswer): ArtifactTexts => {
    if (answer.ok) {
      if (answer.warnings.trim()) log(answer.warnings.trimEnd());
      return answer.artifact;
    }
    throw new Refused(answer.stage, answer.report, answer.problems);
  };

  /** Builds what the source holds now (or at `commit`) in the compile worker. */
  async function build(commit: string | undefined): Promise<{ texts: ArtifactTexts; origin: Omit<VersionOrigin, 'trigger'> }> {
    if (source.kind === 'paths') {
      let inputs: string[];
      try {
        inputs = source.listInputs();
      } catch (e) {
        throw new Refused('source', `${(e as Error).message}\n`);
      }
      return { texts: fromAnswer(await compiler.build({ inputs, cwd: source.cwd, name: source.name })), origin: {} };
    }
    let exported: Awaited<ReturnType<typeof exportCommit>> | undefined;
    try {
      const at = commit ?? (await resolveRef(source.repo, source.ref));
      const info = await commitInfo(source.repo, at);
      exported = await exportCommit(source.repo, at);
      const root = path.join(exported.dir, source.subdir);
      const inputs = existsSync(root) ? await compiler.listInputs(root) : [];
      if (inputs.length === 0) throw new Refused('compile', `commit ${at.slice(0, 12)} has no .policy files under \`${source.subdir}\`\n`);
      const answer = await compiler.build({ inputs, cwd: root, name: source.name });
      return { texts: fromAnswer(answer), origin: { commit: at, subject: info.subject, author: info.author } };
    } catch (e) {
      if (e instanceof Refused) throw e;
      throw new Refused('source', `${(e as Error).message}\n`);
    } finally {
      await exported?.dispose();
    }
  }

  /**
   * Loads version `hash` (ABI check and self-test happen in the store's load) and, unless
   * it is the running version, records it in the history and makes it current.
   */
  async function goLive(hash: string, load: () => Promise<LoadedVersion>, origin: VersionOrigin, started: number, extraCheck?: (loaded: LoadedVersion) => Promise<void>, texts?: ArtifactTexts, upload?: { tests: readonly unknown[]; signature: string }): Promise<ReloadOutcome> {
    // Before the runtime starts (start-up), the running version is the one live last time.
    const current = runtime ? runtime.policy().manifest.hash : store.history().find((e) => e.replacedAt === undefined)?.hash;
    if (hash === current) return { result: 'unchanged', hash: current, ...(origin.commit ? { commit: origin.commit } : {}), ms: clock() - started };
    if (typeof hash !== 'string' || !HASH.test(hash)) throw new Refused('abi', `manifest hash \`${String(hash).slice(0, 80)}\` is not a hex digest\n`);
    let loaded: LoadedVersion;
    try {
      loaded = await load();
    } catch (e) {
      throw new Refused('abi', `${(e as Error).message}\n`);
    }
    await extraCheck?.(loaded);
    const entry = await store.activate(loaded.manifest, origin, clock());
    runtime?.swapPolicy(loaded.artifact, loaded.manifest);
    log(`petrel: policy ${short(entry.hash)} live (${describeOrigin(entry)}; ${clock() - started} ms)`);
    if (runtime) options.onLive?.(entry, texts, upload);
    return { result: 'live', entry, ms: clock() - started };
  }

  function refuse(e: unknown, origin: VersionOrigin, started: number): ReloadOutcome {
    const r = e instanceof Refused ? e : new Refused('internal', `${(e as Error).stack ?? String(e)}\n`);
    const refusal: Refusal = { at: new Date(clock()).toISOString(), trigger: origin.trigger, ...(origin.commit ? { commit: origin.commit } : {}), stage: r.stage, report: r.report, problems: r.problems };
    refusals.unshift(refusal);
    refusals.length = Math.min(refusals.length, MAX_REFUSALS);
    metrics?.refusals.inc();
    log(`petrel: policy refused (${describeOrigin(origin)}; stage ${r.stage}); ${runtime ? `still running ${short(runtime.policy().manifest.hash)}` : 'nothing running'}:\n${r.report.trimEnd()}`);
    return { result: 'refused', refusal, hash: runtime?.policy().manifest.hash ?? '', ms: clock() - started };
  }

  const counted = (outcome: ReloadOutcome): ReloadOutcome => {
    reloads++;
    metrics?.reloads.inc({ result: outcome.result });
    return outcome;
  };

  function reload(trigger: string, commit?: string): Promise<ReloadOutcome> {
    return serial(async () => {
      const started = clock();
      let origin: VersionOrigin = { trigger, ...(commit ? { commit } : {}) };
      const before = lastCommit;
      try {
        if (source.kind === 'git') {
          const at = commit ?? (await headOf(source));
          origin = { ...origin, commit: at };
          if (at === lastCommit) return counted({ result: 'unchanged', hash: runtime?.policy().manifest.hash ?? '', commit: at, ms: clock() - started });
          lastCommit = at;
        }
        const built = await build(origin.commit);
        origin = { ...origin, ...built.origin };
        return counted(await goLive(built.texts.manifest.hash, () => store.install(built.texts), origin, started, undefined, built.texts));
      } catch (e) {
        // A commit that could not be read (git, disk, a crashed worker) is tried again at the
        // next poll or push; one that was read and refused is not built again.
        if (!(e instanceof Refused) || e.stage === 'source' || e.stage === 'internal') lastCommit = before;
        return counted(refuse(e, origin, started));
      }
    });
  }

  async function initial(): Promise<{ loaded: LoadedVersion; entry: VersionEntry; refusal?: Refusal }> {
    const outcome = await reload('startup');
    const history = store.history();
    if (outcome.result === 'live') return { loaded: await store.load(outcome.entry.hash), entry: outcome.entry };
    const last = history.find((e) => e.replacedAt === undefined) ?? history[0];
    if (!last) throw new Error(outcome.result === 'refused' ? outcome.refusal.report : 'no policy version');
    const loaded = await store.load(last.hash);
    if (outcome.result === 'refused') {
      log(`petrel: starting on the last live version ${short(last.hash)} instead`);
      return { loaded, entry: last, refusal: outcome.refusal };
    }
    return { loaded, entry: last };
  }

  function rollback(to: string | undefined, trigger = 'rollback'): Promise<ReloadOutcome> {
    return serial(async () => {
      const started = clock();
      const current = runtime?.policy().manifest.hash;
      const history = store.history();
      const matches = [...new Set(history.filter((e) => (to ? e.hash.startsWith(to) : e.hash !== current)).map((e) => e.hash))];
      let origin: VersionOrigin = { trigger };
      try {
        if (matches.length === 0) throw new Refused('source', to ? `no kept version \`${to}\`\n` : 'no earlier version is kept\n');
        if (to && matches.length > 1) throw new Refused('source', `\`${to}\` names ${matches.length} kept versions; give more of the hash\n`);
        const kept = history.find((e) => e.hash === matches[0])!;
        // The version keeps its own commit and author; the trigger says it came back by rollback.
        origin = { trigger, ...(kept.commit ? { commit: kept.commit } : {}), ...(kept.subject ? { subject: kept.subject } : {}), ...(kept.author ? { author: kept.author } : {}) };
        return counted(await goLive(kept.hash, () => store.load(kept.hash), origin, started));
      } catch (e) {
        return counted(refuse(e, origin, started));
      }
    });
  }

  function adopt(texts: ArtifactTexts, origin: VersionOrigin, check?: (loaded: LoadedVersion) => Promise<void>): Promise<ReloadOutcome> {
    return serial(async () => {
      const started = clock();
      try {
        return counted(await goLive(texts.manifest.hash, () => store.install(texts), origin, started, check, texts));
      } catch (e) {
        return counted(refuse(e, origin, started));
      }
    });
  }

  function deploy(texts: ArtifactTexts, tests: readonly unknown[], origin: VersionOrigin, signature?: string): Promise<ReloadOutcome> {
    return serial(async () => {
      const started = clock();
      try {
        return counted(
          await goLive(texts.manifest.hash, () => store.install(texts), origin, started, async () => {
            // The uploaded tests run in the injected compiler's worker, against the same texts.
            const answer = await compiler.test({ artifact: texts, tests });
            if (!answer.ok) throw new Refused(answer.stage, answer.report, answer.problems);
          }, texts, signature !== undefined ? { tests, signature } : undefined),
        );
      } catch (e) {
        return counted(refuse(e, origin, started));
      }
    });
  }

  function describe(): PolicyDescription {
    const [current, ...previous] = store.history();
    return {
      current: current ?? null,
      previous,
      refusals: refusals.map((r) => ({ ...r })),
      source: source.kind === 'paths' ? { kind: 'paths', paths: source.paths, watch: source.watch } : { kind: 'git', repo: source.repo, ref: source.ref, subdir: source.subdir, pollSeconds: source.pollSeconds, lastCommit },
      reloads,
    };
  }

  function attach(r: Runtime): void {
    runtime = r;
    metrics = {
      reloads: new Counter({ name: 'petrel_policy_reloads_total', help: 'Policy reloads by result: live, unchanged or refused', labelNames: ['result'], registers: [r.registry] }),
      refusals: new Counter({ name: 'petrel_policy_refusals_total', help: 'Policy versions refused (syntax error, failing test, ABI or self-test)', registers: [r.registry] }),
    };
    if (source.kind === 'paths' && source.watch) {
      let timer: NodeJS.Timeout | undefined;
      const changed = () => {
        clearTimeout(timer);
        timer = setTimeout(() => void reload('watch'), options.debounceMs ?? 300);
      };
      for (const p of source.paths) {
        let w: FSWatcher;
        try {
          w = watch(path.resolve(source.cwd, p), { recursive: true }, changed);
        } catch (e) {
          log(`petrel: cannot watch ${p}: ${(e as Error).message}`);
          continue;
        }
        w.on('error', (e) => log(`petrel: watching ${p}: ${e.message}`));
        closers.push(() => w.close());
      }
      closers.push(() => clearTimeout(timer));
    }
    if (source.kind === 'git' && source.pollSeconds > 0) {
      const poll = setInterval(() => {
        resolveRef(source.repo, source.ref).then(
          (at) => {
            if (at !== lastCommit) void reload('poll', at);
          },
          (e: Error) => log(`petrel: polling ${source.repo} ${source.ref}: ${e.message}`),
        );
      }, source.pollSeconds * 1000);
      poll.unref();
      closers.push(() => clearInterval(poll));
    }
  }

  function httpRoutes(req: IncomingMessage, res: ServerResponse, helpers: HttpHelpers): boolean {
    const { send, admit } = helpers;
    const url = (req.url ?? '').split('?')[0];
    if (url === '/api/v1/policy') {
      if (req.method !== 'GET') send(res, 405, { error: 'use GET' });
      else if (admit(req, res, 'read')) send(res, 200, describe());
      return true;
    }
    const action = /^\/api\/v1\/policy\/(reload|rollback|artifact)$/.exec(url ?? '')?.[1];
    if (!action) return false;
    if (req.method !== 'POST') send(res, 405, { error: 'use POST' });
    else if (action === 'artifact') uploadRoute(req, res, helpers);
    else if (admit(req, res, 'write')) controlRoute(action, req, res, helpers);
    return true;
  }

  const answer = (res: ServerResponse, send: HttpHelpers['send']) => (outcome: ReloadOutcome) => send(res, outcome.result === 'refused' ? 422 : 200, outcome);

  /** `reload` and `rollback`: small bodies of names and hashes. */
  function controlRoute(action: string, req: IncomingMessage, res: ServerResponse, { send, readJson }: HttpHelpers): void {
    void readJson(req, res, 64 * 1024).then((parsed) => {
      if (parsed === undefined) return;
      const body = (typeof parsed === 'object' && parsed !== null ? parsed : {}) as Record<string, unknown>;
      const text = (k: string) => (typeof body[k] === 'string' ? (body[k] as string) : undefined);
      if (action === 'rollback') {
        const to = text('to');
        if (to !== undefined && !/^[0-9a-f]{4,128}$/.test(to)) return send(res, 400, { error: '`to` must be a version hash or a prefix of it (hex)' });
        return void rollback(to).then(answer(res, send));
      }
      const commit = text('commit');
      if (commit !== undefined && !/^[0-9a-f]{7,64}$/.test(commit)) return send(res, 400, { error: '`commit` must be a hex commit id' });
      const trigger = text('trigger') ?? 'api';
      if (!/^[\x20-\x7e]{1,64}$/.test(trigger)) return send(res, 400, { error: '`trigger` must be 1 to 64 printable characters' });
      if (text('ref') !== undefined && source.kind === 'git' && text('ref') !== source.ref && text('ref') !== `refs/heads/${source.ref}`) return send(res, 200, { result: 'ignored', reason: `this runtime follows ${source.ref}` });
      const outcome = reload(trigger, commit);
      if (body.wait === false) return send(res, 202, { result: 'accepted' });
      return void outcome.then(answer(res, send));
    });
  }

  /**
   * `artifact` (`petrel deploy`): off unless deploy keys are configured; needs an API key;
   * the body's shape is checked, then its signature — before anything of it is written or
   * evaluated.
   */
  function uploadRoute(req: IncomingMessage, res: ServerResponse, { send, admit, readJson }: HttpHelpers): void {
    const keys = options.deployKeys ?? [];
    if (keys.length === 0) return send(res, 403, { error: 'artifact upload is off: start petrel run with --deploy-public-key (config deploy.publicKeys) to accept signed artifacts' });
    if (!admit(req, res, 'deploy')) return;
    void readJson(req, res, MAX_DEPLOY_BYTES).then((parsed) => {
      if (parsed === undefined) return;
      const checked = checkDeployRequest(parsed);
      if (!checked.ok) return send(res, 400, { error: `${checked.error} (send the artifact as \`petrel deploy\` does)` });
      const { artifact, tests, signature, author, subject, commit } = checked.request;
      if (!verifyUpload({ ...artifact, tests }, signature, keys)) {
        log(`petrel: artifact upload refused: not signed by a configured deploy key (hash ${escapeLogText(artifact.manifest.hash.slice(0, 12))})`);
        return send(res, 403, { error: 'the artifact is not signed by a configured deploy key (sign it with `petrel deploy --sign KEYFILE`)' });
      }
      void deploy(artifact, tests, { trigger: 'deploy', ...(author ? { author } : {}), ...(subject ? { subject } : {}), ...(commit ? { commit } : {}) }, signature).then(answer(res, send));
    });
  }

  return {
    initial,
    attach,
    reload,
    rollback,
    deploy,
    adopt,
    describe,
    httpRoutes,
    async close() {
      for (const c of closers.splice(0)) c();
      await queue;
      await compiler.close();
    },
  };
}

/** The commit the followed ref names now; a git failure is a refusal at stage `source`. */
async function headOf(source: { repo: string; ref: string }): Promise<string> {
  try {
    return await resolveRef(source.repo, source.ref);
  } catch (e) {
    throw new Refused('source', `${(e as Error).message}\n`);
  }
}

const short = (hash: string) => hash.slice(0, 12);

/** Where a version came from, for a log line: every part escaped, since requests and commits supply them. */
function describeOrigin(o: VersionOrigin): string {
  const parts = [o.trigger];
  if (o.commit) parts.push(`commit ${o.commit.slice(0, 12)}${o.subject ? ` "${o.subject}"` : ''}`);
  if (o.author) parts.push(`by ${o.author}`);
  return escapeLogText(parts.join(', '));
}

/**
 * Text from outside (requests, commits) as it may appear inside one log line: line breaks
 * and other control characters (C0, DEL, C1, U+2028/9) and backslashes escaped, so it can
 * neither end the line nor forge another.
 */
export function escapeLogText(text: string): string {
  const named: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t', '\\': '\\\\' };
  return text.replace(/[\\\x00-\x1f\x7f-\x9f\u2028\u2029]/g, (c) => named[c] ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
