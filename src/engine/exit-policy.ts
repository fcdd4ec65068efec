/**
 * Which ramps a sequence reads in one decode step, whether a ramp's
 * confidence lets its token leave there, and where the full model's verdict
 * on the token goes. The runner chooses one policy per sequence per step
 * (`choosePolicy`) and then only asks it; no other code looks at the
 * request's exit fields.
 *
 * - `off`: exits off for the request (or the engine): no ramp, no feedback.
 * - `controller`: the controller's active ramps and thresholds; the verdicts
 *   are its feedback.
 * - `shadow`: a rare step that scores every candidate ramp and lets nothing
 *   exit, so the controller learns what inactive ramps could do.
 * - `plan` (benchmarks): exit at the planned ramp of each token, no feedback.
 * - `trace` (benchmarks, fixtures): score every candidate, exit nowhere, and
 *   hand the scores to the client with the token.
 *
 * @module
 */
import type { ExitController, TokenRecord } from '../exits/index.js';
import type { Sequence } from './sequence.js';

export type ExitPolicyKind = 'off' | 'controller' | 'shadow' | 'plan' | 'trace';

export interface ExitPolicy {
  readonly kind: ExitPolicyKind;
  /** Whether the sequence reads the ramp after `layer` this step. */
  looksAt(layer: number): boolean;
  /** Whether a token whose ramp after `layer` scored `confidence` leaves there. */
  exits(layer: number, confidence: number): boolean;
  /** Where the full model's verdict on a token goes; null when nothing learns from it. */
  readonly feedback: ((record: TokenRecord) => void) | null;
}

export interface PolicyContext {
  /** null: exits off for every request. */
  controller: ExitController | null;
  /** Layers a ramp may follow (the model's manifest). */
  candidates: readonly number[];
  /** A sequence exits at most this many positions in a row before the deep blocks must catch up. */
  maxDeferred: number;
}

const OFF: ExitPolicy = { kind: 'off', looksAt: () => false, exits: () => false, feedback: null };

/** Whether the controller learns from this sequence's tokens (its exits are not forced by a plan or a trace). */
export function feedsController(seq: Sequence, context: PolicyContext): boolean {
  return context.controller !== null && seq.request.earlyExit && seq.request.exitOverride === undefined;
}

/** The sequence's policy for this step; `shadow`: the step is a shadow step (see ModelRunner). */
export function choosePolicy(seq: Sequence, context: PolicyContext, shadow: boolean): ExitPolicy {
  const override = seq.request.exitOverride;
  const candidate = (layer: number): boolean => context.candidates.includes(layer);
  if (override?.kind === 'trace') return { kind: 'trace', looksAt: candidate, exits: () => false, feedback: null };
  if (override?.kind === 'plan') {
    const planned = override.layers[seq.numGenerated];
    return { kind: 'plan', looksAt: (layer) => planned === layer, exits: () => true, feedback: null };
  }
  const controller = context.controller;
  if (!controller || !feedsController(seq, context)) return OFF;
  if (shadow) return { kind: 'shadow', looksAt: candidate, exits: () => false, feedback: (record) => controller.recordShadow(record) };
  return {
    kind: 'controller',
    looksAt: (layer) => controller.activeRamps().some((ramp) => ramp.layer === layer),
    exits: (layer, confidence) => seq.deferred.length < context.maxDeferred && controller.exitAt(layer, confidence),
    feedback: (record) => controller.record(record),
  };
}
