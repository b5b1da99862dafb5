/**
 * Ed25519 signatures over what a deploy uploads: the manifest, the module, its source map
 * and the test blocks sent with it. `petrel build --sign` and `petrel deploy --sign` sign
 * with an operator's private key; the runtime verifies against the public keys it was
 * given before it writes or evaluates anything of an upload.
 *
 * INVARIANT: the signed bytes are {@link signedBytes} of the upload, and nothing else of
 * it is trusted: a changed byte of the module, map or tests, or any manifest field, makes
 * the signature fail. The upload's `author`, `subject` and `commit` are display only.
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';

/** What a signature covers: an artifact as texts and the tests that go with it. */
export interface SignedUpload {
  manifest: unknown;
  module: string;
  moduleFile: string;
  sourceMap: string;
  tests: unknown;
}

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

/** JSON with every object's keys sorted, so signer and verifier serialise one value alike. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.keys(value)
      .sort()
      .filter((k) => (value as Record<string, unknown>)[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`);
    return `{${entries.join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

/** The bytes that are signed: a versioned, canonical summary with a digest of each text. */
export function signedBytes(upload: SignedUpload): Buffer {
  return Buffer.from(
    canonicalJson({
      petrel: 'artifact-signature-1',
      manifest: upload.manifest,
      moduleFile: upload.moduleFile,
      module: sha256(upload.module),
      sourceMap: sha256(upload.sourceMap),
      tests: sha256(canonicalJson(upload.tests)),
    }),
  );
}

/** The signature (base64) of an upload with an Ed25519 private key. */
export function signUpload(upload: SignedUpload, privateKey: KeyObject): string {
  return sign(null, signedBytes(upload), privateKey).toString('base64');
}

/** Whether `signature` (base64) is a signature of `upload` by one of `publicKeys`. */
export function verifyUpload(upload: SignedUpload, signature: string, publicKeys: readonly KeyObject[]): boolean {
  const bytes = signedBytes(upload);
  const sig = Buffer.from(signature, 'base64');
  return publicKeys.some((key) => verify(null, bytes, key, sig));
}

/** Reads an Ed25519 key from a PEM file; throws with the file and the reason when it is not one. */
export function readSigningKey(file: string, kind: 'private' | 'public'): KeyObject {
  let pem: string;
  try {
    pem = readFileSync(file, 'utf8');
  } catch (e) {
    throw new Error(`cannot read ${kind} key ${file}: ${(e as Error).message}`);
  }
  let key: KeyObject;
  try {
    // A private key file also yields its public key, so an operator may point at either.
    key = kind === 'private' ? createPrivateKey(pem) : createPublicKey(pem);
  } catch (e) {
    throw new Error(`${file} is not a PEM ${kind} key: ${(e as Error).message}`);
  }
  if (key.asymmetricKeyType !== 'ed25519') throw new Error(`${file} is a ${key.asymmetricKeyType ?? 'symmetric'} key; deploy signatures use Ed25519 (\`petrel keygen\`)`);
  return key;
}

/** A new Ed25519 key pair as PEM texts (PKCS#8 private, SPKI public). */
export function newSigningKeyPair(): { privatePem: string; publicPem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return { privatePem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString() };
}

/** Beside an artifact `petrel build --sign` wrote: its test blocks, and the signature over both. */
export const SIGNED_FILES = { tests: 'tests.json', signature: 'signature.json' } as const;

/** What `signature.json` holds. */
export interface SignatureFile {
  algorithm: 'ed25519';
  signature: string;
}

/** Writes `tests.json` and `signature.json` into an artifact directory; `upload` is what is in it. */
export async function writeSignature(dir: string, upload: SignedUpload, privateKey: KeyObject): Promise<void> {
  const file: SignatureFile = { algorithm: 'ed25519', signature: signUpload(upload, privateKey) };
  await writeFile(path.join(dir, SIGNED_FILES.tests), JSON.stringify(upload.tests) + '\n');
  await writeFile(path.join(dir, SIGNED_FILES.signature), JSON.stringify(file, null, 2) + '\n');
}

/** Reads a directory `petrel build --sign` wrote, as `petrel deploy --artifact` uploads it; throws naming the file that is missing or bad. */
export async function readSignedArtifact(dir: string): Promise<{ artifact: { manifest: { module: string } & Record<string, unknown>; module: string; moduleFile: string; sourceMap: string }; tests: unknown; signature: string }> {
  const read = async (name: string) => {
    try {
      return await readFile(path.join(dir, name), 'utf8');
    } catch (e) {
      throw new Error(`cannot read ${path.join(dir, name)}: ${(e as Error).message}${name === SIGNED_FILES.signature ? ' (build it with `petrel build --sign KEYFILE`)' : ''}`);
    }
  };
  const json = async <T>(name: string) => {
    const text = await read(name);
    try {
      return JSON.parse(text) as T;
    } catch (e) {
      throw new Error(`${path.join(dir, name)} is not JSON: ${(e as Error).message}`);
    }
  };
  const manifest = await json<{ module: string } & Record<string, unknown>>('manifest.json');
  const moduleFile = String(manifest.module);
  const [module, sourceMap, tests, signature] = [await read(moduleFile), await read(`${moduleFile}.map`), await json<unknown>(SIGNED_FILES.tests), await json<SignatureFile>(SIGNED_FILES.signature)];
  return { artifact: { manifest, module, moduleFile, sourceMap }, tests, signature: String(signature.signature) };
}
