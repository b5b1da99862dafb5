/**
 * Policy versions: loading and checking an artifact, the version store, hot reload from a
 * directory, a git ref or a deploy (the control API), artifact signatures, and the
 * compiler interface the CLI injects.
 */
export * from './loader.ts';
export * from './policy-versions.ts';
export * from './policy-git.ts';
export * from './policy-control.ts';
export * from './artifact-signature.ts';
export * from './deploy-request.ts';
export * from './policy-compiler.ts';
export * from './cluster.ts';
