/**
 * The system tools the test suite runs besides npm packages (its peers), provisioned
 * before any test starts: vitest's `globalSetup`, so `npm test` and `npx vitest run FILE`
 * both get it. A peer that is missing is installed from Debian once (as root, with
 * apt-get, non-interactively, under a lock so two runs do not apt at once); where that is
 * not possible the run fails at once with one line naming what is missing and the command
 * that installs it. No test is skipped because a peer is missing.
 *
 * A new peer is one line in `PEERS`. A peer that listens (redis-server, …) is started on a
 * free loopback port and stopped by PID with `startService`.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { accessSync, constants, openSync, readFileSync, rmSync, writeSync, closeSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/** A system tool the tests run, and where it comes from. */
export interface Peer {
  /** The executable's name. */
  tool: string;
  /** The Debian package that installs it. */
  debian: string;
  /** Which tests need it, for the message when it is missing. */
  neededBy: string;
  /** debconf answers that keep the package's install from asking anything. */
  debconf?: readonly string[];
}

/** Postfix is a library of SMTP tools here, never a running mail server: install it unconfigured. */
const POSTFIX_UNCONFIGURED = ['postfix postfix/main_mailer_type select No configuration'];

/** Every peer the suite needs. */
export const PEERS: readonly Peer[] = [
  { tool: 'openssl', debian: 'openssl', neededBy: 'the TLS tests (self-signed certificates)' },
  { tool: 'smtp-source', debian: 'postfix', neededBy: 'test/cli/run-crash.test.ts', debconf: POSTFIX_UNCONFIGURED },
  { tool: 'smtp-sink', debian: 'postfix', neededBy: 'listening SMTP peers (startService; test/global-setup.test.ts)', debconf: POSTFIX_UNCONFIGURED },
  { tool: 'dkimverify', debian: 'python3-dkim', neededBy: 'the DKIM tests (dkimpy, the verifier independent of mailauth: test/runtime/fixtures/dkim.ts)' },
  { tool: 'nsd', debian: 'nsd', neededBy: 'the DANE tests (the signed zones\' authoritative server: test/runtime/deliver/tls-policy-peers.ts)' },
  { tool: 'unbound', debian: 'unbound', neededBy: 'the DANE tests (the validating resolver whose AD bit counts)' },
  { tool: 'ldns-signzone', debian: 'ldnsutils', neededBy: 'the DANE tests (ldns-keygen and ldns-signzone sign the test zones)' },
  { tool: 'redis-server', debian: 'redis-server', neededBy: 'the cluster tests (several nodes sharing limits, reactions and versions: test/runtime/cluster*.test.ts, test/cli/cluster*.test.ts)' },
  { tool: 'chromium', debian: 'chromium', neededBy: 'test/simulate/report-browser.test.ts (the HTML report in headless Chromium, playwright-core)' },
];

/** What the decision depends on: the search path, who we are, and whether installing is allowed. */
export interface ProvisionHost {
  /** Directories searched for tools, as in $PATH. */
  PATH: string;
  /** Effective user id; only root (0) installs. */
  uid: number;
  /** `PETREL_PROVISION=never` forbids installing: a missing peer fails the run. */
  provision?: string;
}

/** Debian keeps daemons' tools in sbin, which is not on a non-root user's PATH. */
const SBIN = ['/usr/local/sbin', '/usr/sbin', '/sbin'];

