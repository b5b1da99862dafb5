/**
 * Delivery: the SMTP client session, the worker threads holding sessions and their
 * message protocol, MX resolution, where a worker thread's entry file is, the idle-session
 * cache and sending one work item over a transport; outbound TLS policy (MTA-STS, DANE)
 * and the DNS client it trusts.
 */
export * from './smtp-client.ts';
export * from './delivery-pool.ts';
export * from './mx.ts';
export * from './worker-file.ts';
export * from './session-cache.ts';
export * from './send-work.ts';
export * from './secure-dns.ts';
export * from './dane.ts';
export * from './mta-sts.ts';
export * from './tls-policy.ts';
