/** The one error type of the spool: `code` says what happened, `message` says what to do. */

/**
 * - `closed`: the spool was closed.
 * - `failed`: an fsync failed earlier; nothing since can be vouched for; close and reopen.
 * - `no-space`: the file system is full (ENOSPC, EDQUOT): a new message was refused and
 *   nothing was acknowledged. Intake answers `452 4.3.1` (SMTP) or 503 (HTTP): try later.
 *   The spool accepts again by itself once space returns.
 * - `write-failed`: this write failed (an I/O error); nothing was acknowledged.
 * - `invalid`: the arguments are wrong (a caller bug).
 * - `duplicate-id`, `unknown-message`, `unknown-recipient`: as named.
 * - `corrupt`: stored bytes no longer match their checksum.
 * - `locked`: another live process (or this one) has the spool open.
 * - `recovering`: asked of a spool opened with `openSpoolRecovering` before its recovery ended.
 */
export type SpoolErrorCode = 'closed' | 'failed' | 'no-space' | 'write-failed' | 'invalid' | 'duplicate-id' | 'unknown-message' | 'unknown-recipient' | 'corrupt' | 'locked' | 'recovering';

export class SpoolError extends Error {
  override readonly name = 'SpoolError';
  constructor(
    readonly code: SpoolErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
