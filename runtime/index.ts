/**
 * The runtime's public surface. The runtime never imports grammar/ or compiler/: it only
 * loads compiled artifacts, whose interface is `abi.ts`.
 */
export * from './abi.ts';
export * from './policy-state.ts';
export * from './accounting.ts';
export { createMxResolver, type DnsClient, type MxAnswer, type MxHost, type MxResolver, type MxResolverOptions } from './mx.ts';
export * from './limiters.ts';
export * from './spool.ts';
export * from './smtp-client.ts';
export { createDeliveryPool, type DeliveryPool, type DeliveryPoolOptions, type DeliveryPoolStats } from './delivery-pool.ts';
export { ArtifactError, importArtifactText, loadArtifact } from './loader.ts';
