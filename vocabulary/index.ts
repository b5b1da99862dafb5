/**
 * The shared vocabulary and the artifact ABI: the one module grammar/, compiler/ and
 * runtime/ all import, and that imports none of them (test/dependencies.test.ts).
 */
export * from './words.ts';
export * from './artifact.ts';
export * from './limit-words.ts';
