/**
 * The HTTP API's security (issue 11), against real `petrel run` processes over loopback:
 * the code-upload attack (a copied artifact with `execSync` prepended, sent as text/plain
 * from a foreign Origin) is refused in every configuration short of a valid signature by
 * a configured key, and its code never runs; a signed deploy goes live; foreign origins,
 * wrong content types, missing keys and DNS-rebinding Hosts are refused and change
 * nothing; keys come from files and the environment; request text cannot forge a log
 * line; malformed, oversized and abandoned requests do not hurt the server.
 */
import { createPrivateKey } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newSigningKeyPair, signUpload } from '../../runtime/policy/artifact-signature.ts';
import type { ArtifactTexts } from '../../runtime/policy/loader.ts';
import { escapeLogText } from '../../runtime/policy/policy-control.ts';
import { compileFiles } from '../helpers.ts';
import { killAllPetrel, startPetrel, type PetrelProcess } from './petrel-process.ts';
import { ratePolicy } from './policy-repo.ts';

const KEY = 'file-key-0123456789abcdef';
const ENV_KEY = 'env-key-0123456789abcdef';
const trusted = newSigningKeyPair();
const stranger = newSigningKeyPair();

let dir: string;
let marker: string;
/** The legitimate artifact, and the attack: the same with code prepended and a new hash. */
let good: ArtifactTexts;
let attack: ArtifactTexts;

interface Answer {
  status: number;
  body: Record<string, unknown>;
}

/** One HTTP request, no keep-alive, any headers (Host and Origin included). */
function call(port: number, method: string, apiPath: string, options: { headers?: Record<string, string>; body?: string } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method, path: apiPath, agent: false, headers: options.headers ?? {} }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode!, body: /json/.test(res.headers['content-type'] ?? '') ? (JSON.parse(text) as Record<string, unknown>) : { text } }));
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

const json = (extra: Record<string, string> = {}) => ({ 'content-type': 'application/json', ...extra });
const bearer = (key: string) => ({ authorization: `Bearer ${key}` });
const signed = (artifact: ArtifactTexts, key = trusted.privatePem) => ({ artifact, tests: [], signature: signUpload({ ...artifact, tests: [] }, createPrivateKey(key)) });
const currentHash = async (p: PetrelProcess, key?: string) => ((await call(p.http, 'GET', '/api/v1/policy', { headers: key ? bearer(key) : {} })).body.current as { hash: string }).hash;

async function start(name: string, config?: unknown): Promise<PetrelProcess> {
  const at = path.join(dir, name);
  mkdirSync(at);
  const args = ['--policies', path.join(dir, 'policies'), '--no-watch', '--spool', path.join(at, 'spool'), '--acct', path.join(at, 'acct'), '--artifact', path.join(at, 'artifact')];
  if (config) writeFileSync(path.join(at, 'config.json'), JSON.stringify(config));
  return startPetrel(config ? ['--config', path.join(at, 'config.json'), ...args] : args);
}

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'petrel-http-security-'));
  marker = path.join(dir, 'pwned');
  mkdirSync(path.join(dir, 'policies'));
  writeFileSync(path.join(dir, 'policies', 'example.policy'), ratePolicy('50/s'));
  writeFileSync(path.join(dir, 'trusted.pub'), trusted.publicPem);
  writeFileSync(path.join(dir, 'keys.txt'), `# deploy machines\n${KEY}\n`);
  good = (await compileFiles({ 'example.policy': ratePolicy('9/s') })).artifact!;
  const hash = 'f'.repeat(64);
  attack = {
    ...good,
    module: `import { execSync as __x } from 'node:child_process'; __x(${JSON.stringify(`id > '${marker}'`)});\n${good.module.replaceAll(good.manifest.hash, hash)}`,
    manifest: { ...good.manifest, hash },
  };
}, 60_000);

afterAll(async () => {
  await killAllPetrel();
  rmSync(dir, { recursive: true, force: true });
});