/** The absolute path of executable `tool` on `PATH` or in sbin, or undefined. */
export function findTool(tool: string, PATH: string): string | undefined {
  for (const dir of [...PATH.split(path.delimiter).filter(Boolean), ...SBIN]) {
    const file = path.join(dir, tool);
    try {
      accessSync(file, constants.X_OK);
      return file;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** Nothing to do, the Debian packages to install, or why the run cannot go on. */
export type ProvisionPlan = { kind: 'ready' } | { kind: 'install'; packages: string[]; debconf: string[]; missing: Peer[] } | { kind: 'fail'; message: string };

/** Decides, from the file system and `host` alone, what provisioning `peers` takes. */
export function planProvision(peers: readonly Peer[], host: ProvisionHost): ProvisionPlan {
  const missing = peers.filter((p) => findTool(p.tool, host.PATH) === undefined);
  if (missing.length === 0) return { kind: 'ready' };
  const packages = [...new Set(missing.map((p) => p.debian))];
  const debconf = [...new Set(missing.flatMap((p) => p.debconf ?? []))];
  const why = host.provision === 'never' ? 'PETREL_PROVISION=never' : host.uid !== 0 ? 'not root' : findTool('apt-get', host.PATH) === undefined ? 'no apt-get' : undefined;
  if (why === undefined) return { kind: 'install', packages, debconf, missing };
  const what = missing.map((p) => `${p.tool} (for ${p.neededBy})`).join(', ');
  return { kind: 'fail', message: `petrel tests: missing ${what} and cannot install (${why}); as root run: ${installCommand(packages, debconf)}` };
}

/** The shell command that installs `packages` as provisioning does. */
export function installCommand(packages: readonly string[], debconf: readonly string[]): string {
  const preseed = debconf.map((line) => `echo '${line}' | debconf-set-selections && `).join('');
  return `${preseed}apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${packages.join(' ')}`;
}

/** The process's own view: $PATH, its uid, $PETREL_PROVISION. */
export function processHost(): ProvisionHost {
  return { PATH: process.env.PATH ?? '', uid: process.getuid?.() ?? -1, ...(process.env.PETREL_PROVISION ? { provision: process.env.PETREL_PROVISION } : {}) };
}

/**
 * Makes every peer available or throws one line saying what is missing and how to install
 * it. Installs at most once per package, holding `lockFile` while it decides and installs.
 */
export async function provision(peers: readonly Peer[], host: ProvisionHost, log: (line: string) => void, lockFile = path.join(tmpdir(), 'petrel-provision.lock')): Promise<void> {
  const first = planProvision(peers, host);
  if (first.kind === 'fail') throw new Error(first.message);
  if (first.kind === 'ready') return;
  const release = await acquireLock(lockFile);
  try {
    // Decided again under the lock: another run may have installed meanwhile.
    const plan = planProvision(peers, host);
    if (plan.kind !== 'install') return;
    aptInstall(plan, log);
    const still = peers.filter((p) => findTool(p.tool, host.PATH) === undefined).map((p) => p.tool);
    if (still.length > 0) throw new Error(`petrel tests: installed ${plan.packages.join(', ')} but still cannot find ${still.join(', ')}`);
  } finally {
    release();
  }
}

/** apt-get's own lock is waited for too, up to this long, and an install is bounded by it. */
const APT_TIMEOUT_S = 600;

function run(command: string, args: string[], input?: string): void {
  const r = spawnSync(command, args, { input, encoding: 'utf8', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }, timeout: APT_TIMEOUT_S * 1000, maxBuffer: 64 << 20 });
  if (r.status === 0) return;
  const tail = `${r.stdout ?? ''}${r.stderr ?? ''}`.trim().split('\n').slice(-5).join(' | ');
  throw new Error(`petrel tests: \`${command} ${args.join(' ')}\` failed (${r.error?.message ?? `exit ${r.status ?? r.signal}`}): ${tail}`);
}

/** Preseeds debconf, refreshes the package lists only when apt does not know a package, installs, one line each. */
function aptInstall(plan: Extract<ProvisionPlan, { kind: 'install' }>, log: (line: string) => void): void {
  if (plan.debconf.length > 0) run('debconf-set-selections', [], plan.debconf.join('\n') + '\n');
  const known = (pkg: string) => spawnSync('apt-cache', ['show', '--no-all-versions', pkg], { stdio: 'ignore' }).status === 0;
  if (!plan.packages.every(known)) run('apt-get', ['update', '-q']);
  for (const pkg of plan.packages) {
    const started = Date.now();
    run('apt-get', ['install', '-y', '-q', '--no-install-recommends', '-o', `DPkg::Lock::Timeout=${APT_TIMEOUT_S}`, pkg]);
    const tools = plan.missing.filter((p) => p.debian === pkg).map((p) => p.tool);
    log(`petrel tests: installed Debian package ${pkg} (${tools.join(', ')}) with apt-get in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  }
}

/** How long a run waits for another run's install before giving up. */
const LOCK_WAIT_MS = 15 * 60_000;

/** Takes `file` as a lock holding our PID (a dead holder's lock is taken over); returns its release. */
async function acquireLock(file: string): Promise<() => void> {
  const end = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    try {
      const fd = openSync(file, 'wx');
      writeSync(fd, String(process.pid));
      closeSync(fd);
      return () => rmSync(file, { force: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    if (!isAlive(Number(readOr(file, '')))) rmSync(file, { force: true });
    else if (Date.now() > end) throw new Error(`petrel tests: another run has held ${file} for ${LOCK_WAIT_MS / 60_000} min while installing peers; remove it if that run is gone`);
    else await sleep(500);
  }
}

function readOr(file: string, fallback: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return fallback;
  }
}

function isAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** vitest's globalSetup: provision every peer before the first test file runs. */
export async function setup(): Promise<void> {
  try {
    await provision(PEERS, processHost(), (line) => process.stderr.write(`${line}\n`));
  } catch (e) {
    // The message is the whole story (what is missing, how to install it): no stack under it.
    throw Object.assign(new Error((e as Error).message), { stack: (e as Error).message });
  }
}

// ---------------------------------------------------------------------------------------
// services: peers that listen

/** A peer process listening on a loopback port. */
export interface Service {
  port: number;
  pid: number;
  /** SIGTERM by PID, SIGKILL after `ms`; resolves once it has exited. */
  stop(ms?: number): Promise<void>;
}

/** A port free on 127.0.0.1 now (the OS picks it; a service started next binds it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer().once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/**
 * Starts peer `tool` (found as provisioning finds it) with `args(port)` on a free loopback
 * port (or on `port`: a restart where the last one ran) and resolves once that port
 * accepts connections (within `readyMs`).
 */
export async function startService(tool: string, args: (port: number) => string[], readyMs = 10_000, port?: number): Promise<Service> {
  const file = findTool(tool, process.env.PATH ?? '');
  if (!file) throw new Error(`${tool} not found: the suite's globalSetup (test/global-setup.ts) provisions it`);
  port ??= await freePort();
  const child = spawn(file, args(port), { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => (stderr = (stderr + c.toString()).slice(-2000)));
  const service: Service = { port, pid: child.pid!, stop: (ms = 5_000) => stopChild(child, ms) };
  const end = Date.now() + readyMs;
  while (!(await accepts(port))) {
    if (child.exitCode !== null || child.signalCode !== null || Date.now() > end) {
      await service.stop();
      throw new Error(`${tool} did not listen on 127.0.0.1:${port} within ${readyMs} ms: ${stderr.trim()}`);
    }
    await sleep(25);
  }
  return service;
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port }, () => {
      socket.destroy();
      resolve(true);
    }).once('error', () => resolve(false));
  });
}

function stopChild(child: ChildProcess, ms: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const kill = setTimeout(() => process.kill(child.pid!, 'SIGKILL'), ms);
    child.once('exit', () => {
      clearTimeout(kill);
      resolve();
    });
    process.kill(child.pid!, 'SIGTERM');
  });
}
