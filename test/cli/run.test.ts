/** The real `petrel run` process: starts on the shipped policies, delivers over loopback, stops cleanly on SIGTERM. */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import nodemailer from 'nodemailer';
import { afterEach, describe, expect, it } from 'vitest';
import { ROOT, runPetrel } from '../helpers.ts';
import { hashPassword, verifyPassword } from '../../runtime/intake/submission-smtp.ts';
import { killAll, selfSignedCertificate, until } from '../runtime/fixtures/e2e.ts';
import { killAllPetrel, startPetrel } from './petrel-process.ts';
import { startSink, type Sink } from '../runtime/fixtures/sink.ts';

let child: ChildProcess | undefined;
const children: ChildProcess[] = [];
let sink: Sink | undefined;
let dir: string | undefined;
afterEach(async () => {
  if (child && child.exitCode === null) child.kill('SIGKILL');
  child = undefined;
  await killAll(children);
  await killAllPetrel();
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
    writeFileSync(path.join(dir, 'bad3.json'), JSON.stringify({ smtp: { clientNetworks: ['10.'] } }));
    const networks = runPetrel(['run', '--config', path.join(dir, 'bad3.json')]);
    expect(networks.code).toBe(2);
    expect(networks.stderr).toMatch(/`smtp\.clientNetworks`: client network `10\.` is neither an address nor a CIDR block/);
    writeFileSync(path.join(dir, 'bad3.json'), JSON.stringify({ deliveryThreads: 1.5 }));
    const threads = runPetrel(['run', '--config', path.join(dir, 'bad3.json')]);
    expect(threads.code).toBe(2);
    expect(threads.stderr).toMatch(/`deliveryThreads` must be integer/);
  });
});

describe('petrel run: submission AUTH and STARTTLS settings', () => {
  it('refuses AUTH users without TLS, a malformed password hash, and a lone TLS flag, naming the key (exit 2)', () => {
    dir = mkdtempSync(path.join(tmpdir(), 'petrel-config-'));
    const config = (name: string, smtp: unknown) => {
      writeFileSync(path.join(dir!, name), JSON.stringify({ smtp }));
      return runPetrel(['run', '--config', path.join(dir!, name)]);
    };
    const hash = 'scrypt$ln=14,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA';
    const noTls = config('no-tls.json', { users: [{ user: 'app', passwordHash: hash }] });
    expect(noTls.code).toBe(2);
    expect(noTls.stderr).toContain('`smtp.users` needs `smtp.tls`');
    const malformed = config('malformed.json', { users: [{ user: 'app', passwordHash: 'scrypt$plain' }], allowInsecureAuth: true });
    expect(malformed.code).toBe(2);
    expect(malformed.stderr).toContain('`smtp.users.0.passwordHash` is not a hash made by `petrel hash-password`');
    const plain = config('plain.json', { users: [{ user: 'app', password: 'x' }] });
    expect(plain.code).toBe(2);
    expect(plain.stderr).toContain("`smtp.users.0` must have required property 'passwordHash'");
    const lone = runPetrel(['run', '--smtp-tls-key', 'key.pem']);
    expect(lone.code).toBe(2);
    expect(lone.stderr).toContain('`--smtp-tls-key` and `--smtp-tls-cert` go together');
  });

  it('`petrel hash-password` hashes standard input into a hash that verifies', async () => {
    const run = (input: string) => spawnSync(process.execPath, [path.join(ROOT, 'bin', 'petrel.js'), 'hash-password'], { input, encoding: 'utf8', timeout: 30_000 });
    const first = run('s3cret words\n');
    expect(first.status).toBe(0);
    const hash = first.stdout.trim();
    expect(await verifyPassword('s3cret words', hash)).toBe(true);
    expect(await verifyPassword('s3cret words\n', hash)).toBe(false);
    expect(run('s3cret words').stdout.trim()).not.toBe(hash);
    const empty = run('');
    expect(empty.status).toBe(2);
    expect(empty.stderr).toContain('empty password on standard input');
  });

  it('the real process offers STARTTLS from --smtp-tls-key/--smtp-tls-cert and relays for a config user only', async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'petrel-run-auth-'));
    sink = await startSink();
    const tls = selfSignedCertificate(dir, 'submit.petrel.test');
    writeFileSync(path.join(dir, 'petrel.config.json'), JSON.stringify({ spool: path.join(dir, 'spool'), acct: path.join(dir, 'acct'), artifact: path.join(dir, 'artifact'), mxOverride: { '*': `127.0.0.1:${sink.port}` }, smtp: { clientNetworks: ['127.0.0.1'], users: [{ user: 'app', passwordHash: await hashPassword('correct horse') }] } }));
    const petrel = await startPetrel(['--config', path.join(dir, 'petrel.config.json'), '--smtp-tls-key', tls.keyFile, '--smtp-tls-cert', tls.certFile]);
    const transport = (auth?: { user: string; pass: string }) => nodemailer.createTransport({ host: '127.0.0.1', port: petrel.smtp, localAddress: '127.0.0.2', requireTLS: true, tls: { ca: tls.cert, servername: 'submit.petrel.test' }, ...(auth ? { auth } : {}) });
    await expect(transport().sendMail({ from: 'a@shop.example', to: 'x@relay.example', text: 'no auth' })).rejects.toMatchObject({ responseCode: 550 });
    await expect(transport({ user: 'app', pass: 'wrong' }).sendMail({ from: 'a@shop.example', to: 'x@relay.example', text: 'bad auth' })).rejects.toMatchObject({ responseCode: 535 });
    const info = await transport({ user: 'app', pass: 'correct horse' }).sendMail({ from: 'a@shop.example', to: 'x@relay.example', text: 'authenticated' });
    expect(info.response).toMatch(/^250 /);
    await until('delivery', () => sink!.received.length === 1);
    expect(sink.received[0]!.raw).toContain('authenticated');
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
        const m = /SMTP on 127\.0\.0\.1:(\d+), HTTP on 127\.0\.0\.1:(\d+)/.exec(stderr);
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