describe('petrel run with defaults (no keys, no deploy keys)', () => {
  let p: PetrelProcess;
  let before: string;
  beforeAll(async () => {
    p = await start('defaults');
    before = await currentHash(p);
  }, 60_000);
  afterAll(async () => expect(await p.stop()).toBe(0));

  it('refuses the exact attack (text/plain, foreign Origin, no key) and the same as JSON from loopback; the code never runs', async () => {
    const asFound = await call(p.http, 'POST', '/api/v1/policy/artifact', { headers: { 'content-type': 'text/plain', origin: 'http://evil.example' }, body: JSON.stringify({ artifact: attack, tests: [] }) });
    expect(asFound.status).toBe(403);
    const plain = await call(p.http, 'POST', '/api/v1/policy/artifact', { headers: json(), body: JSON.stringify({ artifact: attack, tests: [] }) });
    expect(plain).toMatchObject({ status: 403, body: { error: expect.stringMatching(/^artifact upload is off/) } });
    expect(existsSync(marker)).toBe(false);
    expect(await currentHash(p)).toBe(before);
  });

  it('refuses a foreign Origin (403) and text/plain (415) and changes nothing; keyless loopback pauses with JSON', async () => {
    const pause = (headers: Record<string, string>) => call(p.http, 'POST', '/api/v1/pause', { headers, body: JSON.stringify({ queue: 'provider:example' }) });
    expect((await pause(json({ origin: 'http://evil.example' }))).status).toBe(403);
    expect((await pause(json({ origin: 'null' }))).status).toBe(403);
    expect((await pause({ 'content-type': 'text/plain' })).status).toBe(415);
    expect((await call(p.http, 'GET', '/api/v1/status')).body.paused).toEqual([]);
    // The server's own origin and no origin at all are fine.
    expect(await pause(json({ origin: `http://127.0.0.1:${p.http}` }))).toMatchObject({ status: 200, body: { paused: ['queue:provider:example'] } });
    expect((await call(p.http, 'POST', '/api/v1/resume', { headers: json(), body: JSON.stringify({ queue: 'provider:example' }) })).body).toEqual({ paused: [] });
  });

  it('refuses a keyless call whose Host is not a loopback name (DNS rebinding)', async () => {
    const rebound = await call(p.http, 'POST', '/api/v1/pause', { headers: json({ host: `rebind.evil.example:${p.http}` }), body: JSON.stringify({ queue: 'provider:example' }) });
    expect(rebound.status).toBe(403);
    expect((await call(p.http, 'GET', '/api/v1/status', { headers: { host: 'rebind.evil.example' } })).status).toBe(403);
    expect((await call(p.http, 'GET', '/api/v1/status', { headers: { host: `localhost:${p.http}` } })).status).toBe(200);
    expect((await call(p.http, 'GET', '/api/v1/status')).body.paused).toEqual([]);
  });

  it('a rollback `to` with a line break is refused and forges no log line', async () => {
    const forged = await call(p.http, 'POST', '/api/v1/policy/rollback', { headers: json(), body: JSON.stringify({ to: 'abc\npetrel: policy deadbeefdead live (forged)' }) });
    expect(forged.status).toBe(400);
    const trigger = await call(p.http, 'POST', '/api/v1/policy/reload', { headers: json(), body: JSON.stringify({ trigger: 'api\npetrel: policy deadbeefdead live (forged)' }) });
    expect(trigger.status).toBe(400);
    // A refusal that quotes request text still ends on its own line.
    const unknown = await call(p.http, 'POST', '/api/v1/policy/rollback', { headers: json(), body: JSON.stringify({ to: 'abcdef12' }) });
    expect(unknown.status).toBe(422);
    expect(p.log()).not.toMatch(/^petrel: policy deadbeefdead/m);
    expect(escapeLogText('a\nb\r\u2028c\\')).toBe('a\\nb\\r\\u2028c\\\\');
  });

  it('answers malformed, oversized and abandoned requests without harm', async () => {
    const raw = (text: string) =>
      new Promise<string>((resolve) => {
        const s = connect(p.http, '127.0.0.1');
        let got = '';
        s.on('data', (c) => (got += c.toString()));
        s.on('close', () => resolve(got));
        s.on('error', () => resolve(got));
        s.end(text);
      });
    expect(await raw('NOT HTTP AT ALL\r\n\r\n')).toMatch(/^HTTP\/1\.1 400 /);
    expect(await raw(`GET /api/v1/status HTTP/1.1\r\nHost: localhost\r\nX-Big: ${'a'.repeat(32 * 1024)}\r\n\r\n`)).toMatch(/^HTTP\/1\.1 431 /);
    // A body that stops half way, then the client goes away.
    const s = connect(p.http, '127.0.0.1');
    s.write(`POST /api/v1/pause HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"queue":`);
    await new Promise((r) => setTimeout(r, 100));
    s.destroy();
    // A declared body over the limit is refused before it is read.
    const big = await call(p.http, 'POST', '/api/v1/pause', { headers: json({ 'content-length': String(2 * 1024 * 1024) }), body: '' }).catch((e: Error) => ({ status: 0, body: { error: e.message } }));
    expect([413, 0]).toContain(big.status);
    expect((await call(p.http, 'GET', '/api/v1/status')).status).toBe(200);
    expect(p.child.exitCode).toBe(null);
  });
});

