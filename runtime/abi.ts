/**
 * The artifact ABI and the shared vocabulary, as the runtime imports them. They are
 * defined once, in `vocabulary/` (imported by grammar, compiler and runtime alike); this
 * re-export keeps the runtime's many `./abi.ts` imports working.
 */
export * from '../vocabulary/index.ts';
