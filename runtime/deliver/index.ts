/**
 * Delivery: the SMTP client session, the worker threads holding sessions and their
 * message protocol, MX resolution, and where a worker thread's entry file is.
 */
export * from './smtp-client.ts';
export * from './delivery-pool.ts';
export * from './mx.ts';
export * from './worker-file.ts';
