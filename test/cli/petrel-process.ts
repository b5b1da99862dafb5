/** The real `petrel run` binary as a child process, for tests: started, its ports read off its log, stopped by PID. */
import { spawn, type ChildProcess } from 'node:child_process';
import { get as httpGet } from 'node:http';
import path from 'node:path';
import { ROOT } from '../helpers.ts';

export interface PetrelProcess {
  child: ChildProcess;
  smtp: number;
  http: number;
  /** Everything it wrote to stderr so far. */
  log(): string;
  /** GET a JSON endpoint of its HTTP API. */
  get<T = Record<string, unknown>>(apiPath: string): Promise<T>;
  /** SIGTERM and wait for the exit code (SIGKILL after `ms`). */
  stop(ms?: number): Promise<number | null>;
  /** Resolves when the process has exited (at once if it already has). */
  exited(): Promise<void>;
}

const running = new Set<ChildProcess>();

/**
 * GET without keep-alive: tests block their event loop in spawnSync (runPetrel), and a
 * pooled connection the server closed meanwhile would fail the next request.
 */
function getJson<T>(url: string): Promise<T> {
  return new Promise((resolve, reject) => {
    httpGet(url, { agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => {
        try {
          resolve(JSON.parse(body) as T);
        } catch (e) {
          reject(new Error(`${url} answered ${res.statusCode}, not JSON: ${body.slice(0, 200)}`, { cause: e }));
        }
      });
    }).on('error', reject);
  });
}

/** `petrel run ARGS` with SMTP and HTTP on free loopback ports; resolves once it listens. `bin`: another petrel.js (an installed package's). */
export function startPetrel(args: string[], options: { cwd?: string; bin?: string } = {}): Promise<PetrelProcess> {
  const child = spawn(process.execPath, [options.bin ?? path.join(ROOT, 'bin', 'petrel.js'), 'run', '--smtp', '127.0.0.1:0', '--http', '127.0.0.1:0', ...args], { cwd: options.cwd ?? ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
  running.add(child);
  child.once('exit', () => running.delete(child));
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`petrel run did not start: ${stderr}`)), 30_000);
    const onData = () => {
      const m = /SMTP on 127\.0\.0\.1:(\d+), HTTP on 127\.0\.0\.1:(\d+)/.exec(stderr);
      if (!m) return;
      clearTimeout(timer);
      child.stderr!.off('data', onData);
      const http = Number(m[2]);
      resolve({
        child,
        smtp: Number(m[1]),
        http,
        log: () => stderr,
        exited: () => new Promise<void>((r) => (child.exitCode !== null || child.signalCode !== null ? r() : child.once('exit', () => r()))),
        get: <T>(apiPath: string) => getJson<T>(`http://127.0.0.1:${http}${apiPath}`),
        stop: (ms = 30_000) =>
          new Promise((done) => {
            if (child.exitCode !== null || child.signalCode !== null) return done(child.exitCode);
            const kill = setTimeout(() => child.kill('SIGKILL'), ms);
            child.once('exit', (code) => {
              clearTimeout(kill);
              done(code);
            });
            child.kill('SIGTERM');
          }),
      });
    };
    child.stderr!.on('data', onData);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`petrel run exited ${code ?? signal}: ${stderr}`));
    });
  });
}

/** Kills (SIGKILL) every process `startPetrel` started that is still running, and waits for each to exit: for afterEach. */
export async function killAllPetrel(): Promise<void> {
  await Promise.all(
    [...running].map((c) => {
      running.delete(c);
      if (c.exitCode !== null || c.signalCode !== null) return undefined;
      const gone = new Promise<void>((r) => c.once('exit', () => r()));
      c.kill('SIGKILL');
      return gone;
    }),
  );
}
