/**
 * The exit controller's configuration: one zod-validated object with
 * commented defaults.
 *
 * Windows count generated tokens, not classification inputs. Apparate checked
 * accuracy over the last 16 results, but at a 1% constraint one miss in 16 is
 * already a 6% violation: a window has to hold a few misses at the stated
 * rate before it can tell 99% from 98%, so it needs hundreds of tokens.
 * At ~1,000 tokens/s over a batch these windows still react within a second.
 *
 * @module
 */
import { z } from 'zod';

const count = () => z.number().int().min(1);

/**
 * Share of a non-exiting step's cost that all active ramps together may
 * cost: Σ rampMs ≤ rampBudget × (Σ blockMs + rampMs for the final head).
 * Apparate used 2–5% for classification; a trained ramp here (a small MLP,
 * then the head over its candidate tokens) costs 0.6–0.75 of a stories260K
 * block, so 10% opened none there; 20% opens one. A ramp that cannot pay is
 * still kept shut by its measured utility (adjuster.ts).
 */
export const DEFAULT_RAMP_BUDGET = 0.2;

export const CostsSchema = z.object({
  /** Milliseconds per decoder block, one entry per block. */
  blockMs: z.array(z.number().min(0)),
  /** Milliseconds per ramp evaluation. */
  rampMs: z.number().min(0),
  /** Milliseconds per step lost to decoding block by block instead of fused (see Costs). */
  splitMs: z.number().min(0).optional(),
  headMs: z.number().min(0).optional(),
  fusedMs: z.number().min(0).optional(),
  call: z.object({ overheadMs: z.number().min(0), blockMs: z.number().min(0), rampMs: z.number().min(0), headMs: z.number().min(0) }).optional(),
});

export const ExitControllerOptionsSchema = z
  .object({
    /** Decoder blocks in the model. */
    numLayers: z.number().int().min(2),
    /** Layers that may carry a ramp (from the model manifest), each in 0..numLayers − 2. */
    candidateLayers: z.array(z.number().int().min(0)),
    /** The constraint: share of streamed tokens equal to the full model's argmax. */
    accuracy: z.number().gt(0).lt(1).default(0.99),
    /**
     * Share of the error budget the tuner keeps in reserve: it tunes against
     * accuracy + tuningSlack × (1 − accuracy), i.e. 0.995 for 0.99. Apparate
     * aimed at 1/100 of the budget, which a 1,000-token window cannot
     * resolve (0.1 misses); half the budget is 5 misses per 1,000, enough to
     * place a threshold, and leaves room for the tuned window to overfit.
     */
    tuningSlack: z.number().min(0).lt(1).default(0.5),
    /** See DEFAULT_RAMP_BUDGET. */
    rampBudget: z.number().min(0).default(DEFAULT_RAMP_BUDGET),
    /** At most this many active ramps (Apparate: 2–3). */
    maxRamps: z.number().int().min(0).default(3),
    /** Tokens over which streamed agreement is checked against `accuracy`: 2 misses allowed at 99%. */
    accuracyWindow: count().default(200),
    /** Tokens the tuner replays: 5 misses at the 99.5% target, enough to place a threshold. */
    tuneWindow: count().default(1_000),
    /** Tokens between upward tunes while the window has slack. */
    tunePeriod: count().default(100),
    /** Tokens between ramp adjustments: enough exits per ramp for a stable utility. */
    adjustPeriod: count().default(500),
    /** Tuner's first step per ramp (Apparate's value). */
    initialStep: z.number().gt(0).max(1).default(0.01),
    /** The tuner stops when every step is below this (Apparate's value). */
    minStep: z.number().gt(0).max(1).default(0.001),
    /** Consecutive violations that reset the failing ramps to threshold 0 at once. */
    emergencyAfter: count().default(2),
    /**
     * Adjustments a dropped layer waits before it may be tried again; doubles
     * each time it is dropped. Once no ramp is left, every layer waits this
     * long, doubling while none pays.
     */
    retryAfter: count().default(4),
    /**
     * Tokens of timed steps (a sequence decoding alone) with a ramp that may
     * exit, and on the fused graph, before the clock judges the ramps: where
     * a token takes longer with them, every ramp is dropped (see recordStep).
     */
    minTimedTokens: count().default(256),
    /** Shadow records kept (tokens with every candidate ramp scored, none exiting; see recordShadow). */
    shadowWindow: count().default(512),
    /** Shadow records needed before they may veto a new ramp. */
    minShadow: count().default(32),
    /** Events kept in `state().log`. */
    logSize: count().default(64),
    /**
     * Costs until the engine measures them. Default: every block 1 ms and
     * ramps free, so only maxRamps limits the start; setCosts re-checks the budget.
     */
    costs: CostsSchema.optional(),
  })
  .superRefine((o, ctx) => {
    const issue = (message: string, path: string) => ctx.addIssue({ code: 'custom', message, path: [path] });
    for (const l of o.candidateLayers) {
      if (l > o.numLayers - 2) issue(`candidate layer ${l} is not before the last block (numLayers ${o.numLayers})`, 'candidateLayers');
    }
    if (new Set(o.candidateLayers).size !== o.candidateLayers.length) issue('candidate layers repeat', 'candidateLayers');
    if (o.tuneWindow < o.accuracyWindow) issue('tuneWindow must be at least accuracyWindow', 'tuneWindow');
    if (o.minStep > o.initialStep) issue('minStep must not exceed initialStep', 'minStep');
    if (o.costs && o.costs.blockMs.length !== o.numLayers) issue(`costs.blockMs needs ${o.numLayers} entries`, 'costs');
  });

/** What callers pass (defaults optional). */
export type ExitControllerInput = z.input<typeof ExitControllerOptionsSchema>;
/** After validation, defaults filled. */
export type ExitControllerOptions = z.output<typeof ExitControllerOptionsSchema>;
