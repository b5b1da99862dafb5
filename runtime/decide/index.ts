/**
 * Decisions: what a reply does — the judge, the policy state a reaction is applied to (backoffs,
 * suspensions, triggers, recovery ramps), what it means for the recipient (reaction-fate,
 * shared with `petrel test`), and the state file that keeps it across a restart.
 */
export * from './policy-state.ts';
export * from './reaction-fate.ts';
export * from './recovery.ts';
export * from './state-file.ts';
export * from './judge.ts';
export * from './dsn.ts';
export * from './bounce-loop.ts';
export * from './queue-ops.ts';
