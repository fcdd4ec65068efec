/**
 * Early exits, as pure logic: ramp confidence from logits, the exit
 * decision, feedback windows, the threshold tuner, the ramp adjuster, and
 * recorded traces to test them on. No onnxruntime here: the engine hands in
 * logits rows, feedback records and measured costs, and gets decisions back.
 *
 * @module
 */
export { CONFIDENCE_KINDS, scoreLogits, type ConfidenceKind, type Score } from './confidence.js';
export { ContextDraftGate } from './context-gate.js';
export { ExitController } from './controller.js';
export type { ControllerEvent, ControllerEventKind, ControllerState, RampState } from './state.js';
export { DEFAULT_RAMP_BUDGET, ExitControllerOptionsSchema, type ExitControllerInput, type ExitControllerOptions } from './options.js';
export { tuneThresholds, type TuneInput, type TuneMove, type TuneResult } from './tuner.js';
export { budgetRampCount, chooseNewLayer, planAdjustment, spreadLayers, utilityMs, type AdjustPlan, type RampUsage } from './adjuster.js';
export {
  formatTrace,
  parseTrace,
  readTrace,
  replay,
  TRACE_FORMAT,
  TraceFormatError,
  TraceWriter,
  writeTrace,
  type ReplayDecision,
  type ReplayOptions,
  type ReplayResult,
  type Trace,
  type TraceHeader,
  type TraceToken,
} from './trace.js';
export { callMs, clears, FULL_MODEL_TOKEN, savedMs, streamedAgrees, type CallCosts, type Costs, type Ramp, type RampScore, type TokenRecord } from './types.js';
export {
  baselineMsPerToken,
  cycleExpectation,
  DraftController,
  draftMsPerToken,
  type DraftControllerInput,
  type DraftOutcome,
  type DraftPlan,
  type DraftOutcomes,
  type DraftRampState,
  type ForcedDraftPlan,
  type DraftState,
} from './drafts.js';
