/**
 * The delivery worker thread's entry (run by piscina; see delivery-pool.ts). One task is
 * one SMTP session: open it with smtp-client.ts's `openSession`, answer on the task's
 * port whether it opened, then serve `send` and `close` requests arriving on that port
 * until the main thread closes it. The task settles when the connection is gone, so
 * piscina counts exactly the connections a worker holds.
 *
 * Everything here is asynchronous I/O: many sessions share one thread, and a slow MX
 * only holds its own sessions.
 */
import { parentPort, threadId, type MessagePort } from 'node:worker_threads';
import { openSession, type SessionOptions, type SmtpSession } from './smtp-client.ts';
import type { ThreadReady, ToMain, ToWorker } from './delivery-pool.ts';

// This thread has loaded; piscina passes the message on as the pool's 'message' event.
parentPort?.postMessage({ op: 'delivery-thread-ready', threadId } satisfies ThreadReady);

/** What the main thread posts as the piscina task. */
export interface SessionTask {
  options: SessionOptions;
  /** This session's end of the channel; the main thread holds the other. */
  port: MessagePort;
}

/** Serves one session; resolves once its connection is gone (or it never opened). */
export default async function serveSession({ options, port }: SessionTask): Promise<void> {
  const post = (message: ToMain) => port.postMessage(message);
  let opened;
  try {
    opened = await openSession(options);
  } catch (e) {
    // Only a caller's mistake makes openSession throw (invalid options).
    post({ op: 'invalid', message: (e as Error).message });
    port.close();
    return;
  }
  if (!opened.ok) {
    post({ op: 'failed', phase: opened.phase, reply: opened.reply, synthesized: opened.synthesized });
    port.close();
    return;
  }
  const session = opened.session;
  post({ op: 'opened', info: { tls: session.tls, tlsFailure: session.tlsFailure, localAddress: session.localAddress, remoteAddress: session.remoteAddress } });
  port.on('message', (message: ToWorker) => void handle(session, message, post, port));
  // The port outlives the task: after the server drops the connection the main thread may
  // still send (and gets the session's own answer for a lost connection) and must close.
  await session.ended;
  post({ op: 'ended' });
}

async function handle(session: SmtpSession, message: ToWorker, post: (message: ToMain) => void, port: MessagePort): Promise<void> {
  if (message.op === 'close') {
    await session.close();
    post({ op: 'closed' });
    port.close();
    return;
  }
  try {
    const raw = Buffer.from(message.raw);
    const result = await session.send({ from: message.from, to: message.to, raw, ...(message.size !== undefined ? { size: message.size } : {}) });
    post({ op: 'sent', result, messagesSent: session.messagesSent, transactions: session.transactions });
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    post({ op: 'send-failed', name: err.name, message: err.message, ...(err.code !== undefined ? { code: err.code } : {}) });
  }
}