describe('petrel run with an API key but no deploy keys', () => {
  it('refuses the attack even with a valid key: upload is off', async () => {
    const p = await start('key-only', { http: { apiKeys: [KEY] } });
    const before = await currentHash(p, KEY);
    const res = await call(p.http, 'POST', '/api/v1/policy/artifact', { headers: json(bearer(KEY)), body: JSON.stringify(signed(attack)) });
    expect(res).toMatchObject({ status: 403, body: { error: expect.stringMatching(/^artifact upload is off/) } });
    expect(existsSync(marker)).toBe(false);
    expect(await currentHash(p, KEY)).toBe(before);
    expect(await p.stop()).toBe(0);
  }, 60_000);
});

describe('petrel run with keys from a file and the environment, and a deploy key', () => {
  let p: PetrelProcess;
  let before: string;
  beforeAll(async () => {
    process.env.PETREL_API_KEYS = ENV_KEY;
    try {
      p = await start('deploy-on', { http: { apiKeyFiles: [path.join(dir, 'keys.txt')], publicMetrics: true }, deploy: { publicKeys: [path.join(dir, 'trusted.pub')] } });
    } finally {
      delete process.env.PETREL_API_KEYS;
    }
    before = await currentHash(p, KEY);
  }, 60_000);
  afterAll(async () => expect(await p.stop()).toBe(0));

  it('needs a key for every endpoint, GET included; the file key and the environment key both work; metrics are public by opt-in', async () => {
    expect((await call(p.http, 'GET', '/api/v1/status')).status).toBe(401);
    expect((await call(p.http, 'GET', '/api/v1/policy')).status).toBe(401);
    expect((await call(p.http, 'GET', '/api/v1/status', { headers: bearer('wrong-key-0123456789') })).status).toBe(401);
    expect((await call(p.http, 'GET', '/api/v1/status', { headers: bearer(KEY) })).status).toBe(200);
    expect((await call(p.http, 'GET', '/api/v1/status', { headers: { 'x-api-key': ENV_KEY } })).status).toBe(200);
    expect((await call(p.http, 'POST', '/api/v1/pause', { headers: json(), body: JSON.stringify({ queue: 'q' }) })).status).toBe(401);
    expect((await call(p.http, 'GET', '/metrics')).status).toBe(200);
    expect(p.child.spawnargs.join(' ')).not.toContain(KEY);
  });

  it('refuses the attack unsigned, with a bad signature, signed by another key, and tampered after signing; the code never runs', async () => {
    const upload = (body: unknown, headers = json(bearer(KEY))) => call(p.http, 'POST', '/api/v1/policy/artifact', { headers, body: JSON.stringify(body) });
    expect((await upload(signed(attack), json())).status).toBe(401);
    const unsigned = await upload({ artifact: attack, tests: [] });
    expect(unsigned).toMatchObject({ status: 400, body: { error: expect.stringMatching(/`signature` is required/) } });
    expect((await upload({ artifact: attack, tests: [], signature: Buffer.alloc(64).toString('base64') })).status).toBe(403);
    expect((await upload(signed(attack, stranger.privatePem))).status).toBe(403);
    const tampered = signed(good);
    tampered.artifact = { ...good, module: attack.module.replaceAll(attack.manifest.hash, good.manifest.hash) };
    expect((await upload(tampered)).status).toBe(403);
    // Swapping the tests of a signed upload breaks the signature too.
    expect((await upload({ ...signed(good), tests: [{ name: 'x', loc: { file: 'a', line: 1, column: 1 }, steps: [] }] })).status).toBe(403);
    // A body that is not a deploy request is named.
    expect((await upload({ artifact: good, tests: 'all', signature: 'AAAAAAAAAAAAAAAAAAAA' })).body.error).toMatch(/`tests` must be array/);
    expect(existsSync(marker)).toBe(false);
    expect(await currentHash(p, KEY)).toBe(before);
  });

  it('a correctly signed deploy with a key goes live', async () => {
    const res = await call(p.http, 'POST', '/api/v1/policy/artifact', { headers: json(bearer(ENV_KEY)), body: JSON.stringify({ ...signed(good), subject: 'signed hotfix' }) });
    expect(res).toMatchObject({ status: 200, body: { result: 'live', entry: { hash: good.manifest.hash, trigger: 'deploy', subject: 'signed hotfix' } } });
    expect(await currentHash(p, KEY)).toBe(good.manifest.hash);
  });
});
