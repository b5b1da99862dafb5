/**
 * Scheduling, the core of the runtime: work items and their queues, source choice (pools,
 * warmup, overflow), the limiters every delivery is admitted through, the pump
 * (scheduler.ts), and the time it runs on — live or virtual.
 */
export * from './limiters.ts';
export * from './limiters-redis.ts';
export * from './limiters-redis-connection.ts';
export * from './time.ts';
export * from './work.ts';
export * from './source-choice.ts';
export * from './scheduler.ts';
export * from './virtual-time.ts';
