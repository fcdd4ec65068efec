/**
 * The draft controller of lossless mode (self-speculative decoding,
 * LayerSkip): which ramp drafts tokens, from what confidence, and how many
 * positions in a row before the deep blocks verify them. Nothing a client
 * sees depends on it (every streamed token is the full model's), so it
 * tunes for one thing: time per emitted token.
 *
 * A draft run of d positions costs d shallow steps (blocks up to the ramp,
 * and the ramp) and then one step that goes all the way, whose deep pass
 * runs over the d drafted positions and its own together and verifies them.
 * It emits the drafts up to the first one the full model disagrees with,
 * plus one token of the full model's (the correction there, or the next
 * token when every draft held). With a share p of positions confident
 * enough to draft and a share a of those drafts accepted, both taken from
 * recent records, and the measured costs, the expected time per emitted
 * token of every (ramp, threshold, run length) is a closed sum; the best
 * one drafts if it beats exits off (the fused step) by a margin, else
 * nothing drafts. Records come from the drafting ramp on every position
 * and, for ramps not drafting, from shadow steps.
 *
 * In a batch a drafting row still waits for the other rows' deep blocks,
 * so its steps are not shorter and its verification is an extra call: the
 * model charges records decided beside other rows that way, and at high
 * concurrency drafting stops paying and turns itself off.
 *
 * The model is checked against the clock: steps of a sequence decoding
 * alone are timed (`recordStep`), with the plan and without one, and a plan
 * whose measured time per token does not beat the steps' without it is
 * dropped and not tried again for a while (twice as long each time). The
 * steps without a plan are every step of that time, the lossless passes
 * that verify the lookahead head's and the text's drafts among them: a
 * ramp's drafts displace those, so they are what a plan must beat, not
 * the fused step alone. Their time per token, once measured, is also the
 * baseline the model's plans must beat where it is below the fused step's.
 * (On stories260K a ramp plan chosen against the fused step alone ran
 * lossless at 0.99x exits off instead of 1.48x.)
 *
 * @module
 */
import { z } from 'zod';
import { Ring } from '../util/index.js';
import { CostsSchema } from './options.js';
import { StepClock } from './step-clock.js';
import { aloneInStep, callMs, type Costs, type TokenRecord } from './types.js';

export const DraftControllerOptionsSchema = z.object({
  numLayers: z.number().int().min(2),
  /** Layers that may carry a ramp (from the model manifest). */
  candidateLayers: z.array(z.number().int().min(0)),
  /** The longest draft run allowed (the tuner chooses up to this). */
  maxDraft: z.number().int().min(1).default(16),
  /** Records kept per ramp, most recent. */
  window: z.number().int().min(16).default(2_000),
  /** Records a ramp needs before the tuner considers it. */
  minSamples: z.number().int().min(1).default(64),
  /** Records between re-tunes. */
  tunePeriod: z.number().int().min(1).default(128),
  /** Drafting must beat exits off by this share of its time per token. */
  margin: z.number().min(0).lt(1).default(0.03),
  /** Tokens of timed steps, with the plan and without, before the clock judges a plan. */
  minTimedTokens: z.number().int().min(1).default(256),
  /** Records a plan the clock dropped waits before drafting again (doubling each time). */
  backoff: z.number().int().min(1).default(2_000),
});
/** The options, and the measured costs when already known (else setCosts brings them). */
export type DraftControllerInput = z.input<typeof DraftControllerOptionsSchema> & { costs?: Costs };
export type DraftControllerOptions = z.output<typeof DraftControllerOptionsSchema>;

/** What drafts now: the ramp, the least confidence that drafts there, the longest run; with its estimated cost. */
export interface DraftPlan {
  layer: number;
  minConfidence: number;
  maxDraft: number;
  /** Expected milliseconds per emitted token under this plan (the model above); null for a forced plan. */
  msPerToken: number | null;
}

/** A plan forced from outside (tests, benchmarks, the debug route). */
export type ForcedDraftPlan = Omit<DraftPlan, 'msPerToken'>;

/** One verification: a run of drafts from one ramp (or from the text itself) and how many of them the full model accepted. */
export interface DraftOutcome {
  /** The drafting ramp's layer, 'context' (drafts a sequence took from its own text) or 'lookahead' (the lookahead head's guesses). */
  layer: number | 'context' | 'lookahead';
  drafted: number;
  accepted: number;
}

/** One ramp's drafting record, for GET /exits and metrics. */
export interface DraftRampState extends DraftOutcomes {
  layer: number;
  /** Records held for the tuner. */
  samples: number;
}

