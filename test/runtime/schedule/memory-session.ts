/**
 * An SMTP session held in memory for the scheduling core's tests: it opens at once and
 * answers each transaction with what `send` returns (on the test's virtual clock).
 */
import type { SmtpSession } from '../../../runtime/deliver/index.ts';

export function memorySession(remoteAddress: string, send: SmtpSession['send']): SmtpSession {
  let closed = false;
  return {
    secure: false,
    tls: null,
    tlsFailure: null,
    localAddress: '192.0.2.1',
    remoteAddress,
    messagesSent: 0,
    transactions: 0,
    get closed() {
      return closed;
    },
    ended: Promise.resolve(),
    send,
    async close() {
      closed = true;
    },
  };
}
