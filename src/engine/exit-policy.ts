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
 * - `lossless`: the draft controller's ramp and confidence; a token that
 *   leaves there is a draft the full model verifies (runner.ts), and the
 *   verdicts are the draft controller's records.
 * - `shadow`: a rare step that scores every candidate ramp and lets nothing
 *   exit, so both controllers learn what ramps not in use could do.
 * - `plan` (benchmarks, tests): exit (or, lossless, draft) at the planned ramp
 *   of each token, no feedback.
 * - `trace` (benchmarks, fixtures): score every candidate, exit nowhere, and
 *   hand the scores to the client with the token.
 *
 * @module
 */
import type { DraftController, ExitController, TokenRecord } from '../exits/index.js';
import type { Sequence } from './sequence.js';

export type ExitPolicyKind = 'off' | 'controller' | 'lossless' | 'shadow' | 'plan' | 'trace';

export interface ExitPolicy {
  readonly kind: ExitPolicyKind;
  /** Whether the sequence reads the ramp after `layer` this step. */
  looksAt(layer: number): boolean;
  /** Whether a token whose ramp after `layer` scored `confidence` leaves there (lossless: becomes a draft). */
  exits(layer: number, confidence: number): boolean;
  /** Where the full model's verdict on a token goes; null when nothing learns from it. */
  readonly feedback: ((record: TokenRecord) => void) | null;
}

export interface PolicyContext {
  /** null: exits off for every request (then drafts is null too). */
  controller: ExitController | null;
  /** Lossless mode's draft controller. */
  drafts: DraftController | null;
  /** Layers a ramp may follow (the model's manifest). */
  candidates: readonly number[];
  /** A sequence exits at most this many positions in a row before the deep blocks must catch up. */
  maxDeferred: number;
  /** Positions per sequence: a draft must leave room for the position that verifies it. */
  maxContext: number;
}

const OFF: ExitPolicy = { kind: 'off', looksAt: () => false, exits: () => false, feedback: null };

/** Whether a controller learns from this sequence's tokens (its exits are not forced by a plan or a trace). */
export function feedsController(seq: Sequence, context: PolicyContext): boolean {
  return context.controller !== null && seq.request.earlyExit !== 'off' && seq.request.exitOverride === undefined;
}

/**
 * Whether a lossless sequence may draft one more token: fewer drafts than
 * `maxDraft`, and the draft is neither its last allowed token nor its
 * context's last position (a position that goes all the way must follow
 * to verify it).
 */
export function mayDraft(seq: Sequence, maxDraft: number, context: PolicyContext): boolean {
  return seq.drafts.length < maxDraft && seq.numGenerated + seq.drafts.length + 1 < seq.request.maxTokens && seq.numFed + 1 < context.maxContext;
}

/** The sequence's policy for this step; `shadow`: the step is a shadow step (see ModelRunner). */
export function choosePolicy(seq: Sequence, context: PolicyContext, shadow: boolean): ExitPolicy {
  const override = seq.request.exitOverride;
  const candidate = (layer: number): boolean => context.candidates.includes(layer);
  if (override?.kind === 'trace') return { kind: 'trace', looksAt: candidate, exits: () => false, feedback: null };
  if (override?.kind === 'plan') {
    // Drafts count: the planned token is the next one the sequence will see.
    const planned = override.layers[seq.numGenerated + seq.drafts.length];
    const exits = seq.lossless ? () => mayDraft(seq, context.maxDeferred, context) : () => true;
    return { kind: 'plan', looksAt: (layer) => planned === layer, exits, feedback: null };
  }
  const { controller, drafts } = context;
  if (!controller || !feedsController(seq, context)) return OFF;
  if (shadow)
    return {
      kind: 'shadow',
      looksAt: candidate,
      exits: () => false,
      feedback: (record) => {
        controller.recordShadow(record);
        drafts?.record(record);
      },
    };
  if (seq.lossless && drafts) {
    return {
      kind: 'lossless',
      looksAt: (layer) => drafts.plan?.layer === layer,
      exits: (layer, confidence) => mayDraft(seq, Math.min(drafts.plan?.maxDraft ?? 0, context.maxDeferred), context) && drafts.draftsAt(layer, confidence),
      feedback: (record) => drafts.record(record),
    };
  }
  return {
    kind: 'controller',
    looksAt: (layer) => controller.activeRamps().some((ramp) => ramp.layer === layer),
    exits: (layer, confidence) => seq.deferred.length < context.maxDeferred && controller.exitAt(layer, confidence),
    feedback: (record) => controller.record(record),
  };
}