export interface DraftState {
  plan: DraftPlan | null;
  /** Milliseconds per token without drafting (see baselineMsPerToken); null until costs are measured. */
  baselineMsPerToken: number | null;
  /** Tokens emitted by lossless sequences, and how many of them were verified drafts. */
  tokens: number;
  draftedTokens: number;
  /** Measured milliseconds per token of a sequence decoding alone: with the plan, and without one; null until timed. */
  measured: { draftingMsPerToken: number | null; withoutPlanMsPerToken: number | null };
  /** Plans the clock dropped. */
  drops: number;
  ramps: DraftRampState[];
  /** Drafts a sequence took from its own text (prompt lookup; see runner.ts), verified like the ramps'. */
  context: DraftOutcomes;
  /** Drafts the lookahead head guessed (see runner.ts); all zero on a model without one. */
  lookahead: DraftOutcomes;
}

/** Drafts verified, and how they fared. */
export interface DraftOutcomes {
  drafted: number;
  accepted: number;
  /** accepted / drafted; null before a draft. */
  acceptance: number | null;
  /** Verified runs (a run of at least one draft). */
  runs: number;
  /** Drafts accepted per verified run; null before one. */
  meanAcceptedRun: number | null;
}

function outcomes({ drafted, accepted, runs }: { drafted: number; accepted: number; runs: number }): DraftOutcomes {
  return { drafted, accepted, acceptance: drafted === 0 ? null : accepted / drafted, runs, meanAcceptedRun: runs === 0 ? null : accepted / runs };
}

/** What the tuner keeps per record: the ramp's confidence, whether its token was the full model's, and whether the row was alone in its step. */
interface Sample {
  confidence: number;
  agrees: boolean;
  alone: boolean;
}

/** Run lengths the tuner tries (those up to maxDraft). */
const RUN_LENGTHS = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32];

/** Thresholds the tuner tries per ramp: the confidence at these shares of its records, most confident first. */
const DRAFT_SHARES = Array.from({ length: 19 }, (_, i) => (i + 1) / 20);

/**
 * Expected tokens per draft cycle with up to `run` drafts, each position
 * confident enough with probability p and each draft accepted with
 * probability a: Σ_d P(d) Σ_{i≤d} a^i (the accepted prefix, plus the full
 * model's token). Returns that, the expected number of drafts, and the
 * probability that the cycle drafts at all.
 */
export function cycleExpectation(p: number, a: number, run: number): { tokens: number; drafts: number; anyDraft: number } {
  let tokens = 0;
  let drafts = 0;
  let reach = 1; // P(the first d positions were all confident)
  let prefix = 1; // Σ_{i≤d} a^i
  let power = 1;
  for (let d = 0; d <= run; d++) {
    const probability = d === run ? reach : reach * (1 - p);
    tokens += probability * prefix;
    drafts += probability * d;
    reach *= p;
    power *= a;
    prefix += power;
  }
  return { tokens, drafts, anyDraft: run === 0 ? 0 : p };
}

/**
 * Expected milliseconds per emitted token when the ramp after `layer`
 * drafts (see the module comment): alone in its step, a draft costs the
 * call over the blocks up to the ramp, and the closing step that plus the
 * call over the deep blocks and head; beside other rows every step costs a
 * whole split step and the verification adds a deep call of its own. Calls
 * are priced by the fitted line (Costs.call) when there is one, else by
 * the blocks' shares of the calls timed.
 */
export function draftMsPerToken(costs: Costs, layer: number, p: number, a: number, run: number, aloneShare: number): number {
  return cycleMsPerToken(draftCalls(costs, layer), p, a, run, aloneShare);
}

/** What the calls of drafting from the ramp after `layer` cost (see draftMsPerToken): up to the ramp, and from it through the head. */
function draftCalls(costs: Costs, layer: number): { shallow: number; deep: number } {
  const last = costs.blockMs.length - 1;
  const sum = (from: number, to: number) => costs.blockMs.slice(from, to + 1).reduce((s, ms) => s + ms, 0);
  return {
    shallow: costs.call ? callMs(costs.call, 0, layer, 'ramp') : sum(0, layer) + costs.rampMs,
    deep: costs.call ? callMs(costs.call, layer + 1, last, 'head') : sum(layer + 1, last) + (costs.headMs || costs.rampMs),
  };
}

/** draftMsPerToken from its calls' costs (the tuner prices them once per ramp, not once per plan). */
function cycleMsPerToken({ shallow, deep }: { shallow: number; deep: number }, p: number, a: number, run: number, aloneShare: number): number {
  const cycle = cycleExpectation(p, a, run);
  const alone = cycle.drafts * shallow + shallow + deep;
  const batched = (cycle.drafts + 1) * (shallow + deep) + cycle.anyDraft * deep;
  return (aloneShare * alone + (1 - aloneShare) * batched) / cycle.tokens;
}

/**
 * Milliseconds per token with no drafting: one call over every block and
 * the head, priced like the drafting plans (by the fitted line when there
 * is one: the fused step's median mixes calls over whole batches, and
 * against one-row prices it made drafting look cheap at 16 streams), else
 * the fused step when timed, else the blocks and head.
 */
