/**
 * Observation: accounting records (and how an outcome becomes one), TLS-RPT reports, the status, the HTTP API (status, metrics, pause, submission
 * routing) and who may call it, and text made safe to print.
 */
export * from './accounting.ts';
export * from './http-api.ts';
export * from './http-access.ts';
export * from './text.ts';
export * from './outcome-record.ts';
export * from './rate-window.ts';
export * from './status.ts';
export * from './tlsrpt.ts';
export * from './outbox.ts';
export * from './webhooks.ts';
export * from './queue-api.ts';
export * from './accounting-trail.ts';
