/** The real `petrel run` process: starts on the shipped policies, delivers over loopback, stops cleanly on SIGTERM. */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import nodemailer from 'nodemailer';
import { afterEach, describe, expect, it } from 'vitest';
import { ROOT, runPetrel } from '../helpers.ts';
import { startSink, type Sink } from '../runtime/fixtures/sink.ts';

let child: ChildProcess | undefined;
let sink: Sink | undefined;
let dir: string | undefined;
afterEach(async () => {
  if (child && child.exitCode === null) child.kill('SIGKILL');
  child = undefined;
  await sink?.close();
  sink = undefined;
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('petrel run --config', () => {
  it('names an unknown or bad key and exits 2', () => {
    dir = mkdtempSync(path.join(tmpdir(), 'petrel-config-'));
    writeFileSync(path.join(dir, 'bad.json'), JSON.stringify({ smtp: { listen: '127.0.0.1:2525', colour: 'red' } }));
    const unknown = runPetrel(['run', '--config', path.join(dir, 'bad.json')]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/unknown key `smtp\.colour`/);
    writeFileSync(path.join(dir, 'bad2.json'), JSON.stringify({ maxInFlight: 0 }));
    const bad = runPetrel(['run', '--config', path.join(dir, 'bad2.json')]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/`maxInFlight` must be >= 1/);
  });
});

describe('petrel run (binary)', () => {
  it('delivers a submitted message to the MX override and exits 0 on SIGTERM', async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'petrel-run-'));
    sink = await startSink();
    const sinkPort = sink.port;
    writeFileSync(path.join(dir, 'petrel.config.json'), JSON.stringify({ spool: path.join(dir, 'spool'), acct: path.join(dir, 'acct'), artifact: path.join(dir, 'artifact'), graceSeconds: 5, mxOverride: { '*': `127.0.0.1:${sinkPort}` } }));

    // Ports by flag, the rest from the config file: flags and file combine.
    child = spawn(process.execPath, [path.join(ROOT, 'bin', 'petrel.js'), 'run', '--config', path.join(dir, 'petrel.config.json'), '--smtp', '127.0.0.1:0', '--http', '127.0.0.1:0'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
    const ports = await new Promise<{ smtp: number; http: number }>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`petrel run did not start: ${stderr}`)), 30_000);
      child!.stderr!.on('data', () => {
        const m = /SMTP on port (\d+), HTTP on port (\d+)/.exec(stderr);
        if (m) {
          clearTimeout(timer);
          resolve({ smtp: Number(m[1]), http: Number(m[2]) });
        }
      });
      child!.once('exit', (code) => reject(new Error(`petrel run exited ${code}: ${stderr}`)));
    });

    const transport = nodemailer.createTransport({ host: '127.0.0.1', port: ports.smtp, secure: false, ignoreTLS: true });
    await transport.sendMail({ from: 'news@shop.example', to: 'someone@example.org', subject: 'hi', text: 'hello' });
    const end = Date.now() + 20_000;
    let status: { delivered: number; policy: { hash: string } } | undefined;
    while (Date.now() < end) {
      status = (await (await fetch(`http://127.0.0.1:${ports.http}/api/v1/status`)).json()) as typeof status;
      if (status!.delivered === 1) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(status?.delivered).toBe(1);
    expect(sink.received.flatMap((m) => m.to)).toEqual(['someone@example.org']);

    const exit = new Promise<number | null>((r) => child!.once('exit', (code) => r(code)));
    child.kill('SIGTERM');
    expect(await exit).toBe(0);
    const acct = readdirSync(path.join(dir, 'acct')).map((f) => readFileSync(path.join(dir!, 'acct', f), 'utf8')).join('');
    expect(acct).toMatch(new RegExp(`^d,.*,someone@example\\.org,relayed,.*,default/example\\.org/default,.*,${status!.policy.hash},`, 'm'));
  });
});
