/**
 * Observation: accounting records, the HTTP API (status, metrics, pause, submission
 * routing) and who may call it, and text made safe to print.
 */
export * from './accounting.ts';
export * from './http-api.ts';
export * from './http-access.ts';
export * from './text.ts';
