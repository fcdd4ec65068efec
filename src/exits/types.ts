/**
 * The plain data the engine and the exit controller exchange: one feedback
 * record per generated token, the measured costs, a ramp and its threshold.
 *
 * @module
 */

/** One active ramp's view of one token, filled in by the deep catch-up pass. */
export interface RampScore {
  /** Block whose output the ramp reads (0-based). */
  layer: number;
  /** Confidence in [0, 1] from `scoreLogits`. */
  confidence: number;
  /** Whether the ramp's argmax equalled the full model's argmax at this position. */
  agrees: boolean;
}

/**
 * Feedback for one generated token: every ramp that was active when it was
 * produced (increasing layer), and the ramp it was emitted from.
 */
export interface TokenRecord {
  ramps: readonly RampScore[];
  /** Layer of the ramp the token was streamed from; null = the full model. */
  exitLayer: number | null;
  /** Sequences decoded in the step that decided the token (absent: 1, as in a trace). */
  stepRows?: number;
  /** An exited token's share of the calls its deferral added later (a catch-up run apart from the batch), in ms. */
  overheadMs?: number;
}

/** A token from the full model with no ramp read: all a fused step can say. Shared, so that such tokens allocate nothing. */
export const FULL_MODEL_TOKEN: TokenRecord = Object.freeze({ ramps: Object.freeze([]), exitLayer: null });

/** Measured costs, refreshed by the engine. */
export interface Costs {
  /** Milliseconds per decoder block, one entry per block. */
  blockMs: readonly number[];
  /** Milliseconds for one ramp evaluation (the final head costs about the same). */
  rampMs: number;
  /**
   * Milliseconds a step loses by running block by block, so that ramps can be
   * read, instead of in one fused call: paid by every token while any ramp is
   * active. Absent or 0 when the model has no fused graph.
   */
  splitMs?: number;
  /** Milliseconds for the final head over one position; absent or 0 until timed. */
  headMs?: number;
  /** Milliseconds for a whole decode step in the fused graph; absent or 0 until timed (or without one). */
  fusedMs?: number;
  /**
   * One call for one row, as a line fitted to the calls timed: a fixed cost
   * per call, plus what each block, a ramp and the head add to it. Unlike
   * blockMs (which shares each call's overhead among its blocks), it says
   * what a span that has not run yet would cost. Absent until calls of
   * different sizes have been timed.
   */
  call?: CallCosts;
}

/** A linear model of one call's milliseconds for one row (see Costs.call). */
export interface CallCosts {
  overheadMs: number;
  blockMs: number;
  rampMs: number;
  headMs: number;
}

/** What a call over blocks `from`..`to` (one row) costs by `call`, with a ramp or the head after it when asked. */
export function callMs(call: CallCosts, from: number, to: number, end: 'ramp' | 'head' | 'hidden'): number {
  const endMs = end === 'ramp' ? call.rampMs : end === 'head' ? call.headMs : 0;
  return call.overheadMs + (to - from + 1) * call.blockMs + endMs;
}

/** An active ramp: its layer and the uncertainty (1 − confidence) it tolerates. */
export interface Ramp {
  layer: number;
  threshold: number;
}

/**
 * The exit rule (Apparate's convention): exit iff 1 − confidence < threshold.
 * Threshold 0 never exits; raising it exits more.
 */
export function clears(confidence: number, threshold: number): boolean {
  return 1 - confidence < threshold;
}

/** Latency a token saves by exiting after block `layer` when that ends its step: the deeper blocks' time, deferred and batched. */
export function savedMs(costs: Costs, layer: number): number {
  let ms = 0;
  for (let b = layer + 1; b < costs.blockMs.length; b++) ms += costs.blockMs[b] ?? 0;
  return ms;
}

/**
 * What an exit after `layer` saves the token `rec` stands for. Alone in its
 * step, the step ends at the ramp and the next token starts that much
 * sooner. In a batch the other rows run the deeper blocks anyway: the token
 * is streamed earlier, but its next one comes no sooner, so it saves nothing.
 */
export function exitSavingMs(costs: Costs, layer: number, rec: TokenRecord): number {
  return aloneInStep(rec) ? savedMs(costs, layer) : 0;
}

/** Whether the token was the only one its step decoded (see exitSavingMs). */
export function aloneInStep(rec: TokenRecord): boolean {
  return (rec.stepRows ?? 1) === 1;
}

/** The ramps a token read on its way out; deeper ones were scored later, off its critical path. */
export function rampsRead(rec: TokenRecord): readonly RampScore[] {
  return rec.exitLayer === null ? rec.ramps : rec.ramps.filter((r) => r.layer <= rec.exitLayer!);
}

/**
 * Whether a streamed token equalled the full model's: its exit ramp agreed,
 * or it came from the full model. An exit ramp missing from `ramps` is an
 * engine bug; it counts as a miss so that the constraint errs on the safe side.
 */
export function streamedAgrees(rec: TokenRecord): boolean {
  if (rec.exitLayer === null) return true;
  for (const r of rec.ramps) if (r.layer === rec.exitLayer) return r.agrees;
  return false;
}
