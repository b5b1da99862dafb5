/**
 * A DKIM signing thread's entry (run by piscina; see dkim-signing.ts). The thread is
 * started with one keyring (piscina's `workerData`: the KeyObjects are cloned into it once,
 * so every signature uses a key object already parsed) and signs with it for its whole
 * life: a reload starts new threads with the new keys, so one thread never mixes two sets.
 *
 * INVARIANT: the keys only go into `crypto.sign` (dkim.ts); what goes back to the main
 * thread is the signature fields and the domain that signed.
 */
import { parentPort, threadId } from 'node:worker_threads';
import { workerData } from 'piscina';
import { signMessage, type DkimKeyring } from './dkim.ts';

/** What the main thread posts: the whole message, the first `length` bytes of a shared slab it does not touch until the answer. */
export interface SignTask {
  message: SharedArrayBuffer;
  length: number;
  tenant: string | undefined;
  /** `t=`, epoch milliseconds. */
  signAt: number;
}

/** The answer: the `DKIM-Signature` fields (latin1, each ending in CRLF), or null when no key signs it. */
export type SignAnswer = { fields: string; domain: string; fallback: boolean } | null;

/** What a thread says once, on piscina's channel, when it has loaded. */
export interface SigningThreadReady {
  op: 'dkim-thread-ready';
  threadId: number;
}

const { ring } = workerData as { ring: DkimKeyring };

parentPort?.postMessage({ op: 'dkim-thread-ready', threadId } satisfies SigningThreadReady);

/** Signs one message with this thread's keys. */
export default async function signTask({ message, length, tenant, signAt }: SignTask): Promise<SignAnswer> {
  const signature = await signMessage(ring, [Buffer.from(message, 0, length)], tenant, new Date(signAt));
  return signature ? { fields: signature.fields.toString('latin1'), domain: signature.choice.domain, fallback: signature.choice.fallback } : null;
}
