/**
 * Provisioning of the suite's peers (test/global-setup.ts): the decision on a real file
 * system with a chosen PATH and uid, the refusal to install where it cannot, and a
 * listening peer (Postfix's smtp-sink) started on a free loopback port and stopped by PID.
 */
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import nodemailer from 'nodemailer';
import { afterEach, describe, expect, it } from 'vitest';
import { findTool, installCommand, PEERS, planProvision, provision, startService, type Peer, type Service } from './global-setup.ts';

let dir: string | undefined;
let service: Service | undefined;
afterEach(async () => {
  await service?.stop();
  service = undefined;
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});

/** A directory holding executables named `tools`, for a PATH of our choosing. */
function binDir(...tools: string[]): string {
  dir = mkdtempSync(path.join(tmpdir(), 'petrel-provision-'));
  for (const t of tools) {
    writeFileSync(path.join(dir, t), '#!/bin/sh\n');
    chmodSync(path.join(dir, t), 0o755);
  }
  return dir;
}

const ABSENT: Peer = { tool: 'petrel-no-such-tool', debian: 'petrel-no-such-package', neededBy: 'this test', debconf: ['petrel-no-such-package petrel/q select x'] };

describe('planProvision', () => {
  it('is ready when every tool is on PATH', () => {
    expect(planProvision([{ tool: 'fake-peer', debian: 'fake', neededBy: 'x' }], { PATH: binDir('fake-peer'), uid: 1000 })).toEqual({ kind: 'ready' });
  });

  it('installs, as root with apt-get, the Debian packages of the missing tools, once each, with their debconf answers', () => {
    const bin = binDir('apt-get');
    const plan = planProvision([ABSENT, { ...ABSENT, tool: 'petrel-other-tool' }], { PATH: bin, uid: 0 });
    expect(plan).toMatchObject({ kind: 'install', packages: ['petrel-no-such-package'], debconf: ABSENT.debconf });
  });

  it('fails naming the tool, the reason and the install command when not root', () => {
    const plan = planProvision([ABSENT], { PATH: binDir('apt-get'), uid: 1000 });
    expect(plan.kind).toBe('fail');
    const message = (plan as { message: string }).message;
    expect(message).toContain('missing petrel-no-such-tool (for this test)');
    expect(message).toContain('(not root)');
    expect(message).toContain(installCommand(['petrel-no-such-package'], ABSENT.debconf!));
    expect(message).not.toContain('\n');
  });

  it('fails when there is no apt-get, or when installing is forbidden', () => {
    // The sbin directories are searched too; apt-get is in /usr/bin, so a PATH without it lacks it.
    expect(planProvision([ABSENT], { PATH: binDir(), uid: 0 })).toMatchObject({ kind: 'fail', message: expect.stringContaining('(no apt-get)') });
    expect(planProvision([ABSENT], { PATH: '/usr/bin:/bin', uid: 0, provision: 'never' })).toMatchObject({ kind: 'fail', message: expect.stringContaining('(PETREL_PROVISION=never)') });
  });

  it('finds Debian tools kept in sbin even when PATH lacks it', () => {
    expect(findTool('smtp-source', '/usr/bin:/bin')).toBe('/usr/sbin/smtp-source');
  });

  it('every peer of the suite is there after globalSetup', () => {
    for (const p of PEERS) expect(findTool(p.tool, process.env.PATH ?? ''), p.tool).toBeDefined();
  });
});

describe('provision', () => {
  it('rejects at once with the one-line message where it cannot install, and takes no lock', async () => {
    const lock = path.join(binDir(), 'lock');
    const lines: string[] = [];
    await expect(provision([ABSENT], { PATH: '/usr/bin:/bin', uid: 1000 }, (l) => lines.push(l), lock)).rejects.toThrow(/^petrel tests: missing petrel-no-such-tool .*\(not root\); as root run: .*apt-get install/);
    expect(lines).toEqual([]);
    expect(existsSync(lock)).toBe(false);
  });

  it('does nothing when every peer is there', async () => {
    const lines: string[] = [];
    await provision(PEERS, { PATH: process.env.PATH ?? '', uid: 1000 }, (l) => lines.push(l));
    expect(lines).toEqual([]);
  });
});

describe('startService', () => {
  it('starts smtp-sink on a free loopback port, which takes a message, and stops it by PID', async () => {
    // smtp-sink refuses to run as root unless told which user to become.
    const asUser = process.getuid?.() === 0 ? ['-u', 'nobody'] : [];
    service = await startService('smtp-sink', (port) => [...asUser, '-c', `127.0.0.1:${port}`, '10']);
    const transport = nodemailer.createTransport({ host: '127.0.0.1', port: service.port, secure: false, ignoreTLS: true });
    const info = await transport.sendMail({ from: 'a@petrel.test', to: 'b@petrel.test', subject: 's', text: 'hello' });
    expect(info.accepted).toEqual(['b@petrel.test']);
    const pid = service.pid;
    await service.stop();
    service = undefined;
    expect(() => process.kill(pid, 0)).toThrow();
  });

  it('rejects naming the tool when it never listens', async () => {
    await expect(startService('true', () => [], 500)).rejects.toThrow(/^true did not listen on 127\.0\.0\.1:\d+/);
  });
});