export function baselineMsPerToken(costs: Costs): number {
  const last = costs.blockMs.length - 1;
  if (costs.call) return callMs(costs.call, 0, last, 'head');
  return costs.fusedMs || costs.blockMs.reduce((s, ms) => s + ms, 0) + (costs.headMs || costs.rampMs);
}

interface RampTally {
  samples: Ring<Sample>;
  /** Samples pushed so far: what `thresholds` was computed at. */
  pushes: number;
  /** The tuner's reading of the samples (see thresholdsOf), kept until a sample comes in: most tunes see none new. */
  thresholds: { pushes: number; aloneShare: number; points: DraftThreshold[] } | null;
  drafted: number;
  accepted: number;
  runs: number;
}

/** A threshold the tuner may draft from: its least confidence, the share p of records that reach it, their agreement a. */
interface DraftThreshold {
  minConfidence: number;
  p: number;
  a: number;
}

/** The thresholds at DRAFT_SHARES of `samples` (most confident first), with the share of them that were alone in their step. */
function thresholdsOf(samples: Sample[]): { aloneShare: number; points: DraftThreshold[] } {
  const aloneShare = samples.filter((s) => s.alone).length / samples.length;
  const byConfidence = [...samples].sort((x, y) => y.confidence - x.confidence);
  // The records that draft at a threshold are a prefix of byConfidence: count their agreements once.
  const agreedIn = [0];
  byConfidence.forEach((s, i) => agreedIn.push(agreedIn[i]! + (s.agrees ? 1 : 0)));
  const points: DraftThreshold[] = [];
  for (const share of DRAFT_SHARES) {
    let confident = Math.max(1, Math.round(share * samples.length));
    const minConfidence = byConfidence[confident - 1]!.confidence;
    if (minConfidence <= 0) continue; // a ramp whose rest column won has no confidence: never a draft
    while (confident < byConfidence.length && byConfidence[confident]!.confidence >= minConfidence) confident++; // ties draft too
    // One unseen miss added: a handful of lucky records must not look perfect.
    points.push({ minConfidence, p: confident / samples.length, a: agreedIn[confident]! / (confident + 1) });
  }
  return { aloneShare, points };
}

/**
 * @example
 * const drafts = new DraftController({ numLayers: 5, candidateLayers: [0, 1, 2, 3] });
 * drafts.setCosts(costs);
 * if (drafts.plan?.layer === layer && drafts.draftsAt(layer, confidence)) ...;
 * drafts.record({ ramps: [{ layer: 2, confidence: 0.93, agrees: true }], exitLayer: 2 });
 */
export class DraftController {
  readonly options: DraftControllerOptions;
  private costs: Costs | null;
  private current: DraftPlan | null = null;
  private readonly tallies = new Map<number, RampTally>();
  private sinceTune = 0;
  private tokens = 0;
  private draftedTokens = 0;
  private readonly context = { drafted: 0, accepted: 0, runs: 0 };
  private readonly lookahead = { drafted: 0, accepted: 0, runs: 0 };
  private records = 0;
  private readonly draftingClock = new StepClock();
  private readonly withoutPlanClock = new StepClock();
  /** No plan until `records` reaches this (a plan the clock dropped). */
  private blockedUntil = 0;
  private backoff: number;
  private drops = 0;
  private frozen = false;

  constructor(input: DraftControllerInput) {
    this.options = DraftControllerOptionsSchema.parse(input);
    this.costs = input.costs ? CostsSchema.parse(input.costs) : null;
    this.backoff = this.options.backoff;
    for (const layer of this.options.candidateLayers) {
      if (layer >= this.options.numLayers - 1) throw new RangeError(`candidate layer ${layer} must be below the last block (${this.options.numLayers - 1})`);
      this.tallies.set(layer, { samples: new Ring(this.options.window), pushes: 0, thresholds: null, drafted: 0, accepted: 0, runs: 0 });
    }
  }

  /** The drafting plan, or null while nothing drafts. */
  get plan(): DraftPlan | null {
    return this.current;
  }

  /** Whether a position whose ramp after `layer` scored `confidence` becomes a draft. */
  draftsAt(layer: number, confidence: number): boolean {
    const plan = this.current;
    return plan !== null && plan.layer === layer && confidence >= plan.minConfidence;
  }

  /** Whether every candidate ramp has the records the tuner needs (until then shadow steps come often). */
  get hasEvidence(): boolean {
    return [...this.tallies.values()].every((t) => t.samples.size >= this.options.minSamples);
  }

