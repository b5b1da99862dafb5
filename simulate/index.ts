/** Provider models and the simulation built on them: the public surface of simulate/. */
export { MAX_MODEL_BYTES, MODELS_DIR, parseModel, readModel, readShippedModel, shippedModelNames } from './model.ts';
export type { Count, Duration, Fraction, Milliseconds, ModelPhase, ModelReply, ModelResult, ProviderModel, Rate, Sourced } from './model.ts';
export { behaviourOf, MAX_SCALE, MIN_SCALE, recipientFate, renderReply, replyText } from './behaviour.ts';
export type { BehaviourReply, ProviderBehaviour, RecipientFate, WindowLimit } from './behaviour.ts';
export { createProviderState, MAX_TRACKED, networkOf, SlidingLog } from './provider-state.ts';
export type { Period, ProviderHooks, ProviderState, Refusal, RefusalKind } from './provider-state.ts';
