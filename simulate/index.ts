/** Provider models and the simulation built on them: the public surface of simulate/. */
export { describeSchemaError, MAX_MODEL_BYTES, MODELS_DIR, parseModel, readChecked, readModel, readShippedModel, shippedModelNames } from './model.ts';
export type { Count, Duration, Fraction, Milliseconds, ModelPhase, ModelReply, ModelResult, ProviderModel, Rate, Sourced } from './model.ts';
export { behaviourOf, MAX_SCALE, MIN_SCALE, recipientFate, renderReply, replyText } from './behaviour.ts';
export type { BehaviourReply, ProviderBehaviour, RecipientFate, WindowLimit } from './behaviour.ts';
export { createProviderState, MAX_TRACKED, networkOf, SlidingLog } from './provider-state.ts';
export type { Period, ProviderHooks, ProviderState, Refusal, RefusalKind } from './provider-state.ts';
export { memorySpool, type MemorySpool } from './memory-spool.ts';
export { ACCEPTED_REPLY, modelledTransport, type ClientAddress } from './provider.ts';
export { checkCampaign, DEFAULT_START, MAX_CAMPAIGN_BYTES, MAX_CAMPAIGN_MESSAGES, parseCampaign, readCampaign } from './campaign.ts';
export type { Campaign, CampaignResult, CampaignStream } from './campaign.ts';
export { LONG_TAIL_MODEL, MAX_IN_FLIGHT, runSimulation, type ProviderSide, type SimulationInput, type SimulationResult } from './simulation.ts';
export { buildReport, formatDuration, formatRate, humanReport, type CountsRow, type ProviderRow, type SimulationReport } from './report.ts';
export { htmlReport } from './html.ts';
export { compareOutcomes, outcomeSide, type FigureChange, type OutcomeDelta, type OutcomeFigures, type OutcomeFlag, type OutcomeSide, type ProviderDelta } from './compare.ts';
export { Tally, type Counts, type PolicyEvent } from './tally.ts';
