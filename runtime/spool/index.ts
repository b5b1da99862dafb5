/**
 * The spool: messages and their recipients' outcomes on local disk, fsync'd, recovered on
 * start. `spool.ts` is the store; frame, ids, io, lock and reserve are its parts.
 */
export * from './spool.ts';
export * from './errors.ts';
export * from './json-log.ts';