  /**
   * One position's readings with the full model's verdict: a lossless
   * row's (the drafting ramp, drafted or not) or a shadow step's (every
   * candidate). Re-tunes every tunePeriod records.
   */
  record(rec: TokenRecord): void {
    this.records++;
    const alone = aloneInStep(rec);
    for (const r of rec.ramps) {
      const tally = this.tallies.get(r.layer);
      if (!tally) continue;
      tally.samples.push({ confidence: r.confidence, agrees: r.agrees, alone });
      tally.pushes++;
    }
    if (++this.sinceTune >= this.options.tunePeriod) this.tune();
  }

  /** One verification of a draft run. */
  recordOutcome(outcome: DraftOutcome): void {
    const { layer } = outcome;
    const tally = layer === 'context' ? this.context : layer === 'lookahead' ? this.lookahead : this.tallies.get(layer);
    if (!tally || outcome.drafted === 0) return;
    tally.drafted += outcome.drafted;
    tally.accepted += outcome.accepted;
    tally.runs++;
  }

  /** A timed step of a lossless sequence decoding alone, taken `withPlan` (a plan was in force) or without one. */
  recordStep(ms: number, tokens: number, withPlan: boolean): void {
    (withPlan ? this.draftingClock : this.withoutPlanClock).add(ms, tokens);
  }

  /** Tokens a lossless sequence emitted (`drafted` of them verified drafts). */
  countTokens(emitted: number, drafted: number): void {
    this.tokens += emitted;
    this.draftedTokens += drafted;
  }

  setCosts(costs: Costs): void {
    const parsed = CostsSchema.parse(costs);
    if (parsed.blockMs.length !== this.options.numLayers)
      throw new RangeError(`setCosts: blockMs needs ${this.options.numLayers} entries, got ${parsed.blockMs.length}`);
    this.costs = parsed;
  }

  /** Forces a plan (tests, benchmarks), or none. Tuning replaces it at the next re-tune, unless `freeze` stops tuning. */
  setPlan(plan: ForcedDraftPlan | null, options: { freeze?: boolean } = {}): void {
    if (plan && !this.tallies.has(plan.layer)) throw new RangeError(`setPlan: layer ${plan.layer} is not a candidate layer`);
    this.current = plan && { ...plan, maxDraft: Math.min(plan.maxDraft, this.options.maxDraft), msPerToken: null };
    this.frozen = options.freeze ?? false;
  }

  /** Chooses the plan with the least expected time per token over the records held; none unless it beats exits off by `margin`. */
  tune(): void {
    this.sinceTune = 0;
    const costs = this.costs;
    if (!costs || this.frozen) return;
    if (this.current && this.clockSaysNo()) {
      this.current = null;
      this.draftingClock.clear();
      this.blockedUntil = this.records + this.backoff;
      this.backoff *= 2;
      this.drops++;
    }
    if (this.records < this.blockedUntil) return;
    const measured = this.withoutPlanClock.msPerToken(this.options.minTimedTokens);
    const baseline = Math.min(baselineMsPerToken(costs), measured ?? Infinity);
    let best: (DraftPlan & { msPerToken: number }) | null = null;
    for (const [layer, tally] of this.tallies) {
      if (tally.samples.size < this.options.minSamples) continue;
      if (tally.thresholds?.pushes !== tally.pushes) tally.thresholds = { pushes: tally.pushes, ...thresholdsOf(tally.samples.last()) };
      const { aloneShare, points } = tally.thresholds;
      const calls = draftCalls(costs, layer);
      for (const { minConfidence, p, a } of points) {
        for (const run of RUN_LENGTHS) {
          if (run > this.options.maxDraft) break;
          const msPerToken = cycleMsPerToken(calls, p, a, run, aloneShare);
          if (!best || msPerToken < best.msPerToken) best = { layer, minConfidence, maxDraft: run, msPerToken };
        }
      }
    }
    this.current = best && best.msPerToken < baseline * (1 - this.options.margin) ? best : null;
  }

  /** Whether timed steps say the plan loses: its time per token does not beat the steps' without it by the margin. */
  private clockSaysNo(): boolean {
    const drafting = this.draftingClock.msPerToken(this.options.minTimedTokens);
    const without = this.withoutPlanClock.msPerToken(this.options.minTimedTokens);
    return drafting !== null && without !== null && drafting > without * (1 - this.options.margin);
  }

  state(): DraftState {
    const ramps = [...this.tallies].map(([layer, t]) => ({ layer, samples: t.samples.size, ...outcomes(t) }));
    return {
      plan: this.current && { ...this.current },
      baselineMsPerToken: this.costs ? baselineMsPerToken(this.costs) : null,
      tokens: this.tokens,
      draftedTokens: this.draftedTokens,
      measured: { draftingMsPerToken: this.draftingClock.msPerToken(), withoutPlanMsPerToken: this.withoutPlanClock.msPerToken() },
      drops: this.drops,
      ramps,
      context: outcomes(this.context),
      lookahead: outcomes(this.lookahead),
    };
  }
}
