/**
 * Scheduling: the limiters every delivery is admitted through (memory store; the Redis
 * store's scripts).
 */
export * from './limiters.ts';
