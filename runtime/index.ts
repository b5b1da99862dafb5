/**
 * The runtime's public surface for the CLI, benches and scripts. The runtime never
 * imports grammar/ or compiler/: it only loads compiled artifacts, whose interface is
 * `abi.ts`. The rooms, in the order a message passes them, are mapped in README.md.
 */
export * from './abi.ts';
export * from './decide/policy-state.ts';
export * from './observe/accounting.ts';
export { createMxResolver, type DnsClient, type MxAnswer, type MxHost, type MxResolver, type MxResolverOptions } from './deliver/mx.ts';
export * from './schedule/index.ts';
export * from './spool/index.ts';
export * from './deliver/smtp-client.ts';
export { createDeliveryPool, type DeliveryPool, type DeliveryPoolOptions, type DeliveryPoolStats } from './deliver/delivery-pool.ts';
export { ArtifactError, importArtifactText, loadArtifact } from './policy/loader.ts';
export { workerEntry } from './deliver/worker-file.ts';
export type { CompileAnswer, CompileJob, CompileRefusal, PolicyCompiler, Problem, TestAnswer, TestJob } from './policy/policy-compiler.ts';
